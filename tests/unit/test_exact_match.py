"""Exact-match scoring: prompts as training tokenised them, greedy answers cut at stop words."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from raytune_llm.data.converters import convert
from raytune_llm.data.registry import load_registry
from raytune_llm.data.templates import get_template
from raytune_llm.data.tokenize import IGNORE_INDEX, encode_supervised
from raytune_llm.eval.exact_match import (
    format_score,
    generate_greedy,
    load_for_scoring,
    main,
    prompt_and_reference,
    prompt_ids,
    read_records,
    score_exact_match,
)
from raytune_llm.utils.errors import UserError

DATA = Path(__file__).resolve().parents[2] / "data"
EVAL = read_records(DATA / "demo_alpaca_eval.json")


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    return load_for_scoring(str(tiny_llama_dir))


def test_prompts_are_tokenised_as_training_tokenised_them(tiny):
    _, tokenizer = tiny
    template = get_template("llama3", tokenizer)
    template.fix_tokenizer(tokenizer)
    spec = load_registry(DATA)["demo_alpaca_eval"]
    for record in EVAL:
        trained = encode_supervised(convert(record, spec, "sft"), template, tokenizer, 128)
        masked = trained["labels"].index(next(x for x in trained["labels"] if x != IGNORE_INDEX))
        assert prompt_ids(record, template, tokenizer) == trained["input_ids"][:masked]
    assert any(r["system"] for r in EVAL) and any(r["input"] for r in EVAL)  # both kinds covered


def test_a_prediction_equal_to_the_answer_counts(tiny):
    model, tokenizer = tiny
    records = EVAL[:24]
    before = score_exact_match(model, tokenizer, "llama3", records)
    assert before["total"] == 24 and before["correct"] == 0  # an untrained model
    assert not any("<|" in p for p in before["predictions"])  # stop words and specials dropped
    answered = [
        dict(r, output=f" {p} ") for r, p in zip(records, before["predictions"], strict=True)
    ]
    after = score_exact_match(model, tokenizer, "llama3", answered)
    assert after["accuracy"] == 1.0 and after["predictions"] == before["predictions"]
    assert sum(t["total"] for t in after["tasks"].values()) == 24
    assert set(after["tasks"]) == {"first", "last", "count", "uppercase", "reverse", "sort"}
    assert after["groups"]["easy"]["total"] + after["groups"]["harder"]["total"] == 24
    assert format_score(after).splitlines()[0].split()[:2] == ["all", "24/24"]


def test_batched_left_padded_generation_matches_one_at_a_time(tiny):
    model, tokenizer = tiny
    records = EVAL[:12]
    batched = score_exact_match(model, tokenizer, "llama3", records, batch_size=12)
    single = score_exact_match(model, tokenizer, "llama3", records, batch_size=1)
    assert batched["predictions"] == single["predictions"]


def test_generation_stops_before_the_first_stop_token(tiny):
    model, tokenizer = tiny
    template = get_template("llama3", tokenizer)
    prompt = prompt_ids(EVAL[0], template, tokenizer)
    free = generate_greedy(model, [prompt], [], tokenizer.pad_token_id, 8)[0]
    assert len(free) == 8
    stopped = generate_greedy(model, [prompt], [free[3]], tokenizer.pad_token_id, 8)[0]
    assert stopped == free[: free.index(free[3])]


def test_canonical_and_alpaca_records_score_alike(tiny):
    model, tokenizer = tiny
    record = EVAL[1]
    messages, system, reference = prompt_and_reference(record)
    canonical = {"messages": [*messages, {"role": "assistant", "content": reference}]}
    canonical["system"] = system
    a = score_exact_match(model, tokenizer, "llama3", [record])
    b = score_exact_match(model, tokenizer, "llama3", [canonical])
    assert a["predictions"] == b["predictions"]
    with pytest.raises(UserError, match="cannot score record"):
        prompt_and_reference({"text": "no answer"})


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing`:FutureWarning")
def test_an_adapter_folder_loads_onto_the_base_it_names(tiny_llama_dir, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model

    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    config = LoraConfig(r=4, target_modules="all-linear", modules_to_save=["lm_head"])
    model = get_peft_model(base, config)
    with torch.no_grad():
        model.base_model.model.lm_head.modules_to_save["default"].weight.mul_(3.0)
    model.save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(tiny_llama_dir).save_pretrained(tmp_path)
    loaded, tokenizer = load_for_scoring(str(tmp_path))  # the adapter merged, as chat loads it
    ids = torch.tensor([tokenizer("Count the letters: a b")["input_ids"]])
    model.eval()
    with torch.no_grad():
        assert torch.allclose(loaded(ids).logits, model(ids).logits)
        untouched = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
        assert not torch.allclose(loaded(ids).logits, untouched(ids).logits, atol=1e-3)


def test_the_command_prints_the_score(tiny_llama_dir, tmp_path, capsys):
    data = tmp_path / "held_out.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in EVAL[:4]))
    assert main([str(tiny_llama_dir), str(data)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:2] == ["all", "0/4"] and any(x.startswith("easy") for x in lines)


def test_the_command_names_a_bad_line_and_exits_2(tiny_llama_dir, tmp_path, capsys):
    data = tmp_path / "held_out.jsonl"
    data.write_text(json.dumps(EVAL[0]) + "\n{not json\n")
    assert main([str(tiny_llama_dir), str(data)]) == 2
    err = capsys.readouterr().err
    assert f"{data}, line 2: not valid JSON" in err and "Traceback" not in err


def test_the_command_names_a_missing_model_and_exits_2(tmp_path, capsys):
    data = tmp_path / "held_out.jsonl"
    data.write_text(json.dumps(EVAL[0]) + "\n")
    assert main([str(tmp_path / "no-such-model"), str(data)]) == 2
    err = capsys.readouterr().err
    assert "no-such-model" in err and "builtin:tiny-llama" in err and "Traceback" not in err
