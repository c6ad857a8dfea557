"""The ``tune:`` section of a config: its settings and its search space, checked before any trial.

```yaml
tune:
  metric: eval_loss
  mode: min
  num_samples: 8
  scheduler: asha
  param_space:
    learning_rate: {loguniform: [1.0e-5, 1.0e-3]}
    lora_rank: {choice: [4, 8, 16, 32]}
```

Any flat training key may be searched. Every value a distribution can produce is checked against
the key's declaration (type, range, cross-key rules) by building the trial's config, so a space
that would give a trial an invalid config is refused before the sweep starts.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..config import Config, load_config
from ..config.base import doc
from ..config.config import KEY_OWNER
from ..config.errors import ConfigError, Problem, did_you_mean
from ..config.nested import section_problem, validate_section

DISTRIBUTIONS: dict[str, str] = {
    "choice": "a list of values, one picked at random per trial",
    "grid": "a list of values, every one tried (times num_samples)",
    "uniform": "[low, high]",
    "loguniform": "[low, high], both above 0",
    "quniform": "[low, high, step]",
    "randint": "[low, high) integers",
    "qrandint": "[low, high, step] integers",
    "lograndint": "[low, high) integers, log scale",
}
"""Distribution name → what it takes; a param_space entry is ``{name: arguments}`` or a value."""

# Keys a trial cannot choose: the sweep decides them.
NOT_SEARCHABLE = {
    "output_dir",
    "overwrite_output_dir",
    "resume_from_checkpoint",
    "ray_address",
    "ray_storage_path",
    "ray_run_name",
    "ray_init_kwargs",
    "push_to_hub",
}

# What a run reports to Ray Train at its evaluation, save and last steps.
REPORTED = ("loss", "eval_loss", "lr", "grad_norm", "epoch", "step")


class TuneArgs(BaseModel):
    """Settings of ``raytune-llm tune`` (the ``tune:`` mapping of a config)."""

    model_config = ConfigDict(extra="forbid")

    metric: str = doc("eval_loss", "The reported metric that ranks trials: eval_loss, loss, ...")
    mode: Literal["min", "max"] = doc("min", "Whether a lower (min) or higher metric is better.")
    num_samples: int = doc(
        8, "Trials to run (with grid: how many times each grid point is tried).", ge=1
    )
    max_concurrent_trials: int | None = doc(
        None,
        "Trials run at once (default: as many as the cluster holds, at most 2 per node).",
        ge=1,
    )
    scheduler: Literal["asha", "fifo"] = doc(
        "asha", "asha stops trials whose metric trails at the rungs; fifo runs every trial fully."
    )
    search_alg: Literal["random", "grid", "optuna"] = doc(
        "random", "How trials are drawn: random, grid (every choice), optuna (TPE; installed?)."
    )
    grace_period: int | None = doc(
        None, "ASHA: optimiser steps a trial always gets (default: its first evaluation).", ge=1
    )
    reduction_factor: float = doc(
        3.0, "ASHA: the share of trials kept at each rung is 1 / reduction_factor.", gt=1
    )
    max_failures: int = doc(0, "Times a failed trial is retried.", ge=0)
    seed: int | None = doc(None, "Seed of the search (default: the config's seed).")
    promote: Literal["none", "serve"] = doc(
        "none", "serve: after the sweep, `raytune-llm serve` on this config serves the best trial."
    )
    param_space: dict[str, Any] = Field(
        default_factory=dict,
        description="Training key → distribution ({choice: [...]}, {loguniform: [a, b]}, ...).",
    )

    @field_validator("param_space")
    @classmethod
    def _not_empty(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not value:
            raise ValueError("give at least one training key to search")
        return value


NEEDS_SPACE = (
    "`raytune-llm tune` needs a tune: section with a param_space (see `raytune-llm tune --help`)"
)


def _problem(cfg: Config, key: str, message: str) -> Problem:
    return section_problem(cfg.source, "tune", key, message)


def tune_args(cfg: Config) -> TuneArgs:
    """The validated ``tune:`` section, or a ConfigError naming each bad key."""
    if not cfg.tune:
        raise ConfigError([_problem(cfg, "param_space", NEEDS_SPACE)], cfg.source)
    return validate_section(cfg.source, "tune", cfg.tune, TuneArgs)


def _spec(key: str, spec: Any) -> tuple[str, list[Any]]:
    """(distribution, arguments) of one entry; a bare value or list is a fixed value / choice."""
    if isinstance(spec, dict):
        if len(spec) != 1:
            raise ValueError(
                f"give one distribution, e.g. {{choice: [...]}}; got {sorted(spec)}; valid: "
                + ", ".join(DISTRIBUTIONS)
            )
        ((name, args),) = spec.items()
        if name not in DISTRIBUTIONS:
            raise ValueError(
                f"unknown distribution {name!r}{did_you_mean(name, DISTRIBUTIONS)}; valid: "
                + ", ".join(f"{k} ({v})" for k, v in DISTRIBUTIONS.items())
            )
        if not isinstance(args, list) or not args:
            raise ValueError(f"{name} takes {DISTRIBUTIONS[name]}, got {args!r}")
        numeric = name not in ("choice", "grid")
        if numeric:
            want = 3 if name.startswith("q") else 2
            if len(args) != want or not all(isinstance(a, int | float) for a in args):
                raise ValueError(f"{name} takes {DISTRIBUTIONS[name]}, got {args!r}")
            if args[0] >= args[1]:
                raise ValueError(f"{name} needs low < high, got {args!r}")
            if name in ("loguniform", "lograndint") and args[0] <= 0:
                raise ValueError(f"{name} needs low > 0, got {args!r}")
        return name, list(args)
    if isinstance(spec, list):
        return "choice", spec
    return "choice", [spec]


def _samples(name: str, args: list[Any]) -> list[Any]:
    """Values to check for one distribution: every choice, or the ends of a range."""
    if name in ("choice", "grid"):
        return args
    if name in ("randint", "lograndint"):
        return [args[0], args[1] - 1]
    if name == "qrandint":
        return [args[0], args[1]]
    return [args[0], args[1]]


def check_space(cfg: Config, args: TuneArgs) -> dict[str, tuple[str, list[Any]]]:
    """Validate param_space against the training config; return key → (distribution, args)."""
    problems: list[Problem] = []
    space: dict[str, tuple[str, list[Any]]] = {}
    for key, spec in args.param_space.items():
        where = f"param_space.{key}"
        if key not in KEY_OWNER:
            problems.append(
                _problem(
                    cfg,
                    where,
                    "not a training key" + did_you_mean(key, KEY_OWNER) + "; `raytune-llm keys` "
                    "lists them",
                )
            )
            continue
        if key in NOT_SEARCHABLE or key.startswith("ray_"):
            why = "the sweep sets this key itself; search keys such as learning_rate, lora_rank"
            problems.append(_problem(cfg, where, why))
            continue
        try:
            space[key] = _spec(key, spec)
        except ValueError as err:
            problems.append(_problem(cfg, where, str(err)))
    for key, (name, dist_args) in space.items():
        for value in _samples(name, dist_args):
            try:
                load_config(None, values={**cfg.user_keys, key: value})
            except ConfigError as err:
                why = "; ".join(p.message for p in err.problems if p.key.split(".")[0] == key)
                why = why or "; ".join(f"{p.key}: {p.message}" for p in err.problems)
                why = f"value {value!r} gives an invalid trial: {why}"
                problems.append(_problem(cfg, f"param_space.{key}", why))
                break
    if args.search_alg == "grid" and any(n not in ("grid", "choice") for n, _ in space.values()):
        problems.append(
            _problem(
                cfg,
                "search_alg",
                "grid needs every param_space entry to be "
                "a list ({grid: [...]} or {choice: [...]})",
            )
        )
    if args.metric not in REPORTED:
        problems.append(
            _problem(
                cfg, "metric", f"no trial reports {args.metric!r}; reported: " + ", ".join(REPORTED)
            )
        )
    elif args.metric == "eval_loss":
        has_eval = cfg.data.eval_dataset or cfg.data.val_size
        if not has_eval or cfg.train.eval_strategy == "no":
            problems.append(
                _problem(
                    cfg,
                    "metric",
                    "eval_loss needs evaluation: set "
                    "eval_dataset (or val_size) and eval_strategy: steps, or "
                    "rank trials by loss",
                )
            )
    if problems:
        raise ConfigError(problems, cfg.source)
    return space


def to_ray_space(space: dict[str, tuple[str, list[Any]]], search_alg: str) -> dict[str, Any]:
    """The Ray Tune search space of a checked param_space."""
    from ray import tune

    out: dict[str, Any] = {}
    for key, (name, args) in space.items():
        if name == "grid" or (search_alg == "grid" and name == "choice"):
            out[key] = tune.grid_search(args)
        elif name == "choice":
            out[key] = tune.choice(args)
        else:
            out[key] = getattr(tune, name)(*args)
    return out
