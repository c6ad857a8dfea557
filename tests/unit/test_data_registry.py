"""dataset_info.json: LLaMA-Factory's schema, its defaults, and errors that say where and why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raytune_llm.data.errors import DataError
from raytune_llm.data.registry import (
    Columns,
    Tags,
    dataset_files,
    load_registry,
    make_spec,
    online_spec,
    resolve_datasets,
)

DATA_DIR = Path(__file__).resolve().parents[2] / "data"
LF_TAGS = Tags(
    role_tag="from",
    content_tag="value",
    user_tag="human",
    assistant_tag="gpt",
    observation_tag="observation",
    function_tag="function_call",
    system_tag="system",
)


def write_info(folder: Path, text: str | dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    body = text if isinstance(text, str) else json.dumps(text, indent=2)
    (folder / "dataset_info.json").write_text(body)
    return folder


def test_shipped_registry_loads_every_entry():
    registry = load_registry(DATA_DIR)
    raw = json.loads((DATA_DIR / "dataset_info.json").read_text())
    assert list(registry) == list(raw)
    for name, spec in registry.items():
        assert spec.load_from == "file" and (DATA_DIR / spec.source).is_file(), name
        assert dataset_files(spec, DATA_DIR) == [str(DATA_DIR / spec.source)]
    assert registry["demo_dpo"].ranking and registry["demo_dpo_sharegpt"].formatting == "sharegpt"


def test_defaults_follow_llamafactory(lf_dir):
    registry = load_registry(lf_dir)
    # No "columns": LLaMA-Factory's default columns; no "tags": its default tags.
    default = registry["alpaca_default"]
    assert default.columns == Columns(
        prompt="instruction", query="input", response="output", messages="conversations"
    )
    assert default.tags == LF_TAGS and default.split == "train" and not default.ranking
    # A "columns" object leaves every column it does not name unused, as LLaMA-Factory does.
    assert registry["alpaca_no_query"].columns == Columns(prompt="instruction", response="output")
    # Likewise "tags": this entry names no observation or function tag, so it has none.
    kto = registry["kto"]
    assert kto.tags.function_tag is None and kto.tags.observation_tag is None
    assert kto.tags.role_tag == "role" and kto.columns.kto_tag == "label"
    # formatting openai without tags: OpenAI's own names.
    openai = make_spec("x", _entry({"file_name": "o.json", "formatting": "openai"}))
    assert openai.columns.messages == "messages"
    assert (openai.tags.role_tag, openai.tags.content_tag) == ("role", "content")
    assert (openai.tags.user_tag, openai.tags.assistant_tag) == ("user", "assistant")
    assert (openai.tags.observation_tag, openai.tags.system_tag) == ("tool", "system")


def _entry(raw: dict):
    from raytune_llm.data.registry import DatasetEntry

    return DatasetEntry.model_validate(raw)


def test_source_priority_matches_llamafactory():
    every = {
        "hf_hub_url": "h/d",
        "ms_hub_url": "m/d",
        "om_hub_url": "o/d",
        "script_url": "s",
        "cloud_file_name": "s3://b/f.json",
        "file_name": "f.json",
    }
    order = ["hf_hub", "ms_hub", "om_hub", "script", "cloud_file", "file"]
    keys = list(every)
    for i, load_from in enumerate(order):
        spec = make_spec("d", _entry({k: every[k] for k in keys[i:]}))
        assert (spec.load_from, spec.source) == (load_from, every[keys[i]])
    spec = make_spec(
        "d",
        _entry(
            {
                "hf_hub_url": "h/d",
                "subset": "en",
                "split": "test",
                "folder": "python",
                "num_samples": 5,
                "revision": "v1",
            }
        ),
    )
    assert (spec.subset, spec.split, spec.folder, spec.num_samples, spec.revision) == (
        "en",
        "test",
        "python",
        5,
        "v1",
    )


def test_resolve_keeps_order_and_takes_a_comma_string(lf_dir):
    names = [s.name for s in resolve_datasets("csv, alpaca,wiki", lf_dir)]
    assert names == ["csv", "alpaca", "wiki"]
    assert resolve_datasets(None, lf_dir) == []


def test_online_dataset_dir_makes_names_hub_ids():
    (spec,) = resolve_datasets(["llamafactory/alpaca_en"], "ONLINE")
    assert spec == online_spec("llamafactory/alpaca_en")
    assert (spec.load_from, spec.source, spec.formatting) == (
        "hf_hub",
        "llamafactory/alpaca_en",
        "alpaca",
    )


def test_old_llamafactory_keys_are_accepted(tmp_path):
    folder = write_info(
        tmp_path,
        {
            "old": {"file_name": "a.json", "file_sha1": "abc"},
            "hub": {"hf_hub_url": "x/y", "revision": "main"},
        },
    )
    assert set(load_registry(folder)) == {"old", "hub"}


def test_unknown_dataset_name_suggests_and_lists(lf_dir):
    with pytest.raises(DataError) as err:
        resolve_datasets(["alpacca", "nope"], lf_dir)
    message = str(err.value)
    assert "unknown dataset 'alpacca' (did you mean 'alpaca'?)" in message
    assert "unknown dataset 'nope'" in message
    assert "dataset_info.json defines: alpaca, alpaca_default" in message
    assert str(lf_dir / "dataset_info.json") in message


def test_missing_dataset_info_and_missing_folder(tmp_path):
    with pytest.raises(DataError, match=r"no dataset_info.json in .*data/README.md"):
        load_registry(tmp_path)
    with pytest.raises(DataError, match=r"dataset_dir '.*nowhere' is not a folder"):
        resolve_datasets(["a"], tmp_path / "nowhere")


def test_invalid_json_names_the_line(tmp_path):
    folder = write_info(tmp_path, '{\n  "a": {\n    "file_name": "a.json",,\n  }\n}\n')
    with pytest.raises(DataError) as err:
        load_registry(folder)
    assert f"{folder / 'dataset_info.json'}:3: invalid JSON" in str(err.value)


def test_unknown_keys_get_did_you_mean_with_lines(tmp_path):
    folder = write_info(
        tmp_path,
        {
            "good": {"file_name": "g.json"},
            "typo": {"file_nmae": "t.json", "columns": {"promt": "q"}, "tags": {"role_tga": "r"}},
        },
    )
    with pytest.raises(DataError) as err:
        load_registry(folder)
    message = str(err.value)
    assert "3 problems" in message  # all at once
    assert "line 5, 'typo': unknown key 'file_nmae' (did you mean 'file_name'?)" in message
    assert "unknown key 'columns.promt' (did you mean 'prompt'?)" in message
    assert "unknown key 'tags.role_tga' (did you mean 'role_tag'?)" in message
    assert "names no source; set one of hf_hub_url" not in message  # validation failed first


def test_unknown_formatting_and_wrong_types(tmp_path):
    folder = write_info(
        tmp_path,
        {
            "a": {"file_name": "a.json", "formatting": "sharegtp"},
            "b": {"file_name": "b.json", "ranking": "yes", "num_samples": 0},
            "c": "a.json",
        },
    )
    with pytest.raises(DataError) as err:
        load_registry(folder)
    message = str(err.value)
    assert (
        "formatting: 'sharegtp' is not valid (did you mean 'sharegpt'?); valid: alpaca, "
        "sharegpt, openai" in message
    )
    assert "'b': ranking: input should be a valid boolean" in message
    assert "'b': num_samples: input should be greater than 0" in message
    assert "'c': entry: must be a JSON object, got a string" in message


def test_entry_without_a_source(tmp_path):
    folder = write_info(tmp_path, {"empty": {"formatting": "sharegpt"}})
    with pytest.raises(
        DataError,
        match=r"'empty': entry 'empty' names no source; set one of "
        r"hf_hub_url, ms_hub_url, om_hub_url, script_url, cloud_file_name, "
        r"file_name",
    ):
        load_registry(folder)


def test_duplicate_entries_are_reported(tmp_path):
    folder = write_info(tmp_path, '{"a": {"file_name": "x.json"}, "a": {"file_name": "y.json"}}')
    with pytest.raises(DataError, match="duplicate key 'a'"):
        load_registry(folder)


def test_folder_files_are_sorted_and_of_one_type(lf_dir):
    registry = load_registry(lf_dir)
    files = dataset_files(registry["shards"], lf_dir)
    assert [Path(f).name for f in files] == ["part-0.jsonl", "part-1.jsonl", "part-2.jsonl"]
    (lf_dir / "shards" / "extra.csv").write_text("a\n1\n")
    with pytest.raises(DataError, match=r"mixes file types \(csv, json\)"):
        dataset_files(registry["shards"], lf_dir)
    (lf_dir / "shards" / "extra.csv").unlink()
    (lf_dir / "shards" / "sub").mkdir()
    with pytest.raises(DataError, match=r"holds sub-folders \(sub\)"):
        dataset_files(registry["shards"], lf_dir)


def test_missing_file_and_unknown_type(lf_dir):
    spec = make_spec("gone", _entry({"file_name": "gone.json"}))
    with pytest.raises(
        DataError, match=r"dataset_info.json 'gone': file_name 'gone.json': no such"
    ):
        dataset_files(spec, lf_dir)
    (lf_dir / "data.xlsx").write_text("")
    spec = make_spec("xl", _entry({"file_name": "data.xlsx"}))
    with pytest.raises(DataError, match=r"unsupported file type '.xlsx'; valid: .json, .jsonl"):
        dataset_files(spec, lf_dir)


def test_hub_entry_offline_fails_clearly(lf_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (spec,) = resolve_datasets(["hub"], lf_dir)
    assert (spec.load_from, spec.source) == ("hf_hub", "nobody/not-a-dataset")
    with pytest.raises(DataError) as err:
        dataset_files(spec, lf_dir)
    message = str(err.value)
    assert "dataset_info.json 'hub'" in message and "'nobody/not-a-dataset'" in message
    assert "hub unreachable or offline (HF_HUB_OFFLINE=1)" in message


def test_remote_dataset_dir_offline_fails_clearly(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        DataError,
        match=r"REMOTE:nobody/info: cannot fetch dataset_info.json .* "
        r"offline \(HF_HUB_OFFLINE=1\)",
    ):
        load_registry("REMOTE:nobody/info")


def test_ms_and_om_hub_entries_explain_what_is_missing(lf_dir):
    ms = make_spec("ms", _entry({"ms_hub_url": "org/ds"}))
    with pytest.raises(DataError, match=r"'ms': ms_hub_url 'org/ds' needs the modelscope package"):
        dataset_files(ms, lf_dir)
    om = make_spec("om", _entry({"om_hub_url": "org/ds"}))
    with pytest.raises(DataError, match=r"om_hub_url 'org/ds' .* is not supported"):
        dataset_files(om, lf_dir)


def test_script_url_folder_is_read_by_datasets_into_arrow_files(lf_dir, tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    script = lf_dir / "local_ds"
    script.mkdir()
    (script / "train.json").write_text(json.dumps([{"instruction": "hi", "output": "yo"}]))
    spec = make_spec("local", _entry({"script_url": "local_ds"}))
    files = dataset_files(spec, lf_dir)
    assert files and all(f.endswith(".arrow") for f in files)


def test_cloud_file_name_reads_through_pyarrow_filesystems(lf_dir):
    from raytune_llm.data.readers import iter_dataset

    spec = make_spec("cloud", _entry({"cloud_file_name": f"file://{lf_dir / 'shards'}"}))
    files = dataset_files(spec, lf_dir)
    assert files == [f"file://{lf_dir / 'shards' / f'part-{i}.jsonl'}" for i in range(3)]
    assert len(list(iter_dataset(spec, lf_dir))) == 12
    missing = make_spec("gone", _entry({"cloud_file_name": f"file://{lf_dir / 'gone.json'}"}))
    with pytest.raises(DataError, match=r"'gone': cannot read cloud_file_name 'file://"):
        dataset_files(missing, lf_dir)
