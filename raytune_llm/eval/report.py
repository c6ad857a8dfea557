"""Accuracy per subject, per category and on average, as a table; results.json and results.log.

Categories are LLaMA-Factory's (STEM, Social Sciences, Humanities, Other), in that order, then any
other category a mapping.json names; "Average" is over every scored question. Questions whose
answer the split hides (C-Eval's test split) are predicted but not scored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .tasks import CATEGORIES, Task

Predictions = dict[str, dict[str, str]]
"""subject → {"0": "A", "1": "C", ...}: results.json, as LLaMA-Factory wrote it."""


@dataclass(frozen=True)
class Tally:
    """Correct answers out of scored questions."""

    correct: int = 0
    total: int = 0

    def __add__(self, other: Tally) -> Tally:
        return Tally(self.correct + other.correct, self.total + other.total)

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.total if self.total else None


def tally(task: Task, predictions: Predictions) -> dict[str, Tally]:
    """Subject key → Tally, then each category present, then "Average"."""
    rows: dict[str, Tally] = {}
    categories: dict[str, Tally] = {}
    for subject in task.subjects:
        given = predictions.get(subject.key, {})
        scored = [(q.answer, given.get(str(i))) for i, q in enumerate(subject.questions)]
        t = Tally(sum(a == p for a, p in scored if a), sum(1 for a, _ in scored if a))
        rows[subject.key] = t
        categories[subject.category] = categories.get(subject.category, Tally()) + t
    order = [c for c in CATEGORIES if c in categories] + sorted(set(categories) - set(CATEGORIES))
    for name in order:
        rows[name] = categories[name]
    rows["Average"] = sum((categories[c] for c in order), Tally())
    return rows


def _cell(t: Tally) -> str:
    return "-" if t.accuracy is None else f"{100 * t.accuracy:.2f}"


def format_table(task: Task, scores: Mapping[str, Predictions]) -> str:
    """A text table: one row per subject, category and the average; one column per model."""
    tallies = {name: tally(task, p) for name, p in scores.items()}
    names = {s.key: s.name for s in task.subjects}
    first = next(iter(tallies.values()))
    label = max(15, *(len(names.get(k, k)) for k in first))
    width = max(8, *(len(n) for n in scores))
    lines = [f"{'':<{label}}  {'n':>5}  " + "  ".join(f"{n:>{width}}" for n in scores)]
    for i, key in enumerate(first):
        if i == len(task.subjects):
            lines.append("-" * len(lines[0]))
        cells = "  ".join(f"{_cell(t[key]):>{width}}" for t in tallies.values())
        lines.append(f"{names.get(key, key):<{label}}  {first[key].total:>5}  {cells}")
    return "\n".join(lines) + "\n"


def write_results(
    save_dir: Path, task: Task, scores: Mapping[str, Predictions], header: str
) -> list[Path]:
    """Write results.json and results.log (one model), or one folder of them per model plus
    the combined results.log (several); return the files written."""
    save_dir.mkdir(parents=True, exist_ok=False)
    written = []
    folders: Sequence[tuple[Path, str]] = (
        [(save_dir, next(iter(scores)))]
        if len(scores) == 1
        else [(save_dir / name, name) for name in scores]
    )
    for folder, name in folders:
        folder.mkdir(exist_ok=True)
        path = folder / "results.json"
        path.write_text(json.dumps(scores[name], indent=2) + "\n", encoding="utf-8")
        log = folder / "results.log"
        log.write_text(header + format_table(task, {name: scores[name]}), encoding="utf-8")
        written += [path, log]
    if len(scores) > 1:
        log = save_dir / "results.log"
        log.write_text(header + format_table(task, scores), encoding="utf-8")
        written.append(log)
    return written
