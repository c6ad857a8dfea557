"""Exact match of greedy answers on held-out prompts: the check that a fine-tune learned.

Each prompt is rendered with the chat template the run trained with, exactly as training tokenised
it (the template's prompt side, answer opener included), answered greedily until eos or one of the
template's stop words, decoded, and compared with the reference answer by the demo's
`exact_match` (surrounding whitespace ignored). Scores are given overall and per demo task.

    from raytune_llm.eval.exact_match import load_for_scoring, read_records, score_exact_match
    model, tokenizer = load_for_scoring("saves/tiny-llama/lora/sft")  # adapter or full model
    records = read_records("data/demo_alpaca_eval.json")
    score = score_exact_match(model, tokenizer, "llama3", records)
    print(score["accuracy"], score["groups"])

or, from the shell (``builtin:tiny-llama`` scores the untrained model)::

    python -m raytune_llm.eval.exact_match saves/tiny-llama/lora/sft data/demo_alpaca_eval.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..data.demo import EASY_TASKS, TASKS, alpaca_prompt, exact_match, task_of
from ..data.templates import Message, Template, get_template
from ..model.generate.decode import Decoder
from ..model.generate.sampling import SamplingParams
from ..model.loader import resolve_model_path
from ..utils.errors import UserError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

Record = Mapping[str, Any]
DEMO_EVAL = "data/demo_alpaca_eval.json"


def prompt_and_reference(record: Record) -> tuple[list[Message], str, str]:
    """(prompt messages, system, reference answer) of an alpaca or canonical record.

    Alpaca records (``instruction``, ``input``, ``output``, ``system``) are joined as LLaMA-Factory
    joins them; canonical records (``messages`` ending with the assistant's answer, ``system``)
    are split before their last message.

    Raises:
        UserError: For a record of neither kind.
    """
    if "messages" in record:
        messages = list(record["messages"])
        if not messages or messages[-1].get("role") != "assistant":
            raise UserError(f"a scored record must end with an assistant answer: {record!r}")
        return messages[:-1], record.get("system") or "", messages[-1]["content"]
    if "instruction" in record and "output" in record:
        prompt = [{"role": "user", "content": alpaca_prompt(record)}]
        return prompt, record.get("system") or "", record["output"]
    raise UserError(
        f"cannot score record {record!r}: give alpaca keys (instruction, input, output) or "
        "messages ending with the assistant's answer"
    )


def prompt_ids(record: Record, template: Template, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Token ids of a record's prompt: the label-masked prefix that training built for it."""
    messages, system, _ = prompt_and_reference(record)
    return template.encode_prompt(tokenizer, messages, system)


def _group_of(task: str) -> str | None:
    if task in EASY_TASKS:
        return "easy"
    return "harder" if task in TASKS else None


def _tally(hits: Sequence[tuple[str, bool]]) -> dict[str, dict[str, float | int]]:
    counts: dict[str, list[int]] = {}
    for key, hit in hits:
        counts.setdefault(key, [0, 0])
        counts[key][0] += int(hit)
        counts[key][1] += 1
    return {
        key: {"correct": c, "total": n, "accuracy": c / n} for key, (c, n) in sorted(counts.items())
    }


def _task(prompt: Sequence[Message]) -> str:
    try:
        return task_of(prompt[-1]["content"])
    except ValueError:
        return "other"


class _IdsDecoder(Decoder):
    """The shared decoder, answering in token ids only (no tokenizer needed)."""

    def text(self, ids: list[int]) -> str:
        return ""


def generate_greedy(
    model: PreTrainedModel,
    prompts: Sequence[list[int]],
    stop_ids: Sequence[int],
    pad_id: int,
    max_new_tokens: int,
) -> list[list[int]]:
    """Greedy continuations of prompts (decoded together, left-padded by the shared
    :class:`~raytune_llm.model.generate.decode.Decoder`), each cut before its first stop token."""
    decoder = _IdsDecoder(model, None, stop_ids, pad_id)
    greedy = SamplingParams(max_new_tokens=max_new_tokens, do_sample=False)
    return [c.token_ids for c in decoder.generate(prompts, greedy)]


def score_exact_match(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    template_name: str | None,
    records: Sequence[Record],
    max_new_tokens: int = 16,
    *,
    batch_size: int = 64,
    default_system: str | None = None,
) -> dict[str, Any]:
    """Greedy exact match of a model on records, overall, per demo task and per task group.

    Args:
        model: A causal LM (a PeftModel too); it is put in eval mode.
        tokenizer: The tokenizer training saved (its eos already the template's, if it changed).
        template_name: The ``template`` the run trained with (None: inferred from the tokenizer).
        records: Alpaca or canonical records (see `prompt_and_reference`).
        max_new_tokens: Most tokens generated per answer.
        batch_size: Prompts generated together (sorted by length, left-padded).
        default_system: The run's ``default_system``, for records without a system prompt.

    Returns:
        ``accuracy``, ``correct``, ``total``; ``tasks`` and ``groups`` (easy / harder demo tasks)
        map each name to its ``correct``, ``total`` and ``accuracy``; ``predictions`` holds the
        decoded answers in record order.
    """
    if not records:
        raise UserError("no records to score")
    template = get_template(template_name, tokenizer, default_system=default_system)
    stop_ids = template.stop_token_ids(tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    parts = [prompt_and_reference(r) for r in records]
    encoded = [prompt_ids(r, template, tokenizer) for r in records]
    order = sorted(range(len(records)), key=lambda i: len(encoded[i]))
    predictions = [""] * len(records)
    model.eval()
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        answers = generate_greedy(model, [encoded[i] for i in batch], stop_ids, pad_id,
                                  max_new_tokens)  # fmt: skip
        for i, answer in zip(batch, answers, strict=True):
            predictions[i] = tokenizer.decode(answer, skip_special_tokens=True)
    hits = [exact_match(p, ref) for p, (_, _, ref) in zip(predictions, parts, strict=True)]
    tasks = [_task(messages) for messages, _, _ in parts]
    groups = [(_group_of(t), hit) for t, hit in zip(tasks, hits, strict=True)]
    return {
        "accuracy": sum(hits) / len(hits),
        "correct": sum(hits),
        "total": len(hits),
        "tasks": _tally(list(zip(tasks, hits, strict=True))),
        "groups": _tally([(g, hit) for g, hit in groups if g is not None]),
        "predictions": predictions,
    }


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """The records of a JSON array or JSON-lines file."""
    text = Path(path).read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise UserError(f"{path}, line {err.lineno}: not valid JSON ({err.msg})") from None
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise UserError(
                    f"{path}, line {number}: not valid JSON ({err.msg}); give a JSON array "
                    "or one JSON object per line"
                ) from None
    return records


def load_for_scoring(path: str, base: str | None = None) -> tuple[PreTrainedModel, Any]:
    """(model, tokenizer) of a run's output_dir (adapter or full model) or of a model name,
    loaded for inference as raytune-llm's chat and predict load them (the project's loaders;
    an adapter merged by ``merge_adapters``, as their backend merges it).

    Args:
        path: A local output_dir holding ``adapter_config.json`` (loaded onto its base model)
            or a full model, a hub id, or ``builtin:tiny-llama``.
        base: The adapter's base model, instead of the one its adapter_config.json names.
    """
    from ..config import load_config
    from ..model.adapter import merge_adapters
    from ..model.loader import load_model, load_tokenizer

    folder = resolve_model_path(path)
    adapter_config = Path(folder) / "adapter_config.json"
    values: dict[str, Any] = {"model_name_or_path": path}
    if adapter_config.is_file():
        base = base or json.loads(adapter_config.read_text())["base_model_name_or_path"]
        values = {"model_name_or_path": base, "adapter_name_or_path": folder,
                  "finetuning_type": "lora"}  # fmt: skip
    cfg = load_config(None, values=values)
    tokenizer = load_tokenizer(cfg.model)
    model = load_model(cfg, tokenizer, for_training=False)
    return merge_adapters(model, cfg.model.adapter_name_or_path or []), tokenizer


def format_score(score: Mapping[str, Any]) -> str:
    """A short table of a score: overall, then each group and task."""
    line = "{:<10} {:>4}/{:<4} {:6.1%}"
    rows = [line.format("all", score["correct"], score["total"], score["accuracy"])]
    for name, s in [*score["groups"].items(), *score["tasks"].items()]:
        rows.append(line.format(name, s["correct"], s["total"], s["accuracy"]))
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """``python -m raytune_llm.eval.exact_match MODEL [DATA] [--template T] [--base B]``."""
    parser = argparse.ArgumentParser(prog="python -m raytune_llm.eval.exact_match",
                                     description=main.__doc__)  # fmt: skip
    parser.add_argument("model", help="output_dir of a run, or a model (builtin:tiny-llama)")
    parser.add_argument("data", nargs="?", default=DEMO_EVAL, help="alpaca JSON/JSONL records")
    parser.add_argument("--template", default="llama3", help="the run's template (llama3)")
    parser.add_argument("--base", help="an adapter's base model, if not the one it names")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    args = parser.parse_args(argv)
    if not Path(args.data).is_file():
        parser.error(f"no such file: {args.data} (give alpaca records as JSON or JSON lines)")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        records = read_records(args.data)
        model, tokenizer = load_for_scoring(args.model, args.base)
        score = score_exact_match(model, tokenizer, args.template, records, args.max_new_tokens)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"held-out exact match of {args.model} on {args.data}:")
    print(format_score(score))
    return 0


if __name__ == "__main__":
    sys.exit(main())
