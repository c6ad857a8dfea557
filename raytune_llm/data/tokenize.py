"""Canonical records → token ids with label masks, as LLaMA-Factory's dataset processors build them.

Every function takes one record (or a list, for pretraining and KTO) and returns plain lists of
ints, so that the pipeline can call them inside Ray Data ``map_batches`` with a tokenizer and a
template it created once. Masked label positions hold `IGNORE_INDEX`. Truncation to ``cutoff_len``
follows LLaMA-Factory's `infer_seqlen`: the prompt gives way first, so an answer keeps tokens.

    template = get_template("llama3", tokenizer)
    example = encode_supervised(record, template, tokenizer, cutoff_len=1024)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from raytune_llm.utils.errors import UserError

from .errors import DataError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from .templates import Message, Template

IGNORE_INDEX = -100
Record = Mapping[str, Any]


class RecordError(DataError):
    """A record that cannot be tokenised (roles out of order, bad tool JSON, ...).

    A `DataError`, so the pipeline can skip and count it (``skip_bad_records``) like a record
    the converters reject.
    """


@contextmanager
def _as_record_error() -> Iterator[None]:
    try:
        yield
    except RecordError:
        raise
    except UserError as err:
        raise RecordError(str(err)) from None


def infer_seqlen(source_len: int, target_len: int, cutoff_len: int) -> tuple[int, int]:
    """Lengths that the source (prompt) and target (answer) keep within `cutoff_len`.

    A short target is kept whole and the source truncated; else a short source is kept whole and
    the target truncated; else both are cut in proportion to their lengths (LLaMA-Factory's rule).
    """
    if 2 * target_len < cutoff_len:
        max_target = cutoff_len
    elif 2 * source_len < cutoff_len:
        max_target = cutoff_len - source_len
    else:
        max_target = int(cutoff_len * target_len / (source_len + target_len))
    new_target = min(max_target, target_len)
    new_source = min(max(cutoff_len - new_target, 0), source_len)
    return new_source, new_target


def _check_efficient_eos(template: Template, train_on_prompt: bool) -> None:
    if train_on_prompt and template.efficient_eos:
        raise UserError(
            f"train_on_prompt: template {template.name!r} ends answers with one eos for the whole "
            "example (efficient_eos) and cannot train on prompts; unset train_on_prompt"
        )


def encode_supervised(
    record: Record,
    template: Template,
    tokenizer: PreTrainedTokenizerBase,
    cutoff_len: int,
    *,
    train_on_prompt: bool = False,
    mask_history: bool = False,
    count_cut: bool = False,
) -> dict[str, Any]:
    """Input ids and labels of an SFT record (``messages``, ``system``, ``tools``).

    Every answer is trained (each with its end-of-turn marker), prompts are masked. With
    `mask_history` only the last answer is trained and the budget goes to the latest turns first
    (earlier ones are dropped when it runs out); else turns are kept in order until it does.
    `train_on_prompt` trains on the prompts too.

    Returns:
        ``{"input_ids", "labels"}``, equally long, at most `cutoff_len` tokens; with `count_cut`
        also ``cut_tokens``, how many tokens cutoff_len removed.

    Raises:
        RecordError: For a record whose messages do not alternate prompt / answer.
    """
    _check_efficient_eos(template, train_on_prompt)
    with _as_record_error():
        pairs = template.encode_multiturn(
            tokenizer,
            record["messages"],
            record.get("system") or "",
            record.get("tools") or "",
            drop_history_thinking=mask_history and not template.preserve_thinking,
        )
    eos = tokenizer.eos_token_id
    last = len(pairs) - 1
    total = 1 if template.efficient_eos else 0
    kept: dict[int, tuple[list[int], list[int]]] = {}
    for turn in reversed(range(len(pairs))) if mask_history else range(len(pairs)):
        if total >= cutoff_len:
            break
        source, target = pairs[turn]
        source_len, target_len = infer_seqlen(len(source), len(target), cutoff_len - total)
        source, target = source[:source_len], target[:target_len]
        total += source_len + target_len
        if train_on_prompt:
            source_labels = list(source)
        else:
            source_labels = [IGNORE_INDEX] * source_len
            if template.efficient_eos and turn > 0 and not mask_history and source_len:
                source_labels[0] = eos  # the previous answer ends here (its eos is not in input)
        target_labels = [IGNORE_INDEX] * target_len if mask_history and turn != last else target
        kept[turn] = (source + target, source_labels + target_labels)
    input_ids = [i for turn in sorted(kept) for i in kept[turn][0]]
    labels = [i for turn in sorted(kept) for i in kept[turn][1]]
    if template.efficient_eos:
        input_ids.append(eos)
        labels.append(eos)
    encoded: dict[str, Any] = {"input_ids": input_ids, "labels": labels}
    if count_cut:
        full = sum(len(source) + len(target) for source, target in pairs)
        encoded["cut_tokens"] = full + int(template.efficient_eos) - len(input_ids)
    return encoded


def _pretrain_eos(tokenizer: PreTrainedTokenizerBase, template: Template | None) -> int:
    token = template.text_eos_token if template is not None else None
    if token is not None:
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token_id is not None and token_id != getattr(tokenizer, "unk_token_id", None):
            return token_id
    if tokenizer.eos_token_id is None:
        raise UserError("the tokenizer has no eos token to end pretraining documents with")
    return tokenizer.eos_token_id


def encode_pretrain(
    texts: Sequence[str],
    tokenizer: PreTrainedTokenizerBase,
    cutoff_len: int | None = None,
    *,
    template: Template | None = None,
) -> list[dict[str, list[int]]]:
    """Token ids of pretraining documents, each ended by the end-of-text token; labels = ids.

    A bos is put first when the tokenizer adds one by itself (Llama), as LLaMA-Factory does.
    The end token is the template's `text_eos_token` (``<|end_of_text|>`` for llama3, whose eos is
    the end-of-turn ``<|eot_id|>``), else the tokenizer's eos. Chunking is the packer's job.

    Args:
        texts: The documents (a batch: tokenised in one call).
        tokenizer: The model's tokenizer.
        cutoff_len: Truncate each document to this many tokens (None: keep all).
        template: The chat template, for its end-of-text token.
    """
    eos = _pretrain_eos(tokenizer, template)
    bos = tokenizer.bos_token_id
    auto = tokenizer("a", add_special_tokens=True)["input_ids"]
    prefix = [bos] if bos is not None and auto and auto[0] == bos else []
    encoded = tokenizer(list(texts), add_special_tokens=False)["input_ids"] if texts else []
    out = []
    for ids in encoded:
        ids = [*prefix, *ids, eos]
        if cutoff_len is not None:
            ids = ids[:cutoff_len]
        out.append({"input_ids": ids, "labels": list(ids)})
    return out


def _prompt_answer(
    prompt: Sequence[Message],
    answer: Message,
    record: Record,
    template: Template,
    tokenizer: PreTrainedTokenizerBase,
) -> tuple[list[int], list[int]]:
    """(prompt_ids, answer_ids) of one answer to a prompt; eos appended with efficient_eos."""
    with _as_record_error():
        if not isinstance(answer, Mapping):
            raise UserError(f"an answer must be a message, got {answer!r}")
        prompt_ids, answer_ids = template.encode_oneturn(
            tokenizer, [*prompt, answer], record.get("system") or "", record.get("tools") or ""
        )
    if template.efficient_eos:
        answer_ids = [*answer_ids, tokenizer.eos_token_id]
    return prompt_ids, answer_ids


def encode_pairwise(
    record: Record, template: Template, tokenizer: PreTrainedTokenizerBase, cutoff_len: int
) -> dict[str, list[int]]:
    """Chosen and rejected sequences of a preference record, sharing the truncated prompt.

    The budget is shared as for one answer as long as the longer of the two (LLaMA-Factory).

    Returns:
        ``{"chosen_input_ids", "chosen_labels", "rejected_input_ids", "rejected_labels"}``.
    """
    prompt_ids, chosen = _prompt_answer(
        record["prompt"], record["chosen"], record, template, tokenizer
    )
    _, rejected = _prompt_answer(record["prompt"], record["rejected"], record, template, tokenizer)
    source_len, target_len = infer_seqlen(
        len(prompt_ids), max(len(chosen), len(rejected)), cutoff_len
    )
    prompt_ids, masked = prompt_ids[:source_len], [IGNORE_INDEX] * source_len
    chosen, rejected = chosen[:target_len], rejected[:target_len]
    return {
        "chosen_input_ids": prompt_ids + chosen,
        "chosen_labels": masked + chosen,
        "rejected_input_ids": prompt_ids + rejected,
        "rejected_labels": masked + rejected,
    }


def _one_answer(
    prompt: Sequence[Message],
    answer: Message,
    record: Record,
    template: Template,
    tokenizer: PreTrainedTokenizerBase,
    cutoff_len: int,
) -> tuple[list[int], list[int]]:
    prompt_ids, answer_ids = _prompt_answer(prompt, answer, record, template, tokenizer)
    source_len, target_len = infer_seqlen(len(prompt_ids), len(answer_ids), cutoff_len)
    answer_ids = answer_ids[:target_len]
    return prompt_ids[:source_len] + answer_ids, [IGNORE_INDEX] * source_len + answer_ids


def encode_kto(
    record: Record,
    template: Template,
    tokenizer: PreTrainedTokenizerBase,
    cutoff_len: int,
    *,
    kl_completion: Message | None = None,
) -> dict[str, Any]:
    """Input ids, labels and desirability of a KTO record (``prompt``, ``completion``, ``label``).

    Args:
        record: The canonical KTO record.
        template, tokenizer, cutoff_len: As for `encode_supervised`.
        kl_completion: A completion of another record: with it the result also holds the KL pair
            ``kl_input_ids`` / ``kl_labels`` (this prompt, that completion), as LLaMA-Factory builds
            it; `encode_kto_batch` picks them.

    Returns:
        ``{"input_ids", "labels", "kto_tag"}`` (+ ``"kl_input_ids", "kl_labels"``).
    """
    input_ids, labels = _one_answer(
        record["prompt"], record["completion"], record, template, tokenizer, cutoff_len
    )
    out: dict[str, Any] = {
        "input_ids": input_ids,
        "labels": labels,
        "kto_tag": bool(record["label"]),
    }
    if kl_completion is not None:
        kl_ids, kl_labels = _one_answer(
            record["prompt"], kl_completion, record, template, tokenizer, cutoff_len
        )
        out.update(kl_input_ids=kl_ids, kl_labels=kl_labels)
    return out


def encode_kto_batch(
    records: Sequence[Record],
    template: Template,
    tokenizer: PreTrainedTokenizerBase,
    cutoff_len: int,
) -> list[dict[str, Any]]:
    """`encode_kto` for a batch, each KL pair taking the previous record's completion.

    The completions are shifted by one within the batch (the first takes the last's), so every
    prompt is paired with a mismatched completion, as in LLaMA-Factory.
    """
    completions = [r["completion"] for r in records]
    shifted = completions[-1:] + completions[:-1]
    return [
        encode_kto(r, template, tokenizer, cutoff_len, kl_completion=kl)
        for r, kl in zip(records, shifted, strict=True)
    ]


def encode_unsupervised(
    record: Record, template: Template, tokenizer: PreTrainedTokenizerBase, cutoff_len: int
) -> dict[str, list[int]]:
    """Prompt ids and reference answer ids of an SFT record, for generation and scoring.

    ``input_ids`` is the prompt up to the generation prompt (the conversation without its last
    answer); ``labels`` is that answer (empty when the record ends with a prompt). Unlike the
    training encodings the two are not aligned: ``labels`` is the text to compare against.
    """
    messages = record["messages"]
    if not messages:
        raise RecordError("a conversation needs at least one message")
    if len(messages) % 2:  # ends prompt-side: nothing to compare against
        with _as_record_error():
            prompt = template.encode_prompt(
                tokenizer, messages, record.get("system") or "", record.get("tools") or ""
            )
        answer: list[int] = []
    else:
        prompt, answer = _prompt_answer(messages[:-1], messages[-1], record, template, tokenizer)
    source_len, target_len = infer_seqlen(len(prompt), len(answer), cutoff_len)
    return {"input_ids": prompt[:source_len], "labels": answer[:target_len]}
