"""Tokenisation with label masks: SFT, pairwise, KTO, pretraining, on the demo data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from raytune_llm.data.templates import TEMPLATES, get_template
from raytune_llm.data.tokenize import (
    IGNORE_INDEX,
    RecordError,
    encode_kto,
    encode_kto_batch,
    encode_pairwise,
    encode_pretrain,
    encode_supervised,
    encode_unsupervised,
    infer_seqlen,
)
from raytune_llm.utils.errors import UserError

DATA = Path(__file__).resolve().parents[2] / "data"
EOT, END_OF_TEXT, BOS = 2046, 2038, 2037  # tiny-llama: <|eot_id|>, <|end_of_text|>, bos


def _load(name):
    return json.loads((DATA / name).read_text())


def _user(text):
    return {"role": "user", "content": text}


def _assistant(text):
    return {"role": "assistant", "content": text}


def _alpaca_prompt(row):
    return _user(row["instruction"] + ("\n" + row["input"] if row["input"] else ""))


# The demo files as the converters' canonical records (converters are tested on their own).
def sft_records():
    roles = {"human": "user", "gpt": "assistant"}
    rows = _load("demo_sharegpt.json")
    return [
        {
            "messages": [
                {"role": roles[m["from"]], "content": m["value"]} for m in r["conversations"]
            ],
            "system": r.get("system", ""),
            "tools": "",
        }
        for r in rows
    ]


def pairwise_records():
    return [
        {
            "prompt": [_alpaca_prompt(r)],
            "chosen": _assistant(r["chosen"]),
            "rejected": _assistant(r["rejected"]),
            "system": "",
            "tools": "",
        }
        for r in _load("demo_pairwise.json")
    ]


def kto_records():
    return [
        {
            "prompt": r["messages"][:-1],
            "completion": r["messages"][-1],
            "label": r["label"],
            "system": "",
            "tools": "",
        }
        for r in _load("demo_kto.json")
    ]


@pytest.fixture(scope="module")
def llama_tok(tiny_llama_dir):
    return AutoTokenizer.from_pretrained(tiny_llama_dir)


@pytest.fixture(scope="module")
def qwen_tok(tiny_qwen2_dir):
    return AutoTokenizer.from_pretrained(tiny_qwen2_dir)


@pytest.fixture(scope="module")
def multiturn():
    return next(r for r in sft_records() if len(r["messages"]) >= 6)


def _trained(labels):
    return [i for i in labels if i != IGNORE_INDEX]


def test_infer_seqlen_follows_llamafactory():
    assert infer_seqlen(10, 3, 8) == (5, 3)  # short answer kept whole
    assert infer_seqlen(3, 10, 8) == (3, 5)  # short prompt kept whole
    assert infer_seqlen(10, 10, 8) == (4, 4)  # both cut in proportion
    assert infer_seqlen(2, 2, 100) == (2, 2)
    assert infer_seqlen(5, 5, 0) == (0, 0)


@pytest.mark.parametrize("name", ["llama3", "qwen"])
def test_prompts_masked_answers_trained(request, multiturn, name):
    tokenizer = request.getfixturevalue("llama_tok" if name == "llama3" else "qwen_tok")
    template = TEMPLATES[name]
    out = encode_supervised(multiturn, template, tokenizer, cutoff_len=4096)
    pairs = template.encode_multiturn(tokenizer, multiturn["messages"])
    assert out["input_ids"] == [i for p, a in pairs for i in p + a]
    expected = [i for p, a in pairs for i in [IGNORE_INDEX] * len(p) + a]
    assert out["labels"] == expected
    end = tokenizer.eos_token_id  # <|eot_id|> / <|im_end|>: both tiny tokenizers' eos
    assert all(a[-1] == end or a[-2] == end for _, a in pairs)  # qwen answers end "<|im_end|>\n"
    answers = [m["content"] for m in multiturn["messages"][1::2]]
    assert tokenizer.decode(_trained(out["labels"])) == "".join(
        f"{a}<|eot_id|>" if name == "llama3" else f"{a}<|im_end|>\n" for a in answers
    )


def test_train_on_prompt_and_mask_history(llama_tok, multiturn):
    template = TEMPLATES["llama3"]
    full = encode_supervised(multiturn, template, llama_tok, 4096, train_on_prompt=True)
    assert full["labels"] == full["input_ids"]
    last = encode_supervised(multiturn, template, llama_tok, 4096, mask_history=True)
    plain = encode_supervised(multiturn, template, llama_tok, 4096)
    assert last["input_ids"] == plain["input_ids"]
    assert (
        llama_tok.decode(_trained(last["labels"]))
        == f"{multiturn['messages'][-1]['content']}<|eot_id|>"
    )
    assert last["labels"][-1] == EOT


@pytest.mark.parametrize("mask_history", [False, True])
def test_cutoff_keeps_part_of_the_answer(llama_tok, multiturn, mask_history):
    template = TEMPLATES["llama3"]
    full = encode_supervised(multiturn, template, llama_tok, 4096, mask_history=mask_history)
    for cutoff in (8, 16, 24, 40, len(full["input_ids"]) - 1):
        out = encode_supervised(multiturn, template, llama_tok, cutoff, mask_history=mask_history)
        assert len(out["input_ids"]) == len(out["labels"]) <= cutoff
        assert _trained(out["labels"]), cutoff  # some answer survives
    cut = encode_supervised(multiturn, template, llama_tok, 24, mask_history=mask_history)
    if mask_history:  # the latest turn is kept first; its answer is the one trained
        last_answer = llama_tok.encode(
            multiturn["messages"][-1]["content"], add_special_tokens=False
        )
        assert _trained(cut["labels"]) == [*last_answer, EOT]
        assert cut["input_ids"][-1] == EOT
    else:  # turns kept in order from the first: bos first
        assert cut["input_ids"][0] == BOS


def test_efficient_eos_appends_one_eos(llama_tok, multiturn):
    template = TEMPLATES["gemma2"]
    out = encode_supervised(multiturn, template, llama_tok, 4096)
    pairs = template.encode_multiturn(llama_tok, multiturn["messages"])
    assert out["input_ids"][-1] == out["labels"][-1] == llama_tok.eos_token_id
    assert len(out["input_ids"]) == sum(len(p) + len(a) for p, a in pairs) + 1
    second_turn = len(pairs[0][0]) + len(pairs[0][1])
    assert out["labels"][second_turn] == llama_tok.eos_token_id  # the first answer's end
    with pytest.raises(UserError, match="train_on_prompt"):
        encode_supervised(multiturn, template, llama_tok, 4096, train_on_prompt=True)


def test_all_demo_records_encode(llama_tok, qwen_tok):
    for tokenizer in (llama_tok, qwen_tok):
        template = get_template(None, tokenizer)
        for record in sft_records():
            out = encode_supervised(record, template, tokenizer, 64)
            assert 0 < len(out["input_ids"]) == len(out["labels"]) <= 64
            assert _trained(out["labels"])


def test_bad_records_raise_record_errors(llama_tok):
    template = TEMPLATES["llama3"]
    bad = {"messages": [_user("a"), _user("b")], "system": "", "tools": ""}
    with pytest.raises(RecordError, match="message 1"):
        encode_supervised(bad, template, llama_tok, 64)
    bad_tools = {"messages": [_user("a"), _assistant("b")], "system": "", "tools": "{oops"}
    with pytest.raises(RecordError, match="not valid JSON"):
        encode_supervised(bad_tools, template, llama_tok, 64)


def test_pairwise_layout(llama_tok):
    template = TEMPLATES["llama3"]
    for record in pairwise_records():
        out = encode_pairwise(record, template, llama_tok, 4096)
        prompt = template.encode_prompt(llama_tok, record["prompt"])
        for side in ("chosen", "rejected"):
            ids, labels = out[f"{side}_input_ids"], out[f"{side}_labels"]
            assert ids[: len(prompt)] == prompt and labels[: len(prompt)] == [IGNORE_INDEX] * len(
                prompt
            )
            assert llama_tok.decode(_trained(labels)) == f"{record[side]['content']}<|eot_id|>"
    record = pairwise_records()[0]
    short = encode_pairwise(record, template, llama_tok, 12)
    for side in ("chosen", "rejected"):
        assert len(short[f"{side}_input_ids"]) <= 12 and _trained(short[f"{side}_labels"])
    prompt_len = short["chosen_labels"].count(IGNORE_INDEX)
    assert short["chosen_input_ids"][:prompt_len] == short["rejected_input_ids"][:prompt_len]


def test_kto_layout_and_kl_pairs(qwen_tok):
    template = get_template(None, qwen_tok)
    records = kto_records()[:4]
    batch = encode_kto_batch(records, template, qwen_tok, 4096)
    assert [b["kto_tag"] for b in batch] == [r["label"] for r in records]
    assert isinstance(batch[0]["kto_tag"], bool)
    for i, (record, out) in enumerate(zip(records, batch, strict=True)):
        assert (
            qwen_tok.decode(_trained(out["labels"]))
            == f"{record['completion']['content']}<|im_end|>\n"
        )
        previous = records[i - 1]["completion"]["content"]  # the first takes the last's
        assert qwen_tok.decode(_trained(out["kl_labels"])) == f"{previous}<|im_end|>\n"
        prompt_len = out["labels"].count(IGNORE_INDEX)
        assert out["kl_input_ids"][:prompt_len] == out["input_ids"][:prompt_len]
    single = encode_kto(records[0], template, qwen_tok, 4096)
    assert set(single) == {"input_ids", "labels", "kto_tag"}


def test_pretraining_appends_eos(llama_tok, qwen_tok):
    texts = [r["text"] for r in _load("demo_pretrain.json")[:3]]
    with_template = encode_pretrain(texts, llama_tok, template=TEMPLATES["llama3"])
    for text, out in zip(texts, with_template, strict=True):
        assert out["input_ids"][0] == BOS and out["input_ids"][-1] == END_OF_TEXT
        assert out["labels"] == out["input_ids"]
        assert llama_tok.decode(out["input_ids"][1:-1]) == text
    plain = encode_pretrain(texts, llama_tok)
    assert all(o["input_ids"][-1] == llama_tok.eos_token_id for o in plain)
    qwen = encode_pretrain(texts, qwen_tok)
    assert qwen[0]["input_ids"][-1] == qwen_tok.eos_token_id
    assert qwen_tok.decode(qwen[0]["input_ids"][:-1]) == texts[0]  # no bos for Qwen
    truncated = encode_pretrain(texts, llama_tok, cutoff_len=5)
    assert all(len(o["input_ids"]) == 5 for o in truncated)
    assert encode_pretrain([], llama_tok) == []


def test_unsupervised_prompt_and_reference(llama_tok):
    template = TEMPLATES["llama3"]
    row = _load("demo_alpaca_eval.json")[0]
    record = {
        "messages": [_alpaca_prompt(row), _assistant(row["output"])],
        "system": row.get("system", ""),
    }
    out = encode_unsupervised(record, template, llama_tok, 4096)
    assert out["input_ids"] == template.encode_prompt(
        llama_tok, record["messages"][:1], record["system"]
    )
    assert llama_tok.decode(out["labels"]) == f"{row['output']}<|eot_id|>"
    prompt_only = {"messages": record["messages"][:1], "system": record["system"]}
    prompt_only = encode_unsupervised(prompt_only, template, llama_tok, 4096)
    assert prompt_only["labels"] == [] and prompt_only["input_ids"] == out["input_ids"]
