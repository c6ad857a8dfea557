"""`raytune-llm serve` of a reward model (stage: rm) on real Ray Serve: LLaMA-Factory's
POST /v1/score/evaluation scores texts exactly as the model scores them directly, generation
routes are refused with a clear 400, and bad requests leave the server up."""

from __future__ import annotations

import pytest
import requests
import torch
from helpers import free_port

from raytune_llm.config import load_config

pytestmark = pytest.mark.slow
TEXTS = ["Sort the letters: c b a\nanswer a b c", "hello there", "x"]


@pytest.fixture(scope="module")
def reward_adapter(tiny_llama_dir, tmp_path_factory):
    """A LoRA reward model: an adapter with non-zero weights and a value head beside it."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from raytune_llm.model.value_head import ValueHeadLM

    torch.manual_seed(0)
    lm = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_llama_dir),
                        LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))  # fmt: skip
    model = ValueHeadLM(lm)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name or "v_head" in name:
                p.normal_(0, 0.5)
    out = tmp_path_factory.mktemp("rm") / "adapter"
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def cfg(tiny_llama_dir, reward_adapter):
    return load_config(None, values={
        "model_name_or_path": str(tiny_llama_dir), "adapter_name_or_path": str(reward_adapter),
        "stage": "rm", "template": "llama3",
        "serve": {"port": free_port(), "model_name": "rm", "num_cpus": 0.5},
    })  # fmt: skip


@pytest.fixture(scope="module")
def url(ray_local, cfg):
    from ray import serve

    from raytune_llm.serve.app import start
    from raytune_llm.serve.settings import serve_args

    yield start(cfg, serve_args(cfg))
    serve.shutdown()


def test_scores_equal_the_model_scored_directly(url, cfg):
    from raytune_llm.model.value_head import load_reward_model, score_texts

    reply = requests.post(f"{url}/score/evaluation", json={"model": "rm", "messages": TEXTS},
                          timeout=60)  # fmt: skip
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["object"] == "score.evaluation" and body["model"] == "rm"
    model, tokenizer = load_reward_model(cfg)
    want = score_texts(model, tokenizer, TEXTS)
    assert body["scores"] == pytest.approx(want, rel=1e-5, abs=1e-6)
    assert len(set(round(s, 4) for s in want)) == 3  # real, different scores


def test_generation_and_bad_requests_get_clear_errors(url):
    chat = requests.post(
        f"{url}/chat/completions",
        timeout=30,
        json={"model": "rm", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert chat.status_code == 400 and "/v1/score/evaluation" in chat.json()["error"]["message"]
    empty = requests.post(f"{url}/score/evaluation", json={"model": "rm", "messages": []},
                          timeout=30)  # fmt: skip
    assert empty.status_code == 400 and "messages" in empty.text
    wrong = requests.post(f"{url}/score/evaluation", json={"model": "nope", "messages": ["a"]},
                          timeout=30)  # fmt: skip
    assert wrong.status_code == 404
    again = requests.post(f"{url}/score/evaluation", json={"model": "rm", "messages": ["a"]},
                          timeout=30)  # fmt: skip
    assert again.status_code == 200  # still up


def test_serving_a_model_without_value_head_is_refused_before_ray(tiny_llama_dir, capsys):
    from raytune_llm.cli.main import main

    code = main(["serve", "/dev/null", f"model_name_or_path={tiny_llama_dir}", "stage=rm"])
    assert code == 2
    assert "has no value_head.safetensors" in capsys.readouterr().err
