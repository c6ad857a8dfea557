"""Microsoft Phi: phi (Phi-3 / Phi-3.5, <|user|> ... <|end|>) and phi4 (<|im_sep|> ChatML)."""

from __future__ import annotations

from .slots import SlotTemplate

TEMPLATES: dict[str, SlotTemplate] = {
    "phi": SlotTemplate(
        name="phi",
        user=("<|user|>\n{{content}}<|end|>\n",),
        generation=("<|assistant|>\n",),
        assistant=("{{content}}<|end|>\n",),
        system=("<|system|>\n{{content}}<|end|>\n",),
        stop_words=("<|end|>",),
        replace_eos=True,
        eos_text="<|endoftext|>",
    ),
    "phi4": SlotTemplate(
        name="phi4",
        user=("<|im_start|>user<|im_sep|>{{content}}<|im_end|>",),
        generation=("<|im_start|>assistant<|im_sep|>",),
        assistant=("{{content}}<|im_end|>",),
        system=("<|im_start|>system<|im_sep|>{{content}}<|im_end|>",),
        stop_words=("<|im_end|>",),
        replace_eos=True,
        eos_text="<|endoftext|>",
    ),
}
