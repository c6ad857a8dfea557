"""torch_compile: regional compilation of decoder layers (raytune_llm.model.compile).

.venv/bin/python -m pytest tests/unit/test_compile.py
"""

from __future__ import annotations

import pytest
import torch
import torch._dynamo
from transformers import AutoModelForCausalLM

from raytune_llm.data.attention import padding_free_batch
from raytune_llm.model.compile import check_compiler, compile_layers
from raytune_llm.model.varlen import VARLEN_SDPA, use_varlen_sdpa
from raytune_llm.utils.errors import UserError

# batches of one to seven examples, each split differently and of another total length
SPLITS = [
    [7 + i, 12 - i, 3 + 2 * i, 9, 4, 6, 1][:n] for i, n in enumerate([1, 2, 3, 1, 2, 3, 4, 5, 6, 7])
]


def _batch(lengths: list[int], seed: int) -> dict:
    """A padding-free row of random examples of these lengths, as the collate builds it."""
    gen = torch.Generator().manual_seed(seed)
    examples = [{"input_ids": torch.randint(0, 2048, (n,), generator=gen).tolist()}
                for n in lengths]  # fmt: skip
    return padding_free_batch(examples, attn_implementation=VARLEN_SDPA)


def _varlen_model(model_dir):
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.config.use_cache = False
    use_varlen_sdpa(model)
    return model.train()


def test_compiled_layers_compute_what_eager_layers_do(tiny_llama_dir):
    eager, compiled = _varlen_model(tiny_llama_dir), _varlen_model(tiny_llama_dir)
    assert compile_layers(compiled) == 4 * 2  # attention, MLP, two norms; two layers
    torch._dynamo.reset()
    for seed, lengths in enumerate(SPLITS[:3]):
        batch = _batch(lengths, seed)
        losses = []
        for model in (eager, compiled):
            model.zero_grad()
            loss = model(**dict(batch)).loss
            loss.backward()
            losses.append(loss.item())
        assert losses[1] == pytest.approx(losses[0], rel=1e-5)
        grads = [dict(m.named_parameters()) for m in (eager, compiled)]
        for name, param in grads[0].items():
            assert torch.allclose(grads[1][name].grad, param.grad, rtol=1e-4, atol=1e-6), name


def test_a_new_split_of_examples_does_not_recompile(tiny_llama_dir):
    """Per-example attention runs eagerly between the compiled parts: the compiled code does not
    depend on how a batch's row splits into examples, so new splits reuse it."""
    model = _varlen_model(tiny_llama_dir)
    compile_layers(model)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    for seed, lengths in enumerate(SPLITS):
        model(**_batch(lengths, seed)).loss.backward()
        # by now compiled for one example (no mask) and several, at a first and dynamic lengths
        if seed == 5:
            graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    assert graphs > 0
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs


def test_a_compiled_model_copies_with_its_own_weights(tiny_llama_dir):
    """A deep copy (a reference model, an EMA copy) runs its own weights, not the original's."""
    import copy

    model = _varlen_model(tiny_llama_dir)
    keys = list(model.state_dict())
    compile_layers(model)
    assert list(model.state_dict()) == keys
    twin = copy.deepcopy(model)
    with torch.no_grad():
        for param in twin.model.layers[0].mlp.parameters():
            param.zero_()
        x = torch.randn(1, 5, model.config.hidden_size)
        assert not torch.equal(twin.model.layers[0].mlp(x), model.model.layers[0].mlp(x))
        assert torch.count_nonzero(twin.model.layers[0].mlp(x)) == 0


def test_a_model_without_decoder_layers_is_refused():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    with pytest.raises(UserError, match="found no decoder layer to compile"):
        compile_layers(model)


def test_a_missing_cpp_compiler_is_a_clear_error():
    from torch._inductor import config
    from torch._inductor.cpp_builder import cpp_compiler_search

    cpp_compiler_search.cache_clear()
    try:
        with (
            config.patch({"cpp.cxx": ("no-such-compiler-raytune",)}),
            pytest.raises(UserError, match=r"needs a C\+\+ compiler.*torch_compile: false"),
        ):
            check_compiler()
    finally:
        cpp_compiler_search.cache_clear()
    check_compiler()  # the real one is back


def test_qlora_layers_compile(tiny_llama_dir):
    """4-bit bitsandbytes layers (QLoRA on CPU) run inside the compiled parts, same loss."""
    from raytune_llm.config import load_config
    from raytune_llm.model.adapter import setup_finetuning
    from raytune_llm.model.loader import load_model

    cfg = load_config(values={
        "model_name_or_path": str(tiny_llama_dir), "quantization_bit": 4, "do_train": True,
        "dataset": "d", "output_dir": "o", "finetuning_type": "lora", "template": "llama3",
    })  # fmt: skip
    eager, compiled = (setup_finetuning(load_model(cfg, for_training=True), cfg, for_training=True)
                       for _ in range(2))  # fmt: skip
    lora = {k: v for k, v in eager.state_dict().items() if "lora_" in k}
    assert not compiled.load_state_dict(lora, strict=False).unexpected_keys  # same LoRA weights
    assert compile_layers(compiled) == 4 * 2
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    batch = torch.tensor([[5, 17, 99, 3, 42, 8, 1]])
    losses = [m.train()(input_ids=batch, labels=batch).loss for m in (eager, compiled)]
    for loss in losses:
        loss.backward()
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0
    assert losses[1].item() == pytest.approx(losses[0].item(), rel=1e-5)
    grads = [{n: p.grad for n, p in m.named_parameters() if p.grad is not None}
             for m in (eager, compiled)]  # fmt: skip
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name, grad in grads[0].items():
        assert torch.allclose(grads[1][name], grad, rtol=1e-4, atol=1e-6), name
