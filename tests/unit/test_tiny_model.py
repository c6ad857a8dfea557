"""The tiny-model kit: offline loading, family tokenizers, chat templates, determinism, caching."""

import hashlib
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from raytune_llm.data import demo
from raytune_llm.model import tiny

# Ids a template-comparison test may rely on (vocabulary 2048; special tokens at its end).
LLAMA_IDS = {
    "<|begin_of_text|>": 2037,
    "<|end_of_text|>": 2038,
    "<|finetune_right_pad_id|>": 2041,
    "<|start_header_id|>": 2043,
    "<|end_header_id|>": 2044,
    "<|eom_id|>": 2045,
    "<|eot_id|>": 2046,
    "<|python_tag|>": 2047,
}
QWEN2_IDS = {
    "<|endoftext|>": 2043,
    "<|im_start|>": 2044,
    "<|im_end|>": 2045,
    "<tool_call>": 2046,
    "</tool_call>": 2047,
}
CHAT = [
    {"role": "system", "content": "Answer with the result only."},
    {"role": "user", "content": "Reverse the letters: c a t"},
    {"role": "assistant", "content": "t a c"},
]
MULTI_TURN = [*CHAT[1:], {"role": "user", "content": "Add the numbers: 12 + 7"}]
ODD_TEXTS = [
    "héllo wörld – “quotes” ½ ñ ç",
    "emoji 😀🚀👍🏽 and 世界 你好 こんにちは 안녕",
    "  leading and trailing spaces  \t tabs\n\nnew\r\nlines ",
    "code: def f(x):\n    return {'a': [1, 2]}  # ~`!@#$%^&*()_+-=",
    "special-looking <|im_start|> <|eot_id|> <tool_call> text",
    "",
]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(params=["tiny-llama", "tiny-qwen2"])
def model_dir(request) -> Path:
    return request.getfixturevalue(request.param.replace("-", "_") + "_dir")


def test_loads_offline_and_generates(model_dir):
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    assert (model.config.hidden_size, model.config.num_hidden_layers) == (64, 2)
    assert model.config.vocab_size == len(tokenizer) == 2048
    inputs = tokenizer.apply_chat_template(
        CHAT[1:2], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    out = model.generate(**inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    assert out.shape == (1, inputs["input_ids"].shape[1] + 4)
    assert {p.name for p in model_dir.iterdir()} >= {
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
    }


def test_llama_chat_template_is_llama3(tiny_llama_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    render = tokenizer.apply_chat_template
    head = "<|start_header_id|>{}<|end_header_id|>\n\n"
    assert render(CHAT, tokenize=False) == (
        "<|begin_of_text|>"
        f"{head.format('system')}Answer with the result only.<|eot_id|>"
        f"{head.format('user')}Reverse the letters: c a t<|eot_id|>"
        f"{head.format('assistant')}t a c<|eot_id|>"
    )
    assert render(MULTI_TURN, tokenize=False, add_generation_prompt=True) == (
        "<|begin_of_text|>"
        f"{head.format('user')}Reverse the letters: c a t<|eot_id|>"
        f"{head.format('assistant')}t a c<|eot_id|>"
        f"{head.format('user')}Add the numbers: 12 + 7<|eot_id|>"
        f"{head.format('assistant')}"
    )
    ids = render(CHAT[1:2], add_generation_prompt=True, return_dict=True)["input_ids"]
    assert ids.count(LLAMA_IDS["<|begin_of_text|>"]) == 1  # bos from the template only
    assert ids[:2] == [LLAMA_IDS["<|begin_of_text|>"], LLAMA_IDS["<|start_header_id|>"]]
    tail = tokenizer.encode(head.format("assistant"), add_special_tokens=False)
    assert ids[-len(tail) :] == tail and tail[0] == LLAMA_IDS["<|start_header_id|>"]


def test_qwen2_chat_template_is_chatml(tiny_qwen2_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_qwen2_dir)
    render = tokenizer.apply_chat_template
    assert render(CHAT, tokenize=False) == (
        "<|im_start|>system\nAnswer with the result only.<|im_end|>\n"
        "<|im_start|>user\nReverse the letters: c a t<|im_end|>\n"
        "<|im_start|>assistant\nt a c<|im_end|>\n"
    )
    assert render(MULTI_TURN, tokenize=False, add_generation_prompt=True) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nReverse the letters: c a t<|im_end|>\n"
        "<|im_start|>assistant\nt a c<|im_end|>\n"
        "<|im_start|>user\nAdd the numbers: 12 + 7<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    ids = render(CHAT[:2], add_generation_prompt=True, return_dict=True)["input_ids"]
    assert ids[0] == QWEN2_IDS["<|im_start|>"]
    assert ids.count(QWEN2_IDS["<|im_end|>"]) == 2


@pytest.mark.parametrize(
    ("name", "expected"), [("tiny-llama", LLAMA_IDS), ("tiny-qwen2", QWEN2_IDS)]
)
def test_special_tokens_are_single_ids(request, name, expected):
    model_dir = request.getfixturevalue(name.replace("-", "_") + "_dir")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    for token, token_id in expected.items():
        assert tokenizer.encode(token, add_special_tokens=False) == [token_id], token
        assert tokenizer.encode(f"a{token}b", add_special_tokens=False).count(token_id) == 1


def test_named_tokens_match_the_real_families(tiny_llama_dir, tiny_qwen2_dir):
    llama = AutoTokenizer.from_pretrained(tiny_llama_dir)
    assert (llama.bos_token, llama.eos_token, llama.pad_token) == (
        "<|begin_of_text|>",
        "<|eot_id|>",
        "<|finetune_right_pad_id|>",
    )
    assert llama("x")["input_ids"][0] == LLAMA_IDS["<|begin_of_text|>"]  # Llama-3 adds bos
    config = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).config
    assert (config.bos_token_id, config.eos_token_id, config.pad_token_id) == (2037, 2046, 2041)
    assert not config.tie_word_embeddings

    qwen = AutoTokenizer.from_pretrained(tiny_qwen2_dir)
    assert (qwen.bos_token, qwen.eos_token, qwen.pad_token) == (None, "<|im_end|>", "<|endoftext|>")
    assert qwen("x")["input_ids"] == qwen.encode("x", add_special_tokens=False)  # no bos
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen2_dir)
    assert model.config.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert model.generation_config.eos_token_id == [2045, 2043]
    assert model.generation_config.pad_token_id == 2043


def test_any_text_round_trips(model_dir):
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    for text in ODD_TEXTS:
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert tokenizer.decode(ids) == text


def test_demo_letters_are_one_token_each(model_dir):
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokens = tokenizer.tokenize("Reverse the letters: c a t")
    assert tokens[-3:] == ["Ġc", "Ġa", "Ġt"]
    assert len(tokenizer.tokenize("Uppercase the letters: q w e")) == 7


def test_saved_tokenizer_loads_as_built(model_dir):
    """transformers may rebuild a family tokenizer (Qwen2Tokenizer): it must encode the same."""
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    loaded = AutoTokenizer.from_pretrained(model_dir)
    rows = demo.build_demo_data()["demo_sharegpt.json"][:50]
    texts = ODD_TEXTS + [turn["value"] for row in rows for turn in row["conversations"]]
    for text in texts:
        assert loaded.encode(text) == raw.encode(text).ids, text


def test_build_is_deterministic(tmp_path, tiny_llama_dir):
    again = tiny.build_tiny_model(tmp_path / "again", "tiny-llama")
    for name in ("model.safetensors", "tokenizer.json", "config.json", "tokenizer_config.json"):
        assert sha256(again / name) == sha256(tiny_llama_dir / name), name
    other_seed = tiny.build_tiny_model(tmp_path / "seed1", "tiny-llama", seed=1)
    assert sha256(other_seed / "model.safetensors") != sha256(tiny_llama_dir / "model.safetensors")


def test_refuses_to_overwrite_a_non_empty_directory(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="overwrite=True"):
        tiny.build_tiny_model(target, "tiny-qwen2")
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
    tiny.build_tiny_model(target, "tiny-qwen2", overwrite=True)
    assert not (target / "keep.txt").exists() and (target / "model.safetensors").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    tiny.build_tiny_model(empty, "tiny-qwen2")  # an empty directory is fine
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "model"]  # no temp leftovers


def test_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown tiny model"):
        tiny.build_tiny_model(tmp_path / "m", "tiny-gpt")
    with pytest.raises(ValueError, match="num_experts"):
        tiny.build_tiny_model(tmp_path / "m", num_experts=4)
    with pytest.raises(ValueError, match="vocab_size"):
        tiny.build_tiny_model(tmp_path / "m", vocab_size=1000)
    assert list(tmp_path.iterdir()) == []


def test_bench_overrides_give_about_30m_parameters():
    config = tiny.tiny_model_config("tiny-llama", **tiny.BENCH_30M_OVERRIDES)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    h, inter, layers, vocab = 512, 1536, 8, 2048
    expected = 2 * vocab * h + layers * (4 * h * h + 3 * h * inter + 2 * h) + h
    assert sum(p.numel() for p in model.parameters()) == expected == 29_368_832


def test_ensure_builtin_model_builds_once(tmp_path, monkeypatch, tiny_qwen2_dir):
    monkeypatch.setenv("RAYTUNE_LLM_CACHE", str(tmp_path / "cache"))
    path = tiny.ensure_builtin_model("tiny-qwen2")
    assert path == tmp_path / "cache" / "models" / f"tiny-qwen2-kit{tiny.KIT_VERSION}"
    assert sha256(path / "model.safetensors") == sha256(tiny_qwen2_dir / "model.safetensors")
    mtime = (path / "model.safetensors").stat().st_mtime_ns
    time.sleep(0.01)
    assert tiny.ensure_builtin_model("tiny-qwen2") == path
    assert (path / "model.safetensors").stat().st_mtime_ns == mtime
    assert os.listdir(path.parent) == [path.name]


def test_ensure_builtin_model_loser_of_a_race_uses_the_winner(tmp_path, monkeypatch):
    """Another process publishes the model while this one is still building."""
    target = tmp_path / f"tiny-llama-kit{tiny.KIT_VERSION}"
    real_write = tiny._write_model

    def write_then_lose(directory, *args, **kwargs):
        real_write(directory, *args, **kwargs)
        real_write(target, *args, **kwargs)  # the winner lands first

    monkeypatch.setattr(tiny, "_write_model", write_then_lose)
    assert tiny.ensure_builtin_model("tiny-llama", cache_dir=tmp_path) == target
    assert os.listdir(tmp_path) == [target.name]


def test_ensure_builtin_model_from_two_processes(tmp_path, tiny_llama_dir):
    go = tmp_path / "go"
    script = textwrap.dedent(
        f"""
        import pathlib, sys, time
        from raytune_llm.model.tiny import ensure_builtin_model
        pathlib.Path(sys.argv[1]).touch()
        while not pathlib.Path({str(go)!r}).exists():
            time.sleep(0.01)
        print(ensure_builtin_model("tiny-llama", cache_dir={str(tmp_path / "cache")!r}))
        """
    )
    ready = [tmp_path / f"ready{i}" for i in range(2)]
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(r)], stdout=subprocess.PIPE, text=True)
        for r in ready
    ]
    deadline = time.monotonic() + 60
    while not all(r.exists() for r in ready) and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()
    outputs = [p.communicate(timeout=60)[0].strip().splitlines()[-1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    path = tmp_path / "cache" / f"tiny-llama-kit{tiny.KIT_VERSION}"
    assert outputs == [str(path), str(path)]
    assert os.listdir(path.parent) == [path.name]
    for name in ("model.safetensors", "tokenizer.json"):
        assert sha256(path / name) == sha256(tiny_llama_dir / name)
    assert AutoTokenizer.from_pretrained(path).eos_token == "<|eot_id|>"
