"""Read dataset files lazily, keeping every record's file and line (or row) for error messages.

Two entry points share one parser per format:

* :func:`iter_records` streams ``(record, Location)`` pairs from one file in pure Python. JSON
  arrays are decoded one element at a time from a buffered stream, so a large file is never
  held in memory whole; JSON lines, CSV and text stream line by line; Parquet and Arrow stream
  record batches.
* :func:`read_dataset` builds a lazy Ray Data ``Dataset`` of raw records (through
  :class:`.datasource.RecordsDatasource`, the one module here that imports Ray): one read task
  per file, and for a local JSON-lines or text file bigger than ``PART_BYTES`` one per part of
  about that many bytes (cut at line starts, numbered from the right line; see
  :func:`file_parts`), so that one big file is read, converted and tokenised by several tasks
  at once. A task streams its file or part out in Arrow batches of ``BLOCK_ROWS`` records,
  which Ray Data gathers into blocks of at most its target block size. Each row is
  ``{"_record": <pickled record>, "_file", "_line", "_row"}``: the record travels intact (no
  Arrow schema is imposed on user data, so mixed types cannot break a block) and its location
  travels with it.
  ``pipeline.Convert`` turns these rows into examples.

Malformed records raise :class:`DataError` (file + line/row + what is wrong), or with
``skip_bad`` are skipped and counted. In Ray, pass ``bad_counter=new_bad_record_counter()`` to
both the reader and the converter: each read task tallies a file locally and adds the tally to
that zero-CPU actor when the file is done (each converter task adds a skipped record at once,
synchronously); read the total with :func:`collect_bad_records` after the data is consumed. A
retried task can count its records twice. Without a counter, skipped records are logged.
"""

from __future__ import annotations

import csv
import io
import json
import os
import pickle
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .errors import (
    BadRecords,
    Counter,
    DataError,
    Location,
    count_bad,
    json_kind,
    skip_or_raise,
)
from .registry import DatasetSpec, dataset_files, file_kind

if TYPE_CHECKING:
    import ray.data

Record = dict[str, Any]
Reader = Callable[[str, bool, Counter], Iterator[tuple[Record, Location]]]
"""One file's records: (path, skip_bad, bad_counter) → (record, location) pairs."""
CHUNK_CHARS = 1 << 20
BLOCK_ROWS = 1024
PART_BYTES = 4 << 20
SCAN_BYTES = 16 << 20
RAW_COLUMNS = ("_record", "_file", "_line", "_row")
_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


def iter_records(
    path: str | Path, *, skip_bad: bool = False, bad_counter: Counter = None
) -> Iterator[tuple[Record, Location]]:
    """Stream the records of one data file with their locations.

    Args:
        path: a local path or a URL pyarrow can open (``s3://``, ``gs://``, ``file://``).
        skip_bad: skip malformed records instead of raising; they are counted in bad_counter.
        bad_counter: a :class:`BadRecords` (or its actor handle); None logs skipped records.

    Raises:
        DataError: the file is missing or of an unknown type, or a record is malformed (not
            JSON, not an object, a CSV row of the wrong width) and skip_bad is false.
    """
    path = str(path)
    reader = _READERS[file_kind(path)]
    try:
        yield from reader(path, skip_bad, bad_counter)
    except FileNotFoundError:
        raise DataError("file not found", where=path) from None
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", where=path) from None


def iter_part(
    path: str | Path,
    start: int,
    end: int | None,
    first_line: int,
    *,
    skip_bad: bool = False,
    bad_counter: Counter = None,
) -> Iterator[tuple[Record, Location]]:
    """Stream the records of one part of a local JSON-lines or text file (see :func:`file_parts`).

    Args:
        path: the file.
        start: the byte offset of the part's first line (a line start).
        end: the byte offset just after its last line; None reads to the end of the file.
        first_line: the 1-based number of the line at ``start``, so locations are exact.
        skip_bad, bad_counter: as for :func:`iter_records`.
    """
    path = str(path)
    parse = _text_lines if file_kind(path) == "text" else _jsonl_lines
    try:
        with open(path, "rb") as f:
            f.seek(start)
            data = f.read() if end is None else f.read(end - start)
        text = data.decode("utf-8-sig" if start == 0 else "utf-8")
    except FileNotFoundError:
        raise DataError("file not found", where=path) from None
    except UnicodeDecodeError as exc:
        at = start + exc.start
        raise DataError(f"not UTF-8 text ({exc.reason} at byte {at})", where=path) from None
    del data
    yield from parse(io.StringIO(text, newline=None), path, first_line, skip_bad, bad_counter)


def file_parts(path: str, part_bytes: int) -> list[tuple[int, int | None, int]]:
    """Cut a local JSON-lines or text file into parts of about ``part_bytes``, at line starts.

    Any other file (JSON arrays, CSV, Parquet, Arrow, URLs) or a small one is one part. The
    cut points and their line numbers come from one pass over the bytes that only counts line
    breaks (``\\n``, ``\\r\\n`` or a lone ``\\r``, as Python's text files count them); nothing
    is parsed. The last part runs to the end of the file, whatever its size is then.

    Returns:
        ``(start, end, first_line)`` per part, as :func:`iter_part` takes them; ``end`` is None
        for the last part.
    """
    whole = [(0, None, 1)]
    try:
        if "://" in path or os.path.getsize(path) <= part_bytes or not _holds_lines(path):
            return whole
        with open(path, "rb") as f:
            starts = _line_starts(f, part_bytes)
    except (OSError, DataError):  # a missing or unsupported file fails in its read task
        return whole
    ends = [s for s, _ in starts[1:]] + [None]
    return [(start, end, line) for (start, line), end in zip(starts, ends, strict=True)]


def _holds_lines(path: str) -> bool:
    """Whether a file is JSON lines or text: .jsonl, .txt, or a .json not holding an array."""
    kind = file_kind(path)
    if kind != "json":
        return kind in ("jsonl", "text")
    with open(path, "rb") as f:
        while chunk := f.read(1 << 16):
            head = chunk.removeprefix(b"\xef\xbb\xbf") if f.tell() == len(chunk) else chunk
            head = head.lstrip(b" \t\r\n")
            if head:
                return head.startswith(b"{")
    return False


def _line_starts(f: IO[bytes], part_bytes: int) -> list[tuple[int, int]]:
    """(byte offset, line number) of the first line of each part of a binary file."""
    starts, breaks, cr_before, offset = [(0, 1)], 0, False, 0
    cut = part_bytes
    while chunk := f.read(SCAN_BYTES):
        pos = 0
        while cut < offset + len(chunk):
            newline = chunk.find(b"\n", max(cut - offset, pos))
            if newline < 0:
                break
            breaks += _breaks(chunk[pos : newline + 1], cr_before)
            pos, cr_before = newline + 1, False
            starts.append((offset + pos, breaks + 1))
            cut = offset + pos + part_bytes
        rest = chunk[pos:]
        breaks += _breaks(rest, cr_before)
        cr_before = rest.endswith(b"\r") if rest else cr_before
        offset += len(chunk)
    return [(start, line) for start, line in starts if start < offset or start == 0]


def _breaks(data: bytes, cr_before: bool) -> int:
    """Line breaks in data; ``cr_before``: the bytes before it ended with a lone-looking \\r."""
    both = data.count(b"\r\n") + (1 if cr_before and data.startswith(b"\n") else 0)
    return data.count(b"\n") + data.count(b"\r") - both


def iter_dataset(
    spec: DatasetSpec,
    dataset_dir: str | Path,
    *,
    skip_bad: bool = False,
    bad_counter: Counter = None,
) -> Iterator[tuple[Record, Location]]:
    """Stream every record of a dataset (all its files, in order) in pure Python."""
    for path in dataset_files(spec, dataset_dir):
        yield from iter_records(path, skip_bad=skip_bad, bad_counter=bad_counter)


def read_dataset(
    spec: DatasetSpec,
    dataset_dir: str | Path,
    *,
    skip_bad: bool = False,
    bad_counter: Counter = None,
    num_cpus: float | None = None,
) -> ray.data.Dataset:
    """A lazy Ray Data dataset of a dataset's raw records, read in parallel by file or part.

    Nothing is read here except the file list (and a hub dataset's download); the records are
    read by Ray tasks on the driver's node (where dataset_dir is) and stream to consumers. When
    the dataset starts executing, each local JSON-lines or text file bigger than ``PART_BYTES``
    is cut into parts by one pass that counts its line breaks (:func:`file_parts`), and each
    part gets its own read task.
    DataErrors raised by later map steps surface as ``DataError`` (Ray's
    ``raise_original_map_exception`` is set on this dataset's context).

    Args:
        spec: the dataset, from :func:`registry.resolve_datasets`.
        dataset_dir: the folder that file names are relative to.
        skip_bad: skip and count malformed records instead of failing.
        bad_counter: an actor from :func:`new_bad_record_counter` that counts skipped records.
        num_cpus: CPUs each read task reserves (Ray Data's default is 1).
    """
    import ray
    import ray.data

    from .datasource import RecordsDatasource

    files = dataset_files(spec, dataset_dir)
    selector = None
    if not any("://" in f for f in files):  # local files: read on this node, as Ray's readers do
        selector = {"ray.io/node-id": ray.get_runtime_context().get_node_id()}
    source = RecordsDatasource(files, skip_bad, bad_counter)
    # The source makes its own read tasks (one per file or part); one "block" keeps Ray Data
    # from cutting each task's output into more blocks to reach a parallelism of its own.
    ds = ray.data.read_datasource(
        source, override_num_blocks=1, num_cpus=num_cpus, label_selector=selector
    )
    ds.context.raise_original_map_exception = True
    return ds


def raw_row(record: Record, where: Location) -> dict[str, Any]:
    """One row of :func:`read_dataset`'s output (also how tests build such rows)."""
    return {
        "_record": pickle.dumps(record, protocol=5),
        "_file": where.file,
        "_line": where.line,
        "_row": where.row,
    }


def unpack_row(row: dict[str, Any]) -> tuple[Record, Location]:
    """The record and location in a raw row of :func:`read_dataset`."""
    where = Location(str(row["_file"]), _int(row["_line"]), _int(row["_row"]))
    return pickle.loads(row["_record"]), where


def new_bad_record_counter() -> Any:
    """A zero-CPU Ray actor that tallies skipped records (a :class:`BadRecords`)."""
    import ray

    return ray.remote(num_cpus=0)(BadRecords).remote()


def collect_bad_records(counter: Any) -> BadRecords:
    """The tally an actor from :func:`new_bad_record_counter` holds now."""
    import ray

    tally = BadRecords()
    tally.merge(*ray.get(counter.snapshot.remote()))
    return tally


def read_blocks(
    path: str,
    start: int,
    end: int | None,
    line: int,
    skip_bad: bool,
    bad_counter: Counter,
    block_rows: int,
) -> Iterator[Any]:
    """A read task's work: one file (or part) in, its raw rows out in tables of block_rows."""
    import pyarrow as pa

    tally, rows = BadRecords(), []
    if start == 0 and end is None:  # the whole file
        records = iter_records(path, skip_bad=skip_bad, bad_counter=tally)
    else:
        records = iter_part(path, start, end, line, skip_bad=skip_bad, bad_counter=tally)
    try:
        for record, where in records:
            rows.append(raw_row(record, where))
            if len(rows) >= block_rows:
                yield pa.Table.from_pylist(rows, schema=_raw_schema())
                rows = []
    finally:  # also when a consumer stops early (limit)
        count_bad(bad_counter, tally)
    if rows:
        yield pa.Table.from_pylist(rows, schema=_raw_schema())


def _raw_schema() -> Any:
    import pyarrow as pa

    types = (pa.binary(), pa.string(), pa.int64(), pa.int64())
    return pa.schema(list(zip(RAW_COLUMNS, types, strict=True)))


def _int(value: Any) -> int | None:
    return None if value is None or value != value else int(value)


# ---- one file ------------------------------------------------------------------------------------


def _open_text(path: str, newline: str | None = None) -> IO[str]:
    if "://" not in path:
        return open(path, encoding="utf-8-sig", newline=newline)
    import pyarrow.fs as pafs

    fs, inner = pafs.FileSystem.from_uri(path)
    return io.TextIOWrapper(fs.open_input_stream(inner), encoding="utf-8-sig", newline=newline)


def _open_binary(path: str) -> Any:
    import pyarrow as pa
    import pyarrow.fs as pafs

    if "://" not in path:
        if not Path(path).is_file():
            raise FileNotFoundError(path)
        return pa.memory_map(path)
    fs, inner = pafs.FileSystem.from_uri(path)
    return fs.open_input_file(inner)


def _read_json(path: str, skip_bad: bool, counter: Counter) -> Iterator[tuple[Record, Location]]:
    with _open_text(path) as f:
        scan = _Scanner(f)
        first = scan.peek()
        if first == "[":
            yield from _json_array(scan, path, skip_bad, counter)
            return
    if first == "{":
        yield from _read_jsonl(path, skip_bad, counter)
    elif first is not None:
        raise DataError(
            f"a .json file must hold a JSON array of objects or one JSON object per "
            f"line; it starts with {first!r}",
            where=Location(path, 1),
        )


def _jsonl_lines(
    lines: Iterable[str], path: str, first: int, skip_bad: bool, counter: Counter
) -> Iterator[tuple[Record, Location]]:
    for number, line in enumerate(lines, first):
        if not line.strip():
            continue
        where = Location(path, number)
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            error = f"invalid JSON (column {exc.colno}): {exc.msg}; each line must be one object"
            skip_or_raise(DataError(error, where=where), skip_bad, counter)
            continue
        if isinstance(record, dict):
            yield record, where
        else:
            error = f"a record must be a JSON object, got {json_kind(record)}"
            skip_or_raise(DataError(error, where=where), skip_bad, counter)


def _text_lines(
    lines: Iterable[str], path: str, first: int, skip_bad: bool, counter: Counter
) -> Iterator[tuple[Record, Location]]:
    for number, line in enumerate(lines, first):
        text = line.rstrip("\n")
        if text.strip():
            yield {"text": text}, Location(path, number)


def _whole_file(parse: Callable[..., Iterator[tuple[Record, Location]]]) -> Reader:
    """The reader of a line format (JSON lines, text): the whole file, lines counted from 1."""

    def read(path: str, skip_bad: bool, counter: Counter) -> Iterator[tuple[Record, Location]]:
        with _open_text(path) as f:
            yield from parse(f, path, 1, skip_bad, counter)

    return read


_read_jsonl, _read_text = _whole_file(_jsonl_lines), _whole_file(_text_lines)


def _read_csv(path: str, skip_bad: bool, counter: Counter) -> Iterator[tuple[Record, Location]]:
    with _open_text(path, newline="") as f:
        reader = csv.reader(f)
        try:
            header = next(reader, None)
            end, row = reader.line_num, 0
            for values in reader:
                start, end = end + 1, reader.line_num
                if not values:
                    continue
                row += 1
                where = Location(path, start, row)
                if len(values) == len(header or []):
                    yield {k: v or None for k, v in zip(header, values, strict=True)}, where
                    continue
                error = f"row has {len(values)} fields but the header has {len(header or [])}"
                skip_or_raise(DataError(error, where=where), skip_bad, counter)
        except csv.Error as exc:
            raise DataError(f"invalid CSV: {exc}", where=Location(path, reader.line_num)) from None


def _read_parquet(path: str, skip_bad: bool, counter: Counter) -> Iterator[tuple[Record, Location]]:
    yield from _table_rows(path, "Parquet", _parquet_batches)


def _read_arrow(path: str, skip_bad: bool, counter: Counter) -> Iterator[tuple[Record, Location]]:
    yield from _table_rows(path, "Arrow IPC", _ipc_batches)


def _table_rows(
    path: str, kind: str, batches_of: Callable[[Any], Iterable[Any]]
) -> Iterator[tuple[Record, Location]]:
    """The rows of a Parquet or Arrow file, streamed record batch by record batch."""
    import pyarrow as pa

    with _open_binary(path) as source:
        try:
            row = 0
            for batch in batches_of(source):
                for record in batch.to_pylist():
                    row += 1
                    yield record, Location(path, row=row)
        except pa.ArrowInvalid as exc:
            raise DataError(f"not a readable {kind} file: {exc}", where=path) from None


def _parquet_batches(source: Any) -> Iterable[Any]:
    import pyarrow.parquet as pq

    return pq.ParquetFile(source).iter_batches(batch_size=BLOCK_ROWS)


def _ipc_batches(source: Any) -> Iterable[Any]:
    import pyarrow as pa

    try:  # Arrow IPC file format (random access)
        reader = pa.ipc.open_file(source)
        return (reader.get_batch(i) for i in range(reader.num_record_batches))
    except pa.ArrowInvalid:  # Arrow IPC stream format, as Hugging Face datasets writes
        source.seek(0)
        return pa.ipc.open_stream(source)


def _json_array(
    scan: _Scanner, path: str, skip_bad: bool, counter: Counter
) -> Iterator[tuple[Record, Location]]:
    def here(reason: str) -> DataError:
        return DataError(reason, where=Location(path, scan.line_at(scan.pos)))

    scan.pos += 1  # past "["
    want_comma = False
    while (char := scan.peek()) != "]":
        if char is None:
            raise here("the JSON array is not closed (no ']' before the end)")
        if want_comma and char != ",":
            raise here(f"expected ',' or ']' after a record, found {char!r}")
        if want_comma:
            scan.pos += 1
            if scan.peek() in ("]", None):
                raise here("trailing comma after the last record")
        where = Location(path, scan.line_at(scan.pos))
        record, exc = scan.decode()
        want_comma = exc is None
        if exc is None and isinstance(record, dict):
            yield record, where
        elif exc is None:
            error = f"a record must be a JSON object, got {json_kind(record)}"
            skip_or_raise(DataError(error, where=where), skip_bad, counter)
        else:
            line, column = scan.line_at(exc.pos), exc.pos - scan.buf.rfind("\n", 0, exc.pos)
            reason = (
                f"invalid JSON (column {column}): {exc.msg}, in the record from line {where.line}"
            )
            if skip_bad and not scan.skip_record(scan.indent()):
                reason += "; cannot skip it: the array does not hold one record per line"
            skip_or_raise(DataError(reason, where=Location(path, line)), skip_bad, counter)
    scan.pos += 1
    if scan.peek() is not None:
        raise here("unexpected text after the JSON array's closing ']'")


class _Scanner:
    """A text stream read in chunks, with the line number of any buffered position."""

    def __init__(self, stream: IO[str]):
        self.stream, self.buf, self.pos, self.eof = stream, "", 0, False
        self.line, self.line_pos, self.starts_line = 1, 0, True

    def more(self) -> bool:
        """Read another chunk, first dropping what was consumed (but the current line)."""
        if self.eof:
            return False
        line_start = self.buf.rfind("\n", 0, self.pos) + 1
        cut = line_start if self.pos - line_start <= 4096 else self.pos
        self.line_at(cut)
        self.starts_line = cut == line_start and bool(cut or self.starts_line)
        self.buf = self.buf[cut:]
        self.pos, self.line_pos = self.pos - cut, self.line_pos - cut
        chunk = self.stream.read(max(CHUNK_CHARS, len(self.buf)))
        self.buf += chunk
        self.eof = not chunk
        return bool(chunk)

    def line_at(self, index: int) -> int:
        """The 1-based line of buffer position ``index``."""
        if index < self.line_pos:
            return self.line - self.buf.count("\n", index, self.line_pos)
        self.line += self.buf.count("\n", self.line_pos, index)
        self.line_pos = index
        return self.line

    def peek(self) -> str | None:
        """Skip whitespace; return the next character, or None at the end."""
        while True:
            self.pos = _WS.match(self.buf, self.pos).end()
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.more():
                return None

    def indent(self) -> str | None:
        """The whitespace before pos on its line, if nothing else precedes it there."""
        newline = self.buf.rfind("\n", 0, self.pos)
        before = self.buf[newline + 1 : self.pos]
        return before if (newline >= 0 or self.starts_line) and not before.strip() else None

    def decode(self) -> tuple[Any, json.JSONDecodeError | None]:
        """Decode the JSON value at pos, reading on while it may be cut by the buffer's end."""
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                cut = exc.pos >= len(self.buf) - 16 or exc.msg.startswith("Unterminated")
                if cut and self.more():
                    continue
                return None, exc
            if end >= len(self.buf) and self.more():
                continue
            self.pos = end
            return value, None

    def skip_record(self, indent: str | None) -> bool:
        """Move past a broken record to the next one at the same indent, or to the final ']'."""
        if indent is None:
            return False
        sibling = re.compile("\n" + re.escape(indent) + r"[{\[]")
        while (found := sibling.search(self.buf, self.pos + 1)) is None and self.more():
            pass
        if found:
            self.pos = found.end() - 1
            return True
        last = self.buf.rstrip().rfind("]")
        if last > self.pos and self.buf[last + 1 :].strip() == "":
            self.pos = last
            return True
        return False


_READERS: dict[str, Reader] = {
    "json": _read_json,
    "jsonl": _read_jsonl,
    "csv": _read_csv,
    "parquet": _read_parquet,
    "arrow": _read_arrow,
    "text": _read_text,
}
