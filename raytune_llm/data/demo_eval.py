"""Deterministic demo benchmarks for ``raytune-llm eval``, in LLaMA-Factory's task layout.

Regenerate the committed folders with::

    python -m raytune_llm.data.demo_eval data/evaluation

``demo_en`` is written as MMLU ships its CSVs (no header: question, A, B, C, D, answer) and
``demo_zh`` as C-Eval does (a header, with ``id`` and ``explanation`` columns), each with a
mapping.json and dev / val / test splits. Every question is a letter puzzle whose answer follows
from its text (checked by ``tests/unit/test_eval_tasks.py``), one subject per category:

    counting      STEM             Count the letters: c a g        A. 1  B. 2  C. 3  D. 4
    first_letter  Humanities       Name the first letter: c a g    A. a  B. b  C. c  D. d
    last_letter   Social Sciences  Name the last letter: g a b     A. a  B. b  C. c  D. d
    next_letter   Other            Name the letter after c.        A. b  B. c  C. d  D. e

A subject's options are the same four in every question and the right one is spread evenly over
A-D, so guessing scores 25% while a 2-layer model trained for seconds learns to do far better.
Only the standard library is used.
"""

from __future__ import annotations

import csv
import io
import json
import random
import sys
from pathlib import Path

LETTERS = "abcdefghij"
SPLIT_SIZES = {"dev": 5, "val": 20, "test": 48}
WORDING = {
    "en": {
        "counting": "Count the letters: {}",
        "first_letter": "Name the first letter: {}",
        "last_letter": "Name the last letter: {}",
        "next_letter": "Name the letter after {}.",
    },
    "zh": {
        "counting": "数一数字母的个数：{}",
        "first_letter": "说出第一个字母：{}",
        "last_letter": "说出最后一个字母：{}",
        "next_letter": "说出字母 {} 后面的字母。",
    },
}
MAPPING = {
    "en": {
        "counting": {"name": "counting", "category": "STEM"},
        "first_letter": {"name": "first letter", "category": "Humanities"},
        "last_letter": {"name": "last letter", "category": "Social Sciences"},
        "next_letter": {"name": "next letter", "category": "Other"},
    },
    "zh": {
        "counting": {"name": "数数", "category": "STEM"},
        "first_letter": {"name": "首字母", "category": "Humanities"},
        "last_letter": {"name": "末字母", "category": "Social Sciences"},
        "next_letter": {"name": "下一个字母", "category": "Other"},
    },
}
OPTIONS = {
    "counting": ("1", "2", "3", "4"),
    "first_letter": ("a", "b", "c", "d"),
    "last_letter": ("a", "b", "c", "d"),
    "next_letter": ("b", "c", "d", "e"),
}


def solve(subject: str, payload: str) -> str:
    """The right option's text for a puzzle's payload ("c a g", or one letter for next_letter)."""
    letters = payload.split()
    if subject == "counting":
        return str(len(letters))
    if subject == "first_letter":
        return letters[0]
    if subject == "last_letter":
        return letters[-1]
    return LETTERS[LETTERS.index(letters[0]) + 1]


def _payload(subject: str, right: int, rng: random.Random) -> str:
    """A payload whose answer is option ``right`` of the subject."""
    if subject == "next_letter":
        return LETTERS[right]
    if subject == "counting":
        return " ".join(rng.choice(LETTERS) for _ in range(right + 1))
    letters = [rng.choice(LETTERS) for _ in range(rng.randint(2, 5))]
    letters[0 if subject == "first_letter" else -1] = OPTIONS[subject][right]
    return " ".join(letters)


def questions(subject: str, lang: str, n: int, rng: random.Random) -> list[list[str]]:
    """``n`` rows [question, A, B, C, D, answer]; answers cycle over A-D in a shuffled order."""
    rights = [i % 4 for i in range(n)]
    rng.shuffle(rights)
    rows = []
    for right in rights:
        payload = _payload(subject, right, rng)
        assert solve(subject, payload) == OPTIONS[subject][right]
        rows.append([WORDING[lang][subject].format(payload), *OPTIONS[subject], "ABCD"[right]])
    return rows


def _csv(rows: list[list[str]], header: list[str] | None) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if header:
        writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def build_task(lang: str, seed: int = 0, sizes: dict[str, int] | None = None) -> dict[str, str]:
    """Relative path → file text of one demo task folder (``en``: MMLU style, ``zh``: C-Eval)."""
    rng = random.Random(f"demo-eval/{lang}/{seed}")
    files = {"mapping.json": json.dumps(MAPPING[lang], indent=2, ensure_ascii=False) + "\n"}
    for split, n in (sizes or SPLIT_SIZES).items():
        for subject in MAPPING[lang]:
            rows = questions(subject, lang, n, rng)
            if lang == "zh":  # C-Eval: id first, an explanation in the dev split
                header = ["id", "question", "A", "B", "C", "D", "answer"]
                header += ["explanation"] if split == "dev" else []
                rows = [[str(i), *r] + ([f"答案是 {r[5]}。"] if split == "dev" else [])
                        for i, r in enumerate(rows)]  # fmt: skip
                files[f"data/{split}/{subject}_{split}.csv"] = _csv(rows, header)
            else:
                files[f"data/{split}/{subject}_{split}.csv"] = _csv(rows, None)
    return files


def write_task(
    folder: str | Path, lang: str, seed: int = 0, sizes: dict[str, int] | None = None
) -> Path:
    """Write one demo task folder (see `build_task`) and return it."""
    folder = Path(folder)
    for rel, text in build_task(lang, seed, sizes).items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return folder


def main(argv: list[str] | None = None) -> int:
    """``python -m raytune_llm.data.demo_eval [TASK_DIR]`` (default ``data/evaluation``)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1 or (args and args[0].startswith("-")):
        print("usage: python -m raytune_llm.data.demo_eval [TASK_DIR]", file=sys.stderr)
        return 2
    out = Path(args[0] if args else "data/evaluation")
    for lang in ("en", "zh"):
        print(write_task(out / f"demo_{lang}", lang))
    return 0


if __name__ == "__main__":
    sys.exit(main())
