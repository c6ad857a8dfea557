"""The Ray Tune search space of a config's ``tune:`` section.

The section itself (settings, param_space, the metric against the config) is declared and
validated with the rest of the config, in :mod:`raytune_llm.config.tune`; this module turns a
validated section into what Ray Tune takes.
"""

from __future__ import annotations

from typing import Any

from ..config import Config
from ..config.errors import ConfigError
from ..config.tune import NEEDS_SPACE, TuneArgs, search_space


def tune_args(cfg: Config) -> TuneArgs:
    """The config's validated ``tune:`` section; a ConfigError when it has none."""
    if cfg.tune is None:
        raise ConfigError([cfg.problem("tune.param_space", NEEDS_SPACE)], cfg.source)
    return cfg.tune


def to_ray_space(args: TuneArgs) -> dict[str, Any]:
    """The Ray Tune search space of a validated tune: section."""
    from ray import tune

    out: dict[str, Any] = {}
    for key, (name, dist_args) in search_space(args).items():
        if name == "grid" or (args.search_alg == "grid" and name == "choice"):
            out[key] = tune.grid_search(dist_args)
        elif name == "choice":
            out[key] = tune.choice(dist_args)
        else:
            out[key] = getattr(tune, name)(*dist_args)
    return out
