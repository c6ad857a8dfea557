"""The committed demo datasets: reproducible, LLaMA-Factory-shaped, and checkable."""

import json
from pathlib import Path

import pytest

from raytune_llm.data import demo

DATA_DIR = Path(__file__).resolve().parents[2] / "data"

# LLaMA-Factory's dataset_info.json schema (data/README.md).
ENTRY_KEYS = {"file_name", "formatting", "ranking", "subset", "split", "folder", "num_samples"}
ENTRY_KEYS |= {"columns", "tags", "hf_hub_url", "ms_hub_url", "script_url", "cloud_file_name"}
COLUMN_KEYS = {"prompt", "query", "response", "history", "messages", "system", "tools"}
COLUMN_KEYS |= {"images", "videos", "audios", "chosen", "rejected", "kto_tag"}
TAG_DEFAULTS = {
    "role_tag": "from",
    "content_tag": "value",
    "user_tag": "human",
    "assistant_tag": "gpt",
    "observation_tag": "observation",
    "function_tag": "function_call",
    "system_tag": "system",
}


def load(name: str):
    return json.loads((DATA_DIR / name).read_text(encoding="utf-8"))


def info() -> dict:
    return load("dataset_info.json")


def test_committed_data_is_exactly_what_the_generator_writes(tmp_path):
    assert demo.main([str(tmp_path)]) == 0
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted(demo.build_demo_data())
    for name in written:
        assert (tmp_path / name).read_bytes() == (DATA_DIR / name).read_bytes(), (
            f"data/{name} is stale: run `python -m raytune_llm.data.demo data`"
        )
    assert sum((DATA_DIR / n).stat().st_size for n in written) < 3_000_000


def test_generation_depends_on_the_seed():
    assert demo.build_demo_data(1)["demo_alpaca.json"] != load("demo_alpaca.json")


@pytest.mark.parametrize("entry_name", sorted(demo.DATASET_INFO))
def test_dataset_info_entry_matches_its_file(entry_name):
    entry = info()[entry_name]
    assert set(entry) <= ENTRY_KEYS and set(entry["columns"]) <= COLUMN_KEYS
    assert entry.get("formatting", "alpaca") in {"alpaca", "sharegpt"}
    rows = load(entry["file_name"])
    assert isinstance(rows, list) and len(rows) >= 200
    columns = entry["columns"]
    tags = {**TAG_DEFAULTS, **entry.get("tags", {})}
    for row in rows:
        assert set(columns.values()) <= set(row), (entry_name, row)
        if entry.get("formatting") == "sharegpt":
            check_sharegpt_row(row, columns, tags, ranking=entry.get("ranking", False))
        if "kto_tag" in columns:
            assert isinstance(row[columns["kto_tag"]], bool)


def check_sharegpt_row(row: dict, columns: dict, tags: dict, *, ranking: bool) -> None:
    role, content = tags["role_tag"], tags["content_tag"]
    messages = row[columns["messages"]]
    if messages[0][role] == tags["system_tag"]:
        messages = messages[1:]
    odd, even = {tags["user_tag"], tags["observation_tag"]}, {tags["assistant_tag"]}
    for index, message in enumerate(messages):
        assert set(message) == {role, content} and isinstance(message[content], str)
        assert message[role] in (odd if index % 2 == 0 else even)
    assert len(messages) % 2 == (1 if ranking else 0)
    if ranking:
        for key in ("chosen", "rejected"):
            assert row[columns[key]][role] == tags["assistant_tag"]


def test_every_answer_is_right():
    for name in ("demo_alpaca.json", "demo_alpaca_eval.json"):
        for row in load(name):
            assert row["output"] == demo.answer_for(demo.alpaca_prompt(row)), row
    for row in load("demo_sharegpt.json"):
        turns = row["conversations"]
        for human, gpt in zip(turns[::2], turns[1::2], strict=True):
            assert gpt["value"] == demo.answer_for(human["value"])
    for row in load("demo_pairwise.json"):
        right = demo.answer_for(demo.alpaca_prompt(row))
        assert row["chosen"] == right != row["rejected"]
    for row in load("demo_pairwise_sharegpt.json"):
        right = demo.answer_for(row["conversations"][-1]["value"])
        assert row["chosen"]["value"] == right != row["rejected"]["value"]
    labels = []
    for row in load("demo_kto.json"):
        user, assistant = row["messages"]
        labels.append(row["label"])
        assert row["label"] == demo.exact_match(
            assistant["content"], demo.answer_for(user["content"])
        )
    assert 0.4 < sum(labels) / len(labels) < 0.6


def test_held_out_prompts_never_appear_in_training_data():
    def items(prompts):
        return {demo.parse_prompt(p) for p in prompts}

    eval_items = items(demo.alpaca_prompt(r) for r in load("demo_alpaca_eval.json"))
    assert len(eval_items) == len(load("demo_alpaca_eval.json")) == demo.EVAL_SIZE
    train = items(demo.alpaca_prompt(r) for r in load("demo_alpaca.json"))
    assert len(train) == demo.TRAIN_SIZE
    train |= items(t["value"] for r in load("demo_sharegpt.json") for t in r["conversations"][::2])
    train |= items(demo.alpaca_prompt(r) for r in load("demo_pairwise.json"))
    sharegpt_dpo = load("demo_pairwise_sharegpt.json")
    train |= items(
        t["value"] for r in sharegpt_dpo for t in r["conversations"] if t["from"] == "human"
    )
    train |= items(r["messages"][0]["content"] for r in load("demo_kto.json"))
    assert not eval_items & train
    pretrain = " ".join(r["text"] for r in load("demo_pretrain.json"))
    for task, payload in eval_items:
        answer = demo.answer_for(f"{demo.TASKS[task]}: {payload}")
        assert demo._PRETRAIN_SENTENCES[task].format(p=payload, a=answer) not in pretrain
    assert {demo.task_of(demo.alpaca_prompt(r)) for r in load("demo_alpaca_eval.json")} == set(
        demo.TASKS
    )


@pytest.mark.parametrize(
    ("prompt", "answer"),
    [
        ("Name the first letter: c a g", "c"),
        ("Name the last letter.\nc a g", "g"),
        ("Count the letters.\nx y", "2"),
        ("uppercase the letters:  q w  e ", "Q W E"),
        ("Reverse the letters: c a t", "t a c"),
        ("Reverse the letters.\nc a t", "t a c"),
        ("Sort the letters: d c a b", "a b c d"),
    ],
)
def test_answer_for(prompt, answer):
    assert demo.answer_for(prompt) == answer
    assert demo.exact_match(f" {answer}\n", answer)
    assert not demo.exact_match(answer + "x", answer)


@pytest.mark.parametrize(
    "prompt", ["What is 2 + 2?", "Reverse the letters: cat", "Count the letters: 1 2"]
)
def test_answer_for_rejects_other_text(prompt):
    with pytest.raises(ValueError, match="not a demo prompt"):
        demo.answer_for(prompt)


def test_tiny_tokenizer_corpus_covers_the_demo_text():
    """raytune_llm.model cannot import raytune_llm.data (independent layers): keep them in step."""
    from raytune_llm.model import _tiny_text

    assert set(_tiny_text.TASK_PHRASES) == set(demo.TASKS.values())
    corpus = "\n".join(_tiny_text.corpus())
    for text in (*demo.SYSTEM_PROMPTS, *demo._PRETRAIN_SENTENCES.values()):
        for piece in text.replace("{p}", "\0").replace("{a}", "\0").split("\0"):
            assert piece.strip(" ,.") in corpus, piece
