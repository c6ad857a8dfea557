"""``raytune-llm tune``: a Ray Tune sweep whose trials are whole training runs.

check the tune: section and the space → decide fresh / resume / replace for output_dir → join or
start Ray → size the trials to the cluster → Tuner.fit (each trial a driver function that runs
``run_training``: its own TorchTrainer, workers and checkpoints under output_dir/trials/) →
trials.csv, a summary, the metric plot, output_dir/best (the best trial's model and config).

ASHA compares trials at the optimiser steps where they report (their evaluations), with
``step`` as its clock. An interrupted sweep is resumed by running the same command again:
finished trials are kept, unfinished ones continue from their last checkpoint.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Config, load_config
from ..config.available import check_trainable
from ..config.paths import absolute_values
from ..config.render import to_yaml
from ..config.tune import TuneArgs
from ..data.pipeline import check_data
from ..train.checkpoint import export_final
from ..train.launch import cluster_view, plan_workers, run_training
from ..utils.cluster import connect
from ..utils.errors import UserError
from .space import to_ray_space, tune_args

SWEEP = "sweep"  # Ray Tune's experiment folder inside output_dir
TRIALS = "trials"  # the trials' training runs


@dataclass
class Trial:
    """One trial's outcome, as trials.csv lists it."""

    trial_id: str
    params: dict[str, Any]
    final: float | None
    best: float | None
    steps: int
    total_steps: int | None
    status: str
    output_dir: Path
    curve: dict[int, float] = field(default_factory=dict)  # the metric by step

    def row(self, keys: list[str]) -> dict[str, Any]:
        return {
            "trial": self.trial_id,
            **{k: self.params.get(k) for k in keys},
            "final": self.final,
            "best": self.best,
            "steps": self.steps,
            "total_steps": self.total_steps,
            "status": self.status,
        }


@dataclass
class SweepResult:
    """What a finished sweep left in output_dir."""

    output_dir: Path
    trials: list[Trial]
    best: Trial | None
    metric: str
    mode: str


def _trial(config: dict[str, Any], *, base: dict[str, Any], root: str, runs: int) -> None:
    """One trial: a whole training run with the sampled keys (runs inside a Ray Tune actor)."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    out = Path(root) / TRIALS / f"trial-{tune.get_context().get_trial_id()}"
    log = _log(out)
    if log and log[-1]["current_steps"] >= log[-1]["total_steps"] and _last_checkpoint(out):
        # Finished before the sweep was interrupted (Tune's saved state lagged): report again.
        last = {k: v for e in log for k, v in e.items() if isinstance(v, int | float)}
        tune.report({**last, "step": log[-1]["current_steps"]})
        return
    if out.exists() and not any(out.glob("checkpoint-*")):
        shutil.rmtree(out)  # started before and stopped before its first checkpoint
    values = {
        **base,
        **config,
        "output_dir": str(out),
        "overwrite_output_dir": False,
        "push_to_hub": False,
        "resume_from_checkpoint": None,
    }
    values.pop("tune", None)
    cfg = load_config(None, values=values)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Ray Tune's status table is the sweep's display: each trial's own lines go to its log file.
    with (out.parent / f"{out.name}.log").open("a") as log, contextlib.redirect_stdout(log):
        run_training(cfg, show_bar=False, runs=runs, callbacks=[TuneReportCallback()])


def _concurrency(cfg: Config, args: TuneArgs, cluster: dict[str, float], nodes: list) -> int:
    """Trials at once: as asked (refused if the cluster cannot hold them), else as many as fit."""
    if args.max_concurrent_trials:
        plan_workers(cfg, cluster, nodes, args.max_concurrent_trials)
        return args.max_concurrent_trials
    best = 1
    for runs in range(2, 2 * max(len(nodes), 1) + 1):
        try:
            plan_workers(cfg, cluster, nodes, runs)
        except UserError:
            break
        best = runs
    plan_workers(cfg, cluster, nodes, best)  # one run must fit: say so plainly if not
    return best


def _policy(cfg: Config) -> tuple[Path, str]:
    out = Path(cfg.train.output_dir).expanduser().resolve()
    if (out / SWEEP).is_dir() and not cfg.train.overwrite_output_dir:
        return out, "resume"
    if out.exists() and any(out.iterdir()):
        if not cfg.train.overwrite_output_dir:
            raise UserError(
                f"output_dir {out} exists and is not a sweep's; set overwrite_output_dir: true "
                "to replace it, or choose another output_dir"
            )
        shutil.rmtree(out)
        return out, "replace"
    return out, "fresh"


def _scheduler(cfg: Config, args: TuneArgs) -> Any:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if args.scheduler == "fifo":
        return FIFOScheduler()
    t = cfg.train
    first_eval = t.eval_steps or t.logging_steps
    if t.eval_steps and t.eval_steps < 1:
        first_eval = 1
    grace = args.grace_period or max(1, int(first_eval))
    max_t = t.max_steps if t.max_steps > 0 else 10**9  # the runs end themselves
    if "max_steps" in args.param_space:
        max_t = 10**9
    return ASHAScheduler(
        time_attr="step",
        max_t=max(max_t, grace),
        grace_period=grace,
        reduction_factor=args.reduction_factor,
    )


def _search(cfg: Config, args: TuneArgs, runs: int) -> Any:
    """The search algorithm, running at most ``runs`` trials at once."""
    seed = args.seed if args.seed is not None else cfg.train.seed
    if args.search_alg == "optuna":
        try:
            from ray.tune.search.optuna import OptunaSearch
        except ImportError as err:
            raise UserError(
                "tune.search_alg optuna needs Optuna: pip install optuna (or use random)"
            ) from err
        try:
            return OptunaSearch(seed=seed)
        except (ImportError, AssertionError, AttributeError) as err:
            raise UserError(
                f"tune.search_alg optuna: Optuna is not usable here ({err}); pip install optuna"
            ) from None
    from ray.tune.search import BasicVariantGenerator

    return BasicVariantGenerator(random_state=seed, max_concurrent=runs)


def run_sweep(cfg: Config) -> SweepResult:
    """Run (or resume) the sweep a config's tune: section describes."""
    from ray import tune

    args = tune_args(cfg)  # the section and its space were checked with the config
    check_trainable(cfg)
    check_data(cfg)
    space = sorted(args.param_space)
    out, mode = _policy(cfg)
    where = connect(cfg.ray.ray_address, cfg.ray.ray_init_kwargs)
    # Nodes an autoscaler can add count, up to those 8 concurrent trials would use.
    view = cluster_view(cfg, args.max_concurrent_trials or 8)
    runs = _concurrency(cfg, args, view.resources, view.nodes)
    print(
        f"raytune-llm: sweep on {where}: {args.num_samples} trial(s) of {space}, "
        f"{runs} at a time, scheduler {args.scheduler}, search {args.search_alg} "
        f"({mode} {out})"
    )
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")  # saves carry no eval
    trainable = tune.with_resources(
        tune.with_parameters(_trial, base=absolute_values(cfg.user_keys), root=str(out), runs=runs),
        {"cpu": 0.01},  # the trial driver only waits: its Ray Train workers hold the resources
    )
    if mode == "resume" and tune.Tuner.can_restore(str(out / SWEEP)):
        tuner = tune.Tuner.restore(
            str(out / SWEEP), trainable=trainable, resume_unfinished=True, resume_errored=True
        )
    else:
        out.mkdir(parents=True, exist_ok=True)
        tuner = tune.Tuner(
            trainable,
            param_space=to_ray_space(args),
            tune_config=tune.TuneConfig(
                metric=args.metric,
                mode=args.mode,
                num_samples=args.num_samples,
                max_concurrent_trials=runs,
                scheduler=_scheduler(cfg, args),
                search_alg=_search(cfg, args, runs),
            ),
            run_config=tune.RunConfig(
                name=SWEEP,
                storage_path=str(out),
                failure_config=tune.FailureConfig(max_failures=args.max_failures),
                verbose=1,
            ),
        )
    grid = tuner.fit()
    return _finish(cfg, args, out, grid, space)


def _last_checkpoint(folder: Path) -> Path | None:
    found = [p for p in folder.glob("checkpoint-*") if p.name[11:].isdigit()]
    return max(found, key=lambda p: int(p.name[11:]), default=None)


def _log(folder: Path) -> list[dict[str, Any]]:
    path = folder / "trainer_log.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _outcome(result: Any, args: TuneArgs, root: Path, keys: list[str]) -> Trial:
    config = dict(result.config or {})
    trial_id = (result.metrics or {}).get("trial_id") or _id_from_path(result.path)
    folder = root / TRIALS / f"trial-{trial_id}"
    log = _log(folder)
    points = _points(result, log, args.metric)
    values = [points[step] for step in sorted(points)]
    final = values[-1] if values else None
    pick = min if args.mode == "min" else max
    best = pick(values) if values else None
    # A trial the scheduler stopped may not have flushed its last log lines: Tune saw them.
    steps = max([e["current_steps"] for e in log] + list(points), default=0)
    total = log[-1]["total_steps"] if log else None
    if total and steps >= total:  # ASHA may stop a trial at its last report: it finished
        status = "completed"
    elif result.error is not None:
        status = f"error: {_first_line(result.error)}"
    else:
        status = f"stopped early by {args.scheduler}" if steps else "not started"
    params = {k: config.get(k) for k in keys}
    return Trial(trial_id, params, final, best, steps, total, status, folder, points)


def _points(result: Any, log: list[dict[str, Any]], metric: str) -> dict[int, float]:
    """The trial's metric by step: what its log holds and what it reported to Tune."""
    points = {e["current_steps"]: e[metric] for e in log if metric in e}
    frame = getattr(result, "metrics_dataframe", None)
    if frame is not None and metric in frame and "step" in frame:
        for step, value in zip(frame["step"], frame[metric], strict=True):
            if value == value and step == step:  # NaN: a report without the metric
                points[int(step)] = float(value)
    return points


def _first_line(error: BaseException) -> str:
    """The error's own message, without Ray's actor banner."""
    cause = getattr(error, "cause", None) or error
    lines = [x for x in str(cause).splitlines() if x.strip() and "ray::" not in x]
    return (lines[-1] if lines else type(cause).__name__)[:160]


def _id_from_path(path: str | None) -> str:
    """A Tune trial folder is named ``<trainable>_<trial id>_<n>_<params>_<date>``."""
    parts = Path(path or "?").name.split("_")
    return next((p for p in parts if len(p) >= 5 and p[:5].isalnum() and "-" not in p), "?")


def _finish(cfg: Config, args: TuneArgs, out: Path, grid: Any, keys: list[str]) -> SweepResult:
    trials = [_outcome(r, args, out, keys) for r in grid]
    trials.sort(key=lambda t: t.trial_id)
    with (out / "trials.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(trials[0].row(keys)) if trials else ["trial"])
        writer.writeheader()
        for t in trials:
            writer.writerow(t.row(keys))
    done = [t for t in trials if t.status == "completed" and t.final is not None]
    sign = 1 if args.mode == "min" else -1
    best = min(done, key=lambda t: sign * t.final) if done else None  # type: ignore[operator]
    if best is not None:
        _promote(cfg, args, out, best)
    _plot(out, trials, args.metric)
    result = SweepResult(out, trials, best, args.metric, args.mode)
    (out / "sweep_results.json").write_text(json.dumps(_summary(result), indent=2, default=str))
    return result


def _promote(cfg: Config, args: TuneArgs, out: Path, best: Trial) -> None:
    """output_dir/best: the best trial's model or adapter, tokenizer, and a config to rerun it."""
    target = out / "best"
    staging = out / ".best.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    export_final(
        _last_checkpoint(best.output_dir), staging
    )  # the model or adapter at the trial's last step
    values = {k: v for k, v in cfg.user_keys.items() if k != "tune"}
    values.update(best.params)
    values["output_dir"] = str(out / "best_run")
    header = (
        f"# raytune-llm train {target / 'config.yaml'}\n# The best trial ({best.trial_id}) of "
        f"the sweep in {out}: {args.metric} {best.final:.6g}.\n"
    )
    best_cfg = load_config(None, values=values)
    (staging / "config.yaml").write_text(header + to_yaml(best_cfg, only_set=True))
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)


def _plot(out: Path, trials: list[Trial], metric: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for t in trials:
        if t.curve:
            xs, ys = zip(*sorted(t.curve.items()), strict=True)
            label = f"{t.trial_id} " + " ".join(f"{k}={_fmt(v)}" for k, v in t.params.items())
            ax.plot(xs, ys, marker="o", markersize=3, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} of every trial")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / f"tune_{metric}.png", dpi=100)
    plt.close(fig)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _summary(result: SweepResult) -> dict[str, Any]:
    return {
        "metric": result.metric,
        "mode": result.mode,
        "best_trial": result.best.trial_id if result.best else None,
        "best_params": result.best.params if result.best else None,
        "best_metric": result.best.final if result.best else None,
        "trials": [t.row(list(t.params)) for t in result.trials],
        "total_steps": sum(t.steps for t in result.trials),
    }


def format_table(result: SweepResult) -> str:
    """The trials as a terminal table, best first."""
    keys = list(result.trials[0].params) if result.trials else []
    sign = 1 if result.mode == "min" else -1

    def order(t: Trial) -> tuple[int, float]:
        return (t.status != "completed", sign * t.final if t.final is not None else math.inf)

    head = ["trial", *keys, result.metric, "best", "steps", "status"]
    rows = [
        [
            t.trial_id,
            *(_fmt(t.params[k]) for k in keys),
            _fmt(t.final),
            _fmt(t.best),
            f"{t.steps}/{t.total_steps or '?'}",
            t.status,
        ]
        for t in sorted(result.trials, key=order)
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=False)]
    lines = [
        "  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=False))
        for row in [head, *rows]
    ]
    return "\n".join(lines)
