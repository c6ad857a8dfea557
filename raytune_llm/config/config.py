"""The one configuration object of a run, built from a flat LLaMA-Factory-style YAML mapping.

The YAML stays flat (``learning_rate: 1.0e-4``), as LLaMA-Factory users write it; in code the keys
are grouped by what they concern (``cfg.train.learning_rate``), each group a strict section.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.fields import FieldInfo

from .base import Section
from .data import DataArgs
from .errors import Problem, locate
from .finetuning import FinetuningArgs
from .generation import EvalArgs, GenerationArgs
from .model import ExportArgs, ModelArgs
from .ray import RayArgs
from .serve import ServeArgs
from .train import TrainArgs
from .tune import TuneArgs

SECTIONS: dict[str, type[Section]] = {
    "model": ModelArgs,
    "data": DataArgs,
    "finetuning": FinetuningArgs,
    "train": TrainArgs,
    "generation": GenerationArgs,
    "eval": EvalArgs,
    "export": ExportArgs,
    "ray": RayArgs,
}
"""Section name → the class holding its flat keys, in the order they are printed."""

NESTED_SECTIONS = {
    "tune": "Ray Tune sweep settings (metric, mode, num_samples, scheduler, param_space, ...), "
    "read by `raytune-llm tune`.",
    "serve": "Ray Serve settings (replicas, autoscaling, adapters, API key, ...), read by "
    "`raytune-llm serve`.",
}
"""Keys whose value is a nested mapping instead of a scalar."""

NESTED_MODELS: dict[str, type[BaseModel]] = {"tune": TuneArgs, "serve": ServeArgs}
"""Nested key → the model that validates its mapping."""


def _key_owner() -> dict[str, str]:
    owner: dict[str, str] = {}
    for section, cls in SECTIONS.items():
        for key in cls.model_fields:
            if key in owner:  # pragma: no cover - guarded by a unit test
                raise RuntimeError(f"config key {key!r} declared in {owner[key]} and {section}")
            owner[key] = section
    return owner


KEY_OWNER: dict[str, str] = _key_owner()
"""Flat key → the section that declares it."""


def field_info(key: str) -> FieldInfo:
    """The declaration (type, default, description) of a flat key."""
    return SECTIONS[KEY_OWNER[key]].model_fields[key]


def ignored_reason(key: str) -> str | None:
    """Why a Hugging Face key has no effect under Ray, or None when it is honoured."""
    extra = field_info(key).json_schema_extra
    return extra.get("ignored_on_ray") if isinstance(extra, dict) else None  # type: ignore[return-value]


class Config(BaseModel):
    """A validated run configuration. Build it with :func:`raytune_llm.config.load_config`."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: ModelArgs
    data: DataArgs = Field(default_factory=DataArgs)
    finetuning: FinetuningArgs = Field(default_factory=FinetuningArgs)
    train: TrainArgs = Field(default_factory=TrainArgs)
    generation: GenerationArgs = Field(default_factory=GenerationArgs)
    eval: EvalArgs = Field(default_factory=EvalArgs)
    export: ExportArgs = Field(default_factory=ExportArgs)
    ray: RayArgs = Field(default_factory=RayArgs)
    tune: TuneArgs | None = None
    serve: ServeArgs | None = None

    source: str | None = Field(None, description="The YAML file the config came from.")
    user_keys: dict[str, Any] = Field(
        default_factory=dict, description="The flat keys as the user gave them, before defaults."
    )
    warnings: list[str] = Field(default_factory=list)
    lines: dict[str, int] = Field(
        default_factory=dict, description="The 1-based line of each top-level key in source."
    )
    origins: dict[str, str | None] = Field(
        default_factory=dict,
        description="Where each top-level key came from: source, 'command line', or None.",
    )

    def problem(self, key: str, message: str) -> Problem:
        """A problem with ``key`` (dotted inside tune:/serve:), placed at its line in source."""
        return locate(key, message, self.lines, self.origins, self.source)

    def to_flat(self) -> dict[str, Any]:
        """All keys with their resolved values, flat as in YAML, in section order."""
        flat: dict[str, Any] = {}
        for name in SECTIONS:
            flat.update(getattr(self, name).model_dump())
        for name in NESTED_SECTIONS:
            if getattr(self, name) is not None:
                flat[name] = getattr(self, name).model_dump()
        return flat
