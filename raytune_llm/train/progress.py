"""What a run tells its user while it trains: LLaMA-Factory's start-up block, a progress bar on
the driver, trainer_log.jsonl, and the loss plot.

Rank 0 pushes log entries to a small actor (no CPU); the driver drains it while Ray Train runs,
so the bar, the log file and the report_to trackers live where the user is, on one machine or on
a cluster.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


class ProgressBoard:
    """A mailbox between the rank-0 worker and the driver (runs as a zero-CPU Ray actor)."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def push(self, entry: dict[str, Any]) -> None:
        self.entries.append(entry)

    def drain(self) -> list[dict[str, Any]]:
        out, self.entries = self.entries, []
        return out


def start_block(info: dict[str, Any]) -> str:
    """The block LLaMA-Factory (and the Hugging Face Trainer) print before training."""
    lines = [
        "***** Running training *****",
        f"  Num examples = {info['num_examples']:,}",
        f"  Num Epochs = {info['num_epochs']:g}",
        f"  Instantaneous batch size per device = {info['batch_size']}",
        f"  Num devices = {info['world_size']}",
        f"  Gradient Accumulation steps = {info['accumulation']}",
        "  Total train batch size (w. parallel, distributed & accumulation) = "
        f"{info['batch_size'] * info['world_size'] * info['accumulation']:,}",
        f"  Total optimization steps = {info['total_steps']:,}",
        f"  Number of trainable parameters = {info['trainable']:,} of {info['total']:,} "
        f"({100 * info['trainable'] / max(info['total'], 1):.4f}%)",
    ]
    if info.get("engine"):
        share = 100 * info["local_params"] / max(info["full_params"], 1)
        lines.append(
            f"  Engine = {info['engine']}: each worker holds {share:.1f}% of the parameters "
            f"({info['sharded_tensors']:,} tensors sharded)"
        )
    return "\n".join(lines)


def _hms(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class DriverLog:
    """Drains the board into trainer_log.jsonl, a progress bar and the trackers until stopped.

    A tracker that fails (a W&B login missing, an MLflow server gone) is dropped with a warning;
    the run and trainer_log.jsonl go on.
    """

    def __init__(
        self,
        board: Any,
        output_dir: Path,
        *,
        show_bar: bool,
        trackers: Sequence[Any] = (),
        phases: dict[str, float] | None = None,
    ):
        """``phases``: seconds the driver spent before training ("Ray", "data"); the start-up
        line adds the worker group's start and the model's load (and engine set-up)."""
        self.board, self.output_dir, self.show_bar = board, output_dir, show_bar
        self.phases, self.opened = dict(phases or {}), time.time()
        self.trackers = list(trackers)
        self.log_path = output_dir / "trainer_log.jsonl"
        self.history: list[dict[str, Any]] = []
        self.started: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._bar: Any = None

    def __enter__(self) -> DriverLog:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._poll()
        self._each("finish")
        if self._bar is not None:
            self._bar.close()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self._poll()

    def _poll(self) -> None:
        import ray

        try:
            entries = ray.get(self.board.drain.remote(), timeout=30)
        except Exception:  # the actor is gone at shutdown; nothing left to show
            return
        for entry in entries:
            kind = entry.pop("kind")
            if kind == "start":
                self._start(entry)
            elif kind == "log":
                self._log(entry)
            elif kind == "note":
                self._write(entry["text"])

    def _each(self, method: str, *args: Any) -> None:
        """Call one method on every tracker; drop, with a warning, any tracker that fails."""
        for tracker in list(self.trackers):
            try:
                getattr(tracker, method)(*args)
            except Exception as err:  # a tracker's failure must not end the run or its log
                self.trackers.remove(tracker)
                self._write(f"raytune-llm: report_to {tracker.name} stopped ({method}: {err}); "
                            "trainer_log.jsonl keeps every metric")  # fmt: skip

    def _write(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text)
        else:
            print(text, flush=True)

    def _start(self, info: dict[str, Any]) -> None:
        self.started = info
        resumed = info.get("resumed_step", 0)
        self._forget_after(resumed)
        self._write(start_block(info))
        if self.phases and not resumed:
            since = time.time() - self.opened
            setup = info.get("setup_seconds", 0.0)  # the worker's model load, engine, resume
            self.phases["workers"] = max(since - setup, 0.0)
            self.phases["model"] = setup
            shown = ", ".join(f"{k} {v:.1f} s" for k, v in self.phases.items())
            self._write(f"  Start-up = {shown}")
            self.phases = {}
        self._each("start", info)
        if resumed:
            self._write(f"raytune-llm: continuing from the checkpoint at step {resumed}")
        if self._bar is not None:  # a restarted worker group: a new bar from the checkpoint
            self._bar.close()
            self._bar = None
        if self.show_bar:
            from tqdm import tqdm

            self._bar = tqdm(total=info["total_steps"], initial=info.get("resumed_step", 0),
                             unit="step", file=sys.stderr, dynamic_ncols=True)  # fmt: skip

    def _forget_after(self, step: int) -> None:
        """Drop log lines past the checkpoint a run (re)starts from: those steps are done again.

        A worker group that fails after logging step N but before checkpointing it restarts from
        the last checkpoint (Ray Train's max_failures, or a resumed run), so without this the
        steps in between would appear twice in trainer_log.jsonl and the loss plot.
        """
        self.history = [e for e in self.history if e["current_steps"] <= step]
        if not self.log_path.is_file():
            return
        lines = self.log_path.read_text().splitlines()
        kept = [line for line in lines if json.loads(line).get("current_steps", 0) <= step]
        if len(kept) != len(lines):
            tmp = self.log_path.with_name(self.log_path.name + ".tmp")
            tmp.write_text("".join(line + "\n" for line in kept))
            tmp.replace(self.log_path)

    def _log(self, entry: dict[str, Any]) -> None:
        with self.log_path.open("a") as f:
            f.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self.history.append(entry)
        self._each("log", entry["current_steps"], entry)
        shown = {k: entry[k] for k in ("loss", "eval_loss", "lr", "epoch") if k in entry}
        if "loss" in entry or "eval_loss" in entry:
            self._write(str({k: round(v, 6) if isinstance(v, float) else v
                             for k, v in shown.items()}))  # fmt: skip
        if self._bar is not None:
            self._bar.n = entry["current_steps"]
            postfix = {
                "tok/s": f"{entry.get('throughput', 0):,.0f}",
                "left": entry["remaining_time"],
            }
            if "loss" in entry:
                postfix["loss"] = f"{entry['loss']:.4f}"
            self._bar.set_postfix(postfix, refresh=True)


def log_entry(step: int, total: int, epoch: float, started: float, tokens: int,
              **metrics: float) -> dict[str, Any]:  # fmt: skip
    """One trainer_log.jsonl line, with LLaMA-Factory's fields."""
    elapsed = time.time() - started
    remaining = elapsed / max(step, 1) * (total - step)
    return {
        "kind": "log",
        "current_steps": step,
        "total_steps": total,
        **metrics,
        "epoch": round(epoch, 4),
        "percentage": round(100 * step / max(total, 1), 2),
        "elapsed_time": _hms(elapsed),
        "remaining_time": _hms(remaining),
        "throughput": round(tokens / max(elapsed, 1e-9), 2),
        "total_tokens": tokens,
    }


def plot_loss(output_dir: Path, history: list[dict[str, Any]]) -> list[Path]:
    """training_loss.png, and training_<metric>.png of the evaluation loss and the preference
    stages' accuracies where logged, as LLaMA-Factory saves them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for key in ("loss", "eval_loss", "rewards/accuracies", "eval_rewards/accuracies",
                "eval_accuracy"):  # fmt: skip
        name = f"training_{key.replace('/', '_')}.png"
        points = [(e["current_steps"], e[key]) for e in history if key in e]
        if not points:
            continue
        steps, values = zip(*points, strict=True)
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        ax.plot(steps, values, color="#1f77b4", alpha=0.4 if len(points) > 10 else 1, label="raw")
        if len(points) > 10:
            smooth, last = [], values[0]
            for v in values:
                last = 0.9 * last + 0.1 * v
                smooth.append(last)
            ax.plot(steps, smooth, color="#1f77b4", label="smoothed")
        ax.set_xlabel("step")
        ax.set_ylabel(key)
        ax.set_title(f"{key} of {output_dir.name}")
        ax.legend()
        fig.savefig(output_dir / name, dpi=100, bbox_inches="tight")
        plt.close(fig)
        written.append(output_dir / name)
    return written
