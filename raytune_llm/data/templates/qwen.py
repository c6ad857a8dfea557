"""Qwen families: qwen (Qwen2 / Qwen2.5, ChatML with tools), qwen3 (thinking) and qwen3_nothink."""

from __future__ import annotations

from .slots import SlotTemplate


def _qwen(name: str, **overrides: object) -> SlotTemplate:
    """ChatML with Qwen's tool format: results go back in a user turn inside <tool_response>."""
    fields: dict = {
        "user": ("<|im_start|>user\n{{content}}<|im_end|>\n",),
        "generation": ("<|im_start|>assistant\n",),
        "assistant": ("{{content}}<|im_end|>\n",),
        "system": ("<|im_start|>system\n{{content}}<|im_end|>\n",),
        "observation": (
            "<|im_start|>user\n<tool_response>\n{{content}}\n</tool_response><|im_end|>\n",
        ),
        "tool_format": "qwen",
        "stop_words": ("<|im_end|>",),
        "replace_eos": True,
    }
    return SlotTemplate(name=name, **{**fields, **overrides})


TEMPLATES: dict[str, SlotTemplate] = {
    "qwen": _qwen(
        "qwen",
        default_system="You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
    ),
    # Qwen3 hybrid thinking: answers open with <think>...</think> (empty when thinking is off).
    "qwen3": _qwen("qwen3", reasoning=True),
    "qwen3_nothink": _qwen("qwen3_nothink"),
}
