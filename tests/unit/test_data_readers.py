"""Readers: every format, exact lines and rows, streaming, skip_bad, and the Ray Data path."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from raytune_llm.data import readers
from raytune_llm.data.converters import convert
from raytune_llm.data.errors import BadRecords, DataError, Location, surface_data_errors
from raytune_llm.data.pipeline import Convert
from raytune_llm.data.readers import iter_dataset, iter_records, read_dataset
from raytune_llm.data.registry import load_registry

TABLE = [  # what the fixture folder's table.csv / .parquet / .arrow hold
    {"instruction": "Upper: a b", "input": None, "output": "A B"},
    {"instruction": "Lower:", "input": "C D", "output": "c d"},
]


def records(path, **kwargs):
    return list(iter_records(path, **kwargs))


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_json_array_records_and_lines(lf_dir):
    out = records(lf_dir / "alpaca.json")
    assert [r for r, _ in out] == json.loads((lf_dir / "alpaca.json").read_text())
    lines = (lf_dir / "alpaca.json").read_text().splitlines()
    assert [w.line for _, w in out] == [2, 8, 14]
    assert all(lines[w.line - 1].strip() == "{" for _, w in out)
    assert str(out[1][1]) == f"{lf_dir / 'alpaca.json'}:8"


def test_big_json_array_streams_in_chunks(tmp_path, monkeypatch):
    data = [{"i": i, "text": "x\ny" * (i % 5), "nest": {"k": [i, None, True]}} for i in range(600)]
    path = write(tmp_path / "big.json", json.dumps(data, indent=2, ensure_ascii=False))
    monkeypatch.setattr(readers, "CHUNK_CHARS", 200)  # records straddle chunk ends
    reads: list[int] = []
    real_open = readers._open_text

    class Spy:
        def __init__(self, f):
            self.f = f

        def read(self, n=-1):
            reads.append(len(chunk := self.f.read(n)))
            return chunk

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(readers, "_open_text", lambda p, newline=None: Spy(real_open(p, newline)))
    stream = iter_records(path)
    first = next(stream)
    assert first == (data[0], Location(str(path), 2))
    assert sum(reads) < 2000 < path.stat().st_size  # the first record came before the rest
    rest = list(stream)
    assert [r for r, _ in [first, *rest]] == data
    lines = path.read_text().splitlines()
    assert all(lines[w.line - 1] == "  {" for _, w in rest)


def test_json_lines_in_json_and_jsonl_files(tmp_path):
    text = '{"a": 1}\n\n{"a": 2}\n'
    for name in ("x.json", "x.jsonl"):
        out = records(write(tmp_path / name, text))
        assert [(r["a"], w.line) for r, w in out] == [(1, 1), (2, 3)]


def test_csv_parquet_arrow_rows(lf_dir, tmp_path):
    for name in ("table.csv", "table.parquet", "table.arrow"):
        out = records(lf_dir / name)
        assert [r for r, _ in out] == TABLE, name
        assert [w.row for _, w in out] == [1, 2]
    assert [w.line for _, w in records(lf_dir / "table.csv")] == [2, 3]
    quoted = write(tmp_path / "q.csv", 'a,b\n"two\nlines",1\n\nx,2\n')
    assert [(r, w.line, w.row) for r, w in records(quoted)] == [
        ({"a": "two\nlines", "b": "1"}, 2, 1),
        ({"a": "x", "b": "2"}, 5, 2),
    ]


def test_hugging_face_arrow_files(tmp_path):
    import datasets

    datasets.Dataset.from_list(TABLE).save_to_disk(tmp_path / "saved")
    (arrow,) = (tmp_path / "saved").glob("*.arrow")  # Arrow IPC stream format
    assert [r for r, _ in records(arrow)] == TABLE


def test_text_lines(lf_dir):
    out = records(lf_dir / "wiki.txt")
    assert [(r, w.line) for r, w in out] == [
        ({"text": "First document."}, 1),
        ({"text": "Second document."}, 3),
    ]


def test_missing_file_and_bad_encoding(tmp_path):
    with pytest.raises(DataError, match=r"gone.json: file not found"):
        records(tmp_path / "gone.json")
    with pytest.raises(DataError, match=r"gone.parquet: file not found"):
        records(tmp_path / "gone.parquet")
    (tmp_path / "latin.jsonl").write_bytes(b'{"a": "\xe9"}\n')
    with pytest.raises(DataError, match=r"latin.jsonl: not UTF-8 text"):
        records(tmp_path / "latin.jsonl")
    with pytest.raises(DataError, match=r"not a readable Parquet file"):
        records(write(tmp_path / "fake.parquet", "nope"))


def test_malformed_json_line_names_its_line(tmp_path):
    path = write(tmp_path / "d.jsonl", '{"a": 1}\n{"a": 2,}\n[1]\n{"a": 3}\n')
    with pytest.raises(DataError, match=rf"{path}:2: invalid JSON \(column 9\)"):
        records(path)
    tally = BadRecords()
    out = records(path, skip_bad=True, bad_counter=tally)
    assert [r["a"] for r, _ in out] == [1, 3]
    assert tally.count == 2
    assert tally.examples[1] == f"{path}:3: a record must be a JSON object, got an array"


def test_json_array_with_a_broken_element_names_its_line(tmp_path):
    data = [{"i": i, "t": "x"} for i in range(4)]
    lines = json.dumps(data, indent=2).splitlines()
    lines[6] = lines[6].replace('"i": 1', '"i": 1 "oops": 2')  # inside the second record
    path = write(tmp_path / "a.json", "\n".join(lines))
    with pytest.raises(DataError) as err:
        records(path)
    assert str(err.value).startswith(f"{path}:7: invalid JSON (column 12): Expecting ',' delimiter")
    assert "in the record from line 6" in str(err.value)
    tally = BadRecords()
    out = records(path, skip_bad=True, bad_counter=tally)
    assert [r["i"] for r, _ in out] == [0, 2, 3]
    assert [w.line for _, w in out] == [2, 10, 14]
    assert tally.count == 1


def test_json_array_structure_errors(tmp_path):
    cases = {
        '[\n{"a": 1},\n{"a": 2}\n': "not closed",
        '[\n{"a": 1}\n{"a": 2}\n]': r":3: expected ',' or ']' after a record",
        '[\n{"a": 1},\n]': r":3: trailing comma",
        '[{"a": 1}] x': "unexpected text after",
        '"text"': "must hold a JSON array of objects or one JSON object per line",
    }
    for i, (text, message) in enumerate(cases.items()):
        with pytest.raises(DataError, match=message):
            records(write(tmp_path / f"s{i}.json", text))
    path = write(tmp_path / "n.json", '[{"a": 1}, 2]')
    with pytest.raises(DataError, match=r"n.json:1: a record must be a JSON object, got a number"):
        records(path)
    assert records(write(tmp_path / "empty.json", " \n")) == []


def test_csv_row_of_the_wrong_width(tmp_path):
    path = write(tmp_path / "t.csv", "a,b\n1,2\n3\n4,5\n")
    with pytest.raises(DataError, match=rf"{path}:3 \(row 2\): row has 1 fields but the header "):
        records(path)
    tally = BadRecords()
    assert len(records(path, skip_bad=True, bad_counter=tally)) == 2 and tally.count == 1


# ---- Ray Data -----------------------------------------------------------------------------------


def locations_and_records(rows):
    return sorted((r["_file"], r["_line"] or 0, r["_row"] or 0, r["_record"]) for r in rows)


def test_ray_reader_matches_the_python_iterator(ray_local, lf_dir, monkeypatch):
    monkeypatch.setattr(readers, "BLOCK_ROWS", 2)
    registry = load_registry(lf_dir)
    for name in ("shards", "alpaca", "csv", "parquet", "wiki"):
        spec = registry[name]
        ds = read_dataset(spec, lf_dir)
        expected = [readers.raw_row(r, w) for r, w in iter_dataset(spec, lf_dir)]
        got = list(ds.iter_rows())  # streams; nothing is collected to the driver first
        assert locations_and_records(got) == locations_and_records(expected), name
    shards = read_dataset(registry["shards"], lf_dir).materialize()
    assert shards.num_blocks() == 3  # one read task, and block, per file


def test_ray_reader_reads_lazily_in_tasks(ray_local, lf_dir):
    spec = load_registry(lf_dir)["shards"]
    ds = read_dataset(spec, lf_dir)  # plans the read, reads nothing
    part = lf_dir / "shards" / "part-0.jsonl"
    part.write_text(part.read_text() + json.dumps({"conversations": []}) + "\n")
    assert ds.count() == 13  # the record written after planning was read


def converter(spec, stage="sft", counter=None) -> Convert:
    """The pipeline's conversion of raw rows (skipping bad records when given a counter)."""
    return Convert(spec, stage, counter is not None, counter)


def test_ray_conversion_equals_python_conversion(ray_local, lf_dir):
    registry = load_registry(lf_dir)
    for name, stage in (("sharegpt", "sft"), ("dpo_sharegpt", "dpo"), ("kto", "kto")):
        spec = registry[name]
        ds = read_dataset(spec, lf_dir).map_batches(converter(spec, stage), batch_format="pyarrow")
        expected = [convert(r, spec, stage, where=w) for r, w in iter_dataset(spec, lf_dir)]
        got = [pickle.loads(row["_example"]) for row in ds.iter_rows()]
        key = lambda r: json.dumps(r, sort_keys=True)  # noqa: E731
        assert sorted(map(key, got)) == sorted(map(key, expected)), name


def test_ray_errors_surface_as_data_errors(ray_local, lf_dir):
    registry = load_registry(lf_dir)
    write(lf_dir / "shards" / "part-1.jsonl", '{"conversations": []}\nnot json\n')
    path = lf_dir / "shards" / "part-1.jsonl"
    with pytest.raises(DataError) as err:  # raised while reading
        read_dataset(registry["shards"], lf_dir).take_all()
    with (
        pytest.raises(DataError, match=rf"^{path}:2: invalid JSON") as clean,
        surface_data_errors(),
    ):
        read_dataset(registry["shards"], lf_dir).take_all()
    assert "Traceback" not in str(clean.value) and str(clean.value) in str(err.value)
    spec = registry["alpaca"]
    write(lf_dir / "alpaca.json", json.dumps([{"instruction": "q", "output": 1}], indent=2))
    converted = read_dataset(spec, lf_dir).map_batches(converter(spec), batch_format="pyarrow")
    message = r"alpaca.json:2: column 'output' \(columns.response\)"
    with pytest.raises(DataError, match=message), surface_data_errors():  # while converting
        converted.take_all()


def test_ray_skip_bad_counts_in_an_actor(ray_local, lf_dir):
    spec = load_registry(lf_dir)["shards"]
    write(
        lf_dir / "shards" / "part-1.jsonl",
        "not json\n" + json.dumps({"conversations": [{"from": "human", "value": "q"}]}) + "\n",
    )
    counter = readers.new_bad_record_counter()
    ds = read_dataset(spec, lf_dir, skip_bad=True, bad_counter=counter)
    ds = ds.map_batches(converter(spec, counter=counter), batch_format="pyarrow")
    assert ds.count() == 8  # 12 records, minus shard 1's 4, plus none of its 2 bad ones
    tally = readers.collect_bad_records(counter)
    assert tally.count == 2
    assert any("part-1.jsonl:1: invalid JSON" in e for e in tally.examples)
    assert any(
        "part-1.jsonl:2: 'conversations': the conversation must end" in e for e in tally.examples
    )
    assert "skipped 2 malformed records" in tally.summary()


def test_the_datasource_pickles_as_a_plain_class(tmp_path, monkeypatch):
    from raytune_llm.data.datasource import RecordsDatasource

    monkeypatch.setattr(readers, "PART_BYTES", 64)
    path = write(tmp_path / "d.jsonl", "".join(json.dumps({"i": i}) + "\n" for i in range(40)))
    source = RecordsDatasource([str(path)], False, None)
    tasks = source.get_read_tasks(1)
    assert len(tasks) > 1 and source._parts  # one task per part; the plan is cached here
    copy = pickle.loads(pickle.dumps(source))
    assert type(copy) is RecordsDatasource and copy.files == [str(path)] and copy._parts == {}
    assert len(copy.get_read_tasks(1)) == len(tasks)
