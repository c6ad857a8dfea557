"""The whole data pipeline on a real local Ray: read → convert → mix → split → tokenise → pack."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from raytune_llm.config import load_config
from raytune_llm.data.errors import DataError, surface_data_errors
from raytune_llm.data.pipeline import prepare_data
from raytune_llm.model.loader import load_tokenizer

ROOT = Path(__file__).resolve().parents[2]
EXE = Path(sys.executable).with_name("raytune-llm")
DEMO = ROOT / "examples" / "demo" / "tiny_lora_sft.yaml"


def cfg_of(model_dir, *overrides):
    overrides = list(overrides)
    if "eval_dataset=" in overrides:  # no eval data: no evaluation either
        overrides.append("eval_strategy=no")
    if any(o.startswith(("neat_packing=true", "stage=pt")) for o in overrides):
        overrides.append("packing=true")
    return load_config(
        DEMO, [f"model_name_or_path={model_dir}", f"dataset_dir={ROOT / 'data'}", *overrides]
    )


def rows(ds):
    return list(ds.iter_rows()) if ds is not None else []


def prepared(cfg):
    with surface_data_errors():
        return prepare_data(cfg, functools.partial(load_tokenizer, cfg.model), num_cpus=0.5)


@pytest.fixture(scope="module")
def sft(ray_local, tiny_llama_dir):
    cfg = cfg_of(tiny_llama_dir, "packing=false")
    data = prepared(cfg)
    return cfg, rows(data.train), rows(data.eval)


def test_sft_rows_match_the_template(sft, tiny_llama_dir):
    from raytune_llm.data.templates import get_template
    from raytune_llm.data.tokenize import encode_supervised

    cfg, train, evaluation = sft
    assert len(train) == 2000 and len(evaluation) == 200
    tokenizer = load_tokenizer(cfg.model)
    template = get_template("llama3", tokenizer)
    first = json.loads((ROOT / "data" / "demo_alpaca.json").read_text())[0]
    user = first["instruction"] + ("\n" + first["input"] if first["input"] else "")
    record = {"messages": [{"role": "user", "content": user},
                           {"role": "assistant", "content": first["output"]}],
              "system": first["system"], "tools": ""}  # fmt: skip
    expected = encode_supervised(record, template, tokenizer, 128)
    assert expected["input_ids"] in [list(r["input_ids"]) for r in train]
    for row in train:
        assert len(row["input_ids"]) == len(row["labels"]) <= cfg.data.cutoff_len
        answer = [t for t, lab in zip(row["input_ids"], row["labels"], strict=True) if lab != -100]
        assert answer[-1] == tokenizer.convert_tokens_to_ids("<|eot_id|>")


def test_packing_loses_no_token(ray_local, sft, tiny_llama_dir):
    cfg, train, _ = sft
    packed = rows(prepared(cfg_of(tiny_llama_dir, "packing=true")).train)
    assert all(len(r["input_ids"]) <= cfg.data.cutoff_len for r in packed)
    assert len(packed) < len(train) / 3
    unpacked_tokens = Counter(t for r in train for t in r["input_ids"])
    assert Counter(t for r in packed for t in r["input_ids"]) == unpacked_tokens
    assert sum(len(r["seq_lens"]) for r in packed) == len(train)
    neat = rows(prepared(cfg_of(tiny_llama_dir, "neat_packing=true")).train)
    for row in neat:
        starts = [0]
        for n in row["seq_lens"][:-1]:
            starts.append(starts[-1] + n)
        assert all(row["position_ids"][s] == 0 for s in starts)


def test_val_size_split_is_disjoint_and_deterministic(ray_local, tiny_llama_dir):
    cfg = cfg_of(tiny_llama_dir, "eval_dataset=", "val_size=0.1", "packing=false")
    first, again = prepared(cfg), prepared(cfg)
    train, evaluation = rows(first.train), rows(first.eval)
    key = lambda r: tuple(r["input_ids"])  # noqa: E731
    assert len(train) + len(evaluation) == 2000 and 120 < len(evaluation) < 280
    assert not {key(r) for r in train} & {key(r) for r in evaluation}
    assert sorted(map(key, rows(again.eval))) == sorted(map(key, evaluation))


def test_mixing_and_limits(ray_local, tiny_llama_dir):
    both = "dataset=demo_alpaca,demo_sharegpt"
    data = prepared(cfg_of(tiny_llama_dir, both, "max_samples=50", "eval_dataset="))
    assert len(rows(data.train)) == 100
    data = prepared(cfg_of(tiny_llama_dir, both, "eval_dataset=", "mix_strategy=interleave_under",
                           "interleave_probs=0.8,0.2"))  # fmt: skip
    # Sampling 80/20 until the first dataset runs out: all 2000 alpaca rows and 500 sharegpt.
    assert len(rows(data.train)) == 2500
    data = prepared(cfg_of(tiny_llama_dir, both, "eval_dataset=", "mix_strategy=interleave_over",
                           "interleave_probs=0.5,0.5"))  # fmt: skip
    assert len(rows(data.train)) == 4000  # sharegpt repeated up to alpaca's 2000


def test_pretraining_blocks_and_preference_layouts(ray_local, tiny_llama_dir):
    pt = rows(prepared(cfg_of(tiny_llama_dir, "stage=pt", "dataset=demo_pt",
                              "eval_dataset=")).train)  # fmt: skip
    assert pt and all(len(r["input_ids"]) == 128 for r in pt)
    dpo = rows(prepared(cfg_of(tiny_llama_dir, "stage=dpo", "dataset=demo_dpo",
                               "eval_dataset=")).train)  # fmt: skip
    assert len(dpo) == 500 and set(dpo[0]) >= {"chosen_input_ids", "rejected_labels"}
    kto = rows(prepared(cfg_of(tiny_llama_dir, "stage=kto", "dataset=demo_kto",
                               "eval_dataset=")).train)  # fmt: skip
    assert {bool(r["kto_tag"]) for r in kto} == {True, False}


def test_tokenized_path_is_written_once_and_checked(ray_local, tiny_llama_dir, tmp_path):
    cache = tmp_path / "tok"
    cfg = cfg_of(tiny_llama_dir, f"tokenized_path={cache}", "max_samples=64")
    first = prepared(cfg)
    assert (cache / "settings.json").is_file() and (cache / "train").is_dir()
    assert "wrote tokenised data" in first.notes[0]
    again = prepared(cfg)
    assert "read tokenised data" in again.notes[0]
    assert sorted(map(str, rows(again.train))) == sorted(map(str, rows(first.train)))
    with pytest.raises(DataError, match="cutoff_len differ"):
        prepared(cfg_of(tiny_llama_dir, f"tokenized_path={cache}", "max_samples=64",
                        "cutoff_len=64"))  # fmt: skip
    redone = prepared(cfg_of(tiny_llama_dir, f"tokenized_path={cache}", "max_samples=64",
                             "cutoff_len=64", "overwrite_cache=true"))  # fmt: skip
    assert "wrote" in redone.notes[0]


def test_bad_records_stop_with_file_and_line_or_are_counted(ray_local, tiny_llama_dir, tmp_path):
    data_dir = tmp_path / "data"
    shutil.copytree(ROOT / "data", data_dir)
    lines = [json.dumps(r) for r in json.loads((data_dir / "demo_alpaca.json").read_text())[:20]]
    lines[6] = '{"instruction": "broken", "output": '
    (data_dir / "demo_alpaca.json").unlink()
    (data_dir / "demo_alpaca.jsonl").write_text("\n".join(lines) + "\n")
    info = json.loads((data_dir / "dataset_info.json").read_text())
    info["demo_alpaca"]["file_name"] = "demo_alpaca.jsonl"
    (data_dir / "dataset_info.json").write_text(json.dumps(info))
    base = [f"dataset_dir={data_dir}", "eval_dataset="]
    with pytest.raises(DataError, match=r"demo_alpaca.jsonl:7"):
        rows(prepared(cfg_of(tiny_llama_dir, *base)).train)
    data = prepared(cfg_of(tiny_llama_dir, *base, "skip_bad_records=true"))
    assert len(rows(data.train)) == 19
    from raytune_llm.data.readers import collect_bad_records

    tally = collect_bad_records(data.bad_records)
    assert tally.count == 1 and "demo_alpaca.jsonl:7" in tally.summary()


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("dataset=demo_alpacca", "did you mean 'demo_alpaca'"),
        ("template=llama33", "did you mean 'llama3'"),
        ("dataset=demo_dpo", "ranking (pairwise) data cannot be used with stage sft"),
        ("dataset_dir=/nonexistent", "dataset_info.json"),
    ],
)
def test_data_verb_reports_bad_data_clearly(tiny_llama_dir, override, fragment):
    result = subprocess.run(
        [str(EXE), "data", str(DEMO), f"model_name_or_path={tiny_llama_dir}",
         f"dataset_dir={ROOT / 'data'}", override, "-n", "1"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr


def test_data_verb_previews_examples_and_counts(tiny_llama_dir):
    result = subprocess.run(
        [str(EXE), "data", str(DEMO), f"model_name_or_path={tiny_llama_dir}",
         f"dataset_dir={ROOT / 'data'}", "packing=true", "-n", "2"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.count("--- example") == 2 and "⟦" in out
    assert "examples          2,000" in out and "packing efficiency" in out
    assert "trained on" in out and "cut by cutoff_len 0 examples" in out
