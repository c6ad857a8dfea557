"""Validation of a nested section (``tune:``, ``serve:``) against the pydantic model that owns it.

Each problem is named ``<section>.<field>``; the loader places it at the section's line in the
YAML file, all of them reported at once with the flat keys' problems.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from .errors import did_you_mean

M = TypeVar("M", bound=BaseModel)


def validate_section(
    section: str, value: Any, model: type[M]
) -> tuple[M | None, list[tuple[str, str]]]:
    """``value`` (the mapping under ``section:``) as ``model``, and the (key, message) problems."""
    try:
        return model.model_validate(value if value is not None else {}), []
    except ValidationError as err:
        problems = []
        for e in err.errors():
            where = ".".join([section, *(str(x) for x in e["loc"])])
            message = e["msg"]
            if e["type"] == "extra_forbidden":
                message = "unknown setting" + did_you_mean(str(e["loc"][-1]), model.model_fields)
            elif e["type"] == "literal_error":
                message = f"{e['msg']}, got {e['input']!r}"
            elif e["type"] in ("model_type", "dict_type") and not e["loc"]:
                message = f"must be a mapping of settings, got {e['input']!r}"
            problems.append((where, message))
        return None, problems
