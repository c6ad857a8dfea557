"""Validation of a nested section (``tune:``, ``serve:``) against the pydantic model that owns it.

Each problem is reported as ``<section>.<field>`` with the line of the section in the YAML file,
all of them at once, like the flat keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from .errors import ConfigError, Problem, did_you_mean

M = TypeVar("M", bound=BaseModel)


def section_line(source: str | None, section: str) -> int | None:
    """The 1-based line of a top-level key in the config file, when known."""
    from .loader import read_yaml

    if not source:
        return None
    try:
        return read_yaml(Path(source))[1].get(section)
    except ConfigError:
        return None


def section_problem(source: str | None, section: str, key: str, message: str) -> Problem:
    """A problem with ``<section>.<key>`` (the whole section: key ""), at the section's line."""
    name = f"{section}.{key}" if key else section
    return Problem(name, message, section_line(source, section), source)


def validate_section(source: str | None, section: str, value: Any, model: type[M]) -> M:
    """``value`` (the mapping under ``section:``) as ``model``, or a ConfigError naming each key."""
    try:
        return model.model_validate(value if value is not None else {})
    except ValidationError as err:
        problems = []
        for e in err.errors():
            where = ".".join(str(x) for x in e["loc"])
            message = e["msg"]
            if e["type"] == "extra_forbidden":
                message = "unknown setting" + did_you_mean(str(e["loc"][-1]), model.model_fields)
            elif e["type"] == "literal_error":
                message = f"{e['msg']}, got {e['input']!r}"
            elif e["type"] in ("model_type", "dict_type") and not e["loc"]:
                message = f"must be a mapping of settings, got {e['input']!r}"
            problems.append(section_problem(source, section, where, message))
        raise ConfigError(problems, source) from None
