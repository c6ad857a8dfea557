"""Generic templates: default, empty, fewshot, alpaca, vicuna, chatml (LLaMA-Factory's names)."""

from __future__ import annotations

from .base import EOS
from .slots import CONTENT, SlotTemplate

TEMPLATES: dict[str, SlotTemplate] = {
    # LLaMA-Factory's own "Human:/Assistant:" format.
    "default": SlotTemplate(
        name="default",
        user=("Human: {{content}}", EOS, "\n"),
        generation=("Assistant:",),
        assistant=(CONTENT, EOS, "\n"),
        system=("System: {{content}}", EOS, "\n"),
    ),
    # Plain concatenation, no markers (and, as in LLaMA-Factory, no eos after answers).
    "empty": SlotTemplate(name="empty", user=(CONTENT,), assistant=(CONTENT,)),
    # LLaMA-Factory's template for benchmarks of base models: solved examples as plain text, each
    # answer followed by a blank line (raytune-llm eval).
    "fewshot": SlotTemplate(
        name="fewshot", user=(CONTENT,), assistant=(CONTENT, "\n\n"), efficient_eos=True
    ),
    # Stanford Alpaca.
    "alpaca": SlotTemplate(
        name="alpaca",
        user=("### Instruction:\n{{content}}\n\n",),
        generation=("### Response:\n",),
        assistant=(CONTENT, EOS, "\n\n"),
        default_system=(
            "Below is an instruction that describes a task. "
            "Write a response that appropriately completes the request.\n\n"
        ),
    ),
    # Vicuna v1.1 (FastChat), with LLaMA-Factory's sentencepiece-friendly spacing.
    "vicuna": SlotTemplate(
        name="vicuna",
        user=("USER: {{content}} ",),
        generation=("ASSISTANT:",),
        assistant=(CONTENT, EOS),
        default_system=(
            "A chat between a curious user and an artificial intelligence assistant. "
            "The assistant gives helpful, detailed, and polite answers to the user's questions."
        ),
    ),
    # ChatML.
    "chatml": SlotTemplate(
        name="chatml",
        user=("<|im_start|>user\n{{content}}<|im_end|>\n",),
        generation=("<|im_start|>assistant\n",),
        assistant=("{{content}}<|im_end|>\n",),
        system=("<|im_start|>system\n{{content}}<|im_end|>\n",),
        observation=("<|im_start|>tool\n{{content}}<|im_end|>\n",),
        stop_words=("<|im_end|>", "<|im_start|>"),
        replace_eos=True,
    ),
}
