"""Config as text: resolved YAML, the key reference, and a commented YAML template.

All three read the descriptions declared with each key, so the CLI, the docs and the web UI agree.
"""

from __future__ import annotations

import os
import textwrap
import typing
from typing import Any

import yaml
from pydantic.fields import FieldInfo

from .config import NESTED_SECTIONS, SECTIONS, Config


def _dump(key: str, value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6, sort_keys=False)
    return f"{key}: {text.removesuffix(chr(10) + '...' + chr(10)).strip()}"


def to_yaml(cfg: Config, *, only_set: bool = False) -> str:
    """The config as flat YAML, grouped by section under ``### section`` headings.

    Args:
        cfg: a validated config.
        only_set: print only keys the user gave (file or overrides), not defaults.
    """
    given = set(cfg.user_keys)
    out: list[str] = []
    for name in SECTIONS:
        values = getattr(cfg, name).model_dump()
        keys = [k for k in values if not only_set or k in given]
        if keys:
            out.append(f"### {name}")
            out += [_dump(k, values[k]) for k in keys]
            out.append("")
    for name in NESTED_SECTIONS:
        value = getattr(cfg, name)
        if value is not None:
            out += [f"### {name}", _dump(name, value.model_dump(exclude_unset=only_set)), ""]
    return "\n".join(out).rstrip() + "\n"


def type_name(info: FieldInfo) -> str:
    """A short, readable type: ``int``, ``bool | None``, ``one of: lora, freeze, full``."""
    annotation = info.annotation
    args = typing.get_args(annotation)
    literal = [a for a in args if typing.get_origin(a) is typing.Literal]
    if typing.get_origin(annotation) is typing.Literal:
        literal = [annotation]
    if literal:
        choices = ", ".join(str(c) for c in typing.get_args(literal[0]))
        return f"one of: {choices}" + (" (or null)" if type(None) in args else "")
    text = str(annotation).replace("typing.", "")
    for noise in ("<class '", "'>", "Annotated[", ", BeforeValidator(func=_split_commas)]"):
        text = text.replace(noise, "")
    return text.replace(", BeforeValidator(func=_split_float_commas)]", "").replace(
        "NoneType", "None"
    )


def _default(info: FieldInfo) -> str:
    return "(required)" if info.is_required() else repr(info.default)


def describe_keys(section: str | None = None) -> str:
    """Every key of one section (or all), with its type, default and description."""
    names = [section] if section else list(SECTIONS)
    out = []
    for name in names:
        out.append(f"[{name}]")
        for key, info in SECTIONS[name].model_fields.items():
            out.append(f"  {key}: {type_name(info)} = {_default(info)}")
            for line in textwrap.wrap(info.description or "", 92):
                out.append(f"      {line}")
        out.append("")
    if section is None:
        out.append("[nested sections]")
        out += [f"  {k}: {v}" for k, v in NESTED_SECTIONS.items()]
    return "\n".join(out).rstrip() + "\n"


def template_yaml(section: str | None = None) -> str:
    """A YAML file with every key at its default, each preceded by its description."""
    names = [section] if section else list(SECTIONS)
    out = []
    for name in names:
        out.append(f"### {name}")
        for key, info in SECTIONS[name].model_fields.items():
            for line in textwrap.wrap(info.description or "", 96):
                out.append(f"# {line}")
            value = "<required>" if info.is_required() else info.default
            line = _dump(key, value) if value != "<required>" else f"{key}:  # required"
            out.append(line)
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def plan(cfg: Config) -> list[tuple[str, str]]:
    """The few facts of a training run worth reading before it starts, as (label, text) rows."""
    m, d, f, t, r = cfg.model, cfg.data, cfg.finetuning, cfg.train, cfg.ray
    method = f.finetuning_type
    if f.finetuning_type == "lora":
        alpha = f.lora_alpha or 2 * f.lora_rank
        method = f"lora (rank {f.lora_rank}, alpha {alpha}, targets {','.join(f.lora_target)})"
        if m.quantization_bit:
            method = f"q{method} on a {m.quantization_bit}-bit model"
    elif f.finetuning_type == "freeze":
        method = f"freeze (last {f.freeze_trainable_layers} layers trainable)"
    engine = "DeepSpeed" if t.deepspeed else "FSDP" if t.fsdp else "DDP"
    where = r.ray_address or os.environ.get("RAY_ADDRESS") or "a local Ray instance"
    length = f"{t.max_steps} steps" if t.max_steps > 0 else f"{t.num_train_epochs:g} epochs"
    return [
        ("model", m.model_name_or_path),
        ("stage", f"{f.stage}, {method}"),
        (
            "data",
            f"{','.join(d.dataset or ['-'])} from {d.dataset_dir}/ (template "
            f"{d.template or 'from tokenizer'}, cutoff_len {d.cutoff_len})",
        ),
        (
            "workers",
            f"{r.ray_num_workers} x {r.resources_per_worker or 'auto'} ({engine}, "
            f"{r.placement_strategy}) on {where}",
        ),
        (
            "batch",
            f"{t.per_device_train_batch_size} per worker x {r.ray_num_workers} workers x "
            f"{t.gradient_accumulation_steps} accumulation = "
            f"{t.per_device_train_batch_size * r.ray_num_workers * t.gradient_accumulation_steps}"
            " per step",
        ),
        ("schedule", f"{length}, lr {t.learning_rate:g} {t.lr_scheduler_type}"),
        ("output", t.output_dir or "-"),
    ]
