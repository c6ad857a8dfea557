"""trainer_log.jsonl across a restart: steps redone after a failure are logged once."""

from __future__ import annotations

import json
from pathlib import Path

from raytune_llm.train.progress import DriverLog, log_entry

INFO = {"num_examples": 96, "num_epochs": 2, "batch_size": 8, "world_size": 1,
        "accumulation": 1, "total_steps": 12, "trainable": 10, "total": 100}  # fmt: skip


def feed(log: DriverLog, *entries: dict) -> None:
    for entry in entries:
        entry = dict(entry)
        kind = entry.pop("kind")
        (log._start if kind == "start" else log._log)(entry)


def line(step: int, loss: float) -> dict:
    return log_entry(step, 12, step / 6, 0.0, 100 * step, loss=loss)


def steps_in(out: Path) -> list[tuple[int, float]]:
    rows = [json.loads(x) for x in (out / "trainer_log.jsonl").read_text().splitlines()]
    return [(r["current_steps"], r["loss"]) for r in rows]


def test_a_restart_drops_the_lines_past_its_checkpoint(tmp_path, capsys):
    log = DriverLog(None, tmp_path, show_bar=False)
    # Attempt 1 logs steps 2..8, checkpoints at 4, and dies; attempt 2 restarts from step 4.
    feed(log, {"kind": "start", "resumed_step": 0, **INFO},
         *(line(s, 10.0 - s) for s in (2, 4, 6, 8)),
         {"kind": "start", "resumed_step": 4, **INFO},
         *(line(s, 20.0 - s) for s in (6, 8, 10, 12)))  # fmt: skip
    want = [(2, 8.0), (4, 6.0), (6, 14.0), (8, 12.0), (10, 10.0), (12, 8.0)]
    assert steps_in(tmp_path) == want
    assert [(e["current_steps"], e["loss"]) for e in log.history] == want
    assert "continuing from the checkpoint at step 4" in capsys.readouterr().out


def test_a_resumed_run_keeps_the_earlier_runs_lines(tmp_path):
    first = DriverLog(None, tmp_path, show_bar=False)
    feed(first, {"kind": "start", "resumed_step": 0, **INFO}, line(2, 5.0), line(4, 4.0))
    second = DriverLog(None, tmp_path, show_bar=False)  # a new `raytune-llm train`, same dir
    feed(second, {"kind": "start", "resumed_step": 4, **INFO}, line(6, 3.0))
    assert steps_in(tmp_path) == [(2, 5.0), (4, 4.0), (6, 3.0)]
