"""The transformers backend on the tiny model with two LoRA adapters made directly with peft."""

from __future__ import annotations

import pytest

from raytune_llm.config import load_config
from raytune_llm.infer.backend import UnknownModelError, adapter_names, build_backend
from raytune_llm.model.generate.decode import ContextLengthError
from raytune_llm.model.generate.sampling import SamplingParams
from raytune_llm.utils.errors import UserError

GREEDY = SamplingParams(max_new_tokens=10, do_sample=False)


@pytest.fixture(scope="module")
def adapters(tiny_lora_adapters):
    return tiny_lora_adapters


@pytest.fixture(scope="module")
def backend(tiny_llama_dir, adapters):
    cfg = load_config(
        None, values={"model_name_or_path": str(tiny_llama_dir), "template": "llama3"}
    )
    return build_backend(cfg, adapters=adapters)


@pytest.fixture(scope="module")
def prompt(backend):
    return backend.encode_chat([{"role": "user", "content": "Count the letters: a b c"}])


def test_models_are_the_base_then_the_adapters(backend):
    assert backend.models() == ["tiny-llama", "alpha", "beta"]
    assert adapter_names(["/a/x", "/b/x/", "/c/y"]) == {"x": "/a/x", "x-2": "/b/x/", "y": "/c/y"}


def test_adapters_answer_differently_and_base_is_untouched(backend, prompt):
    answers = {m: backend.generate([prompt], GREEDY, m)[0].text for m in backend.models()}
    assert len(set(answers.values())) == 3
    assert backend.generate([prompt], GREEDY, None)[0].text == answers["tiny-llama"]


def test_a_batch_gives_each_row_what_it_would_get_alone(backend, prompt):
    short = backend.encode_chat([{"role": "user", "content": "hi"}])
    rows = [prompt, short, prompt]
    params = [GREEDY, GREEDY.with_overrides(max_new_tokens=3), GREEDY.with_overrides(stop=["x"])]
    together = backend.generate(rows, params, "alpha")
    alone = [backend.generate([p], s, "alpha")[0] for p, s in zip(rows, params, strict=True)]
    assert [c.text for c in together] == [c.text for c in alone]
    assert together[1].completion_tokens == 3 and together[1].finish_reason == "length"
    assert together[0].prompt_tokens == len(prompt)


def test_stream_pieces_add_up_to_the_answer(backend, prompt):
    events = list(backend.stream(prompt, GREEDY, "beta"))
    assert "".join(e.delta for e in events) == backend.generate([prompt], GREEDY, "beta")[0].text
    assert events[-1].finish_reason in ("stop", "length") and events[-1].tokens <= 10
    assert all(e.finish_reason is None for e in events[:-1])


def test_stop_strings_cut_the_answer(backend, prompt):
    full = backend.generate([prompt], GREEDY, "alpha")[0].text
    word = full.strip()[:2]
    cut = backend.generate([prompt], GREEDY.with_overrides(stop=[word]), "alpha")[0]
    assert cut.finish_reason == "stop" and word not in cut.text
    assert full.startswith(cut.text)


def test_sampling_is_reproducible_with_a_seed(backend, prompt):
    sample = SamplingParams(max_new_tokens=8, temperature=1.0, top_p=0.9, top_k=20, seed=7)
    first = backend.generate([prompt], sample)[0].text
    assert backend.generate([prompt], sample)[0].text == first
    # top_k 1 is greedy whatever the temperature
    one = sample.with_overrides(top_k=1, seed=3)
    assert (
        backend.generate([prompt], one)[0].text
        == backend.generate([prompt], GREEDY.with_overrides(max_new_tokens=8))[0].text
    )


def test_bad_requests_are_named(backend, prompt):
    with pytest.raises(UnknownModelError, match="available: tiny-llama, alpha, beta"):
        backend.generate([prompt], GREEDY, "gamma")
    with pytest.raises(ContextLengthError, match="context is 2048 tokens"):
        backend.generate([[1] * 2048], GREEDY)
    capped = backend.check_prompt([1] * 2040, GREEDY.with_overrides(max_new_tokens=100))
    assert capped.max_new_tokens == 8


def test_vllm_is_refused_plainly_where_it_is_missing(tiny_llama_dir):
    cfg = load_config(None, values={"model_name_or_path": str(tiny_llama_dir),
                                    "infer_backend": "vllm"})  # fmt: skip
    with pytest.raises(
        UserError, match=r"vLLM is not installed; pip install 'raytune-llm\[vllm\]'"
    ):
        build_backend(cfg)


def test_config_adapters_are_merged_as_llamafactory_does(tiny_llama_dir, adapters, backend, prompt):
    cfg = load_config(None, values={"model_name_or_path": str(tiny_llama_dir), "template": "llama3",
                                    "finetuning_type": "lora",
                                    "adapter_name_or_path": adapters["alpha"]})  # fmt: skip
    merged = build_backend(cfg)
    assert merged.models() == ["tiny-llama"]
    expected = backend.generate([prompt], GREEDY, "alpha")[0].text
    assert merged.generate([prompt], GREEDY)[0].text == expected
