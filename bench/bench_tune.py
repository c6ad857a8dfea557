"""Sweep benchmark: the same search space and budget under ASHA and under FIFO, in one run.

    .venv/bin/python bench/bench_tune.py [--trials 12] [--max-steps 40] [--workdir DIR]

What it measures: two sweeps of ``raytune-llm tune`` (``run_sweep``) of LoRA SFT of the
built-in tiny Llama on the shipped demo data, over learning rate (log-uniform 1e-4 .. 1e-2) and
LoRA rank (4, 8, 16): ``--trials`` trials of ``--max-steps`` optimiser steps each, evaluated
every 5 steps on the 200 held-out demo examples, two trials at a time, with the same search
seed, so both sweeps draw the same trials in the same order. One runs ASHA (grace period 5
steps, the default reduction factor 3), the other FIFO (every trial to the end). Reported per
scheduler: the optimiser steps of all trials together (the compute spent), wall time, the best
final eval_loss of a completed trial, and the 1-minute load average (the machine is shared).

Target: ASHA's best eval_loss within 2% of FIFO's, with at most half of FIFO's steps. With two
trials at a time, the first trials to reach a rung are promoted with little to compare against;
12 trials is the default because 8 are too few for that to even out (0.53 of FIFO's steps).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_var, "1")

ROOT = Path(__file__).resolve().parents[1]
SWEEP = ROOT / "examples" / "tune" / "tiny_lora_sweep.yaml"


def sweep(scheduler: str, out: Path, trials: int, max_steps: int) -> dict:
    from raytune_llm.config import load_config
    from raytune_llm.tune.sweep import run_sweep

    cfg = load_config(SWEEP, [
        f"dataset_dir={ROOT / 'data'}", f"output_dir={out}", "overwrite_output_dir=true",
        "max_samples=512", f"max_steps={max_steps}", "eval_steps=5", "save_steps=5",
        "logging_steps=5", "eval_dataset=demo_alpaca_eval", f"tune.num_samples={trials}",
        f"tune.scheduler={scheduler}", "tune.grace_period=5",
        "tune.max_concurrent_trials=2", "tune.seed=0",
    ])  # fmt: skip
    started = time.time()
    result = run_sweep(cfg)
    seconds = time.time() - started
    return {
        "scheduler": scheduler,
        "steps": sum(t.steps for t in result.trials),
        "completed": sum(t.status == "completed" for t in result.trials),
        "best": result.best.final if result.best else float("nan"),
        "params": result.best.params if result.best else {},
        "seconds": seconds,
        "load": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--max-steps", type=int, default=40)
    parser.add_argument("--workdir", type=Path, help="keep the sweeps here")
    args = parser.parse_args()
    import ray

    ray.init(num_cpus=2, include_dashboard=True, logging_level="ERROR")
    root = args.workdir or Path(tempfile.mkdtemp(prefix="bench-tune-"))
    rows = [sweep(s, root / s, args.trials, args.max_steps) for s in ("asha", "fifo")]
    ray.shutdown()
    print(f"\n{'scheduler':>9} {'steps':>6} {'done':>5} {'best eval_loss':>15} {'time s':>7} "
          f"{'load':>5}  best params")  # fmt: skip
    for r in rows:
        print(f"{r['scheduler']:>9} {r['steps']:>6} {r['completed']:>5} {r['best']:>15.4f} "
              f"{r['seconds']:>7.0f} {r['load']:>5.1f}  {r['params']}")  # fmt: skip
    asha, fifo = rows
    gap = (asha["best"] - fifo["best"]) / fifo["best"]
    share = asha["steps"] / fifo["steps"]
    print(f"\nASHA best vs FIFO best: {100 * gap:+.2f}% (target within 2%) "
          f"{'PASS' if gap <= 0.02 else 'MISS'}")  # fmt: skip
    print(f"ASHA steps / FIFO steps: {share:.2f} (target <= 0.50) "
          f"{'PASS' if share <= 0.5 else 'MISS'}")  # fmt: skip


if __name__ == "__main__":
    main()
