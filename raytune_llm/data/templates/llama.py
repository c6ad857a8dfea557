"""Meta Llama families: llama2 ([INST] with <<SYS>>) and llama3 (header ids, eot; 3.1 tools)."""

from __future__ import annotations

from .base import BOS, EOS
from .slots import CONTENT, SlotTemplate

TEMPLATES: dict[str, SlotTemplate] = {
    # Llama-2-chat; the spacing is LLaMA-Factory's, which gives the reference tokens with Llama-2's
    # sentencepiece tokenizer (each piece gets its own leading-space marker).
    "llama2": SlotTemplate(
        name="llama2",
        user=(BOS, "[INST] {{content}} [/INST]"),
        assistant=(CONTENT, EOS),
        system=("<<SYS>>\n{{content}}\n<</SYS>>\n\n",),
        system_in_user=True,
    ),
    "llama3": SlotTemplate(
        name="llama3",
        prefix=(BOS,),
        user=("<|start_header_id|>user<|end_header_id|>\n\n{{content}}<|eot_id|>",),
        generation=("<|start_header_id|>assistant<|end_header_id|>\n\n",),
        assistant=("{{content}}<|eot_id|>",),
        system=("<|start_header_id|>system<|end_header_id|>\n\n{{content}}<|eot_id|>",),
        observation=("<|start_header_id|>ipython<|end_header_id|>\n\n{{content}}<|eot_id|>",),
        tool_format="llama3",
        stop_words=("<|eot_id|>", "<|eom_id|>"),
        replace_eos=True,
        bos_text="<|begin_of_text|>",
        eos_text="<|eot_id|>",
        text_eos_token="<|end_of_text|>",
    ),
}
