"""Benchmark task folders in LLaMA-Factory's layout: mapping.json plus one CSV per subject.

    <task_dir>/<name>/mapping.json               {subject: {"name": ..., "category": ...}}
    <task_dir>/<name>/data/dev/<subject>_dev.csv   solved examples for the k shots
    <task_dir>/<name>/data/val/<subject>_val.csv   the validation split
    <task_dir>/<name>/data/test/<subject>_test.csv the test split

The CSVs may come as MMLU ships them (no header: question, A, B, C, D, answer), or as C-Eval and
CMMLU ship them (a header naming ``question``/``Question``, ``A``..``D`` and ``answer``/``Answer``,
with extra columns such as ``id`` or ``explanation`` ignored; CMMLU's ``data/test/<subject>.csv``
names too). Instead of ``data/`` the folder may hold a ``.zip`` of it (LLaMA-Factory's
``evaluation/mmlu/mmlu.zip``), and the whole folder may be a ``<task_dir>/<name>.zip``.

``task`` is ``<name>_<split>``: ``mmlu_test``, ``ceval_validation``, ``demo_en_test``. Every
problem is a `UserError` that names the file, and the line for a bad row. Nothing is downloaded.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from ..utils.errors import UserError

CHOICES = ("A", "B", "C", "D")
CATEGORIES = ("STEM", "Social Sciences", "Humanities", "Other")
SPLITS = {"test": "test", "validation": "val", "val": "val", "dev": "dev", "train": "dev"}
"""The split word of ``task`` → the folder under data/ (LLaMA-Factory's names, and the folders')."""
NO_DOWNLOAD = (
    "raytune-llm reads benchmarks from local files only and downloads nothing (download_mode "
    "is not used): put the task folder (mapping.json + data/{dev,val,test}/<subject>_<split>.csv, "
    "or a .zip of it) in task_dir, e.g. LLaMA-Factory's evaluation/ folder, and point task_dir "
    "at it"
)


@dataclass(frozen=True)
class Question:
    """One multiple-choice question; ``answer`` is "" where the split hides it (C-Eval test)."""

    question: str
    options: tuple[str, str, str, str]
    answer: str


@dataclass
class Subject:
    """A subject's questions of the evaluated split and its dev rows (the shots)."""

    key: str  # the name in mapping.json and in the file names
    name: str  # the name the prompt uses ("abstract algebra")
    category: str
    questions: list[Question] = field(default_factory=list)
    dev: list[Question] = field(default_factory=list)


@dataclass
class Task:
    """A benchmark split: its subjects in mapping.json order."""

    name: str
    split: str
    source: str  # where it was read from, for messages
    subjects: list[Subject]

    @property
    def size(self) -> int:
        return sum(len(s.questions) for s in self.subjects)


def parse_task(task: str | None) -> tuple[str, str]:
    """(name, split folder) of a ``task`` value such as ``mmlu_test``."""
    name, _, split = (task or "").rpartition("_")
    if not name or split not in SPLITS:
        raise UserError(
            f"task: {task!r} is not <name>_<split>; give e.g. mmlu_test, ceval_validation or "
            f"cmmlu_test, with split one of {', '.join(SPLITS)}"
        )
    return name, SPLITS[split]


class _Source:
    """The files of a task folder, or of a zip archive of it, by path relative to the task."""

    def __init__(self, folder: Path, archive: Path | None):
        self.folder, self.archive = folder, archive
        self._names: dict[str, str] = {}
        if archive is not None:
            try:
                with zipfile.ZipFile(archive) as z:
                    names = [n for n in z.namelist() if not n.endswith("/")]
            except (OSError, zipfile.BadZipFile) as err:
                raise UserError(f"{archive}: not a readable zip archive ({err})") from None
            for n in sorted(names, key=len, reverse=True):  # the shortest prefix wins
                parts = n.split("/")
                for i in range(len(parts)):
                    self._names["/".join(parts[i:])] = n

    def where(self, rel: str) -> str:
        return (
            f"{self.archive}:{self._names.get(rel, rel)}"
            if self.archive
            else str(self.folder / rel)
        )

    def read(self, rel: str) -> str | None:
        """A file's text, or None when it is not there."""
        path = self.folder / rel
        if path.is_file():
            return path.read_text(encoding="utf-8-sig")
        if self.archive is not None and rel in self._names:
            with zipfile.ZipFile(self.archive) as z:
                return z.read(self._names[rel]).decode("utf-8-sig")
        return None


def _locate(task_dir: Path, name: str) -> _Source:
    folder = task_dir / name
    if folder.is_dir():
        if (folder / "data").is_dir():
            return _Source(folder, None)
        zips = sorted(folder.glob("*.zip"))
        return _Source(folder, zips[0] if zips else None)
    if (task_dir / f"{name}.zip").is_file():
        return _Source(folder, task_dir / f"{name}.zip")
    found = (
        sorted(p.name.removesuffix(".zip") for p in task_dir.iterdir())
        if (task_dir.is_dir())
        else []
    )
    there = f"it holds {', '.join(found)}" if found else "it does not exist or is empty"
    raise UserError(f"task: no task {name!r} in task_dir {task_dir} ({there}). {NO_DOWNLOAD}")


def _read_mapping(src: _Source) -> dict[str, dict[str, str]]:
    text = src.read("mapping.json")
    if text is None:
        raise UserError(f"{src.where('mapping.json')}: missing; a task folder needs mapping.json")
    try:
        mapping = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"{src.where('mapping.json')}, line {err.lineno}: {err.msg}") from None
    bad = (
        [k for k, v in mapping.items() if not isinstance(v, dict) or "category" not in v]
        if (isinstance(mapping, dict))
        else ["(not an object)"]
    )
    if bad or not mapping:
        raise UserError(
            f'{src.where("mapping.json")}: give {{subject: {{"name": ..., "category": ...}}}}'
            f"; wrong entries: {', '.join(bad) or '(none: it is empty)'}"
        )
    return mapping


def _header(row: list[str]) -> dict[str, int] | None:
    """Column positions when the row is a header (C-Eval, CMMLU), else None (MMLU)."""
    names = {c.strip().lower(): i for i, c in enumerate(row)}
    wanted = ["question", *(c.lower() for c in CHOICES)]
    if all(w in names for w in wanted):  # C-Eval's test split has no answer column
        return {w: names[w] for w in [*wanted, "answer"] if w in names}
    return None


def read_questions(text: str, where: str) -> list[Question]:
    """The questions of one CSV (with or without a header); ``where`` names it in errors."""
    reader = csv.reader(io.StringIO(text))
    rows: list[tuple[int, list[str]]] = []
    line = 1
    for row in reader:
        rows.append((line, row))
        line = reader.line_num + 1
    rows = [(n, r) for n, r in rows if any(c.strip() for c in r)]
    columns = _header(rows[0][1]) if rows else None
    if columns is not None:
        width, rows = len(rows[0][1]), rows[1:]
    else:
        width = 6
        columns = {w: i for i, w in enumerate(["question", "a", "b", "c", "d", "answer"])}
    out = []
    for n, row in rows:
        if len(row) != width:
            raise UserError(
                f"{where}, line {n}: {len(row)} columns, expected {width} "
                "(question, A, B, C, D, answer)"
            )
        answer = row[columns["answer"]].strip().upper() if "answer" in columns else ""
        if answer not in ("", *CHOICES):
            raise UserError(f"{where}, line {n}: answer {answer!r} is not one of A, B, C, D")
        options = tuple(row[columns[c.lower()]] for c in CHOICES)
        out.append(Question(row[columns["question"]], options, answer))  # type: ignore[arg-type]
    return out


def _read_split(src: _Source, subject: str, split: str) -> list[Question]:
    names = [f"data/{split}/{subject}_{split}.csv", f"data/{split}/{subject}.csv"]
    for rel in names:
        text = src.read(rel)
        if text is not None:
            return read_questions(text, src.where(rel))
    raise UserError(
        f"{src.where('mapping.json')} names subject {subject!r}, but {src.where(names[0])} is "
        "missing; add the file or remove the subject from mapping.json"
    )


def load_task(task_dir: str | Path, task: str | None, n_shot: int = 0) -> Task:
    """Read a benchmark split and its dev rows (see the module docstring).

    Args:
        task_dir: The folder holding task folders.
        task: ``<name>_<split>``.
        n_shot: Solved examples each prompt shows; every subject's dev split must have as many.

    Raises:
        UserError: For a missing task, file or subject, a malformed row (file and line named), or
            a dev split shorter than ``n_shot``.
    """
    name, split = parse_task(task)
    src = _locate(Path(task_dir).expanduser(), name)
    subjects = []
    for key, info in _read_mapping(src).items():
        subject = Subject(key, str(info.get("name", key)), str(info["category"]))
        subject.questions = _read_split(src, key, split)
        if n_shot:
            subject.dev = _read_split(src, key, "dev")
            if len(subject.dev) < n_shot:
                raise UserError(
                    f"n_shot {n_shot}: {src.where(f'data/dev/{key}_dev.csv')} has only "
                    f"{len(subject.dev)} solved examples; lower n_shot to at most "
                    f"{len(subject.dev)}"
                )
        subjects.append(subject)
    where = str(src.archive or src.folder)
    return Task(name, split, where, subjects)
