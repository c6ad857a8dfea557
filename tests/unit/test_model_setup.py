"""Loading models from a config and choosing what trains: full, freeze, LoRA, QLoRA, adapters."""

from __future__ import annotations

import pytest
import torch

from raytune_llm.config import load_config
from raytune_llm.model.adapter import setup_finetuning, trainable_parameters
from raytune_llm.model.loader import load_model, load_tokenizer
from raytune_llm.utils.errors import UserError


def config(model_dir, *overrides):
    return load_config(None, [f"model_name_or_path={model_dir}", *overrides])


def trained_names(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_builtin_models_resolve_and_load(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYTUNE_LLM_CACHE", str(tmp_path))
    cfg = config("builtin:tiny-qwen2")
    tokenizer = load_tokenizer(cfg.model)
    model = load_model(cfg, tokenizer, for_training=False)
    assert model.config.model_type == "qwen2" and tokenizer.pad_token is not None
    assert any(tmp_path.rglob("model.safetensors"))


def test_unloadable_model_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="cannot load the tokenizer of model_name_or_path"):
        load_tokenizer(config(tmp_path / "nothing-here").model)


def test_lora_all_linear_trains_adapters_only(tiny_llama_dir):
    cfg = config(tiny_llama_dir, "lora_rank=4", "bf16=true", "additional_target=lm_head")
    model = setup_finetuning(load_model(cfg, for_training=True), cfg, for_training=True)
    names = trained_names(model)
    assert names and all("lora_" in n or "lm_head" in n for n in names)
    targets = {n.split(".lora_A")[0].rsplit(".", 1)[-1] for n in names if "lora_A" in n}
    assert targets == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert all(p.dtype == torch.float32 for p in model.parameters() if p.requires_grad)
    frozen = [p for n, p in model.named_parameters() if "q_proj.base_layer" in n]
    assert frozen[0].dtype == torch.bfloat16
    assert model.peft_config["default"].lora_alpha == 8
    assert model.base_model.model.is_activation_checkpointing


def test_lora_targets_are_checked(tiny_llama_dir):
    cfg = config(tiny_llama_dir, "lora_target=q_proj,v_proj", "use_rslora=true")
    model = setup_finetuning(load_model(cfg, for_training=True), cfg, for_training=True)
    assert {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trained_names(model)} == {
        "q_proj",
        "v_proj",
    }
    assert model.peft_config["default"].use_rslora
    bad = config(tiny_llama_dir, "lora_target=q_proj,qkv_proj")
    with pytest.raises(UserError, match="qkv_proj"):
        setup_finetuning(load_model(bad, for_training=True), bad, for_training=True)


def test_freeze_tuning(tiny_llama_dir):
    cfg = config(tiny_llama_dir, "finetuning_type=freeze", "freeze_trainable_layers=1")
    names = trained_names(
        setup_finetuning(load_model(cfg, for_training=True), cfg, for_training=True)
    )
    assert names and all(".layers.1." in n for n in names)
    cfg = config(
        tiny_llama_dir,
        "finetuning_type=freeze",
        "freeze_trainable_layers=-1",
        "freeze_trainable_modules=mlp",
        "freeze_extra_modules=embed_tokens",
    )
    names = trained_names(
        setup_finetuning(load_model(cfg, for_training=True), cfg, for_training=True)
    )
    assert {n for n in names if "layers" in n} == {
        f"model.layers.0.mlp.{m}.weight" for m in ("gate_proj", "up_proj", "down_proj")
    }
    assert "model.embed_tokens.weight" in names
    bad = config(tiny_llama_dir, "finetuning_type=freeze", "freeze_trainable_modules=attn")
    with pytest.raises(UserError, match=r"valid: all, .*self_attn"):
        setup_finetuning(load_model(bad, for_training=True), bad, for_training=True)


def test_full_trains_everything_in_fp32(tiny_llama_dir):
    cfg = config(tiny_llama_dir, "finetuning_type=full", "bf16=true")
    model = setup_finetuning(load_model(cfg, for_training=True), cfg, for_training=True)
    trainable, total = trainable_parameters(model)
    assert trainable == total
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_adapters_continue_or_merge(tiny_llama_dir, tmp_path):
    from peft import PeftModel

    cfg = config(tiny_llama_dir, "lora_rank=4")
    saved = []
    for i in range(2):
        torch.manual_seed(i)
        model = setup_finetuning(load_model(cfg, for_training=True), cfg, for_training=True)
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.data.normal_()  # a non-zero adapter changes the model
        model.save_pretrained(tmp_path / f"a{i}")
        saved.append(model)
    paths = ",".join(str(tmp_path / f"a{i}") for i in range(2))
    cont = config(tiny_llama_dir, f"adapter_name_or_path={paths}")
    model = setup_finetuning(load_model(cont, for_training=True), cont, for_training=True)
    assert isinstance(model, PeftModel)
    # The last adapter keeps training, from its saved weights.
    resumed = {n: p for n, p in model.named_parameters() if p.requires_grad}
    last = dict(saved[1].named_parameters())
    assert resumed and all(torch.equal(p, last[n]) for n, p in resumed.items())
    # The first one was merged into the base weights.
    base = load_model(cfg, for_training=False).model.layers[0].self_attn.q_proj.weight
    merged = model.base_model.model.model.layers[0].self_attn.q_proj.base_layer.weight
    assert not torch.equal(merged, base)


def test_qlora_4bit_on_cpu(tiny_llama_dir):
    import bitsandbytes as bnb

    cfg = config(tiny_llama_dir, "quantization_bit=4", "do_train=true", "dataset=d", "output_dir=o",
                 "use_reentrant_gc=false")  # fmt: skip
    model = setup_finetuning(load_model(cfg, for_training=True), cfg, for_training=True)
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    # gradient checkpointing, which QLoRA preparation turns on again, keeps use_reentrant_gc
    layer = model.base_model.model.model.layers[0]
    assert layer.gradient_checkpointing
    assert layer._gradient_checkpointing_func.keywords == {"use_reentrant": False}
    names = trained_names(model)
    assert names and all("lora_" in n for n in names)
    batch = torch.tensor([[1, 2, 3, 4, 5]])
    loss = model(input_ids=batch, labels=batch).loss
    loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if "lora_A" in n]
    assert all(g is not None for g in grads)
