"""Read a YAML file plus ``key=value`` overrides into a validated :class:`Config`.

Every problem (unknown key, wrong type, value out of range, contradiction) is collected and raised
together in one :class:`ConfigError`, each naming the key, the file line, what was given and what
would be valid. Nothing heavy is imported here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .compat import ALIASES, unsupported
from .config import KEY_OWNER, NESTED_MODELS, NESTED_SECTIONS, SECTIONS, Config, ignored_reason
from .errors import ConfigError, Problem, did_you_mean, locate
from .nested import validate_section
from .rules import cross_check, cross_warnings

CLI = "command line"


def load_config(
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    *,
    values: Mapping[str, Any] | None = None,
) -> Config:
    """Build a validated config.

    Args:
        path: a YAML file of flat LLaMA-Factory keys (plus ``tune:`` / ``serve:`` sections).
        overrides: ``key=value`` strings applied on top, values parsed as YAML
            (``learning_rate=1e-4``, ``dataset=a,b``, ``tune.num_samples=8``).
        values: a mapping applied on top of the file, before the overrides.

    Raises:
        ConfigError: listing every problem found.
    """
    origin = str(path) if path is not None else None
    raw, lines = ({}, {}) if path is None else read_yaml(Path(path))
    sources = {key: origin for key in raw}
    raw.update(values or {})
    problems: list[Problem] = []
    for item in overrides:
        try:
            key, value = parse_override(item)
        except ValueError as err:
            problems.append(Problem(item, str(err), source=CLI))
            continue
        _set_dotted(raw, key, value)
        sources[key.split(".", 1)[0]] = CLI
    cfg = build_config(raw, lines, sources, problems, origin)
    cfg.source = origin
    return cfg


def read_yaml(path: Path) -> tuple[dict[str, Any], dict[str, int]]:
    """Parse a YAML mapping; return it and the 1-based line of each top-level key."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([Problem("", f"config file not found: {path}")]) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError([Problem("", f"cannot read {path}: {err}")]) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 1 if mark else None
        what = getattr(err, "problem", None) or str(err)
        raise ConfigError([Problem("", f"YAML syntax error: {what}", line, str(path))]) from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict) or not isinstance(node, yaml.MappingNode):
        raise ConfigError(
            [Problem("", f"expected a mapping of keys to values, got {type(data).__name__}")],
            str(path),
        )
    lines: dict[str, int] = {}
    problems = []
    for key_node, _ in node.value:
        key = str(key_node.value)
        if key in lines:
            problems.append(
                Problem(
                    key,
                    f"given twice (first on line {lines[key]})",
                    key_node.start_mark.line + 1,
                    str(path),
                )
            )
        lines.setdefault(key, key_node.start_mark.line + 1)
    if problems:
        raise ConfigError(problems, str(path))
    return {str(k): v for k, v in data.items()}, lines


def parse_override(item: str) -> tuple[str, Any]:
    """Split ``key=value`` and parse the value as YAML (so ``8`` is an int, ``a,b`` a string)."""
    key, sep, text = item.partition("=")
    key = key.strip().lstrip("-")
    if not sep or not key:
        raise ValueError(f"expected key=value, e.g. learning_rate=1e-4, got {item!r}")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    return key, value


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    head, _, rest = key.partition(".")
    if not rest:
        raw[head] = value
        return
    inner = raw.get(head)
    if not isinstance(inner, dict):
        inner = raw[head] = {}
    _set_dotted(inner, rest, value)


def build_config(
    raw: Mapping[str, Any],
    lines: Mapping[str, int],
    sources: Mapping[str, str | None],
    problems: list[Problem],
    origin: str | None,
) -> Config:
    """Validate a flat mapping; raise one ConfigError holding every problem."""

    def problem(key: str, message: str) -> Problem:
        return locate(key, message, lines, sources, origin)

    buckets: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    nested: dict[str, Any] = {}
    warnings: list[str] = []
    for key, value in raw.items():
        if key in ALIASES:
            new = ALIASES[key]
            warnings.append(f"{key} is an old name of {new}; use {new}")
            if new in raw:
                problems.append(problem(key, f"given together with its new name {new}; keep {new}"))
                continue
            key = new
        if key in NESTED_MODELS:
            if value is not None and not isinstance(value, dict):
                problems.append(problem(key, f"expected a mapping of settings, got {value!r}"))
            elif value is not None:
                nested[key], found = validate_section(key, value, NESTED_MODELS[key])
                problems += [problem(k, m) for k, m in found]
        elif key in KEY_OWNER:
            buckets[KEY_OWNER[key]][key] = value
            reason = ignored_reason(key)
            if reason:
                warnings.append(f"{key} has no effect on Ray: {reason}")
        elif verdict := unsupported(key, value):
            level, text = verdict
            if level == "error":
                problems.append(problem(key, text))
            else:
                warnings.append(text)
        else:
            known = [*KEY_OWNER, *NESTED_SECTIONS]
            problems.append(
                problem(
                    key, "unknown key" + did_you_mean(key, known) + "; `raytune-llm keys` lists all"
                )
            )

    sections: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        values = buckets[name]
        try:
            sections[name] = cls.model_validate(values)
        except ValidationError as err:
            bad = set()
            for e in err.errors():
                key = str(e["loc"][0]) if e["loc"] else name
                if key in bad:
                    continue
                bad.add(key)
                problems.append(problem(_dotted(key, e, values), describe_error(key, e)))
            try:  # Keep the valid keys so that cross-key rules still run.
                sections[name] = cls.model_validate(
                    {k: v for k, v in values.items() if k not in bad}
                )
            except ValidationError:
                sections[name] = None

    cfg = None
    if all(s is not None for s in sections.values()):
        cfg = Config(**sections, **nested, user_keys=dict(raw), source=origin)
        cfg.lines = {k: n for k, n in lines.items() if sources.get(k) == origin}
        cfg.origins = {k: v for k, v in sources.items() if k in raw}
        reported = {p.key for p in problems}
        problems += [problem(k, m) for k, m in cross_check(cfg) if k not in reported]
    if problems or cfg is None:
        raise ConfigError(problems, origin)
    cfg.warnings = warnings + cross_warnings(cfg)
    return cfg


def _dotted(key: str, error: Mapping[str, Any], values: Mapping[str, Any]) -> str:
    loc = error["loc"]
    if len(loc) > 1 and isinstance(values.get(key), dict) and loc[1] in values[key]:
        return f"{key}.{loc[1]}"
    return key


def describe_error(key: str, error: Mapping[str, Any]) -> str:
    """Turn one pydantic error into 'got X; what would be valid'."""
    kind, ctx = error["type"], error.get("ctx") or {}
    given = error.get("input")
    if kind == "missing":
        from .config import field_info

        return f"required: {field_info(key).description}"
    if kind == "literal_error":
        expected = ctx.get("expected", "")
        choices = [c.strip().strip("'") for c in expected.replace(" or ", ", ").split(",")]
        hint = did_you_mean(str(given), choices) if isinstance(given, str) else ""
        return f"got {given!r}; valid: {', '.join(choices)}{hint}"
    if kind == "value_error":
        return f"got {given!r}; {ctx.get('error', error['msg'])}"
    bounds = {
        "greater_than": ("gt", ">"),
        "greater_than_equal": ("ge", ">="),
        "less_than": ("lt", "<"),
        "less_than_equal": ("le", "<="),
    }
    if kind in bounds:
        name, op = bounds[kind]
        return f"got {given!r}; must be {op} {ctx.get(name)}"
    message = error["msg"][0].lower() + error["msg"][1:]
    return f"got {given!r} ({type(given).__name__}); {message}"
