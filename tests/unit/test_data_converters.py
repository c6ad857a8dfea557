"""alpaca / sharegpt / openai -> canonical records, equal to what LLaMA-Factory's converter makes.

Each expected record is LLaMA-Factory's ``_prompt``/``_response``/``_system``/``_tools`` for the
same data, rewritten in our shape (the SFT ``messages`` is ``_prompt + _response``).
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import pytest

from raytune_llm.data.converters import STAGES, check_stage, convert
from raytune_llm.data.errors import BadRecords, DataError, Location
from raytune_llm.data.readers import iter_dataset, raw_row
from raytune_llm.data.registry import load_registry

DATA_DIR = Path(__file__).resolve().parents[2] / "data"
SHIPPED_STAGES = {
    "demo_alpaca": "sft",
    "demo_alpaca_eval": "sft",
    "demo_dpo": "dpo",
    "demo_dpo_sharegpt": "rm",
    "demo_kto": "kto",
    "demo_pt": "pt",
    "demo_sharegpt": "sft",
}


def u(text):
    return {"role": "user", "content": text}


def a(text):
    return {"role": "assistant", "content": text}


def sft(messages, system="", tools=""):
    return {"messages": messages, "system": system, "tools": tools}


def converted(lf_dir, name, stage):
    spec = load_registry(lf_dir)[name]
    return [convert(r, spec, stage, where=w) for r, w in iter_dataset(spec, lf_dir)]


@pytest.fixture
def specs(lf_dir):
    return load_registry(lf_dir)


def test_alpaca_joins_prompt_and_query_and_keeps_history(lf_dir):
    assert converted(lf_dir, "alpaca", "sft") == [
        sft([u("Count the letters.\na b c"), a("3")], system="Be brief."),
        sft([u("Name the first letter: d e"), a("d")]),
        sft([u("Name the first letter: d e"), a("d"), u("And the last?"), a("e")]),
    ]
    # A "columns" object without query: the input is not used (LLaMA-Factory sets it to None).
    assert converted(lf_dir, "alpaca_no_query", "sft")[0] == sft([u("Count the letters."), a("3")])


def test_sharegpt_maps_tags_and_takes_the_leading_system_turn(lf_dir):
    first, second = converted(lf_dir, "sharegpt", "sft")
    assert first == sft(
        [
            u("Weather in Paris?"),
            {"role": "function", "content": '{"name": "weather", "arguments": {"city": "Paris"}}'},
            {"role": "observation", "content": '{"temp": 21}'},
            a("21 degrees."),
        ],
        system="You call tools.",
        tools='[{"name": "weather"}]',
    )
    assert second == sft([u("Hi"), a("Hello")], system="Hi.")


def test_openai_tool_calls_and_tool_results(lf_dir):
    (record,) = converted(lf_dir, "openai", "sft")
    calls = [{"name": "add", "arguments": "2,3"}, {"name": "add", "arguments": "4,5"}]
    assert record == sft(
        [
            u("Add 2 and 3, then 4 and 5."),
            {"role": "function", "content": json.dumps(calls)},
            {"role": "observation", "content": "5\n</tool_response>\n<tool_response>\n9"},
            a("5 and 9."),
        ],
        system="You are terse.",
        tools=json.dumps([{"type": "function", "function": {"name": "add"}}]),
    )


def test_openai_layout_as_llamafactory_readme_writes_it(specs):
    record = {
        "messages": [
            {"role": "system", "content": "S"},
            {"role": "user", "content": "Q"},
            {"role": "assistant", "content": "A"},
        ]
    }
    assert convert(record, specs["openai_as_sharegpt"], "sft") == sft([u("Q"), a("A")], system="S")


def test_pairwise_alpaca_and_sharegpt(lf_dir):
    assert converted(lf_dir, "dpo", "dpo") == [
        {
            "prompt": [u("Sort: c a b")],
            "chosen": a("a b c"),
            "rejected": a("c b a"),
            "system": "",
            "tools": "",
        }
    ]
    assert converted(lf_dir, "dpo_sharegpt", "rm") == [
        {
            "prompt": [u("Hi"), a("Hello"), u("Reverse: a b")],
            "chosen": a("b a"),
            "rejected": a("a b"),
            "system": "Answer only.",
            "tools": "",
        }
    ]


def test_kto_records(lf_dir, specs):
    assert converted(lf_dir, "kto", "kto") == [
        {"prompt": [u("1+1?")], "completion": a("2"), "label": True, "system": "", "tools": ""},
        {"prompt": [u("2+2?")], "completion": a("5"), "label": False, "system": "", "tools": ""},
    ]
    spec = specs["alpaca"].model_copy(
        update={"columns": specs["alpaca"].columns.model_copy(update={"kto_tag": "ok"})}
    )
    record = {"instruction": "Hi", "input": "", "output": "Yo", "ok": "false"}  # a CSV cell
    assert convert(record, spec, "kto")["label"] is False


def test_tables_and_text(lf_dir):
    expected = [sft([u("Upper: a b"), a("A B")]), sft([u("Lower:\nC D"), a("c d")])]
    for name in ("csv", "parquet", "arrow"):
        assert converted(lf_dir, name, "sft") == expected, name
    assert converted(lf_dir, "wiki", "pt") == [
        {"text": "First document."},
        {"text": "Second document."},
    ]
    assert converted(lf_dir, "alpaca", "pt")[0] == {"text": "Count the letters.\na b c"}
    assert len(converted(lf_dir, "shards", "sft")) == 12


def test_ppo_takes_prompts_without_answers(specs):
    record = {"instruction": "Hi", "input": None, "output": None}
    assert convert(record, specs["alpaca"], "ppo") == sft([u("Hi")])


def test_shipped_data_converts_fully():
    registry = load_registry(DATA_DIR)
    assert set(SHIPPED_STAGES) == set(registry)
    for name, stage in SHIPPED_STAGES.items():
        spec = registry[name]
        out = [convert(r, spec, stage, where=w) for r, w in iter_dataset(spec, DATA_DIR)]
        assert len(out) == len(json.loads((DATA_DIR / spec.source).read_text())), name


@pytest.mark.parametrize(
    ("name", "stage", "message"),
    [
        (
            "dpo",
            "sft",
            "'dpo': ranking (pairwise) data cannot be used with stage sft; it suits "
            "stages rm, dpo, orpo",
        ),
        ("dpo_sharegpt", "pt", "cannot be used with stage pt"),
        ("alpaca", "dpo", "'alpaca': stage dpo needs ranking (pairwise) data"),
        ("alpaca", "kto", "stage kto needs a kto_tag column"),
        ("kto", "sft", "this is KTO data (columns.kto_tag): use it with stage kto"),
        ("sharegpt", "pt", "stage pt reads alpaca data (sharegpt is not supported"),
        ("wiki", "sft", "stage sft reads columns.response, which this entry leaves unset"),
        ("alpaca", "orpoo", "unknown stage 'orpoo' (did you mean 'orpo'?); valid: pt, sft"),
    ],
)
def test_stage_checks_name_dataset_and_stage(specs, name, stage, message):
    with pytest.raises(DataError, match=re.escape(message)):
        check_stage(specs[name], stage)
    with pytest.raises(DataError, match=re.escape(message)):
        convert({}, specs[name], stage)  # checked before the record is looked at


def test_every_stage_is_known(specs):
    assert STAGES == ("pt", "sft", "rm", "ppo", "dpo", "kto", "orpo")
    with pytest.raises(DataError, match="unknown stage 'simpo'"):
        check_stage(specs["alpaca"], "simpo")  # simpo is a dpo loss (pref_loss: simpo), not a stage


AT = Location("d.jsonl", 7)


@pytest.mark.parametrize(
    ("name", "record", "message"),
    [
        (
            "alpaca",
            {"instruction": "q", "input": ""},
            "d.jsonl:7: no column 'output' (columns.response); the record has: instruction, input",
        ),
        (
            "alpaca",
            {"instruction": "q", "output": 3},
            "column 'output' (columns.response) must be a string, got a number",
        ),
        (
            "alpaca",
            {"instruction": "q", "output": "a", "history": [["x"]]},
            "column 'history'[0] (columns.history) must be a [prompt, answer] pair",
        ),
        (
            "sharegpt",
            {"dialog": "hi"},
            "column 'dialog' (columns.messages) must be a list of turns, got a string",
        ),
        (
            "sharegpt",
            {"dialog": [{"speaker": "U", "text": 1}]},
            "'dialog'[0].text (tags.content_tag) must be a string, got a number",
        ),
        (
            "sharegpt",
            {"dialog": [{"speaker": "A", "text": "x"}, {"speaker": "U", "text": "y"}]},
            "'dialog' turn 1 is a assistant turn where U or O was expected",
        ),
        (
            "sharegpt",
            {"dialog": [{"speaker": "U", "text": "x"}]},
            "the conversation must end with an assistant-side turn (the answer); got 1 turns",
        ),
        (
            "sharegpt",
            {"dialog": [{"speaker": "user", "text": "x"}]},
            "'dialog'[0] has role 'user'; valid (tags): U (user), A (assistant)",
        ),
        (
            "sharegpt",
            {"dialog": [{"speaker": "U", "text": "x"}, {"speaker": "S", "text": "y"}]},
            "'dialog' turn 2 is a system turn where A or F was expected",
        ),
        (
            "openai_as_sharegpt",
            {"messages": [{"role": "user", "content": "q"}, {"role": "tool", "content": "r"}]},
            "'messages'[1] has role 'tool'",
        ),
        (
            "dpo_sharegpt",
            {
                "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}],
                "chosen": {"from": "gpt", "value": "c"},
                "rejected": "r",
            },
            "ranking data must end with a user-side turn",
        ),
        (
            "dpo_sharegpt",
            {
                "conversations": [{"from": "human", "value": "q"}],
                "chosen": {"from": "human", "value": "c"},
                "rejected": {"from": "gpt", "value": "r"},
            },
            "column 'chosen' (columns.chosen) must be an answer turn (gpt or function_call), got "
            "'human'",
        ),
        (
            "kto",
            {
                "messages": [
                    {"role": "user", "content": "q"},
                    {"role": "assistant", "content": "a"},
                ],
                "label": 1,
            },
            "column 'label' (columns.kto_tag) must be true or false, got 1",
        ),
    ],
)
def test_malformed_records_name_location_and_column(specs, name, record, message):
    stage = {"dpo_sharegpt": "dpo", "kto": "kto"}.get(name, "sft")
    with pytest.raises(DataError) as err:
        convert(record, specs[name], stage, where=AT)
    assert str(err.value).startswith("d.jsonl:7: ")
    assert message in str(err.value)


def test_the_pipeline_converts_raw_rows_and_skips_bad_ones(specs):
    import pyarrow as pa

    from raytune_llm.data.pipeline import Convert

    def run(fn, *records):
        out = fn(pa.Table.from_pylist([raw_row(r, AT) for r in records]))
        return [pickle.loads(b) for b in out["_example"]]

    spec = specs["alpaca"]
    good = {"instruction": "q", "output": "a"}
    assert run(Convert(spec, "sft", False, None), good) == [sft([u("q"), a("a")])]
    with pytest.raises(DataError, match=r"d\.jsonl:7: no column 'output'"):
        run(Convert(spec, "sft", False, None), {"instruction": "q"})
    tally = BadRecords()
    skipping = Convert(spec, "sft", True, tally)
    assert run(skipping, {"instruction": "q"}, good) == [sft([u("q"), a("a")])]
    assert tally.count == 1 and tally.examples[0].startswith("d.jsonl:7: no column 'output'")
    assert "skipped 1 malformed record" in tally.summary()
    assert pickle.loads(pickle.dumps(skipping)).spec == spec  # ships to Ray workers


def test_data_error_pickles_with_its_location():
    error = pickle.loads(pickle.dumps(DataError("bad", where=AT)))
    assert (error.reason, error.where, str(error)) == ("bad", AT, "d.jsonl:7: bad")
