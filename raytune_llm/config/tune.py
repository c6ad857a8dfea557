"""The ``tune:`` section of a config: the sweep's settings and its search space.

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

Validated by load_config with the rest of the config. Any flat training key may be searched;
every value a distribution can produce is checked against the key's declaration (type, range,
cross-key rules, what this version can train) by building the trial's config, so a space that
would give a trial an invalid config is refused before the sweep starts.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .base import doc
from .errors import did_you_mean

if TYPE_CHECKING:
    from .config import Config

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
"""Keys a trial cannot choose: the sweep decides them."""

REPORTED = ("loss", "eval_loss", "lr", "grad_norm", "epoch", "step")
"""What a run reports to Ray Train at its evaluation, save and last steps."""

NEEDS_SPACE = (
    "`raytune-llm tune` needs a tune: section with a param_space (see `raytune-llm tune --help`)"
)


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


def parse_spec(spec: Any) -> tuple[str, list[Any]]:
    """(distribution, arguments) of one entry; a bare value or list is a fixed value / choice.

    Raises:
        ValueError: saying what the distribution takes.
    """
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
        if name not in ("choice", "grid"):
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


def search_space(args: TuneArgs) -> dict[str, tuple[str, list[Any]]]:
    """Key → (distribution, arguments) of a validated section's param_space."""
    return {key: parse_spec(spec) for key, spec in args.param_space.items()}


def _samples(name: str, args: list[Any]) -> list[Any]:
    """Values to check for one distribution: every choice, or the ends of a range."""
    if name in ("choice", "grid"):
        return args
    if name in ("randint", "lograndint"):
        return [args[0], args[1] - 1]
    return [args[0], args[1]]


def _trial_problem(cfg: Config, key: str, value: Any, base: set[str]) -> str | None:
    """Why the trial that sets ``key`` to ``value`` would be refused, or None; ``base`` holds
    what the config itself cannot train yet (reported on its own, not for each value)."""
    from .available import unavailable
    from .errors import ConfigError
    from .loader import load_config

    values = {k: v for k, v in cfg.user_keys.items() if k != "tune"}
    try:
        trial = load_config(None, values={**values, key: value})
    except ConfigError as err:
        why = "; ".join(p.message for p in err.problems if p.key.split(".")[0] == key)
        why = why or "; ".join(f"{p.key}: {p.message}" for p in err.problems)
        return f"value {value!r} gives an invalid trial: {why}"
    missing = [message for _, message in unavailable(trial) if message not in base]
    if missing:
        why = "; ".join(missing)
        return f"value {value!r} gives a trial this version cannot train: {why}"
    return None


def tune_problems(cfg: Config) -> Iterator[tuple[str, str]]:
    """The problems of a config's tune: section against the rest of the config."""
    args = cfg.tune
    if args is None:
        return
    from .config import KEY_OWNER

    space: dict[str, tuple[str, list[Any]]] = {}
    for key, spec in args.param_space.items():
        where = f"tune.param_space.{key}"
        if key not in KEY_OWNER:
            hint = did_you_mean(key, KEY_OWNER)
            yield where, f"not a training key{hint}; `raytune-llm keys` lists them"
        elif key in NOT_SEARCHABLE or key.startswith("ray_"):
            why = "the sweep sets this key itself; search keys such as learning_rate, lora_rank"
            yield where, why
        else:
            try:
                space[key] = parse_spec(spec)
            except ValueError as err:
                yield where, str(err)
    from .available import unavailable

    base = {message for _, message in unavailable(cfg)}
    for key, (name, dist_args) in space.items():
        for value in _samples(name, dist_args):
            why = _trial_problem(cfg, key, value, base)
            if why:
                yield f"tune.param_space.{key}", why
                break
    if args.search_alg == "grid" and any(n not in ("grid", "choice") for n, _ in space.values()):
        yield (
            "tune.search_alg",
            "grid needs every param_space entry to be a list ({grid: [...]} or {choice: [...]})",
        )
    if args.metric not in REPORTED:
        yield "tune.metric", f"no trial reports {args.metric!r}; reported: " + ", ".join(REPORTED)
    elif args.metric == "eval_loss":
        has_eval = cfg.data.eval_dataset or cfg.data.val_size
        if not has_eval or cfg.train.eval_strategy == "no":
            yield (
                "tune.metric",
                "eval_loss needs evaluation: set eval_dataset (or val_size) and eval_strategy: "
                "steps, or rank trials by loss",
            )
