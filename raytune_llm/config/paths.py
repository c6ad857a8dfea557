"""Make a config's local paths absolute, for processes that run in another working directory.

Ray Train workers, Ray Tune trials and Ray jobs do not run where the user typed the command, so
a relative ``dataset_dir: data`` must be resolved first, on the driver. Names that are not local
paths (``meta-llama/Meta-Llama-3-8B``, ``builtin:tiny-llama``, ``ONLINE``) are left alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .config import KEY_OWNER, Config

OUTPUT_KEYS = ("output_dir", "logging_dir", "tokenized_path", "export_dir", "save_dir")
"""Paths a run writes: always resolved against the working directory."""

INPUT_KEYS = ("model_name_or_path", "adapter_name_or_path", "dataset_dir", "media_dir",
              "deepspeed", "cache_dir", "task_dir", "resume_from_checkpoint")  # fmt: skip
"""Paths a run reads: resolved only when they exist here (otherwise they are hub names)."""


def _absolute(key: str, value: Any, cwd: Path) -> Any:
    if isinstance(value, list):  # comma lists such as adapter_name_or_path
        return [_absolute(key, v, cwd) for v in value]
    if not isinstance(value, str) or not value or ":" in value.split("/")[0]:
        return value  # not a path, or a URI / builtin: name
    path = Path(value).expanduser()
    if path.is_absolute():
        return str(path)
    if key in OUTPUT_KEYS or (cwd / path).exists():
        return str((cwd / path).resolve())
    return value


def absolute_values(values: Mapping[str, Any], cwd: Path | None = None) -> dict[str, Any]:
    """A copy of flat config values with local paths made absolute."""
    here = (cwd or Path.cwd()).resolve()
    out = dict(values)
    for key in (*OUTPUT_KEYS, *INPUT_KEYS):
        if key in out:
            if key == "adapter_name_or_path" and isinstance(out[key], str):
                out[key] = ",".join(_absolute(key, v.strip(), here) for v in out[key].split(","))
            else:
                out[key] = _absolute(key, out[key], here)
    return out


def make_paths_absolute(cfg: Config, cwd: Path | None = None) -> None:
    """Resolve the config's local paths in place (sections validate each assignment)."""
    here = (cwd or Path.cwd()).resolve()
    for key in (*OUTPUT_KEYS, *INPUT_KEYS):
        section = getattr(cfg, KEY_OWNER[key])
        value = getattr(section, key)
        new = _absolute(key, value, here)
        if new != value:
            setattr(section, key, new)
