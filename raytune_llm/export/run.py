"""``raytune-llm export``: merge adapters, write a deployable model, optionally quantized.

    check inputs → tokenizer + template → weights (streamed merge, or peft on a loaded model,
    or GPTQ) → safetensors shards + index | .bin shards | one .gguf → config.json,
    generation_config.json, tokenizer, Modelfile, value head → rename into export_dir → push

Everything is written into a temporary folder beside export_dir and renamed into place at the
end, so a failed export never leaves a half-written model. No Ray: one process does it all.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import Config
from ..data.templates import Template, get_template
from ..model.loader import load_tokenizer, resolve_model_path
from ..utils.files import publish
from . import safetensors_io as st
from .checks import check_inputs
from .modelfile import modelfile
from .to_gguf import check_gguf_model, gguf_name, write_gguf
from .weights import ModelWeights, StreamedWeights, streamable_lora

VALUE_HEAD_FILES = ("value_head.safetensors", "value_head.bin")
GB = 10**9


@dataclass
class ExportResult:
    """What an export wrote and how."""

    export_dir: Path
    files: list[str]
    merge: str  # "streamed", "peft" or "gptq"
    dtype: str
    seconds: float
    pushed_to: str | None = None


def output_dtype(infer_dtype: str, layout: list[tuple[str, torch.dtype, Any]]) -> torch.dtype:
    """infer_dtype, or with ``auto`` the weights' own dtype, fp32 becoming bf16 (LLaMA-Factory)."""
    if infer_dtype != "auto":
        return getattr(torch, infer_dtype)
    floats = [d for _, d, _ in layout if d.is_floating_point]
    stored = max(set(floats), key=floats.count) if floats else torch.float32
    return torch.bfloat16 if stored == torch.float32 else stored


def _tokenizer(cfg: Config) -> tuple[Any, Template]:
    tokenizer = load_tokenizer(cfg.model)
    template = get_template(cfg.data.template, tokenizer, default_system=cfg.data.default_system)
    template.fix_tokenizer(tokenizer)
    tokenizer.padding_side = "left"  # for generation, as LLaMA-Factory saves it
    return tokenizer, template


def _load_weights(cfg: Config, base: str, adapters: list[Path], tokenizer: Any) -> tuple:
    """(weights, HF config, how): streamed when it can, else peft on a loaded model."""
    from transformers import AutoConfig

    if cfg.export.export_quantization_bit:
        from .gptq import quantized_model

        model = quantized_model(cfg, base, tokenizer)
        return model, model.config, "gptq"
    files = st.model_files(base) if Path(base).is_dir() else None
    config = AutoConfig.from_pretrained(base) if files else None
    loras = [streamable_lora(a) for a in adapters]
    grows = config is not None and len(tokenizer) > config.vocab_size
    if files and not grows and all(not isinstance(lr, str) for lr in loras):
        return StreamedWeights(files, loras, cfg.model.model_name_or_path), config, "streamed"
    from ..model.adapter import merge_adapters
    from ..model.loader import load_model

    model = load_model(cfg, tokenizer, for_training=False)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=64)
    if cfg.export.export_device == "auto" and torch.cuda.is_available():
        model = model.to("cuda")
    model = merge_adapters(model, [str(a) for a in adapters])
    return ModelWeights(model), model.config, "peft"


def write_shards(
    folder: Path, weights: Any, dtype: torch.dtype | None, max_bytes: int, legacy: bool
) -> list[str]:
    """Write the weights as shards of at most ``max_bytes`` (+ index when several)."""
    outs = [st.OutTensor(n, dtype if dtype and d.is_floating_point else d, s)
            for n, d, s in weights.layout()]  # fmt: skip
    shards = st.plan_shards(outs, max_bytes)
    stem, ext = ("pytorch_model", "bin") if legacy else ("model", "safetensors")
    names = st.shard_names(len(shards), stem, ext)
    for shard, name in zip(shards, names, strict=True):
        if legacy:
            torch.save({t.name: weights.get(t.name).to(t.dtype) for t in shard}, folder / name)
        else:
            st.write_file(folder / name, shard, lambda t: weights.get(t.name))
    if len(shards) > 1:
        st.write_index(folder, shards, names, f"{stem}.{ext}.index.json")
        names.append(f"{stem}.{ext}.index.json")
    return names


def _generation_config(config: Any, base: str, template: Template, tokenizer: Any) -> Any:
    from transformers import GenerationConfig

    try:
        gen = GenerationConfig.from_pretrained(base)
    except OSError:
        gen = GenerationConfig.from_model_config(config)
    eos = gen.eos_token_id if isinstance(gen.eos_token_id, list) else [gen.eos_token_id]
    stops = [i for i in eos if i is not None]
    stops += [i for i in template.stop_token_ids(tokenizer) if i not in stops]
    gen.eos_token_id = stops if len(stops) > 1 else stops[0]
    if gen.pad_token_id is None:
        gen.pad_token_id = tokenizer.pad_token_id
    return gen


def _copy_value_head(adapters: list[Path], base: str, folder: Path) -> list[str]:
    """A reward model's value head, beside the last adapter or the model, goes along."""
    source = adapters[-1] if adapters else Path(base)
    copied = []
    for name in VALUE_HEAD_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, folder / name)
            copied.append(name)
    return copied


def _write(cfg: Config, staging: Path, base: str, adapters: list[Path]) -> tuple[str, str]:
    """Everything of the export into ``staging``; returns (how it merged, the dtype written)."""
    ex = cfg.export
    tokenizer, template = _tokenizer(cfg)
    weights, config, how = _load_weights(cfg, base, adapters, tokenizer)
    if ex.export_format == "gguf":
        check_gguf_model(config.to_dict())
    if how == "gptq":
        weights.save_pretrained(staging, max_shard_size=int(ex.export_size * GB))
        dtype_name = f"gptq {ex.export_quantization_bit}-bit"
    else:
        quantized = getattr(config, "quantization_config", None) is not None
        dtype = None if quantized else output_dtype(cfg.model.infer_dtype, weights.layout())
        config.dtype = dtype or config.dtype
        config.save_pretrained(staging)
        if ex.export_format == "safetensors":
            write_shards(staging, weights, dtype, int(ex.export_size * GB),
                         ex.export_legacy_format)  # fmt: skip
        dtype_name = str(dtype or "as stored").removeprefix("torch.")
    tokenizer.save_pretrained(staging)
    _generation_config(config, base, template, tokenizer).save_pretrained(staging)
    source = "."
    if ex.export_format == "gguf":
        source = f"./{gguf_name(ex.export_gguf_type)}"
        config_dict = json.loads((staging / "config.json").read_text())
        write_gguf(staging / source[2:], weights, config_dict, staging, ex.export_gguf_type)
        dtype_name = ex.export_gguf_type
    context = int(getattr(config, "max_position_embeddings", 0) or 4096)
    (staging / "Modelfile").write_text(modelfile(template, tokenizer, source, context))
    _copy_value_head(adapters, base, staging)
    return how, dtype_name


def run_export(cfg: Config) -> ExportResult:
    """Export as the config says (see the module docstring); returns what was written.

    Raises:
        UserError: bad input (missing or mismatched adapter, non-empty export_dir, ...), before
            export_dir is touched.
    """
    start = time.perf_counter()
    base = resolve_model_path(cfg.model.model_name_or_path)
    out, adapters = check_inputs(cfg, base)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        how, dtype = _write(cfg, staging, base, adapters)
        staging.chmod(0o755)
        publish(staging, out, overwrite=cfg.train.overwrite_output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    result = ExportResult(out, sorted(p.name for p in out.iterdir()), how, dtype,
                          time.perf_counter() - start)  # fmt: skip
    if cfg.export.export_hub_model_id:
        result.pushed_to = push_export(cfg, out)
    return result


def push_export(cfg: Config, out: Path) -> str:
    """Upload export_dir to export_hub_model_id; returns the repository id.

    Raises:
        UserError: when the upload fails, saying the export is still in export_dir.
    """
    from huggingface_hub import HfApi

    wanted = cfg.export.export_hub_model_id or out.name
    api = HfApi(token=cfg.model.hf_hub_token or None)
    try:
        repo = api.create_repo(wanted, exist_ok=True).repo_id
        api.upload_folder(repo_id=repo, folder_path=out, commit_message="raytune-llm export")
    except Exception as err:  # network, permissions, quota: the export itself succeeded
        from ..utils.errors import UserError

        raise UserError(
            f"export_hub_model_id: the export is in {out}, but uploading it to {wanted} failed "
            f"({type(err).__name__}: {err}); upload it later with `hf upload {wanted} {out}`"
        ) from None
    return repo
