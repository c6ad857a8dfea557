"""Google Gemma: <start_of_turn> user/model turns, system folded into the first user turn."""

from __future__ import annotations

from .base import BOS
from .slots import SlotTemplate


def _gemma(name: str, **overrides: object) -> SlotTemplate:
    fields: dict = {
        "prefix": (BOS,),
        "user": ("<start_of_turn>user\n{{content}}<end_of_turn>\n",),
        "generation": ("<start_of_turn>model\n",),
        "assistant": ("{{content}}<end_of_turn>\n",),
        "system": ("{{content}}\n\n",),
        "system_in_user": True,
        "observation": ("<start_of_turn>tool\n{{content}}<end_of_turn>\n",),
        "bos_text": "<bos>",
        "eos_text": "<eos>",
    }
    return SlotTemplate(name=name, **{**fields, **overrides})


TEMPLATES: dict[str, SlotTemplate] = {
    # Gemma / Gemma 3: generation stops at <end_of_turn>, which becomes the eos.
    "gemma": _gemma("gemma", stop_words=("<end_of_turn>",), replace_eos=True),
    # Gemma 2: the answer is followed by one eos at the end of the example (efficient_eos).
    "gemma2": _gemma("gemma2", stop_words=("<eos>", "<end_of_turn>"), efficient_eos=True),
}
