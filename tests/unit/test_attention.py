"""Packed / padding-free batches give the logits and loss of running each example alone.

Runs the tiny Llama and Qwen2 models with sdpa and eager attention on CPU (transformers 5.24), and
documents why the block mask is needed: position ids alone let examples attend to each other.
"""

import pytest
import torch
from transformers import AutoModelForCausalLM, DataCollatorWithFlattening

from raytune_llm.data.attention import (
    IGNORE_INDEX,
    block_causal_mask,
    packed_batch,
    padded_batch,
    padding_free_batch,
)
from raytune_llm.data.packing import pack_examples
from raytune_llm.model.varlen import VARLEN_SDPA, _segment_lengths, register, use_varlen_sdpa

CASES = [(family, impl) for family in ("llama", "qwen2") for impl in ("sdpa", "eager")]
LENGTHS = [7, 12, 3, 9]
TOL = 1e-5


@pytest.fixture(scope="module")
def load_model(tiny_llama_dir, tiny_qwen2_dir):
    """load_model(family, impl): a tiny fp32 model in eval mode, loaded once per module."""
    dirs = {"llama": tiny_llama_dir, "qwen2": tiny_qwen2_dir}
    cache = {}

    def load(family: str, impl: str):
        if impl == VARLEN_SDPA:
            register()
        if (family, impl) not in cache:
            model = AutoModelForCausalLM.from_pretrained(
                dirs[family], attn_implementation=impl, dtype=torch.float32
            )
            cache[family, impl] = model.eval()
        return cache[family, impl]

    return load


def make_examples(lengths=LENGTHS, seed=0, vocab=2048) -> list[dict[str, list[int]]]:
    """Examples with random tokens whose first third (the "prompt") is masked."""
    gen = torch.Generator().manual_seed(seed)
    examples = []
    for n in lengths:
        ids = torch.randint(0, vocab, (n,), generator=gen).tolist()
        prompt = n // 3
        examples.append({"input_ids": ids, "labels": [IGNORE_INDEX] * prompt + ids[prompt:]})
    return examples


@torch.no_grad()
def separate_logits(model, examples) -> list[torch.Tensor]:
    return [model(input_ids=torch.tensor([e["input_ids"]])).logits[0] for e in examples]


@torch.no_grad()
def max_diff_per_example(logits: torch.Tensor, reference: list[torch.Tensor]) -> list[float]:
    """Max |difference| of each example's slice of a concatenated row against its lone run."""
    out, start = [], 0
    for ref in reference:
        out.append((logits[start : start + len(ref)] - ref).abs().max().item())
        start += len(ref)
    return out


@pytest.mark.parametrize(("family", "impl"), CASES)
def test_padding_free_logits_equal_separate_runs(load_model, family, impl):
    model = load_model(family, impl)
    examples = make_examples()
    batch = padding_free_batch(examples, attn_implementation=impl)
    assert batch["input_ids"].shape == (1, sum(LENGTHS))
    assert batch["attention_mask"].shape == (1, 1, sum(LENGTHS), sum(LENGTHS))
    with torch.no_grad():  # the varlen kwargs ride along: sdpa and eager ignore them
        logits = model(**batch).logits[0]
    diffs = max_diff_per_example(logits, separate_logits(model, examples))
    assert max(diffs) < TOL, diffs


@pytest.mark.parametrize(("family", "impl"), CASES)
def test_padding_free_loss_equals_mean_token_loss_of_separate_and_padded_runs(
    load_model, family, impl
):
    model = load_model(family, impl)
    examples = make_examples()
    with torch.no_grad():
        free = model(**padding_free_batch(examples, attn_implementation=impl)).loss
        padded = model(**padded_batch(examples, model.config.pad_token_id)).loss
        total, targets = 0.0, 0
        for e in examples:
            out = model(
                input_ids=torch.tensor([e["input_ids"]]), labels=torch.tensor([e["labels"]])
            )
            n = sum(label != IGNORE_INDEX for label in e["labels"][1:])  # shifted targets
            total, targets = total + out.loss.item() * n, targets + n
    batch = padding_free_batch(examples)
    assert int((batch["labels"][0, 1:] != IGNORE_INDEX).sum()) == targets
    assert free.item() == pytest.approx(total / targets, abs=TOL)
    assert free.item() == pytest.approx(padded.item(), abs=TOL)


@pytest.mark.parametrize(("family", "impl"), CASES)
def test_packed_rows_with_padding_equal_separate_runs(load_model, family, impl):
    model = load_model(family, impl)
    examples = make_examples([7, 12, 3, 9, 5, 11, 2], seed=1)
    rows = pack_examples(examples, 16, neat=True)
    batch = packed_batch(rows, model.config.pad_token_id)
    assert batch["input_ids"].shape[0] == len(rows) > 1
    with torch.no_grad():
        logits = model(**batch).logits
    assert torch.isfinite(logits).all()  # padding rows attend to themselves only: no NaN
    by_ids = {tuple(e["input_ids"]): e for e in examples}
    for row, row_logits in zip(rows, logits, strict=True):
        members, start = [], 0
        for n in row["seq_lens"]:
            members.append(by_ids[tuple(row["input_ids"][start : start + n])])
            start += n
        diffs = max_diff_per_example(row_logits, separate_logits(model, members))
        assert max(diffs) < TOL, diffs


@pytest.mark.parametrize(("family", "impl"), CASES)
def test_position_ids_alone_do_not_isolate_examples(load_model, family, impl):
    """The DESIGN.md trap: per-example position ids without the block mask leak attention."""
    model = load_model(family, impl)
    examples = make_examples()
    batch = padding_free_batch(examples, attn_implementation=impl)
    del batch["attention_mask"]
    with torch.no_grad():
        logits = model(**batch).logits[0]  # default use_cache=True, as in a plain forward
    diffs = max_diff_per_example(logits, separate_logits(model, examples))
    assert diffs[0] < TOL  # the first example sees nothing before it
    assert min(diffs[1:]) > 0.1, diffs  # every later one attends to the examples before it


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_transformers_infers_packing_from_position_ids_only_without_a_cache(load_model, impl):
    """Why the trap exists: transformers 5.24 derives a packed mask from restarting position ids
    only when attention_mask is None AND no cache is built (use_cache=False). We do not rely on it.
    """
    model = load_model("llama", impl)
    examples = make_examples()
    batch = padding_free_batch(examples, attn_implementation=impl)
    del batch["attention_mask"]
    with torch.no_grad():
        logits = model(**batch, use_cache=False).logits[0]
    assert max(max_diff_per_example(logits, separate_logits(model, examples))) < TOL


def test_eager_attention_needs_an_additive_float_mask(load_model):
    """Eager adds the mask to the scores: a boolean 4-D mask adds 0/1 and leaks; sdpa takes both."""
    examples = make_examples()
    batch = padding_free_batch(examples)
    bool_mask = batch.pop("attention_mask") == 0
    for impl, leaks in (("eager", True), ("sdpa", False)):
        model = load_model("llama", impl)
        with torch.no_grad():
            logits = model(**batch, attention_mask=bool_mask).logits[0]
        diff = max(max_diff_per_example(logits, separate_logits(model, examples)))
        assert (diff > 0.1) == leaks, (impl, diff)


def test_block_causal_mask_layout():
    mask = block_causal_mask([[2, 1], [1]], 4)
    assert mask.shape == (2, 1, 4, 4) and mask.dtype == torch.float32
    allowed = (mask[:, 0] == 0).int().tolist()
    assert allowed[0] == [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
    assert allowed[1] == [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
    assert mask.min() == torch.finfo(torch.float32).min
    with pytest.raises(ValueError, match="fit"):
        block_causal_mask([[3, 2]], 4)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_block_causal_mask_never_gives_nan_on_padding(dtype):
    mask = block_causal_mask([[3, 2], [4]], 8, dtype=dtype)
    q = k = v = torch.randn(2, 2, 8, 16, dtype=dtype) * 30  # large scores stress min + score
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.isfinite(out).all()


def test_flash_varlen_kwargs_match_transformers_flattening_collator():
    examples = make_examples()
    ours = padding_free_batch(examples, attn_implementation="flash_attention_2")
    assert "attention_mask" not in ours  # flash reads the varlen kwargs; a 4-D mask would break it
    theirs = DataCollatorWithFlattening(return_flash_attn_kwargs=True)(
        examples, return_tensors="pt"
    )
    for key in ("input_ids", "labels", "position_ids", "cu_seq_lens_q", "cu_seq_lens_k"):
        assert torch.equal(ours[key], theirs[key]), key
    assert ours["cu_seq_lens_q"].dtype == torch.int32
    assert ours["max_length_q"] == ours["max_length_k"] == theirs["max_length_q"] == max(LENGTHS)


def test_padding_free_batch_splits_packed_rows_by_seq_lens():
    examples = make_examples()
    rows = pack_examples(examples, 16, neat=False)  # positions continuous in the rows
    from_rows = padding_free_batch(rows)
    order = [e for row in rows for e in split(row)]
    from_examples = padding_free_batch(order)
    for key in ("input_ids", "labels", "position_ids", "attention_mask", "cu_seq_lens_q"):
        assert torch.equal(from_rows[key], from_examples[key]), key


def split(row):
    out, start = [], 0
    for n in row["seq_lens"]:
        out.append({k: row[k][start : start + n] for k in ("input_ids", "labels")})
        start += n
    return out


@pytest.mark.gpu
def test_flash_attention_varlen_equals_separate_runs_on_gpu(tiny_llama_dir):
    pytest.importorskip("flash_attn")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    model = AutoModelForCausalLM.from_pretrained(
        tiny_llama_dir, attn_implementation="flash_attention_2", dtype=torch.bfloat16
    ).cuda()
    examples = make_examples()
    batch = padding_free_batch(examples, attn_implementation="flash_attention_2")
    batch = {k: v.cuda() if torch.is_tensor(v) else v for k, v in batch.items()}
    with torch.no_grad():
        logits = model(**batch).logits[0].float()
        reference = [
            model(input_ids=torch.tensor([e["input_ids"]], device="cuda")).logits[0].float()
            for e in examples
        ]
    assert max(max_diff_per_example(logits, reference)) < 5e-2  # bf16


# ---- sdpa_varlen: SDPA per example, no dense mask --------------------------------------------


@pytest.mark.parametrize("family", ["llama", "qwen2"])  # qwen2: grouped-query attention
def test_varlen_sdpa_equals_separate_runs_without_a_mask(load_model, family):
    model = load_model(family, VARLEN_SDPA)
    examples = make_examples()
    batch = padding_free_batch(examples, attn_implementation=VARLEN_SDPA)
    assert "attention_mask" not in batch
    with torch.no_grad():
        logits = model(**batch).logits[0]  # default use_cache=True: a cache is built, as in eval
    diffs = max_diff_per_example(logits, separate_logits(model, examples))
    assert max(diffs) < TOL, diffs


def test_varlen_sdpa_gradients_equal_masked_sdpa(tiny_qwen2_dir):
    examples = make_examples([30, 5, 17, 1, 44], seed=3)
    grads = {}
    for name in ("sdpa", "varlen"):
        model = AutoModelForCausalLM.from_pretrained(
            tiny_qwen2_dir, attn_implementation="sdpa", dtype=torch.float32
        )
        model.config.use_cache = False
        impl = use_varlen_sdpa(model) if name == "varlen" else "sdpa"
        assert impl == model.config._attn_implementation
        assert impl == ("sdpa_varlen" if name == "varlen" else "sdpa")
        model(**padding_free_batch(examples, attn_implementation=impl)).loss.backward()
        grads[name] = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert grads["sdpa"].keys() == grads["varlen"].keys() and len(grads["sdpa"]) > 10
    for n, g in grads["sdpa"].items():
        assert torch.allclose(grads["varlen"][n], g, rtol=1e-4, atol=1e-6), n


def test_varlen_sdpa_without_varlen_kwargs_is_plain_sdpa(load_model):
    """Padded batches and generation (KV cache, one query at a time) take transformers' sdpa."""
    sdpa, varlen = load_model("qwen2", "sdpa"), load_model("qwen2", VARLEN_SDPA)
    examples = make_examples()
    padded = padded_batch(examples, sdpa.config.pad_token_id)
    with torch.no_grad():
        assert torch.allclose(varlen(**padded).logits, sdpa(**padded).logits, atol=TOL)
    prompt = torch.tensor([examples[1]["input_ids"]])
    settings = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": 0}
    assert torch.equal(varlen.generate(prompt, **settings), sdpa.generate(prompt, **settings))


def test_varlen_sdpa_falls_back_to_the_mask_when_it_cannot_split():
    cu = torch.tensor([0, 3, 7], dtype=torch.int32)
    assert _segment_lengths({"cu_seq_lens_q": cu, "cu_seq_lens_k": cu}, 7) == [3, 4]
    assert _segment_lengths({}, 7) is None  # not a padding-free row
    assert _segment_lengths({"cu_seq_lens_q": cu, "cu_seq_lens_k": cu}, 9) is None  # other length
    window = {"cu_seq_lens_q": cu, "cu_seq_lens_k": cu, "sliding_window": 3}
    assert _segment_lengths(window, 7) is None  # an example longer than the window: the mask


def test_use_varlen_sdpa_leaves_other_kernels_alone(load_model):
    model = load_model("llama", "eager")
    assert use_varlen_sdpa(model) == "eager"
    assert model.config._attn_implementation == "eager"


@pytest.mark.parametrize("impl", [VARLEN_SDPA, "flash_attention_2", "sdpa"])
def test_collate_keeps_neat_packed_examples_apart_for_every_kernel(impl):
    """Varlen kernels get the neat rows' examples as one padding-free row (no mask: flash reads
    a 4-D mask as padding); sdpa gets padded rows with the block-diagonal mask."""
    import numpy as np

    from raytune_llm.train.collate import Layout, rows_of

    rows = pack_examples(make_examples([7, 12, 3, 9, 5], seed=2), 16, neat=True)
    batch = {key: np.array([np.asarray(r[key]) for r in rows] + [None], dtype=object)[:-1]
             for key in ("input_ids", "labels", "seq_lens")}  # fmt: skip
    layout = Layout(packed=True, neat=True, pad_token_id=0, attn_implementation=impl,
                    dtype=torch.float32, device=torch.device("cpu"))  # fmt: skip
    out = layout(rows_of(batch))
    lens = [n for r in rows for n in r["seq_lens"]]
    if impl == "sdpa":
        assert out["input_ids"].shape[0] == len(rows) > 1 and out["attention_mask"].ndim == 4
    else:
        assert "attention_mask" not in out and out["input_ids"].shape == (1, sum(lens))
        assert out["cu_seq_lens_q"].tolist() == np.cumsum([0, *lens]).tolist()
