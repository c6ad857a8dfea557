"""Export benchmark: merging an SFT LoRA adapter into a ~30M model, ours vs a plain peft script.

    .venv/bin/python bench/bench_export.py [--repeats 3]

What it measures: a ~30M-parameter tiny Llama (``BENCH_30M_OVERRIDES``, fp32, 117 MB on disk)
and a LoRA adapter of rank 16 on every linear layer (random, non-zero) are built once; then each
path runs in a fresh subprocess, ``--repeats`` times, alternating:

* ``ours``: ``run_export`` on the config ``model_name_or_path, adapter_name_or_path,
  template: llama3, export_dir, infer_dtype`` (float32, so both write the same fp32 model; and
  once with ``auto``, which writes bf16 as LLaMA-Factory does);
* ``peft``: ``AutoModelForCausalLM.from_pretrained`` → ``PeftModel.from_pretrained`` →
  ``merge_and_unload`` → ``save_pretrained`` (+ the tokenizer's ``save_pretrained``).

Timed: from before the model is read to after the last file is written; the imports and one
tokenizer load (lazy imports both paths need) come before, outside. Peak RSS: ``ru_maxrss`` of
the subprocess, and the same minus its RSS just before the timed part (what the merge adds).
Both exports must give the same weights (max abs difference < 1e-5), else the run fails.
Reported: the median of each figure, the ratios ours/peft, and the peak added over the model's
size on disk.

Targets: time ours/peft <= 1.0; peak added RSS <= 1.2x the model's size on disk.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
import torch, yaml
from transformers import AutoModelForCausalLM, AutoTokenizer
from peft import PeftModel
from raytune_llm.config import load_config
from raytune_llm.export.run import run_export

path, base, adapter, out, dtype = sys.argv[1:6]
# Warm-up common to both paths, outside the measure: the lazy imports and a tokenizer load.
import transformers.models.llama.modeling_llama, peft.tuners.lora
from raytune_llm.data.templates import get_template
get_template("llama3", AutoTokenizer.from_pretrained(base))
def rss_mb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
before = rss_mb()
start = time.perf_counter()
if path == "ours":
    cfg = load_config(None, values={"model_name_or_path": base, "adapter_name_or_path": adapter,
        "template": "llama3", "finetuning_type": "lora", "export_dir": out, "infer_dtype": dtype})
    run_export(cfg)
else:
    model = AutoModelForCausalLM.from_pretrained(base)
    model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "peak_mb": peak, "before_mb": before}))
"""


def build(root: Path) -> tuple[Path, Path]:
    """The ~30M model and its LoRA adapter (rank 16, all linear layers, non-zero)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from raytune_llm.model.tiny import BENCH_30M_OVERRIDES, build_tiny_model

    base = build_tiny_model(root / "base", **BENCH_30M_OVERRIDES)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base)
    lora = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", init_lora_weights=False)
    get_peft_model(model, lora).save_pretrained(root / "adapter")
    return base, root / "adapter"


def run(path: str, base: Path, adapter: Path, out: Path, dtype: str = "float32") -> dict:
    args = [sys.executable, "-c", CHILD, path, str(base), str(adapter), str(out), dtype]
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{path} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def same_weights(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    def load(folder: Path) -> dict:
        state = {}
        for f in sorted(folder.glob("*.safetensors")):
            state |= load_file(f)
        return state

    x, y = load(a), load(b)
    assert set(x) == set(y), set(x) ^ set(y)
    return max((x[k].float() - y[k].float()).abs().max().item() for k in x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base, adapter = build(root)
        size_mb = (base / "model.safetensors").stat().st_size / 2**20
        results: dict[str, list[dict]] = {"ours": [], "peft": [], "ours-bf16": []}
        for i in range(args.repeats):
            for path in ("ours", "peft"):
                results[path].append(run(path, base, adapter, root / f"{path}-{i}"))
            results["ours-bf16"].append(run("ours", base, adapter, root / f"bf16-{i}", "auto"))
        diff = same_weights(root / "ours-0", root / "peft-0")
        if diff > 1e-5:
            raise SystemExit(f"ours and peft wrote different weights: max diff {diff}")
    print(f"model: 30M-parameter tiny Llama, {size_mb:.1f} MB on disk (fp32); adapter rank 16")
    print(f"weights equal: max abs diff {diff:.2e}\n")
    print(f"{'path':<10} {'time s':>7} {'peak MB':>8} {'added MB':>9} {'added/model':>12}")
    med = {}
    for path, rows in results.items():
        t = statistics.median(r["seconds"] for r in rows)
        peak = statistics.median(r["peak_mb"] for r in rows)
        added = statistics.median(r["peak_mb"] - r["before_mb"] for r in rows)
        med[path] = (t, peak, added)
        print(f"{path:<10} {t:7.2f} {peak:8.0f} {added:9.0f} {added / size_mb:12.2f}")
    (t1, p1, a1), (t2, p2, a2) = med["ours"], med["peft"]
    print(f"\nours/peft: time {t1 / t2:.2f}x (target <= 1.0), peak RSS {p1 / p2:.2f}x, "
          f"added RSS {a1 / a2:.2f}x")  # fmt: skip
    print(f"ours: added peak {a1 / size_mb:.2f}x the model's size on disk (target <= 1.2)")


if __name__ == "__main__":
    main()
