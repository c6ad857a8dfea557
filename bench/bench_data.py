"""Data pipeline benchmark: tokenise and pack synthetic alpaca data, Ray Data vs `datasets.map`.

    .venv/bin/python bench/bench_data.py [--sizes 100000 1000000]

What it measures: for each size, one deterministic synthetic alpaca JSONL file (20-300 words
of prompt + answer per example from a fixed word list: 34-482 tokens with the template, 247 on
average; dataset_info.json beside it) is tokenised with the built-in tiny Llama tokenizer
(template llama3, cutoff_len 512, packing on) and packed by

* ``ours``: ``prepare_data`` on a local Ray (``ray.init(num_cpus=2)``); the driver iterates every
  packed batch with ``iter_batches`` (it never collects the dataset);
* ``datasets``: a plain Hugging Face ``datasets`` script: ``load_dataset("json")`` →
  ``.map(batched=True)`` calling the same ``converters.convert`` + ``tokenize.encode_supervised``
  with the same template → ``.map(pack_batch)`` → iterate all rows, in one process;
* ``datasets-np2``: the same with ``num_proc=2`` (``--paths`` picks which paths run).

Every (path, size) runs in a fresh subprocess. Reported: examples per second; the driver's peak
RSS (``ru_maxrss``: "driver MB"; it counts the pages of Ray's shared-memory object store that the
driver has mapped to read blocks) and its peak private memory (``RssAnon``, sampled); the peak
summed RSS of the whole process tree (Ray's workers, or the ``num_proc`` pool; sampled every
0.5 s, shared pages counted once per process); "cores", the tree's CPU seconds over the timed
seconds; and the 1-minute load average when the run ended (this machine is shared).
Timing rule, the same for every path: the clock starts when the pipeline is built (before any
file is read or the tokenizer is loaded) and stops after the last packed row has reached the
driver; imports, data generation and ``ray.init`` are outside it (Ray's start-up is shown apart).
Both paths must give the same examples, tokens, trained tokens and a per-example token checksum
(order-independent, since the paths pack different windows); the run fails otherwise.

Targets: ours/datasets throughput >= 1.0 at every size, and our driver's peak RSS growing by less
than 20% from the smallest to the largest size (streaming, not loading).

Needs Linux (``/proc``, ``ru_maxrss`` in KiB) and, for 1M examples, about 10 GB of free disk
beside the data (``datasets`` writes its Arrow cache files there); the 1M sizes take about
7 + 11 + 5 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_var, "1")

PATHS = ("ours", "datasets", "datasets-np2")
DATASET = "bench_alpaca"
CUTOFF_LEN = 512
BATCH_SIZE = 1000  # preprocessing_batch_size: also the packing window of both paths
ITER_BATCH = 256  # rows per batch the driver consumes, on both paths
SEED = 1234
DATA_VERSION = "1"  # bump when the generated data changes
WORDS = (
    "the of and to in a is that for it as was with be by on not he this are or his from at which "
    "but have an they you were her she there one all we their can has more will about if would "
    "so what when make like time just know take people into year your good some could them see "
    "other than then now look only come its over think also back after use two how our work "
    "first well way even new want because any these give day most us model data train answer "
    "question explain short long write list number water light city river music garden story"
).split()


# ---- synthetic data --------------------------------------------------------------------------


def _text(rng: np.random.Generator, n: int) -> str:
    return " ".join(WORDS[i] for i in rng.integers(0, len(WORDS), n))


def generate(size: int, root: Path) -> Path:
    """Write ``size`` alpaca records and their dataset_info.json under ``root`` (reused if there).

    Each record has 20-300 words of prompt + answer, split at random; half carry an ``input``;
    one in ten a ``system`` prompt.
    """
    folder = root / f"alpaca-{size}-v{DATA_VERSION}"
    data = folder / "data.jsonl"
    if (folder / "dataset_info.json").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    with open(data, "w", encoding="utf-8") as f:
        for total in rng.integers(20, 301, size):
            prompt = int(rng.integers(5, total - 4))
            query = int(rng.integers(0, prompt // 2)) if rng.random() < 0.5 else 0
            record = {
                "instruction": _text(rng, prompt - query),
                "input": _text(rng, query),
                "output": _text(rng, int(total - prompt)),
                "system": _text(rng, 8) if rng.random() < 0.1 else "",
            }
            f.write(json.dumps(record) + "\n")
    columns = {"prompt": "instruction", "query": "input", "response": "output", "system": "system"}
    info = {DATASET: {"file_name": data.name, "columns": columns}}
    (folder / "dataset_info.json").write_text(json.dumps(info, indent=2))
    return folder


# ---- what both paths share -------------------------------------------------------------------


def bench_config(data_dir: Path, out_dir: Path) -> Any:
    from raytune_llm.config import load_config

    return load_config(
        values={
            "model_name_or_path": "builtin:tiny-llama",
            "stage": "sft",
            "do_train": True,
            "finetuning_type": "lora",
            "dataset": DATASET,
            "dataset_dir": str(data_dir),
            "template": "llama3",
            "cutoff_len": CUTOFF_LEN,
            "packing": True,
            "preprocessing_batch_size": BATCH_SIZE,
            "output_dir": str(out_dir),
        }
    )


def _flat(column: Any) -> np.ndarray:
    """One int64 array of a list column (an object array of arrays, or a 2-D array)."""
    if column.dtype == object:
        return np.concatenate([np.asarray(x, dtype=np.int64) for x in column])
    return np.asarray(column, dtype=np.int64).reshape(-1)


class Tally:
    """Counts of the packed rows the driver sees, with an order-independent token checksum."""

    def __init__(self) -> None:
        self.rows = self.examples = self.tokens = self.trained = self.checksum = 0

    def add(self, batch: dict[str, Any]) -> None:
        ids, labels, lens = (_flat(batch[k]) for k in ("input_ids", "labels", "seq_lens"))
        starts = np.cumsum(lens) - lens
        position = np.arange(len(ids)) - np.repeat(starts, lens)  # inside each example
        self.rows += len(batch["seq_lens"])
        self.examples += len(lens)
        self.tokens += len(ids)
        self.trained += int(np.count_nonzero(labels != -100))
        weight = position + 1
        self.checksum += int(np.sum((ids + 1) * weight) + 7 * np.sum((labels + 101) * weight))

    def summary(self) -> dict[str, int]:
        keys = ("rows", "examples", "tokens", "trained", "checksum")
        return {k: getattr(self, k) for k in keys}


class TreeSampler:
    """Samples, in a thread, this process tree's summed RSS, the driver's private (anonymous)
    memory, and the CPU time every process of the tree has used since ``mark``."""

    def __init__(self, every: float = 0.5):
        import psutil

        self.me, self.every = psutil.Process(), every
        self.tree_peak = self.anon_peak = 0
        self.cpu_now: dict[int, float] = {}
        self.cpu_marked: dict[int, float] = {}
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        import psutil

        rss = 0
        for proc in [self.me, *self.me.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                rss += proc.memory_info().rss
                times = proc.cpu_times()
                with self.lock:
                    self.cpu_now[proc.pid] = times.user + times.system
        status = Path("/proc/self/status").read_text()
        anon = next(int(ln.split()[1]) for ln in status.splitlines() if ln.startswith("RssAnon"))
        self.tree_peak, self.anon_peak = max(self.tree_peak, rss), max(self.anon_peak, anon * 1024)

    def mark(self) -> None:
        """Start counting CPU time (processes not seen yet count from zero)."""
        self.sample()
        with self.lock:
            self.cpu_marked = dict(self.cpu_now)

    def cpu_seconds(self) -> float:
        """CPU seconds used by the tree since ``mark`` (a process's last 0.5 s may be missed)."""
        self.sample()
        with self.lock:
            return sum(t - self.cpu_marked.get(pid, 0.0) for pid, t in self.cpu_now.items())

    def _run(self) -> None:
        while not self.done.wait(self.every):
            self.sample()

    def __enter__(self) -> TreeSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()


# ---- the paths (each runs in its own subprocess) ---------------------------------------------


def run_ours(data_dir: Path, work: Path, sampler: TreeSampler) -> dict[str, Any]:
    import functools

    import ray
    import ray.data

    from raytune_llm.data.errors import surface_data_errors
    from raytune_llm.data.pipeline import prepare_data
    from raytune_llm.model.loader import load_tokenizer

    cfg = bench_config(data_dir, work / "out")
    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, address="local", log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    ray_start = time.perf_counter() - started
    tally = Tally()
    sampler.mark()
    begin = time.perf_counter()
    with surface_data_errors():
        prepared = prepare_data(cfg, functools.partial(load_tokenizer, cfg.model))
        for batch in prepared.train.iter_batches(batch_size=ITER_BATCH, batch_format="numpy"):
            tally.add(batch)
    seconds = time.perf_counter() - begin
    cpu = sampler.cpu_seconds()
    ray.shutdown()
    return {"seconds": seconds, "startup": ray_start, "cpu": cpu, **tally.summary()}


def run_datasets(
    data_dir: Path, work: Path, num_proc: int | None, sampler: TreeSampler
) -> dict[str, Any]:
    import functools

    import datasets

    from raytune_llm.data.converters import convert
    from raytune_llm.data.packing import pack_batch
    from raytune_llm.data.pipeline import TextSettings, text_tools
    from raytune_llm.data.registry import resolve_datasets
    from raytune_llm.data.tokenize import encode_supervised
    from raytune_llm.model.loader import load_tokenizer

    datasets.disable_progress_bars()
    cfg = bench_config(data_dir, work / "out")
    (spec,) = resolve_datasets(DATASET, data_dir)
    settings, factory = TextSettings.of(cfg), functools.partial(load_tokenizer, cfg.model)

    def tokenise(batch: dict[str, list]) -> dict[str, list]:
        tokenizer, template = text_tools(settings, factory)
        out: dict[str, list] = {"input_ids": [], "labels": []}
        for values in zip(*batch.values(), strict=True):
            example = convert(dict(zip(batch, values, strict=True)), spec, "sft")
            encoded = encode_supervised(example, template, tokenizer, CUTOFF_LEN)
            out["input_ids"].append(encoded["input_ids"])
            out["labels"].append(encoded["labels"])
        return out

    tally = Tally()
    sampler.mark()
    begin = time.perf_counter()
    raw = datasets.load_dataset(
        "json",
        data_files=str(data_dir / "data.jsonl"),
        split="train",
        cache_dir=str(work / "hf-cache"),
    )
    tokenised = raw.map(
        tokenise, batched=True, batch_size=BATCH_SIZE, remove_columns=raw.column_names,
        num_proc=num_proc,
    )  # fmt: skip
    packed = tokenised.map(
        pack_batch, batched=True, batch_size=BATCH_SIZE, fn_kwargs={"cutoff_len": CUTOFF_LEN},
        remove_columns=tokenised.column_names, num_proc=num_proc,
    )  # fmt: skip
    for batch in packed.with_format("numpy").iter(batch_size=ITER_BATCH):
        tally.add(batch)
    seconds = time.perf_counter() - begin
    cpu = sampler.cpu_seconds()
    return {"seconds": seconds, "startup": 0.0, "cpu": cpu, **tally.summary()}


def child(path: str, data_dir: Path) -> None:
    """Run one path and print its figures as one JSON line."""
    with (
        tempfile.TemporaryDirectory(prefix=f"bench-{path}-", dir=data_dir.parent) as tmp,
        TreeSampler() as tree,
    ):
        if path == "ours":
            result = run_ours(data_dir, Path(tmp), tree)
        else:
            num_proc = 2 if path == "datasets-np2" else None
            result = run_datasets(data_dir, Path(tmp), num_proc, tree)
    kib = 1024  # ru_maxrss is in KiB on Linux
    result["driver_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * kib / 2**20
    result["anon_mb"] = tree.anon_peak / 2**20
    result["tree_mb"] = tree.tree_peak / 2**20
    result["load"] = os.getloadavg()[0]
    print("RESULT " + json.dumps(result), flush=True)


# ---- the parent: run every (size, path) in a fresh process and report ----------------------


def measure(path: str, data_dir: Path, timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", path, "--data", str(data_dir)]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
        raise SystemExit(f"{path} on {data_dir.name} failed (exit {proc.returncode}):\n{tail}")
    result = json.loads(lines[-1][len("RESULT ") :])
    result["wall"] = time.perf_counter() - started
    return result


def report(results: dict[tuple[int, str], dict[str, Any]], sizes: list[int]) -> bool:
    """Print the table and the ratios; return whether every target holds."""
    print(
        f"{'size':>9} {'path':<13} {'ex/s':>7} {'time s':>7} {'ray init':>8} {'cores':>5} "
        f"{'driver MB':>9} {'anon MB':>7} {'tree MB':>7} {'load':>5} {'rows':>7} {'tokens':>10}"
    )
    for (size, path), r in results.items():
        print(
            f"{size:>9} {path:<13} {r['examples'] / r['seconds']:>7.0f} {r['seconds']:>7.1f} "
            f"{r['startup']:>8.1f} {r['cpu'] / r['seconds']:>5.2f} {r['driver_mb']:>9.0f} "
            f"{r['anon_mb']:>7.0f} {r['tree_mb']:>7.0f} {r['load']:>5.1f} {r['rows']:>7} "
            f"{r['tokens']:>10}"
        )
    ok = True
    print()
    for size in sizes:
        ours, base = results.get((size, "ours")), results.get((size, "datasets"))
        if ours and base:
            ratio = base["seconds"] / ours["seconds"]
            ok &= ratio >= 1.0
            verdict = "PASS" if ratio >= 1.0 else "FAIL"
            print(f"throughput ours/datasets at {size}: {ratio:.2f}x (target >= 1.00) {verdict}")
        other = results.get((size, "datasets-np2"))
        if ours and other:
            ratio = other["seconds"] / ours["seconds"]
            print(f"throughput ours/datasets-np2 at {size}: {ratio:.2f}x (for information)")
    ours = [results[(s, "ours")] for s in sizes if (s, "ours") in results]
    if len(ours) >= 2:
        first, last = ours[0], ours[-1]
        growth = last["driver_mb"] / first["driver_mb"] - 1
        ok &= growth < 0.2
        verdict = "PASS" if growth < 0.2 else "FAIL"
        print(
            f"our driver peak RSS {sizes[0]} -> {sizes[-1]}: {first['driver_mb']:.0f} -> "
            f"{last['driver_mb']:.0f} MB, {growth:+.1%} (target < +20%) {verdict}"
        )
        anon = last["anon_mb"] / first["anon_mb"] - 1
        print(f"  of which private (anonymous) memory: {anon:+.1%} (for information)")
    return ok


def check_same(results: dict[tuple[int, str], dict[str, Any]], sizes: list[int]) -> None:
    """Every path must have seen the same examples and tokens (rows may differ: windows do)."""
    keys = ("examples", "tokens", "trained", "checksum")
    for size in sizes:
        seen = {p: tuple(r[k] for k in keys) for (s, p), r in results.items() if s == size}
        if len(set(seen.values())) > 1:
            raise SystemExit(f"paths disagree at {size} on {keys}: {seen}")
        if any(v[0] != size for v in seen.values()):
            raise SystemExit(f"expected {size} examples at {size}, got {seen}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    parser.add_argument("--workdir", type=Path, help="keep generated data here (reused)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per (size, path)")
    parser.add_argument("--child", choices=PATHS, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.data)
        return
    # Built once, outside every measurement, in a subprocess: this process stays small, since a
    # child's ru_maxrss starts from the RSS of the process it was forked from.
    build = "from raytune_llm.model.tiny import ensure_builtin_model as e; e('tiny-llama')"
    subprocess.run([sys.executable, "-c", build], check=True)
    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        root = (args.workdir or Path(tmp)).resolve()
        results: dict[tuple[int, str], dict[str, Any]] = {}
        for size in args.sizes:
            began = time.perf_counter()
            data_dir = generate(size, root)
            print(f"data {size}: {data_dir} ({time.perf_counter() - began:.0f} s)", flush=True)
            for path in args.paths:
                results[(size, path)] = r = measure(path, data_dir, args.timeout)
                print(f"  {path}: {json.dumps(r)}", flush=True)
        print(f"\n{os.cpu_count()} CPUs; cutoff_len {CUTOFF_LEN}, packing, template llama3\n")
        check_same(results, args.sizes)
        ok = report(results, args.sizes)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
