"""The DeepSpeed JSON a config names, read as plain data (no deepspeed import).

The driver reads it (workers run in another folder), and config checks that depend on the ZeRO
stage (QLoRA cannot train under ZeRO-3) read the same mapping.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..utils.errors import UserError

if TYPE_CHECKING:
    from .config import Config


def read_deepspeed_config(cfg: Config) -> dict[str, Any] | None:
    """The DeepSpeed JSON as a mapping (None without ``deepspeed:``).

    Raises:
        UserError: when the file cannot be read or is not JSON.
    """
    value = cfg.train.deepspeed
    if not value:
        return None
    if isinstance(value, dict):
        return dict(value)
    try:
        return json.loads(Path(value).expanduser().read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"deepspeed: cannot read {value}: {err}") from None


def zero_stage(config: dict[str, Any]) -> int:
    """The ZeRO stage (0-3) of a DeepSpeed mapping."""
    return int(config.get("zero_optimization", {}).get("stage", 0))
