"""What each training stage reads and how its examples are encoded: the data side's stage table.

``STAGE_DATA`` holds one entry per stage of ``raytune_llm.config.STAGES`` (a test checks they
agree): the kind of canonical record the converters make for it (see
:mod:`raytune_llm.data.converters`), whether its examples may be packed into ``cutoff_len``-long
rows, and the function that tokenises a window of its examples.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from . import tokenize as tk

Encode = Callable[[Sequence[dict], Any, Any, Any], list[dict[str, Any]]]
"""(examples, template, tokenizer, settings) -> token rows; a RecordError names the example."""


def _pretrain(examples, template, tokenizer, settings) -> list[dict[str, Any]]:
    return tk.encode_pretrain([e["text"] for e in examples], tokenizer, template=template)


def _kto(examples, template, tokenizer, settings) -> list[dict[str, Any]]:
    return tk.encode_kto_batch(examples, template, tokenizer, settings.cutoff_len)


def _supervised(example, template, tokenizer, settings) -> dict[str, Any]:
    return tk.encode_supervised(
        example, template, tokenizer, settings.cutoff_len,
        train_on_prompt=settings.train_on_prompt, mask_history=settings.mask_history,
        count_cut=True,
    )  # fmt: skip


def _pairwise(example, template, tokenizer, settings) -> dict[str, Any]:
    return tk.encode_pairwise(example, template, tokenizer, settings.cutoff_len)


def _prompt(example, template, tokenizer, settings) -> dict[str, Any]:
    return tk.encode_unsupervised(example, template, tokenizer, settings.cutoff_len)


@dataclass(frozen=True)
class StageData:
    """How one stage's data is read and encoded."""

    record: str
    """The canonical record: text, conversation, ranking, kto or prompt."""
    packs: bool
    """Whether ``packing`` may join its examples into rows."""
    encode_window: Encode | None = None
    """Encodes a whole window at once (pt: one tokenizer call; kto: its mismatched KL pairs)."""
    encode_one: Callable[..., dict[str, Any]] | None = None
    """Encodes one example; a bad one is skipped or reported on its own."""


RANKING = StageData("ranking", packs=False, encode_one=_pairwise)

STAGE_DATA: dict[str, StageData] = {
    "pt": StageData("text", packs=True, encode_window=_pretrain),
    "sft": StageData("conversation", packs=True, encode_one=_supervised),
    "rm": RANKING,
    "dpo": RANKING,
    "orpo": RANKING,
    "kto": StageData("kto", packs=False, encode_window=_kto),
    "ppo": StageData("prompt", packs=False, encode_one=_prompt),
}
"""Stage → its data table entry."""


def stages_reading(record: str) -> list[str]:
    """The stages whose data is of this record kind (for messages)."""
    return [name for name, entry in STAGE_DATA.items() if entry.record == record]
