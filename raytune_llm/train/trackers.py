"""Experiment trackers for ``report_to``: TensorBoard, Weights & Biases and MLflow, on the driver.

Rank 0's log entries reach the driver through the progress board (see progress.py); every entry
that DriverLog writes to trainer_log.jsonl also goes to each tracker built here, under the names
the Hugging Face Trainer's callbacks use (train/loss, train/learning_rate, eval/loss, ... for
TensorBoard and W&B; loss, learning_rate, eval_loss, ... for MLflow), so dashboards made for
LLaMA-Factory runs read these runs too. Workers never import a tracker.
"""

from __future__ import annotations

import importlib.util
import os
import socket
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from ..config import Config
from ..utils.errors import UserError

PACKAGES: dict[str, tuple[str, str]] = {
    "tensorboard": ("tensorboard", "pip install tensorboard"),
    "wandb": ("wandb", "pip install wandb"),
    "mlflow": ("mlflow", "pip install mlflow"),
}
"""report_to name → (the module it needs, the install that provides it)."""

_RENAMED = {"lr": "learning_rate", "total_tokens": "num_input_tokens_seen"}
_NOT_METRICS = {"current_steps", "total_steps", "percentage", "throughput"}


class Tracker(Protocol):
    """One report_to backend: started by each "start" entry, fed every logged step."""

    name: str

    def start(self, info: dict[str, Any]) -> None:
        """Open the run (or reopen it after a restart from info["resumed_step"])."""

    def log(self, step: int, entry: dict[str, Any]) -> None:
        """Record one trainer_log.jsonl entry's metrics at step (see hf_metrics)."""

    def finish(self) -> None:
        """Flush and close the run."""


def hf_metrics(entry: dict[str, Any], *, prefixed: bool) -> dict[str, float]:
    """A trainer_log.jsonl entry's numbers under the Hugging Face Trainer's metric names.

    Args:
        entry: one log entry (loss, lr, grad_norm, epoch, eval_loss, total_tokens, ...).
        prefixed: "train/loss" and "eval/loss" (TensorBoard, W&B) rather than "loss" and
            "eval_loss" (MLflow).
    """
    out: dict[str, float] = {}
    for key, value in entry.items():
        if key in _NOT_METRICS or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        key = _RENAMED.get(key, key)
        if prefixed:
            key = f"eval/{key[5:]}" if key.startswith("eval_") else f"train/{key}"
        out[key] = float(value)
    return out


def _params(cfg: Config) -> dict[str, Any]:
    """The resolved config for a tracker's run: every key that is set, never a token."""
    return {k: v for k, v in cfg.to_flat().items() if v is not None and "token" not in k}


def installed(name: str) -> bool:
    """Whether report_to's tracker ``name`` can be imported here (without importing it)."""
    return importlib.util.find_spec(PACKAGES[name][0]) is not None


def tracker_names(report_to: list[str]) -> list[str]:
    """The trackers report_to asks for: "all" is every one installed (as in transformers)."""
    if "all" in report_to:
        return [name for name in PACKAGES if installed(name)]
    return [name for name in report_to if name in PACKAGES]


def build_trackers(cfg: Config) -> list[Tracker]:
    """The trackers of cfg.train.report_to, unstarted; refuses up front any not installed."""
    names = tracker_names(cfg.train.report_to)
    missing = [name for name in names if not installed(name)]
    if missing:
        fixes = "; ".join(f"{PACKAGES[name][1]} for {name}" for name in missing)
        are = "is" if len(missing) == 1 else "are"
        raise UserError(
            f"report_to asks for {', '.join(missing)}, which {are} not installed: {fixes} "
            f"(or remove {', '.join(missing)} from report_to); nothing was run"
        )
    out = Path(cfg.train.output_dir or ".").expanduser().resolve()
    return [TRACKERS[name](cfg, out) for name in names]


class TensorBoardTracker:
    """Event files in logging_dir, or output_dir/runs/<date>_<host> as the HF Trainer writes."""

    name = "tensorboard"

    def __init__(self, cfg: Config, output_dir: Path) -> None:
        stamp = f"{datetime.now():%b%d_%H-%M-%S}_{socket.gethostname()}"
        given = cfg.train.logging_dir
        self.logdir = Path(given).expanduser() if given else output_dir / "runs" / stamp
        self.params = _params(cfg)
        self.writer: Any = None

    def start(self, info: dict[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        first = self.writer is None
        if not first:
            self.writer.close()
        resumed = int(info.get("resumed_step", 0))
        # purge_step hides events a failed attempt logged past the checkpoint it restarts from.
        self.writer = SummaryWriter(str(self.logdir), purge_step=resumed + 1 if resumed else None)
        if first:
            import json

            self.writer.add_text("args", json.dumps(self.params, indent=2, default=str))

    def log(self, step: int, entry: dict[str, Any]) -> None:
        for key, value in hf_metrics(entry, prefixed=True).items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def finish(self) -> None:
        if self.writer is not None:
            self.writer.close()


class WandbTracker:
    """A W&B run: project WANDB_PROJECT (default "huggingface"), name run_name; WANDB_MODE holds."""

    name = "wandb"

    def __init__(self, cfg: Config, output_dir: Path) -> None:
        self.project = os.environ.get("WANDB_PROJECT", "huggingface")
        self.run_name = cfg.train.run_name
        self.params = _params(cfg)
        self.run: Any = None

    def start(self, info: dict[str, Any]) -> None:
        if self.run is not None:  # a restarted worker group logs into the same run
            return
        import wandb

        self.run = wandb.init(project=self.project, name=self.run_name, config=self.params)
        self.run.config.update(info, allow_val_change=True)
        # Steps as the x axis, as the HF callback does: a restart may log a step again.
        self.run.define_metric("train/global_step")
        self.run.define_metric("*", step_metric="train/global_step", step_sync=True)

    def log(self, step: int, entry: dict[str, Any]) -> None:
        self.run.log({**hf_metrics(entry, prefixed=True), "train/global_step": step})

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()


class MlflowTracker:
    """An MLflow run in MLFLOW_TRACKING_URI, else in MLflow's local default store, as the HF
    callback does (MLflow 3: sqlite:///mlflow.db in the working folder; MLflow 2: ./mlruns).

    MLFLOW_EXPERIMENT_NAME picks the experiment (default: MLflow's "Default"). The client API
    names the run explicitly, so any thread may log.
    """

    name = "mlflow"

    def __init__(self, cfg: Config, output_dir: Path) -> None:
        self.uri = os.environ.get("MLFLOW_TRACKING_URI") or None
        self.experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME")
        self.run_name = cfg.train.run_name or output_dir.name
        self.params = _params(cfg)
        self.client: Any = None
        self.run_id: str | None = None

    def start(self, info: dict[str, Any]) -> None:
        if self.run_id is not None:
            return
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=self.uri)
        experiment_id = "0"
        if self.experiment:
            found = self.client.get_experiment_by_name(self.experiment)
            experiment_id = (
                found.experiment_id if found else self.client.create_experiment(self.experiment)
            )
        self.run_id = self.client.create_run(experiment_id, run_name=self.run_name).info.run_id
        params = [Param(k, str(v)[:6000]) for k, v in {**self.params, **info}.items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 params a call
            self.client.log_batch(self.run_id, params=params[i : i + 100])

    def log(self, step: int, entry: dict[str, Any]) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = hf_metrics(entry, prefixed=False)
        rows = [Metric(k, v, now, step) for k, v in metrics.items()]
        self.client.log_batch(self.run_id, metrics=rows)

    def finish(self) -> None:
        if self.run_id is not None:
            self.client.set_terminated(self.run_id)


TRACKERS: dict[str, type[TensorBoardTracker | WandbTracker | MlflowTracker]] = {
    "tensorboard": TensorBoardTracker,
    "wandb": WandbTracker,
    "mlflow": MlflowTracker,
}
"""report_to name → its tracker."""
