"""Building blocks for the config sections: the strict base model and field helpers.

Each key is declared once, with its description; ``raytune-llm keys``, the YAML template and the
web UI labels all read that one text.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


class Section(BaseModel):
    """A group of flat YAML keys. Unknown keys are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


def doc(
    default: Any = ...,
    description: str = "",
    *,
    ignored: str | None = None,
    **constraints: Any,
) -> Any:
    """Declare a key: its default, its description and its constraints (``gt``, ``ge``, ...).

    Args:
        default: the default value; ``...`` makes the key required.
        description: one or two sentences, shown by ``raytune-llm keys`` and the web UI.
        ignored: for Hugging Face TrainingArguments keys that mean nothing on Ray: the reason,
            printed as a warning when a config sets the key.
        **constraints: pydantic constraints such as ``gt=0``.
    """
    extra = {"ignored_on_ray": ignored} if ignored else None
    return Field(default, description=description, json_schema_extra=extra, **constraints)


def _split_commas(value: Any) -> Any:
    """LLaMA-Factory writes lists as comma-separated strings (``dataset: a,b``); accept both."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _split_float_commas(value: Any) -> Any:
    if isinstance(value, str):
        return [float(part) for part in value.split(",") if part.strip()]
    return value


def _json_dict(value: Any) -> Any:
    """LLaMA-Factory accepts mappings written as JSON strings (``'{"GPU": 1}'``); so do we."""
    if isinstance(value, str) and value.lstrip().startswith("{"):
        import json

        try:
            return json.loads(value)
        except ValueError as err:
            raise ValueError(f"not a valid JSON mapping: {err}") from None
    return value


JsonDict = Annotated[dict[str, Any], BeforeValidator(_json_dict)]
"""A mapping, written in YAML as a mapping or as a JSON string."""

CommaList = Annotated[list[str], BeforeValidator(_split_commas)]
"""A list of names, written in YAML as a list or as ``a,b,c``."""

FloatCommaList = Annotated[list[float], BeforeValidator(_split_float_commas)]
"""A list of numbers, written in YAML as a list or as ``0.5,0.5``."""
