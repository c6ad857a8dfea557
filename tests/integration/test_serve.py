"""`raytune-llm serve`'s application on real Ray Serve: the tiny model with two LoRA adapters,
talked to with the official openai client (and plain requests for malformed input)."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from helpers import free_port

from raytune_llm.config import load_config
from raytune_llm.serve.settings import serve_args

pytestmark = pytest.mark.slow
KEY = "test-key-123"


@pytest.fixture(scope="module")
def adapters(tiny_lora_adapters):
    return tiny_lora_adapters


@pytest.fixture(scope="module")
def server(ray_local, tiny_llama_dir, adapters):
    """The app on a free loopback port: base 'tiny', adapters alpha and beta, an API key; a
    replica holds one adapter at a time, so switching adapters loads and evicts."""
    from ray import serve

    from raytune_llm.serve.app import start

    port = free_port()
    cfg = load_config(
        None,
        values={
            "model_name_or_path": str(tiny_llama_dir),
            "template": "llama3",
            "max_new_tokens": 16,
            "serve": {
                "port": port,
                "route_prefix": "/api",  # routes are /api/v1/..., /api/health
                "model_name": "tiny",
                "adapters": adapters,
                "api_key": KEY,
                "num_cpus": 1,
                "max_batch_size": 8,
                "batch_wait_timeout_s": 0.02,
                "max_adapters_per_replica": 1,  # alpha and beta take turns: eviction
            },
        },
    )
    url = start(cfg, serve_args(cfg))
    yield url
    serve.shutdown()


@pytest.fixture(scope="module")
def client(server):
    from openai import OpenAI

    return OpenAI(base_url=server, api_key=KEY, max_retries=0, timeout=60)


def _chat(client, model: str, text: str = "Count the letters: a b c", **kw):
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": text}], max_tokens=8, temperature=0, **kw
    )


def test_models_lists_the_base_then_the_adapters(client):
    assert [m.id for m in client.models.list().data] == ["tiny", "alpha", "beta"]


def test_chat_answers_differ_by_adapter_and_are_greedy_stable(client):
    answers = {m: _chat(client, m) for m in ("tiny", "alpha", "beta")}
    texts = {m: a.choices[0].message.content for m, a in answers.items()}
    assert len(set(texts.values())) == 3, texts
    first = answers["alpha"]
    assert first.object == "chat.completion" and first.model == "alpha"
    assert first.usage.completion_tokens <= 8 and first.usage.prompt_tokens > 0
    assert first.choices[0].finish_reason in ("stop", "length")
    assert _chat(client, "alpha").choices[0].message.content == texts["alpha"]


def test_streamed_chat_adds_up_to_the_whole_answer(client):
    whole = _chat(client, "beta").choices[0].message.content
    chunks = list(_chat(client, "beta", stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")


def test_text_completions(client):
    out = client.completions.create(
        model="tiny", prompt="one two three", max_tokens=5, temperature=0
    )
    assert out.object == "text_completion" and out.usage.completion_tokens <= 5
    streamed = client.completions.create(
        model="tiny", prompt="one two three", max_tokens=5, temperature=0, stream=True
    )
    assert "".join(c.choices[0].text for c in streamed) == out.choices[0].text


def _post(server: str, path: str, body, key: str | None = KEY) -> requests.Response:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = body if isinstance(body, str) else json.dumps(body)
    return requests.post(f"{server}{path}", data=data, headers=headers, timeout=60)


def test_bad_requests_get_http_errors_in_openai_form(server, tiny_llama_dir):
    ok = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    long_prompt = " ".join(["word"] * 3000)
    cases = [
        (_post(server, "/chat/completions", '{"model": "tiny", "messages": ['), 400),
        (_post(server, "/chat/completions", {"model": "tiny"}), 400),
        (_post(server, "/chat/completions", {**ok, "n": 2}), 400),
        (_post(server, "/chat/completions", {**ok, "model": "gamma"}), 404),
        (_post(server, "/completions", {"model": "tiny", "prompt": long_prompt}), 400),
        (_post(server, "/chat/completions", ok, key=None), 401),
        (_post(server, "/chat/completions", ok, key="wrong"), 401),
        (requests.get(f"{server}/models", timeout=30), 401),
        (requests.get(f"{server}/models/health", timeout=30), 401),
    ]
    for response, status in cases:
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert "context" in cases[4][0].json()["error"]["message"]
    assert requests.get(server.removesuffix("/v1") + "/health", timeout=30).status_code == 200
    assert _post(server, "/chat/completions", ok).status_code == 200  # still up


def test_a_stream_dropped_midway_frees_the_server(server):
    body = {"model": "alpha", "max_tokens": 200, "stream": True,
            "messages": [{"role": "user", "content": "go on and on"}]}  # fmt: skip
    headers = {"Authorization": f"Bearer {KEY}"}
    with requests.post(f"{server}/chat/completions", json=body, headers=headers, stream=True,
                       timeout=60) as response:  # fmt: skip
        assert response.status_code == 200
        assert next(response.iter_lines()).startswith(b"data: ")
    start = time.monotonic()
    assert _post(server, "/chat/completions", {**body, "stream": False, "max_tokens": 2}).ok
    assert time.monotonic() - start < 30


def test_openai_client_sees_the_errors_as_its_exceptions(client):
    import openai

    with pytest.raises(openai.NotFoundError):
        _chat(client, "gamma")
    with pytest.raises(openai.BadRequestError):
        _chat(client, "tiny", n=2)


def test_bounded_load_has_no_server_errors(server):
    """200 requests at concurrency 16 over loopback, a mix of models and streaming; all 200."""
    models = ["tiny", "alpha", "beta"]

    def one(i: int) -> int:
        body = {"model": models[i % 3], "max_tokens": 4, "temperature": 0,
                "messages": [{"role": "user", "content": f"request {i}"}]}  # fmt: skip
        if i % 5 == 0:
            body["stream"] = True
        response = _post(server, "/chat/completions", body)
        if body.get("stream"):
            assert response.text.rstrip().endswith("data: [DONE]")
        return response.status_code

    start = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(one, range(200)))
    assert codes.count(200) == 200, {c: codes.count(c) for c in set(codes)}
    assert time.monotonic() - start < 120
    # A burst for one model: mixed models make a one-adapter replica switch and decode alone.
    burst = {"model": "alpha", "max_tokens": 8, "temperature": 0,
             "messages": [{"role": "user", "content": "request burst"}]}  # fmt: skip
    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(lambda _: _post(server, "/chat/completions", burst).status_code,
                              range(32)))  # fmt: skip
    assert codes.count(200) == 32, {c: codes.count(c) for c in set(codes)}
    from ray import serve

    stats = serve.get_deployment_handle("ModelServer", "llm").stats.remote().result()
    assert stats["largest_batch"] > 1, stats  # concurrent requests were decoded together
    assert len(stats["adapters"]) <= 1, stats  # max_adapters_per_replica held under load
