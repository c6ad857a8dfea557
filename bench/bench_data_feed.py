"""Data feed benchmark: how long a multi-epoch run with evaluations waits for its data.

    .venv/bin/python bench/bench_data_feed.py [--quick] [--only demo|30m]

Each config runs twice, back to back, as a user runs it (``raytune-llm train CONFIG`` in a
subprocess, a fresh local Ray each time): as it is, and with ``streaming=true``, which runs the
data pipeline again for every epoch and every evaluation as raytune-llm did before it kept the
tokenised blocks for the run. Reported per run, from its trainer_log.jsonl and the clock:

* ``wall``: the whole command, start to exit.
* ``loop``: the training loop (``train_seconds`` of the last log entry).
* ``waited``: of the loop, the seconds rank 0 spent waiting for a training or eval batch
  (``data_wait_seconds``), and its share of the loop.
* ``overhead``: the loop's time beyond its steps' own time at epoch starts and evaluations: each
  logging interval that holds an epoch start or an evaluation, less the steady time of its steps
  (the median seconds per step of the intervals that hold neither), summed; and its share of
  the loop. This counts the evaluations' own forward passes too.

Configs: ``demo`` is examples/demo/tiny_lora_sft.yaml (the README's first command: 310 steps
over 5 epochs, an evaluation every 100 steps); ``30m`` is the same on a 29.4M-parameter Llama
(bench_train's model: hidden 512, 8 layers, vocabulary 2048) for 2 epochs of 200 examples at
batch 8 with an evaluation every 10 steps. ``--quick`` trains 2 epochs of the demo only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "demo" / "tiny_lora_sft.yaml"


def configs(root: Path, quick: bool, only: str | None) -> dict[str, list[str]]:
    """Each benchmarked config (all, or ``only`` one) as overrides of the demo YAML."""
    out = {"demo": ["num_train_epochs=2"] if quick else []}
    if not quick and only != "demo":
        from raytune_llm.model.tiny import BENCH_30M_OVERRIDES, build_tiny_model

        model = root / "tiny-llama-30m"
        if not (model / "model.safetensors").is_file():
            build_tiny_model(model, "tiny-llama", **BENCH_30M_OVERRIDES)
        out["30m"] = [f"model_name_or_path={model}", "num_train_epochs=2", "max_samples=200",
                      "per_device_train_batch_size=8", "per_device_eval_batch_size=8",
                      "eval_steps=10", "logging_steps=2", "learning_rate=1e-3",
                      "additional_target=null"]  # fmt: skip
    return out


def run(overrides: list[str], out: Path) -> dict[str, float]:
    cmd = [sys.executable, "-m", "raytune_llm.cli.main", "train", str(DEMO), f"output_dir={out}",
           "overwrite_output_dir=true", "plot_loss=false", "disable_tqdm=true",
           f"dataset_dir={ROOT / 'data'}", *overrides]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    log = [json.loads(line) for line in (out / "trainer_log.jsonl").open()]
    return {"wall": wall, **feed_figures(log)}


def feed_figures(log: list[dict]) -> dict[str, float]:
    """loop, waited and overhead seconds (see the module docstring) of one trainer_log."""
    steps_per_epoch = round(log[-1]["current_steps"] / log[-1]["epoch"])
    rows, previous = [], {"current_steps": 0, "train_seconds": 0.0}
    for entry in log:
        steps = entry["current_steps"] - previous["current_steps"]
        seconds = entry["train_seconds"] - previous["train_seconds"]
        first, last = previous["current_steps"], entry["current_steps"]
        crosses_epoch = last // steps_per_epoch != first // steps_per_epoch or first == 0
        rows.append((steps, seconds, crosses_epoch or "eval_loss" in entry))
        previous = entry
    steady = statistics.median(s / n for n, s, special in rows if not special and n)
    overhead = sum(max(s - n * steady, 0.0) for n, s, special in rows if special)
    loop = log[-1]["train_seconds"]
    return {"loop": loop, "waited": log[-1]["data_wait_seconds"], "overhead": overhead,
            "steady_step": steady}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 epochs of the demo only")
    parser.add_argument("--only", choices=["demo", "30m"], help="one config")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="bench-feed-") as tmp:
        root = Path(tmp)
        table = []
        tmpdir = Path(tempfile.gettempdir())
        for name, overrides in configs(tmpdir, args.quick, args.only).items():
            if args.only and name != args.only:
                continue
            for mode, extra in (("kept", []), ("streaming", ["streaming=true"])):
                figures = run(overrides + extra, root / f"{name}-{mode}")
                table.append((name, mode, figures))
                share = {k: 100 * figures[k] / figures["loop"] for k in ("waited", "overhead")}
                print(f"{name:<5} {mode:<9} wall {figures['wall']:6.1f} s  loop "
                      f"{figures['loop']:6.1f} s  waited {figures['waited']:5.1f} s "
                      f"({share['waited']:4.1f}%)  overhead {figures['overhead']:5.1f} s "
                      f"({share['overhead']:4.1f}%)", flush=True)  # fmt: skip
        for name in dict.fromkeys(n for n, _, _ in table):
            kept, streaming = (f for n, _, f in table if n == name)
            print(f"{name}: wall time kept / streaming = {kept['wall'] / streaming['wall']:.2f} "
                  f"({100 * (1 - kept['wall'] / streaming['wall']):.0f}% less)")  # fmt: skip


if __name__ == "__main__":
    main()
