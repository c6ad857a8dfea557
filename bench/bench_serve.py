"""Serving benchmark: the same bounded load with request batching on and off, in one run.

    .venv/bin/python bench/bench_serve.py [--requests 48] [--max-tokens 32] [--model bench-30m]

What it measures: the application of ``raytune-llm serve`` (transformers backend) is deployed
twice on one local Ray instance (``ray.init(num_cpus=2)``), each model replica with 1 CPU:
``batched`` (``serve.batching: true``: continuous batching, ``max_batch_size: 16``,
``batch_wait_timeout_s: 0.01``) and ``unbatched`` (``serve.batching: false``: one request
decoded at a time); the two are deployed and measured one after the other. For each, at
concurrency 1, 4 and 16, ``--requests`` non-streaming POST /v1/completions requests (distinct
prompts of 9-10 tokens, greedy, ``max_tokens`` 32) are sent over loopback by a thread pool,
after a warm-up of 4 requests. Reported per row: requests/s, generated tokens/s (the usage's
completion_tokens summed over the wall time of the round), p50 and p95 latency, non-200
responses, the mean rows per decoding step of the batched replica, and the 1-minute load
average after the round (the machine is shared: compare rows measured at similar load).

Model: ``bench-30m`` is the built-in tiny Llama widened to ~30M parameters
(``BENCH_30M_OVERRIDES``: width 512, 8 layers), random weights; ``tiny`` is the 2-layer,
width-64 test model (where Python overhead, not the forward pass, dominates).

Targets: at concurrency 16, batched gives >= 4x the generated tokens/s of unbatched; at
concurrency 4, batched p95 latency <= unbatched p95 latency.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_var, "1")

CONCURRENCY = (1, 4, 16)
WORDS = "river stone cloud maple lantern copper violin meadow harbor falcon".split()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_model(kind: str, root: Path) -> Path:
    from raytune_llm.model.tiny import BENCH_30M_OVERRIDES, build_tiny_model

    overrides = BENCH_30M_OVERRIDES if kind == "bench-30m" else {}
    return build_tiny_model(root / kind, "tiny-llama", **overrides)


def deploy(model_dir: Path, port: int, batching: bool, wait: float) -> str:
    """Deploy one copy of the app under /batched or /unbatched; its base URL."""
    from ray import serve

    from raytune_llm.config import load_config
    from raytune_llm.serve.app import build_application
    from raytune_llm.serve.settings import serve_args

    name = "batched" if batching else "unbatched"
    serve_section = {
        "port": port,
        "model_name": "bench",
        "num_cpus": 1,
        "batching": batching,
        "max_batch_size": 16,
        "batch_wait_timeout_s": wait,
        "route_prefix": f"/{name}",
    }
    values = {"model_name_or_path": str(model_dir), "template": "llama3", "serve": serve_section}
    cfg = load_config(None, values=values)
    args = serve_args(cfg)
    serve.run(build_application(cfg, args), name=name, route_prefix=args.route_prefix)
    return f"http://127.0.0.1:{port}/{name}/v1"


def one(url: str, i: int, max_tokens: int) -> tuple[int, float, int]:
    """(status, latency s, completion tokens) of one request."""
    prompt = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(8)) + f" {i}"
    body = {"model": "bench", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0}
    start = time.perf_counter()
    response = requests.post(f"{url}/completions", json=body, timeout=300)
    latency = time.perf_counter() - start
    tokens = response.json()["usage"]["completion_tokens"] if response.ok else 0
    return response.status_code, latency, tokens


def round_(url: str, concurrency: int, n: int, max_tokens: int) -> dict[str, float]:
    """One bounded round: n requests at the given concurrency; its figures."""
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda i: one(url, 10_000 + i, max_tokens), range(4)))  # warm-up
        start = time.perf_counter()
        results = list(pool.map(lambda i: one(url, i, max_tokens), range(n)))
        wall = time.perf_counter() - start
    latencies = sorted(r[1] for r in results)
    return {
        "rps": n / wall,
        "tps": sum(r[2] for r in results) / wall,
        "p50": statistics.median(latencies),
        "p95": latencies[min(n - 1, round(0.95 * (n - 1)))],
        "errors": sum(r[0] != 200 for r in results),
        "load": os.getloadavg()[0],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=48, help="requests per round (48)")
    parser.add_argument("--max-tokens", type=int, default=32, help="max_tokens (32)")
    parser.add_argument("--batch-wait", type=float, default=0.01, help="batch_wait_timeout_s")
    parser.add_argument("--concurrency", type=int, nargs="+", default=list(CONCURRENCY))
    parser.add_argument("--only-batched", action="store_true", help="skip the unbatched runs")
    parser.add_argument("--model", choices=["bench-30m", "tiny"], default="bench-30m")
    opts = parser.parse_args()
    if not 1 <= opts.requests <= 300:
        parser.error("--requests must be between 1 and 300 (a bounded load)")

    import ray
    from ray import serve

    ray.init(num_cpus=2, address="local", logging_level="ERROR", log_to_driver=False)
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    figures: dict[tuple[str, int], dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_model(opts.model, Path(tmp))
        for batching in (True,) if opts.only_batched else (True, False):
            url = deploy(model_dir, port, batching, opts.batch_wait)
            name = "batched" if batching else "unbatched"
            for concurrency in opts.concurrency:
                handle = serve.get_deployment_handle("ModelServer", name)
                handle.stats.remote(True).result()
                f = round_(url, concurrency, opts.requests, opts.max_tokens)
                f["rows"] = handle.stats.remote().result()["mean_batch"]
                figures[name, concurrency] = f
                print(f"  {name:<9} c={concurrency:<2} {f['tps']:7.1f} tok/s", flush=True)
            serve.delete(name)
    serve.shutdown()
    ray.shutdown()

    print(f"\nmodel {opts.model}, {opts.requests} requests per round, max_tokens {opts.max_tokens}")
    print(
        "| batching | concurrency | requests/s | generated tokens/s | p50 s | p95 s | non-200 "
        "| rows/step | load 1m |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for (name, concurrency), f in figures.items():
        print(
            f"| {name} | {concurrency} | {f['rps']:.2f} | {f['tps']:.1f} | {f['p50']:.2f} "
            f"| {f['p95']:.2f} | {f['errors']} | {f['rows']:.1f} | {f['load']:.1f} |"
        )
    speedup = figures["batched", 16]["tps"] / figures["unbatched", 16]["tps"]
    p95_on, p95_off = figures["batched", 4]["p95"], figures["unbatched", 4]["p95"]
    errors = sum(f["errors"] for f in figures.values())
    print(
        f"\nbatched/unbatched generated tokens/s at concurrency 16: {speedup:.1f}x "
        f"(target >= 4x): {'PASS' if speedup >= 4 else 'MISS'}"
    )
    print(
        f"p95 at concurrency 4: batched {p95_on:.2f} s, unbatched {p95_off:.2f} s "
        f"(target batched <= unbatched): {'PASS' if p95_on <= p95_off else 'MISS'}"
    )
    print(f"non-200 responses: {errors}")
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
