"""Join the Ray cluster a run names, or start a local Ray instance: the embedded default."""

from __future__ import annotations

import logging
import os
from typing import Any


def connect(address: str | None = None, init_kwargs: dict[str, Any] | None = None) -> str:
    """Make sure this process is connected to Ray and say to what.

    Args:
        address: ``ray_address`` from the config; unset falls back to ``RAY_ADDRESS``, and
            without either a local instance is started for this process (no dashboard).
        init_kwargs: ``ray_init_kwargs`` from the config, passed to ``ray.init``.

    Returns:
        A short description: "the cluster at ADDRESS" or "a local Ray instance".
    """
    import ray

    address = address or os.environ.get("RAY_ADDRESS")
    where = f"the cluster at {address}" if address else "a local Ray instance"
    if ray.is_initialized():
        return where
    # A local instance keeps its dashboard: Ray Train reads its State API to watch a run.
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": True}
    kwargs.update(init_kwargs or {})
    ray.init(address=address, **kwargs)
    return where
