"""Unit-test fixtures: a LLaMA-Factory-style data folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ALPACA = [
    {"instruction": "Count the letters.", "input": "a b c", "output": "3", "system": "Be brief."},
    {"instruction": "Name the first letter: d e", "input": "", "output": "d", "system": ""},
    {
        "instruction": "And the last?",
        "input": "",
        "output": "e",
        "history": [["Name the first letter: d e", "d"]],
    },
]
SHAREGPT = [  # custom tags, a leading system turn, and a tool call
    {
        "dialog": [
            {"speaker": "S", "text": "You call tools."},
            {"speaker": "U", "text": "Weather in Paris?"},
            {"speaker": "F", "text": '{"name": "weather", "arguments": {"city": "Paris"}}'},
            {"speaker": "O", "text": '{"temp": 21}'},
            {"speaker": "A", "text": "21 degrees."},
        ],
        "sys": "ignored: the system turn wins",
        "tools": '[{"name": "weather"}]',
    },
    {"dialog": [{"speaker": "U", "text": "Hi"}, {"speaker": "A", "text": "Hello"}], "sys": "Hi."},
]
OPENAI = [
    {
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Add 2 and 3, then 4 and 5."},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "1",
                        "type": "function",
                        "function": {"name": "add", "arguments": "2,3"},
                    },
                    {
                        "id": "2",
                        "type": "function",
                        "function": {"name": "add", "arguments": "4,5"},
                    },
                ],
            },
            {"role": "tool", "content": "5"},
            {"role": "tool", "content": "9"},
            {"role": "assistant", "content": "5 and 9."},
        ],
        "tools": [{"type": "function", "function": {"name": "add"}}],
    }
]
PAIRWISE = [{"instruction": "Sort: c a b", "input": "", "chosen": "a b c", "rejected": "c b a"}]
PAIRWISE_SHAREGPT = [
    {
        "conversations": [
            {"from": "system", "value": "Answer only."},
            {"from": "human", "value": "Hi"},
            {"from": "gpt", "value": "Hello"},
            {"from": "human", "value": "Reverse: a b"},
        ],
        "chosen": {"from": "gpt", "value": "b a"},
        "rejected": {"from": "gpt", "value": "a b"},
    }
]
KTO = [
    {
        "messages": [{"role": "user", "content": "1+1?"}, {"role": "assistant", "content": "2"}],
        "label": True,
    },
    {
        "messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "5"}],
        "label": False,
    },
]
TABLE = [
    {"instruction": "Upper: a b", "input": None, "output": "A B"},
    {"instruction": "Lower:", "input": "C D", "output": "c d"},
]
OPENAI_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user"}
OPENAI_TAGS |= {"assistant_tag": "assistant", "system_tag": "system"}

INFO = {
    "alpaca": {
        "file_name": "alpaca.json",
        "columns": {
            "prompt": "instruction",
            "query": "input",
            "response": "output",
            "system": "system",
            "history": "history",
        },
    },
    "alpaca_default": {"file_name": "alpaca.json"},
    "alpaca_no_query": {
        "file_name": "alpaca.json",
        "columns": {"prompt": "instruction", "response": "output"},
    },
    "sharegpt": {
        "file_name": "sharegpt.jsonl",
        "formatting": "sharegpt",
        "columns": {"messages": "dialog", "system": "sys", "tools": "tools"},
        "tags": {
            "role_tag": "speaker",
            "content_tag": "text",
            "user_tag": "U",
            "assistant_tag": "A",
            "observation_tag": "O",
            "function_tag": "F",
            "system_tag": "S",
        },
    },
    "openai": {
        "file_name": "openai.json",
        "formatting": "openai",
        "columns": {"messages": "messages", "tools": "tools"},
    },
    "openai_as_sharegpt": {
        "file_name": "openai.json",
        "formatting": "sharegpt",
        "columns": {"messages": "messages"},
        "tags": OPENAI_TAGS,
    },
    "dpo": {
        "file_name": "pairwise.json",
        "ranking": True,
        "columns": {
            "prompt": "instruction",
            "query": "input",
            "chosen": "chosen",
            "rejected": "rejected",
        },
    },
    "dpo_sharegpt": {
        "file_name": "pairwise_sharegpt.json",
        "formatting": "sharegpt",
        "ranking": True,
        "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"},
    },
    "kto": {
        "file_name": "kto.json",
        "formatting": "sharegpt",
        "columns": {"messages": "messages", "kto_tag": "label"},
        "tags": OPENAI_TAGS,
    },
    "csv": {"file_name": "table.csv"},
    "parquet": {"file_name": "table.parquet"},
    "arrow": {"file_name": "table.arrow"},
    "wiki": {"file_name": "wiki.txt", "columns": {"prompt": "text"}},
    "shards": {"file_name": "shards", "formatting": "sharegpt"},
    "hub": {"hf_hub_url": "nobody/not-a-dataset", "ms_hub_url": "nobody/not-a-dataset"},
}


def write_lf_folder(folder: Path) -> Path:
    """Write a LLaMA-Factory-style data folder (dataset_info.json + one file per format)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    dump = lambda name, data: (folder / name).write_text(json.dumps(data, indent=2))  # noqa: E731
    dump("dataset_info.json", INFO)
    dump("alpaca.json", ALPACA)
    dump("openai.json", OPENAI)
    dump("pairwise.json", PAIRWISE)
    dump("pairwise_sharegpt.json", PAIRWISE_SHAREGPT)
    dump("kto.json", KTO)
    (folder / "sharegpt.jsonl").write_text("".join(json.dumps(r) + "\n" for r in SHAREGPT))
    (folder / "table.csv").write_text(
        'instruction,input,output\nUpper: a b,,A B\n"Lower:",C D,c d\n'
    )
    table = pa.Table.from_pylist(TABLE)
    pq.write_table(table, folder / "table.parquet")
    with pa.ipc.new_file(folder / "table.arrow", table.schema) as writer:
        writer.write_table(table)
    (folder / "wiki.txt").write_text("First document.\n\nSecond document.\n")
    shards = folder / "shards"
    shards.mkdir(exist_ok=True)
    for i in range(3):
        turns = [
            {
                "conversations": [
                    {"from": "human", "value": f"q{i}.{j}"},
                    {"from": "gpt", "value": f"a{i}.{j}"},
                ]
            }
            for j in range(4)
        ]
        (shards / f"part-{i}.jsonl").write_text("".join(json.dumps(t) + "\n" for t in turns))
    return folder


@pytest.fixture
def lf_dir(tmp_path: Path) -> Path:
    """A fresh LLaMA-Factory-style data folder."""
    return write_lf_folder(tmp_path / "data")
