"""DPO benchmark: LoRA DPO throughput of raytune-llm against TRL's DPOTrainer + peft, and the
memory a LoRA reference costs (DPO against SFT on the same model).

    .venv/bin/python bench/bench_dpo.py [--quick]

Each path runs in a fresh subprocess of one run, on the same model (the training benchmark's
29.4M tiny Llama; ``--quick``: its small one), the same synthetic preference pairs (a prompt of
4-120 words, chosen and rejected answers of 2-120 words), LoRA r8 on every linear layer, batch 4
pairs, fp32, AdamW at a constant 1e-4, sigmoid DPO with beta 0.1, no gradient checkpointing:

* ``trl``: a plain script: ``trl.DPOTrainer`` with ``peft_config`` (its reference is the base
  with the adapter disabled too), padded batches. The baseline.
* ``ours``: ``run_training`` on a local Ray, one Ray Train worker, ``stage: dpo``: chosen and
  rejected answers of a batch in one padding-free row, the reference in a second forward.
* ``ours-sft``: ``stage: sft`` on the chosen answers of the same pairs, the same settings: the
  memory baseline (the reference must cost no second copy of the model).

Throughput: trained tokens (prompt + answer of both sequences of each pair, no padding) per
second in the steady state, between the ends of step ``warmup`` and the last step. Peak memory:
the peak RSS of the process that trains (the Ray Train worker for ours, sampled every 0.5 s).
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

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_train import WORDS, WorkerMemory, build_model, measure, ours_result

PATHS = ("trl", "ours", "ours-sft")
BATCH, LORA_RANK, LR, BETA, SEED = 4, 8, 1e-4, 0.1, 1234
FULL = {"pairs": 600, "warmup": 3, "steps": 20, "model": "30m"}
QUICK = {"pairs": 80, "warmup": 2, "steps": 4, "model": "quick"}


def generate(size: int, root: Path) -> Path:
    folder = root / f"pairs-{size}"
    if (folder / "dataset_info.json").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)

    def words(n: int) -> str:
        return " ".join(WORDS[i] for i in rng.integers(0, len(WORDS), n))

    with open(folder / "pairs.jsonl", "w", encoding="utf-8") as f:
        for _ in range(size):
            record = {"instruction": words(int(rng.integers(4, 121))),
                      "chosen": words(int(rng.integers(2, 121))),
                      "rejected": words(int(rng.integers(2, 121)))}  # fmt: skip
            f.write(json.dumps(record) + "\n")
    columns = {"prompt": "instruction", "chosen": "chosen", "rejected": "rejected"}
    info = {"bench_dpo": {"file_name": "pairs.jsonl", "ranking": True, "columns": columns},
            "bench_sft": {"file_name": "pairs.jsonl",
                          "columns": {"prompt": "instruction", "response": "chosen"}}}  # fmt: skip
    (folder / "dataset_info.json").write_text(json.dumps(info, indent=2))
    return folder


def config(path: str, model: Path, data: Path, out: Path, steps: int) -> Any:
    from raytune_llm.config import load_config

    sft = path == "ours-sft"
    return load_config(values={
        "model_name_or_path": str(model), "stage": "sft" if sft else "dpo", "do_train": True,
        "finetuning_type": "lora", "lora_rank": LORA_RANK, "lora_alpha": 2 * LORA_RANK,
        "lora_target": "all", "dataset": "bench_sft" if sft else "bench_dpo",
        "dataset_dir": str(data), "template": "empty", "cutoff_len": 1024,
        "disable_shuffling": True, "disable_gradient_checkpointing": True,
        "per_device_train_batch_size": BATCH, "learning_rate": LR,
        "lr_scheduler_type": "constant", "max_steps": steps, "logging_steps": 1,
        "save_strategy": "no", "seed": SEED, "output_dir": str(out),
        "overwrite_output_dir": True, "report_to": "none", "pref_beta": BETA,
    })  # fmt: skip


def run_trl(model: Path, data: Path, out: Path, steps: int) -> dict[str, Any]:
    import datasets
    import torch
    from peft import LoraConfig, TaskType
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    lines = (data / "pairs.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    dataset = datasets.Dataset.from_list(
        [
            {"prompt": r["instruction"], "chosen": r["chosen"], "rejected": r["rejected"]}
            for r in records
        ]
    )
    tokenizer = AutoTokenizer.from_pretrained(model)
    policy = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    stamps: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            stamps.append(time.perf_counter())

    args = DPOConfig(
        output_dir=str(out), per_device_train_batch_size=BATCH, max_steps=steps,
        learning_rate=LR, lr_scheduler_type="constant", logging_steps=1, save_strategy="no",
        report_to="none", disable_tqdm=True, seed=SEED, use_cpu=True, beta=BETA,
        max_length=1024, dataloader_num_workers=0, gradient_checkpointing=False,
    )  # fmt: skip
    lora = LoraConfig(task_type=TaskType.CAUSAL_LM, r=LORA_RANK, lora_alpha=2 * LORA_RANK,
                      lora_dropout=0.0, target_modules="all-linear")  # fmt: skip
    trainer = DPOTrainer(
        model=policy,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora,
        callbacks=[Clock()],
    )
    tokenized = trainer.train_dataset
    lens = [len(p) * 2 + len(c) + len(r) for p, c, r in zip(
        tokenized["prompt_ids"], tokenized["chosen_ids"], tokenized["rejected_ids"],
        strict=True)]  # fmt: skip
    trainer.train()
    per_step = float(np.mean(lens)) * BATCH  # random sampling: the mean pair per step
    return {
        "stamps": stamps,
        "tokens": [per_step] * len(stamps),
        "losses": [e["loss"] for e in trainer.state.log_history if "loss" in e],
    }


def child(path: str, model: Path, data: Path, steps: int) -> None:
    from raytune_llm.train.launch import run_training

    with tempfile.TemporaryDirectory(prefix=f"bench-dpo-{path}-") as tmp:
        out = Path(tmp) / "out"
        if path == "trl":
            result = run_trl(model, data, out, steps)
            result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        else:
            with WorkerMemory() as memory:
                trained = run_training(config(path, model, data, out, steps), show_bar=False)
            result = ours_result(trained.history, trained.run_info)
            result["peak_mb"] = memory.peak / 2**20
    print("RESULT " + json.dumps(result), flush=True)


def tokens_per_second(r: dict[str, Any], warmup: int) -> float:
    """Trained tokens per second between the ends of step ``warmup`` and the last step."""
    seconds = r["stamps"][-1] - r["stamps"][warmup - 1]
    return sum(r["tokens"][warmup:]) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small model, few steps (smoke)")
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    parser.add_argument("--workdir", type=Path, help="keep the model and data here (reused)")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds per path")
    parser.add_argument("--child", choices=PATHS, help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--total-steps", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.model, args.data, args.total_steps)
        return
    preset = QUICK if args.quick else FULL
    with tempfile.TemporaryDirectory(prefix="bench-dpo-") as tmp:
        root = (args.workdir or Path(tmp)).resolve()
        model, data = build_model(root, preset["model"]), generate(preset["pairs"], root)
        steps = preset["warmup"] + preset["steps"]
        results = {}
        for path in args.paths:
            results[path] = r = measure(path, model, data, steps, args.timeout, __file__)
            r["tok_s"] = tokens_per_second(r, preset["warmup"])
            print(
                f"  {path}: {r['tok_s']:.0f} tok/s, peak {r['peak_mb']:.0f} MB, "
                f"wall {r['wall']:.0f} s, load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    print(
        f"\nmodel {model.name}, {preset['pairs']} pairs, batch {BATCH}, LoRA r{LORA_RANK}, "
        f"{preset['steps']} timed steps after {preset['warmup']}"
    )
    ok = True
    if "trl" in results and "ours" in results:
        ratio = results["ours"]["tok_s"] / results["trl"]["tok_s"]
        ok &= ratio >= 1.3
        print(f"  DPO tokens/s ours / TRL: {ratio:.2f} (target >= 1.3)")
    if "ours" in results and "ours-sft" in results:
        mem = results["ours"]["peak_mb"] / results["ours-sft"]["peak_mb"]
        ok &= mem <= 1.15
        print(f"  peak RSS LoRA DPO / LoRA SFT: {mem:.2f} (target <= 1.15)")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
