"""Choice-eval benchmark: questions/s of ``raytune-llm eval`` with 1 and 2 actors against a plain
single-process transformers loop over the same prompts.

    .venv/bin/python bench/bench_eval.py [--model tiny|30m] [--n-shot 5] [--batch-size 16]

What it measures: the demo MMLU-layout task (data/evaluation/demo_en, test split: 192 questions,
4 subjects), LLaMA-Factory prompt style (llama3 chat template, ``n_shot`` shots as earlier turns),
scored by the built-in tiny Llama (``--model 30m``: the ~30M-parameter benchmark model of
bench_train.py, 8 layers of width 512, built locally) on a local Ray (``ray.init(num_cpus=2)``,
started before the clock):

* ``ray-1`` / ``ray-2``: :func:`raytune_llm.eval.runner.run_eval` with ``ray_num_workers`` 1 / 2
  (predict's actor sizing: 1.5 CPU and 2 torch threads for one actor, 0.75 CPU and 1 thread
  each for two); the clock covers the whole call: prompt building, actor start, model load,
  scoring, gathering;
* ``plain``: one process, no Ray: ``AutoModelForCausalLM.from_pretrained`` + the tokenizer's own
  chat template (``apply_chat_template``) on the same messages, ``batch_size`` prompts per
  forward pass (left-padded), argmax over the A-D logits; torch on 2 threads; the clock covers
  model load and scoring.

The run fails unless all three give the same answer to every question. Reported: seconds,
questions/s (best of ``--repeat``), and each path's ratio to ``plain``; with the 1-minute load
average (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_var, "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from raytune_llm.config import load_config  # noqa: E402
from raytune_llm.eval.runner import question_rows, run_eval  # noqa: E402
from raytune_llm.eval.tasks import load_task  # noqa: E402
from raytune_llm.model.loader import resolve_model_path  # noqa: E402

TASK_DIR = ROOT / "data" / "evaluation"
TASK = "demo_en_test"


def plain_loop(model_dir: str, rows: list[dict], batch_size: int) -> tuple[float, list[str]]:
    """Seconds and answers of the single-process transformers loop (see the module docstring)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(2)
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    letters = [tokenizer.encode(c, add_special_tokens=False)[-1] for c in "ABCD"]
    prompts = [
        list(tokenizer.apply_chat_template(json.loads(r["prompt"]), add_generation_prompt=True,
                                           return_dict=False))
        for r in rows
    ]  # fmt: skip
    answers = []
    pad = tokenizer.pad_token_id or 0
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start : start + batch_size]
        width = max(len(p) for p in batch)
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in batch])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch])
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
        picked = logits[:, -1, letters].argmax(-1).tolist()
        answers += ["ABCD"[i] for i in picked]
    return time.perf_counter() - started, answers


def ours(values: dict, actors: int) -> tuple[float, list[str]]:
    cfg = load_config(None, values={**values, "ray_num_workers": actors})
    started = time.perf_counter()
    result = run_eval(cfg, log=lambda *_: None)
    seconds = time.perf_counter() - started
    predictions = result.scores["model"]
    answers = [a for subject in predictions.values() for a in subject.values()]
    return seconds, answers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-shot", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=2, help="runs per path; the best counts")
    parser.add_argument("--model", choices=["tiny", "30m"], default="tiny")
    args = parser.parse_args()
    import tempfile

    import ray

    from raytune_llm.model.tiny import BENCH_30M_OVERRIDES, build_tiny_model

    model_dir = resolve_model_path("builtin:tiny-llama")
    if args.model == "30m":
        folder = Path(tempfile.gettempdir()) / "raytune-llm-bench-30m"
        if not (folder / "config.json").is_file():
            build_tiny_model(folder, overwrite=True, **BENCH_30M_OVERRIDES)
        model_dir = str(folder)
    values = {"model_name_or_path": model_dir, "template": "llama3", "task": TASK,
              "task_dir": str(TASK_DIR), "n_shot": args.n_shot, "batch_size": args.batch_size,
              "eval_style": "llamafactory", "seed": 42}  # fmt: skip
    task = load_task(TASK_DIR, TASK, args.n_shot)
    rows = question_rows(task, load_config(None, values=values))
    ray.init(num_cpus=2, address="local", logging_level="ERROR")
    runs = {
        "ray-1": lambda: ours(values, 1),
        "ray-2": lambda: ours(values, 2),
        "plain": lambda: plain_loop(model_dir, rows, args.batch_size),
    }
    best, answers = {}, {}
    for name, run in runs.items():
        for _ in range(args.repeat):
            seconds, answers[name] = run()
            best[name] = min(best.get(name, seconds), seconds)
    if not answers["ray-1"] == answers["ray-2"] == answers["plain"]:
        print("FAIL: the paths gave different answers", file=sys.stderr)
        return 1
    n = len(rows)
    print(f"{TASK}: {n} questions, {args.model} model, {args.n_shot}-shot, batches of "
          f"{args.batch_size}, "
          f"load {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"{'path':<7} {'seconds':>8} {'questions/s':>12} {'vs plain':>9}")
    for name, seconds in best.items():
        print(f"{name:<7} {seconds:8.2f} {n / seconds:12.1f} {best['plain'] / seconds:9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
