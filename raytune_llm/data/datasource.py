"""The Ray Data source of :func:`.readers.read_dataset`: one read task per file or file part.

A module of its own because it imports Ray: :mod:`.readers` (the parsers, used in pure Python
by ``raytune-llm data`` and the tests) stays importable without it.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from ray.data import Datasource, ReadTask
from ray.data.block import BlockMetadata

from . import readers
from .errors import Counter

Part = tuple[int, int | None, int]
"""(start byte, end byte or None for the rest, first line number), as file_parts gives them."""


class RecordsDatasource(Datasource):
    """Raw records of local or remote files: one read task per file, or per part of a big local
    JSON-lines or text file (:func:`.readers.file_parts`, computed when the read is planned, and
    again only if the file changed)."""

    def __init__(self, files: list[str], skip_bad: bool, bad_counter: Counter):
        super().__init__()
        self.files, self.skip_bad, self.bad_counter = files, skip_bad, bad_counter
        self._parts: dict[tuple[str, int, int], list[Part]] = {}

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_read_tasks(
        self, parallelism: int, per_task_row_limit: int | None = None, data_context=None
    ) -> list[ReadTask]:
        tasks = []
        skip, counter = self.skip_bad, self.bad_counter
        for path in self.files:
            for part in self._file_parts(path):
                read = functools.partial(
                    readers.read_blocks, path, *part, skip, counter, readers.BLOCK_ROWS
                )
                meta = BlockMetadata(
                    num_rows=None, size_bytes=None, exec_stats=None, input_files=(path,)
                )
                tasks.append(ReadTask(read, meta, per_task_row_limit=per_task_row_limit))
        return tasks

    def _file_parts(self, path: str) -> list[Part]:
        if "://" in path:
            return [(0, None, 1)]
        try:
            stat = os.stat(path)
        except OSError:  # fails with a DataError in its read task
            return [(0, None, 1)]
        key = (path, stat.st_size, stat.st_mtime_ns)
        if key not in self._parts:
            self._parts[key] = readers.file_parts(path, readers.PART_BYTES)
        return self._parts[key]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_parts": {}}  # the plan's cache stays on the driver
