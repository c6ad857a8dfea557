"""The fused LoRA forward computes what PEFT's does: outputs, gradients, dropout, saving, merging.

.venv/bin/python -m pytest tests/unit/test_fused_lora.py
"""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora.layer import Linear as LoraLinear
from transformers import AutoModelForCausalLM

from raytune_llm.model.fused_lora import FusedLoraLinear, fuse_lora_linears

TOL = dict(rtol=1e-5, atol=1e-6)


def lora_model(model_dir, **lora):
    """The tiny Llama with LoRA on every linear layer and a non-zero B (PEFT starts B at 0)."""
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    settings = {"r": 4, "lora_alpha": 8, "target_modules": "all-linear"} | lora
    model = get_peft_model(base, LoraConfig(**settings))
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.05)
    return model


def pair(model_dir, **lora):
    """(PEFT's model, the same model fused): equal parameters, separate modules."""
    plain = lora_model(model_dir, **lora)
    fused = copy.deepcopy(plain)
    return plain, fused, fuse_lora_linears(fused)


def batch(seed=1):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 2048, (2, 11), generator=gen)
    return {"input_ids": ids, "labels": ids}


def loss_and_grads(model, seed=0):
    torch.manual_seed(seed)  # the same dropout masks in both models
    model.zero_grad()
    loss = model(**batch()).loss
    loss.backward()
    return loss, {n: p.grad for n, p in model.named_parameters() if p.requires_grad}


def test_every_lora_linear_is_fused(tiny_llama_dir):
    plain, fused, count = pair(tiny_llama_dir)
    layers = [m for m in plain.modules() if isinstance(m, LoraLinear)]
    assert count == len(layers) > 0
    assert all(type(m) is FusedLoraLinear for m in fused.modules() if isinstance(m, LoraLinear))
    assert fuse_lora_linears(fused) == 0  # already fused


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_loss_and_gradients_equal_peft(tiny_llama_dir, dropout):
    plain, fused, _ = pair(tiny_llama_dir, lora_dropout=dropout)
    plain.train(), fused.train()
    loss_p, grads_p = loss_and_grads(plain)
    loss_f, grads_f = loss_and_grads(fused)
    torch.testing.assert_close(loss_f, loss_p, **TOL)
    assert grads_f.keys() == grads_p.keys() and grads_p
    for name in grads_p:
        torch.testing.assert_close(grads_f[name], grads_p[name], **TOL, msg=name)


def test_the_update_is_scaled(tiny_llama_dir):
    """Dropping the scaling (alpha / r = 2 here) changes the output: the comparison can fail."""
    plain, fused, _ = pair(tiny_llama_dir)
    layer = next(m for m in fused.modules() if isinstance(m, FusedLoraLinear))
    x = torch.randn(3, layer.in_features)
    with torch.no_grad():
        expected = next(m for m in plain.modules() if isinstance(m, LoraLinear))(x)
        torch.testing.assert_close(layer(x), expected, **TOL)
        layer.scaling["default"] = 1.0
        assert not torch.allclose(layer(x), expected, **TOL)


def test_peft_forward_where_the_fused_one_does_not_apply(tiny_llama_dir):
    """Disabled adapters, DoRA and a LoRA bias run PEFT's forward: same outputs as PEFT."""
    plain, fused, _ = pair(tiny_llama_dir)
    plain.eval(), fused.eval()
    with torch.no_grad(), plain.disable_adapter(), fused.disable_adapter():
        torch.testing.assert_close(fused(**batch()).logits, plain(**batch()).logits, **TOL)
    for variant in ({"use_dora": True}, {"lora_bias": True}):
        plain, fused, count = pair(tiny_llama_dir, **variant)
        assert count > 0
        loss_p, grads_p = loss_and_grads(plain)
        loss_f, grads_f = loss_and_grads(fused)
        torch.testing.assert_close(loss_f, loss_p, **TOL)
        for name in grads_p:
            torch.testing.assert_close(grads_f[name], grads_p[name], **TOL, msg=name)


def test_saved_and_merged_as_peft_does(tiny_llama_dir, tmp_path):
    fused = pair(tiny_llama_dir)[1].eval()
    with torch.no_grad():
        logits = fused(**batch()).logits
    fused.save_pretrained(tmp_path / "adapter")
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)
    loaded = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    merged = fused.merge_and_unload().eval()
    assert not any(isinstance(m, LoraLinear) for m in merged.modules())
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch()).logits, logits, **TOL)
        torch.testing.assert_close(merged(**batch()).logits, logits, rtol=1e-4, atol=1e-5)


def test_under_bf16_autocast_as_training_runs_it(tiny_llama_dir):
    """bf16 training runs an fp32 model under autocast: the fused path there matches PEFT's."""
    plain, fused, _ = pair(tiny_llama_dir)
    results = []
    for model in (plain, fused):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            results.append(loss_and_grads(model))
    (loss_p, grads_p), (loss_f, grads_f) = results
    torch.testing.assert_close(loss_f, loss_p, rtol=1e-2, atol=1e-2)
    for name in grads_p:
        assert grads_f[name].dtype == grads_p[name].dtype == torch.float32
        cosine = torch.nn.functional.cosine_similarity(
            grads_f[name].flatten(), grads_p[name].flatten(), dim=0
        )
        assert cosine > 0.99, name
