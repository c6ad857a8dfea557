"""The weights to export, as a list of tensors read one at a time: a model folder with its LoRA
adapters merged in order, or a model already in memory.

``StreamedWeights`` merges straight from the files: for each weight it reads the base tensor and
adds every adapter's update ``scale · B @ A`` in float32 (``scale = lora_alpha / r``, or
``/ sqrt(r)`` with rsLoRA), the arithmetic of peft's ``merge_and_unload``. It needs plain LoRA
adapters saved as safetensors and a base model saved as safetensors; anything else (DoRA,
modules_to_save, rank patterns, a hub id, .bin files) goes through peft on a loaded model
(``ModelWeights`` after :func:`raytune_llm.model.adapter.merge_adapters`). Both give the
logits of base + adapters (tested against peft).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..utils.errors import UserError
from .safetensors_io import TensorInfo, read_header, read_tensor

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."
LORA_KEYS = (".lora_A.weight", ".lora_B.weight")
# adapter_config.json keys that do not change how a plain LoRA merges; every other key must be
# off (false, null, empty, "none") for the streamed merge, else peft merges on a loaded model.
_NEUTRAL = {
    "peft_type", "task_type", "r", "lora_alpha", "lora_dropout", "target_modules", "revision",
    "base_model_name_or_path", "inference_mode", "init_lora_weights", "auto_mapping",
    "peft_version", "layers_to_transform", "layers_pattern", "exclude_modules", "use_rslora",
    "megatron_config", "megatron_core", "loftq_config", "qalora_group_size", "bias",
}  # fmt: skip


@dataclass
class Lora:
    """One plain LoRA adapter: base weight name → (A, B) tensors in the adapter file."""

    folder: Path
    scale: float
    base_model: str | None
    pairs: dict[str, tuple[TensorInfo, TensorInfo]] = field(default_factory=dict)


def adapter_config(folder: str | Path) -> dict[str, Any]:
    """The adapter_config.json of an adapter folder."""
    path = Path(folder) / ADAPTER_CONFIG
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"adapter_name_or_path {folder}: cannot read {path}: {err}") from None


def streamable_lora(folder: str | Path) -> Lora | str:
    """The adapter as a :class:`Lora`, or why the streamed merge cannot take it."""
    folder = Path(folder)
    cfg = adapter_config(folder)
    if cfg.get("peft_type") != "LORA":
        return f"it is a {cfg.get('peft_type')} adapter, not LoRA"
    active = [k for k, v in cfg.items() if k not in _NEUTRAL and v]
    if cfg.get("bias", "none") != "none":
        active.append("bias")
    if active:
        return f"it uses {', '.join(sorted(active))}"
    if not (folder / ADAPTER_WEIGHTS).is_file():
        return f"it has no {ADAPTER_WEIGHTS}"
    r, alpha = cfg["r"], cfg["lora_alpha"]
    scale = alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r
    lora = Lora(folder, scale, cfg.get("base_model_name_or_path"))
    halves: dict[str, dict[str, TensorInfo]] = {}
    for info in read_header(folder / ADAPTER_WEIGHTS):
        suffix = next((s for s in LORA_KEYS if info.name.endswith(s)), None)
        if suffix is None or not info.name.startswith(PEFT_PREFIX):
            return f"it holds {info.name}, which is not a LoRA A/B matrix"
        base = info.name[len(PEFT_PREFIX) : -len(suffix)] + ".weight"
        halves.setdefault(base, {})[suffix[6]] = info
    for base, ab in halves.items():
        if set(ab) != {"A", "B"}:
            return f"{base} has only lora_{''.join(ab)}"
        lora.pairs[base] = (ab["A"], ab["B"])
    return lora


def check_fits(lora: Lora, base: dict[str, TensorInfo], model: str) -> None:
    """Refuse an adapter whose matrices do not fit the base model's weights (another base)."""
    hint = (
        f" (its adapter_config.json names base model {lora.base_model})" if lora.base_model else ""
    )
    for name, (a, b) in lora.pairs.items():
        info = base.get(name)
        want = (b.shape[0], a.shape[1])
        if info is None:
            raise UserError(
                f"adapter_name_or_path {lora.folder} does not fit model_name_or_path {model}: it "
                f"changes {name}, which the model does not have; it was trained on another "
                f"base model{hint}"
            )
        if tuple(info.shape) != want or a.shape[0] != b.shape[1]:
            raise UserError(
                f"adapter_name_or_path {lora.folder} does not fit model_name_or_path {model}: "
                f"{name} is {list(info.shape)} in the model but the adapter's update is "
                f"{list(want)} (shape mismatch); it was trained on another base model{hint}"
            )


class StreamedWeights:
    """A model's safetensors files with LoRA adapters merged, one tensor at a time."""

    def __init__(self, files: list[Path], loras: list[Lora], model: str):
        self.infos = {t.name: t for f in files for t in read_header(f)}
        for lora in loras:
            check_fits(lora, self.infos, model)
        self.loras = loras

    def layout(self) -> list[tuple[str, torch.dtype, tuple[int, ...]]]:
        """(name, stored dtype, shape) of every tensor, in file order."""
        return [(t.name, t.dtype, t.shape) for t in self.infos.values()]

    def get(self, name: str) -> torch.Tensor:
        """The tensor, with every adapter's update added (in float32) when one changes it."""
        weight = read_tensor(self.infos[name])
        for lora in self.loras:
            if name in lora.pairs:
                a, b = (read_tensor(t).float() for t in lora.pairs[name])
                weight = weight.float().addmm_(b, a, alpha=lora.scale)
        return weight


class ModelWeights:
    """The weights of a model in memory; tied weights (one storage, two names) listed once."""

    def __init__(self, model: torch.nn.Module):
        self.state: dict[str, torch.Tensor] = {}
        seen: set[tuple[int, int]] = set()
        for name, tensor in model.state_dict().items():
            key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
            if key in seen:
                continue
            seen.add(key)
            self.state[name] = tensor

    def layout(self) -> list[tuple[str, torch.dtype, tuple[int, ...]]]:
        """(name, dtype, shape) of every tensor, in the model's order."""
        return [(n, t.dtype, tuple(t.shape)) for n, t in self.state.items()]

    def get(self, name: str) -> torch.Tensor:
        """The tensor (on the CPU)."""
        return self.state[name].detach().cpu()
