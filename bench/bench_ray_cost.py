"""Where Ray's per-step cost in training comes from: one loop, run in six places.

    .venv/bin/python bench/bench_ray_cost.py [--workdir DIR] [--steps 30]

The training benchmark (bench_train.py) finds the same padding-free LoRA loop slower in a Ray
Train worker than without Ray. This benchmark takes that apart. One plain loop -- the 30M tiny
Llama of bench_train, LoRA r8 on every linear layer, ``sdpa_varlen`` attention, padding-free
batches of 4 examples, AdamW, 2 torch threads -- is timed over the same batches in:

* ``process``: this process's main thread, no Ray (the reference);
* ``ray-up``: the same while a local Ray instance runs (this process is its driver): the cost
  of Ray's own processes (GCS, raylet, dashboard and agents, log monitor), which nothing in a
  Ray program avoids;
* ``actor``: a plain Ray task (1.5 CPUs, as the training worker books);
* ``actor+idle``: the same while seven idle Ray actors exist (Ray Train and Ray Data start
  about that many helper actors: controller, placement-group cleaner, preemption watcher,
  synchronisation, dataset manager, autoscaling coordinator, stats);
* ``train``: a Ray Train TorchTrainer worker, the batches handed over in its config;
* ``train+data``: the same worker fed from a Ray Data dataset shard (``iter_batches``).

Each prints trained tokens per second over the timed steps (after warm-up steps), its ratio to
``process``, the machine's context switches per second over those steps (all processes, from
/proc/stat) and the share of the machine's cores the loop's process had. The machine's cores
are shared with whatever else runs: run it on a quiet one.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_train  # the same model, data and tokenisation

THREADS = 2
WORKER_CPUS = 1.5


def machine_switches() -> int | None:
    """Context switches of every process on this machine since boot (Linux), else None."""
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("ctxt "):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def timed_loop(model_dir: str, batches: Any, steps: int, warmup: int) -> dict[str, float]:
    """Train ``warmup + steps`` steps on the batches; measures the last ``steps``.

    ``batches`` is a list of example lists or a Ray Data shard (anything with iter_batches).
    Returns trained tokens/s, the machine's context switches/s and the share of the machine's
    cores this process used, all over the timed steps.
    """
    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForCausalLM

    from raytune_llm.data.attention import padding_free_batch
    from raytune_llm.model.varlen import use_varlen_sdpa
    from raytune_llm.train.collate import rows_of
    from raytune_llm.train.stages.causal_lm import CausalLM

    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.config.use_cache = False
    attn = use_varlen_sdpa(model)
    rank = bench_train.LORA_RANK
    lora = LoraConfig(task_type=TaskType.CAUSAL_LM, r=rank, lora_alpha=2 * rank,
                      target_modules="all-linear")  # fmt: skip
    model = get_peft_model(model, lora)
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    stage = CausalLM(None)
    if hasattr(batches, "iter_batches"):
        source = iter(
            rows_of(b)
            for b in batches.iter_batches(batch_size=bench_train.BATCH, batch_format="numpy")
        )
    else:
        source = iter(batches)
    tokens, start, switches, cpu = 0, 0.0, None, 0.0
    for i in range(warmup + steps):
        if i == warmup:
            tokens, start, switches = 0, time.perf_counter(), machine_switches()
            cpu = _cpu_seconds()
        examples = next(source)
        inputs = padding_free_batch(examples, attn_implementation=attn)
        targets = stage.weight(inputs)
        (stage.loss(model, inputs).loss / targets).backward()
        optimiser.step()
        optimiser.zero_grad()
        tokens += sum(len(e["input_ids"]) for e in examples)
    seconds = time.perf_counter() - start
    end_switches = machine_switches()
    return {
        "tps": tokens / seconds,
        "switches": (end_switches - switches) / seconds if switches is not None else float("nan"),
        "cpu": (_cpu_seconds() - cpu) / seconds / (os.cpu_count() or 1),
    }


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def train_worker(config: dict[str, Any]) -> None:
    import ray.train

    batches = config["batches"] or ray.train.get_dataset_shard("train")
    result = timed_loop(config["model"], batches, config["steps"], config["warmup"])
    Path(config["out"]).write_text(json.dumps(result))
    ray.train.report({"tokens_per_s": result["tps"]})


def in_train(
    model: str, rows: list[dict], args: argparse.Namespace, *, data: bool
) -> dict[str, float]:
    import ray.data
    import ray.train
    from ray.train.torch import TorchTrainer

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "tps.json"
        config = {"model": model, "steps": args.steps, "warmup": args.warmup, "out": str(out),
                  "batches": None if data else chunks(rows)}  # fmt: skip
        TorchTrainer(
            train_worker,
            train_loop_config=config,
            scaling_config=ray.train.ScalingConfig(
                num_workers=1, resources_per_worker={"CPU": WORKER_CPUS}
            ),
            run_config=ray.train.RunConfig(name="ray-cost", storage_path=tmp),
            datasets={"train": ray.data.from_items(rows)} if data else None,
        ).fit()
        return json.loads(out.read_text())


def chunks(rows: list[dict]) -> list[list[dict]]:
    return [rows[i : i + bench_train.BATCH] for i in range(0, len(rows), bench_train.BATCH)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, help="keep the model and data here (reused)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="steps before the clock starts")
    parser.add_argument("--no-dashboard", action="store_true", help="start Ray without it")
    args = parser.parse_args()
    root = args.workdir or Path(tempfile.mkdtemp(prefix="bench-ray-cost-"))
    model = str(bench_train.build_model(root, "30m"))
    data = bench_train.generate(1200, root)
    cfg = bench_train.bench_config("ray-free", Path(model), data, root / "out", 1)
    need = (args.steps + args.warmup) * bench_train.BATCH
    rows = bench_train.tokenised_rows(cfg, data)[:need]
    if len(rows) < need:
        parser.error(f"--steps + --warmup need {need} examples; the data has {len(rows)}")

    import ray

    results = {"process": timed_loop(model, chunks(rows), args.steps, args.warmup)}
    ray.init(num_cpus=2, include_dashboard=not args.no_dashboard, log_to_driver=False)
    time.sleep(5)  # past the start-up of Ray's processes
    results["ray-up"] = timed_loop(model, chunks(rows), args.steps, args.warmup)
    remote = ray.remote(num_cpus=WORKER_CPUS)(timed_loop)
    results["actor"] = ray.get(remote.remote(model, chunks(rows), args.steps, args.warmup))

    @ray.remote(num_cpus=0)
    class Idle:
        def ready(self) -> bool:
            return True

    idle = [Idle.remote() for _ in range(7)]
    ray.get([a.ready.remote() for a in idle])
    results["actor+idle"] = ray.get(remote.remote(model, chunks(rows), args.steps, args.warmup))
    for a in idle:
        ray.kill(a)
    results["train"] = in_train(model, rows, args, data=False)
    results["train+data"] = in_train(model, rows, args, data=True)
    ray.shutdown()

    print(f"\n{args.steps} timed steps after {args.warmup}; batch {bench_train.BATCH}, "
          f"{THREADS} torch threads, {os.cpu_count()} CPUs, "
          f"dashboard {'off' if args.no_dashboard else 'on'}")  # fmt: skip
    print(f"{'where':<12} {'tok/s':>7} {'ratio':>6} {'switches/s':>11} {'loop CPU':>9}")
    base = results["process"]["tps"]
    for name, r in results.items():
        print(f"{name:<12} {r['tps']:7.0f} {r['tps'] / base:6.2f} {r['switches']:11.0f} "
              f"{100 * r['cpu']:8.1f}%")  # fmt: skip


if __name__ == "__main__":
    main()
