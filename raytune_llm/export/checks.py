"""What ``raytune-llm export`` refuses before it reads a weight or writes a file.

The cross-key rules every verb shares live in :mod:`raytune_llm.config.rules`; these are the
export verb's own (export_dir required, never inside its inputs, empty unless overwrite_output_dir)
and those that need to look at the model and adapter folders (missing, an adapter given as the
model, a model that is already quantized).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..config import Config
from ..config.errors import ConfigError, locate
from .weights import ADAPTER_CONFIG


def _problem(cfg: Config, key: str, message: str) -> ConfigError:
    return ConfigError([locate(key, message, cfg.lines, cfg.origins, cfg.source)], cfg.source)


def check_config(cfg: Config) -> Path:
    """The export verb's own key checks; returns export_dir, absolute."""
    problems = []
    ex = cfg.export
    if not ex.export_dir:
        problems.append(("export_dir", "required by raytune-llm export: where the model goes"))
    if cfg.model.quantization_bit:
        problems.append((
            "quantization_bit",
            "loads the model quantized with bitsandbytes, and adapters cannot be merged into a "
            "quantized model; remove it (quantize the export with export_quantization_bit or "
            "export_format: gguf)",
        ))  # fmt: skip
    if problems:
        found = [locate(k, m, cfg.lines, cfg.origins, cfg.source) for k, m in problems]
        raise ConfigError(found, cfg.source)
    return Path(ex.export_dir).expanduser().resolve()


def check_adapters(cfg: Config) -> list[Path]:
    """The adapter folders, each present and holding an adapter_config.json."""
    out = []
    for name in cfg.model.adapter_name_or_path or []:
        path = Path(name).expanduser()
        if not path.is_dir():
            raise _problem(cfg, "adapter_name_or_path", f"adapter folder not found: {name}")
        if not (path / ADAPTER_CONFIG).is_file():
            raise _problem(
                cfg, "adapter_name_or_path", f"{name} holds no {ADAPTER_CONFIG}: not a peft adapter"
            )
        out.append(path.resolve())
    return out


def check_model_folder(cfg: Config, base: str, adapters: list[Path]) -> None:
    """Refuse an adapter given as the model, and adapters or GPTQ on an already-quantized model."""
    folder = Path(base)
    if not folder.is_dir():
        return  # a hub id: transformers reports what is wrong with it
    if (folder / ADAPTER_CONFIG).is_file() and not (folder / "config.json").is_file():
        saved = json.loads((folder / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")
        raise _problem(
            cfg,
            "model_name_or_path",
            f"{base} holds a LoRA adapter, not a model; set adapter_name_or_path: {base} and "
            f"model_name_or_path to its base model (its adapter_config.json names {saved})",
        )
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return  # loading names the problem
    method = (config.get("quantization_config") or {}).get("quant_method")
    if method and adapters:
        raise _problem(
            cfg,
            "adapter_name_or_path",
            f"model_name_or_path {base} is already quantized ({method}); adapters cannot be merged "
            "into a quantized model: merge them into the unquantized base",
        )
    if method and cfg.export.export_quantization_bit:
        raise _problem(
            cfg,
            "export_quantization_bit",
            f"model_name_or_path {base} is already quantized ({method})",
        )


def check_export_dir(cfg: Config, out: Path, inputs: list[Path]) -> None:
    """export_dir must not be (or hold) an input, and must be empty unless overwrite_output_dir."""
    for path in inputs:
        if out == path or path.is_relative_to(out):
            raise _problem(
                cfg, "export_dir", f"{out} would replace the input {path}; choose another folder"
            )
    if out.exists() and not out.is_dir():
        raise _problem(cfg, "export_dir", f"{out} is a file; give a folder")
    if out.is_dir() and any(out.iterdir()) and not cfg.train.overwrite_output_dir:
        raise _problem(
            cfg,
            "export_dir",
            f"{out} exists and is not empty; set overwrite_output_dir: true to replace it, or "
            "choose another export_dir",
        )


def check_inputs(cfg: Config, base: str) -> tuple[Path, list[Path]]:
    """Every check of this module, in order; returns (export_dir, adapter folders)."""
    out = check_config(cfg)
    adapters = check_adapters(cfg)
    check_model_folder(cfg, base, adapters)
    inputs = [*adapters, *([Path(base).resolve()] if Path(base).is_dir() else [])]
    check_export_dir(cfg, out, inputs)
    if cfg.export.export_hub_model_id:
        from ..utils.hub import check_hub_access

        check_hub_access(
            cfg.model.hf_hub_token,
            "export_hub_model_id is set",
            "remove export_hub_model_id to export without uploading",
            "log in with `hf auth login` or set HF_TOKEN or hf_hub_token",
        )
    return out, adapters
