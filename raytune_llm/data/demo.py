"""Deterministic demo datasets whose answers can be checked, in LLaMA-Factory's layout.

Regenerate the committed folder with::

    python -m raytune_llm.data.demo data

Every example is one of six letter puzzles, so a training test can show learning by exact match
on held-out prompts. Letters come from "a".."j": a small alphabet is what lets a 2-layer, width-64
model generalise quickly.

    Name the first letter: c a g   ->  c        easy
    Name the last letter: c a g    ->  g        easy
    Count the letters: c a g       ->  3        easy
    Uppercase the letters: c a g   ->  C A G    harder
    Reverse the letters: c a g     ->  g a c    harder
    Sort the letters: d c a b      ->  a b c d  harder

Measured with tiny-llama (AdamW lr 3e-3, batch 32, loss on answers only, 2 CPU cores, ~26 s):
after 800 steps the held-out exact match was count 33/33, last 34/34, first 26/34, sort 23/33,
reverse 16/33, uppercase 2/33 (0 for all before training); after 400 steps it is still patchy.
Score a run's output_dir the same way with ``python -m raytune_llm.eval.exact_match OUTPUT_DIR``
(docs/learning.md has the demo config's figures).

Letters are separated by spaces so that a byte-level BPE tokenizer keeps one letter per token
(" c"); merged words ("cat") would hide the letters from a tiny model. A prompt is either written
inline ("Reverse the letters: c a t") or split LLaMA-Factory style into an instruction
("Reverse the letters.") and an input ("c a t"), which LLaMA-Factory joins with a newline.

Only the standard library is used: no torch, no datasets.
"""

from __future__ import annotations

import json
import random
import re
import sys
from collections.abc import Callable
from pathlib import Path

# Task name -> the phrase that starts its prompt. The tiny tokenizer's corpus repeats these phrases
# (raytune_llm.model.tiny cannot import this module: data and model are independent layers).
TASKS: dict[str, str] = {
    "first": "Name the first letter",
    "last": "Name the last letter",
    "count": "Count the letters",
    "uppercase": "Uppercase the letters",
    "reverse": "Reverse the letters",
    "sort": "Sort the letters",
}
EASY_TASKS: tuple[str, ...] = ("first", "last", "count")
LETTERS = "abcdefghij"

SYSTEM_PROMPTS: tuple[str, ...] = (
    "You are a helpful assistant.",
    "Answer with the result only.",
    "You are a careful assistant that solves letter puzzles.",
)

TRAIN_SIZE = 2000
EVAL_SIZE = 200
SHAREGPT_SIZE = 500
PAIRWISE_SIZE = 500
PAIRWISE_SHAREGPT_SIZE = 200
KTO_SIZE = 200
PRETRAIN_SIZE = 500

_SOLVERS: dict[str, Callable[[list[str]], str]] = {
    "first": lambda letters: letters[0],
    "last": lambda letters: letters[-1],
    "count": lambda letters: str(len(letters)),
    "uppercase": lambda letters: " ".join(x.upper() for x in letters),
    "reverse": lambda letters: " ".join(reversed(letters)),
    "sort": lambda letters: " ".join(sorted(letters)),
}
_PROMPT_RE = re.compile(
    r"^\s*(?P<phrase>" + "|".join(re.escape(p) for p in TASKS.values()) + r")\s*[:.]?\s*"
    r"(?P<payload>.*?)\s*$",
    re.IGNORECASE | re.DOTALL,
)


def parse_prompt(prompt: str) -> tuple[str, str]:
    """Split a demo prompt into its task name and payload.

    Args:
        prompt: The user text, inline ("Sort the letters: b a") or instruction + "\\n" + input.

    Returns:
        (task, payload), e.g. ("sort", "b a").

    Raises:
        ValueError: If the text is not a demo prompt.
    """
    match = _PROMPT_RE.match(prompt)
    if match:
        phrase = match["phrase"].lower()
        task = next(t for t, p in TASKS.items() if p.lower() == phrase)
        payload = " ".join(match["payload"].split())
        if re.fullmatch(r"[a-z]( [a-z])*", payload):
            return task, payload
    raise ValueError(
        f"not a demo prompt: {prompt!r}; it must start with one of {list(TASKS.values())}"
    )


def task_of(prompt: str) -> str:
    """Return the task name ("first", "reverse", ...) of a demo prompt."""
    return parse_prompt(prompt)[0]


def answer_for(prompt: str) -> str:
    """Compute the correct answer to a demo prompt from its text alone.

    Args:
        prompt: The user text of a demo example (see `parse_prompt`).

    Returns:
        The reference answer, e.g. "t a c" for "Reverse the letters: c a t".
    """
    task, payload = parse_prompt(prompt)
    return _SOLVERS[task](payload.split())


def exact_match(prediction: str, reference: str) -> bool:
    """Whether a model's answer equals the reference, ignoring surrounding whitespace."""
    return prediction.strip() == reference.strip()


def alpaca_prompt(example: dict) -> str:
    """The user text LLaMA-Factory builds from an alpaca example: instruction + "\\n" + input."""
    if example.get("input"):
        return f"{example['instruction']}\n{example['input']}"
    return example["instruction"]


def wrong_answer(prompt: str, rng: random.Random) -> str:
    """A plausible but wrong answer to a demo prompt (for rejected / undesirable examples)."""
    task, payload = parse_prompt(prompt)
    letters = payload.split()
    right = _SOLVERS[task](letters)
    candidates = {
        "first": lambda: [letters[-1], letters[1]],
        "last": lambda: [letters[0], letters[-2]],
        "count": lambda: [str(len(letters) + 1), str(len(letters) - 1)],
        "uppercase": lambda: [" ".join(letters), " ".join(x.upper() for x in letters[::-1])],
        "reverse": lambda: [" ".join(letters), " ".join(letters[1:] + letters[:1])],
        "sort": lambda: [" ".join(sorted(letters, reverse=True)), " ".join(letters)],
    }[task]()
    rng.shuffle(candidates)
    shifted = "".join(chr((ord(c) - 97 + 1) % 26 + 97) if c.islower() else c for c in right)
    return next(c for c in [*candidates, shifted] if c != right)


def _random_payload(task: str, rng: random.Random) -> str:
    if task == "sort":
        return " ".join(rng.sample(LETTERS, rng.randint(3, 5)))
    low, high = {"count": (2, 7), "first": (3, 6), "last": (3, 6)}.get(task, (3, 5))
    return " ".join(rng.choice(LETTERS) for _ in range(rng.randint(low, high)))


class _ItemSource:
    """Draws (task, payload) items round-robin over tasks, never one from `reserved`."""

    def __init__(self, rng: random.Random, reserved: set[tuple[str, str]]) -> None:
        self.rng = rng
        self.reserved = reserved
        self.count = 0

    def draw(self, unique: set[tuple[str, str]] | None = None) -> tuple[str, str]:
        task = list(TASKS)[self.count % len(TASKS)]
        self.count += 1
        while True:
            item = (task, _random_payload(task, self.rng))
            if item in self.reserved or (unique is not None and item in unique):
                continue
            if unique is not None:
                unique.add(item)
            return item


def _alpaca_fields(item: tuple[str, str], rng: random.Random) -> dict[str, str]:
    task, payload = item
    if rng.random() < 0.5:
        return {"instruction": f"{TASKS[task]}: {payload}", "input": ""}
    return {"instruction": f"{TASKS[task]}.", "input": payload}


def _user_text(item: tuple[str, str], rng: random.Random) -> str:
    return alpaca_prompt(_alpaca_fields(item, rng))


def _system(rng: random.Random, rate: float = 0.3) -> str:
    return rng.choice(SYSTEM_PROMPTS) if rng.random() < rate else ""


def _alpaca(items: list[tuple[str, str]], rng: random.Random) -> list[dict]:
    rows = []
    for item in items:
        row = _alpaca_fields(item, rng)
        row["output"] = answer_for(alpaca_prompt(row))
        row["system"] = _system(rng)
        rows.append(row)
    return rows


def _sharegpt(source: _ItemSource, rng: random.Random) -> list[dict]:
    rows = []
    for _ in range(SHAREGPT_SIZE):
        turns = []
        for _ in range(rng.choice((1, 1, 2, 3))):
            prompt = _user_text(source.draw(), rng)
            turns += [
                {"from": "human", "value": prompt},
                {"from": "gpt", "value": answer_for(prompt)},
            ]
        rows.append({"conversations": turns, "system": _system(rng)})
    return rows


def _pairwise(source: _ItemSource, rng: random.Random) -> list[dict]:
    rows = []
    for _ in range(PAIRWISE_SIZE):
        row = _alpaca_fields(source.draw(), rng)
        prompt = alpaca_prompt(row)
        row.update(chosen=answer_for(prompt), rejected=wrong_answer(prompt, rng))
        rows.append(row)
    return rows


def _pairwise_sharegpt(source: _ItemSource, rng: random.Random) -> list[dict]:
    rows = []
    for _ in range(PAIRWISE_SHAREGPT_SIZE):
        turns = []
        system = _system(rng)
        if system:
            turns.append({"from": "system", "value": system})
        if rng.random() < 0.3:
            history = _user_text(source.draw(), rng)
            turns += [
                {"from": "human", "value": history},
                {"from": "gpt", "value": answer_for(history)},
            ]
        prompt = _user_text(source.draw(), rng)
        turns.append({"from": "human", "value": prompt})
        rows.append(
            {
                "conversations": turns,
                "chosen": {"from": "gpt", "value": answer_for(prompt)},
                "rejected": {"from": "gpt", "value": wrong_answer(prompt, rng)},
            }
        )
    return rows


def _kto(source: _ItemSource, rng: random.Random) -> list[dict]:
    rows = []
    for index in range(KTO_SIZE):
        prompt = _user_text(source.draw(), rng)
        desirable = index % 2 == 0
        answer = answer_for(prompt) if desirable else wrong_answer(prompt, rng)
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
        rows.append({"messages": messages, "label": desirable})
    return rows


_PRETRAIN_SENTENCES = {
    "first": "The first letter of {p} is {a}.",
    "last": "The last letter of {p} is {a}.",
    "count": "There are {a} letters in {p}.",
    "uppercase": "In capitals, the letters {p} are written {a}.",
    "reverse": "Reverse the letters {p} and you get {a}.",
    "sort": "Sorted in alphabetical order, the letters {p} become {a}.",
}


def _pretrain(source: _ItemSource, rng: random.Random) -> list[dict]:
    rows = []
    for _ in range(PRETRAIN_SIZE):
        sentences = []
        for _ in range(rng.randint(2, 5)):
            task, payload = source.draw()
            answer = _SOLVERS[task](payload.split())
            sentences.append(_PRETRAIN_SENTENCES[task].format(p=payload, a=answer))
        rows.append({"text": " ".join(sentences)})
    return rows


def _alpaca_info(file_name: str, *, ranking: bool = False) -> dict:
    columns = {"prompt": "instruction", "query": "input"}
    if ranking:
        columns.update(chosen="chosen", rejected="rejected")
        return {"file_name": file_name, "ranking": True, "columns": columns}
    return {
        "file_name": file_name,
        "columns": {**columns, "response": "output", "system": "system"},
    }


DATASET_INFO: dict[str, dict] = {
    "demo_alpaca": _alpaca_info("demo_alpaca.json"),
    "demo_alpaca_eval": _alpaca_info("demo_alpaca_eval.json"),
    "demo_sharegpt": {
        "file_name": "demo_sharegpt.json",
        "formatting": "sharegpt",
        "columns": {"messages": "conversations", "system": "system"},
    },
    "demo_dpo": _alpaca_info("demo_pairwise.json", ranking=True),
    "demo_dpo_sharegpt": {
        "file_name": "demo_pairwise_sharegpt.json",
        "formatting": "sharegpt",
        "ranking": True,
        "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"},
    },
    "demo_kto": {
        "file_name": "demo_kto.json",
        "formatting": "sharegpt",
        "columns": {"messages": "messages", "kto_tag": "label"},
        "tags": {
            "role_tag": "role",
            "content_tag": "content",
            "user_tag": "user",
            "assistant_tag": "assistant",
        },
    },
    "demo_pt": {"file_name": "demo_pretrain.json", "columns": {"prompt": "text"}},
}


def build_demo_data(seed: int = 0) -> dict[str, list[dict] | dict]:
    """Build every demo file's content in memory.

    Args:
        seed: Seed of the one `random.Random` that draws all examples.

    Returns:
        File name -> JSON content, dataset_info.json included.
    """
    rng = random.Random(seed)
    eval_items: set[tuple[str, str]] = set()
    eval_source = _ItemSource(rng, reserved=set())
    eval_list = [eval_source.draw(unique=eval_items) for _ in range(EVAL_SIZE)]
    source = _ItemSource(rng, reserved=eval_items)
    train_items: set[tuple[str, str]] = set()
    train_list = [source.draw(unique=train_items) for _ in range(TRAIN_SIZE)]
    return {
        "demo_alpaca.json": _alpaca(train_list, rng),
        "demo_alpaca_eval.json": _alpaca(eval_list, rng),
        "demo_sharegpt.json": _sharegpt(source, rng),
        "demo_pairwise.json": _pairwise(source, rng),
        "demo_pairwise_sharegpt.json": _pairwise_sharegpt(source, rng),
        "demo_kto.json": _kto(source, rng),
        "demo_pretrain.json": _pretrain(source, rng),
        "dataset_info.json": DATASET_INFO,
    }


def dumps(content: object) -> str:
    """Serialize JSON the way every demo file is written: indent 2, sorted keys, final newline."""
    return json.dumps(content, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def write_demo_data(out_dir: str | Path, seed: int = 0) -> list[Path]:
    """Write the demo datasets and their dataset_info.json into `out_dir`.

    Args:
        out_dir: Folder to write into; created if missing. Existing demo files are replaced.
        seed: Seed for the example generator; the committed data/ folder uses 0.

    Returns:
        The paths written, in name order.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in sorted(build_demo_data(seed).items()):
        path = out / name
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(dumps(content), encoding="utf-8")
        tmp.replace(path)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m raytune_llm.data.demo [OUT_DIR]`` (default ``data``)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1 or (args and args[0].startswith("-")):
        print("usage: python -m raytune_llm.data.demo [OUT_DIR]", file=sys.stderr)
        return 2
    for path in write_demo_data(args[0] if args else "data"):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
