"""Continuous batching: rows that join and leave a running batch get what they would get alone."""

from __future__ import annotations

import threading
import time

import pytest

from raytune_llm.config import load_config
from raytune_llm.infer.backend import build_backend
from raytune_llm.model.generate.continuous import ContinuousBatcher
from raytune_llm.model.generate.sampling import SamplingParams


@pytest.fixture(scope="module")
def backend(tiny_llama_dir, tiny_lora_adapters):
    cfg = load_config(
        None, values={"model_name_or_path": str(tiny_llama_dir), "template": "llama3"}
    )
    return build_backend(cfg, adapters=tiny_lora_adapters)


class Collector:
    """Gathers each request's text; ``wait`` blocks until every one finished."""

    def __init__(self, n: int):
        self.texts: dict[int, str | BaseException] = {}
        self.parts: dict[int, list[str]] = {i: [] for i in range(n)}
        self.n, self.done = n, threading.Event()

    def emit(self, i: int):
        def emit(event):
            if isinstance(event, BaseException):
                self.texts[i] = event
            else:
                self.parts[i].append(event.delta)
                if event.finish_reason:
                    self.texts[i] = "".join(self.parts[i])
            if len(self.texts) == self.n:
                self.done.set()

        return emit

    def wait(self) -> dict[int, str | BaseException]:
        assert self.done.wait(120), f"only {len(self.texts)} of {self.n} finished"
        return self.texts


def test_joining_rows_match_single_runs_across_adapters(backend):
    words = "river stone cloud maple lantern copper violin meadow".split()
    models = (None, "alpha", "beta")  # in runs: a batch holds one adapter at a time
    jobs = []
    for i in range(16):
        prompt = backend.encode_chat([{"role": "user", "content": " ".join(words[: 2 + i % 6])}])
        params = SamplingParams(
            max_new_tokens=3 + (i * 5) % 14, do_sample=False, stop=("e",) if i % 4 == 0 else ()
        )
        jobs.append((models[i * 3 // 16], prompt, params))
    alone = [backend.generate([p], s, m)[0].text for m, p, s in jobs]
    prepared: list[str | None] = []
    batcher = ContinuousBatcher(backend, max_rows=4, prepare=prepared.append)
    got = Collector(len(jobs))
    for i, (model, prompt, params) in enumerate(jobs):
        batcher.submit(model, prompt, params, got.emit(i))
        time.sleep(0.005 * (i % 3))  # arrive while others are being decoded
    assert got.wait() == dict(enumerate(alone))
    assert max(batcher.sizes) > 1 and len(set(batcher.sizes)) > 1  # rows joined and left
    assert {"alpha", "beta", None} <= set(prepared)


def test_a_cancelled_row_stops_and_a_failed_adapter_fails_only_its_request(backend):
    prompt = backend.encode_text("one two three")
    long = SamplingParams(max_new_tokens=400, do_sample=False)

    def prepare(adapter):
        if adapter == "broken":
            raise RuntimeError("cannot load broken")

    batcher = ContinuousBatcher(backend, max_rows=2, prepare=prepare)
    first = threading.Event()
    cancel = batcher.submit(None, prompt, long, lambda event: first.set())
    assert first.wait(60)
    cancel()
    got = Collector(2)
    batcher.submit("broken", prompt, long, got.emit(0))
    batcher.submit(None, prompt, SamplingParams(max_new_tokens=3, do_sample=False), got.emit(1))
    texts = got.wait()
    assert isinstance(texts[0], RuntimeError) and isinstance(texts[1], str)


def test_adapters_load_and_unload_on_demand(backend, tiny_llama_dir, tiny_lora_adapters):
    """What a serve replica does as Serve's LRU asks: add, switch, remove, back to the base."""
    cfg = load_config(
        None, values={"model_name_or_path": str(tiny_llama_dir), "template": "llama3"}
    )
    fresh = build_backend(cfg)
    prompt = fresh.encode_text("one two three")
    greedy = SamplingParams(max_new_tokens=6, do_sample=False)
    want = {m: backend.generate([prompt], greedy, m)[0].text for m in (None, "alpha", "beta")}
    fresh.add_adapter("alpha", tiny_lora_adapters["alpha"])
    fresh.add_adapter("beta", tiny_lora_adapters["beta"])
    assert {m: fresh.generate([prompt], greedy, m)[0].text for m in want} == want
    fresh.remove_adapter("alpha")
    assert fresh.generate([prompt], greedy, "beta")[0].text == want["beta"]
    fresh.remove_adapter("beta")
    assert fresh.adapters == {} and fresh.generate([prompt], greedy)[0].text == want[None]
