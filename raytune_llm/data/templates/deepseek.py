"""DeepSeek: deepseek (LLM / V2 chat, "User:" / "Assistant:"), deepseek3 (V3) and deepseekr1."""

from __future__ import annotations

from .base import BOS, EOS
from .slots import CONTENT, SlotTemplate

_BOS, _EOS = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"


def _deepseek3(name: str, **overrides: object) -> SlotTemplate:
    fields: dict = {
        "prefix": (BOS,),
        "user": ("<｜User｜>{{content}}",),
        "generation": ("<｜Assistant｜>",),
        "assistant": (CONTENT, EOS),
        "bos_text": _BOS,
        "eos_text": _EOS,
    }
    return SlotTemplate(name=name, **{**fields, **overrides})


TEMPLATES: dict[str, SlotTemplate] = {
    # The official template writes a space between "Assistant:" and the answer (LLaMA-Factory
    # does not); the space belongs to the answer, so the prompt ends with "Assistant:".
    "deepseek": SlotTemplate(
        name="deepseek",
        prefix=(BOS,),
        user=("User: {{content}}\n\n",),
        generation=("Assistant:",),
        assistant=(" {{content}}", EOS),
        system=("{{content}}\n\n",),
        bos_text=_BOS,
        eos_text=_EOS,
    ),
    "deepseek3": _deepseek3("deepseek3"),
    # DeepSeek-R1: V3's format, answers open with a <think> block.
    "deepseekr1": _deepseek3("deepseekr1", reasoning=True),
}
