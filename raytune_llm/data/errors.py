"""Data problems the user can fix, each naming where it is: a file and line or row, or a key.

A :class:`DataError` travels through Ray intact (it pickles with its location), and
:func:`surface_data_errors` turns the wrapped exception a Ray task raises back into the plain
:class:`DataError`, so the CLI prints its message rather than a remote traceback.

:class:`BadRecords` is the tally kept when malformed records are skipped (``skip_bad``); the Ray
reader keeps one per file and hands it to a counter actor (see ``readers``).
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from ..utils.errors import UserError, find_error, surfaced

logger = logging.getLogger(__name__)


def json_kind(value: Any) -> str:
    """What a value is, in JSON's words ("an object", "an array", "a string", ...), for messages."""
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    names |= {int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


@dataclass(frozen=True)
class Location:
    """Where a record sits: its file, and its 1-based line (JSON, JSONL, text, CSV) or row.

    Attributes:
        file: the file path, a URL, or a hub dataset's cache file.
        line: the line the record starts on, when the format has lines.
        row: the record's 1-based position among the file's data rows (CSV, Parquet, Arrow).
    """

    file: str
    line: int | None = None
    row: int | None = None

    def __str__(self) -> str:
        if self.line is not None and self.row is not None:
            return f"{self.file}:{self.line} (row {self.row})"
        if self.line is not None:
            return f"{self.file}:{self.line}"
        if self.row is not None:
            return f"{self.file} row {self.row}"
        return self.file


class DataError(UserError):
    """A dataset, record or dataset_info.json entry is wrong; the message says where and how.

    Args:
        reason: what is wrong and what would be valid.
        where: the record's :class:`Location`, a ``dataset_info.json`` key, or a file path.
    """

    def __init__(self, reason: str, *, where: Location | str | None = None):
        self.reason = reason
        self.where = where
        super().__init__(f"{where}: {reason}" if where else reason)

    def __reduce__(self):
        return _rebuild, (type(self), self.reason, self.where)


def _rebuild(cls: type[DataError], reason: str, where: Location | str | None) -> DataError:
    return cls(reason, where=where)


def find_data_error(exc: BaseException) -> DataError | None:
    """Return the :class:`DataError` inside an exception raised through Ray, or None."""
    return find_error(exc, DataError)


def surface_data_errors() -> AbstractContextManager[None]:
    """Re-raise a :class:`DataError` hidden in a Ray exception as itself (no remote traceback)."""
    return surfaced(DataError)


class BadRecords:
    """A tally of skipped malformed records: how many, and the first few reasons.

    Plain Python; the Ray reader also runs it as a (zero-CPU) actor that every read and convert
    task reports to, so a driver can read the total once the data has been consumed.
    """

    max_examples = 5

    def __init__(self) -> None:
        self.count = 0
        self.examples: list[str] = []

    def add(self, error: DataError | str) -> None:
        """Count one skipped record and keep its reason if fewer than max_examples are kept."""
        self.merge(1, [str(error)])

    def merge(self, count: int, examples: list[str]) -> None:
        """Add ``count`` skipped records and up to max_examples of their reasons."""
        self.count += count
        room = self.max_examples - len(self.examples)
        self.examples.extend(examples[: max(room, 0)])

    def snapshot(self) -> tuple[int, list[str]]:
        """Return ``(count, examples)``; what a driver asks the counter actor for."""
        return self.count, list(self.examples)

    def summary(self) -> str:
        """One report line per kept example, after a line with the total."""
        if not self.count:
            return "no malformed records"
        lines = [f"skipped {self.count} malformed record{'s' if self.count != 1 else ''}:"]
        lines += [f"  - {e}" for e in self.examples]
        if self.count > len(self.examples):
            lines.append(f"  - ... and {self.count - len(self.examples)} more")
        return "\n".join(lines)


Counter = Any
"""Where skipped records are counted: a :class:`BadRecords`, its Ray actor handle, or None."""


def count_bad(counter: Counter, tally: BadRecords) -> None:
    """Add a local tally to ``counter``; with no counter, log it as a warning.

    An actor handle is called synchronously, so a count is never lost when a task ends.
    """
    if not tally.count:
        return
    if counter is None:
        logger.warning(tally.summary())
    elif isinstance(counter, BadRecords):
        counter.merge(*tally.snapshot())
    else:
        import ray

        ray.get(counter.merge.remote(*tally.snapshot()))


def skip_or_raise(error: DataError, skip_bad: bool, counter: Counter) -> None:
    """Raise ``error``, or, with ``skip_bad``, count it in ``counter`` and return."""
    if not skip_bad:
        raise error
    tally = BadRecords()
    tally.add(error)
    count_bad(counter, tally)
