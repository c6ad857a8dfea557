"""Mistral (v0.3 tokenizer): [INST] turns, system folded into the first one, tool calling."""

from __future__ import annotations

from .base import BOS, EOS
from .slots import SlotTemplate

TEMPLATES: dict[str, SlotTemplate] = {
    "mistral": SlotTemplate(
        name="mistral",
        prefix=(BOS,),
        user=("[INST] {{content}}[/INST]",),
        assistant=(" {{content}}", EOS),
        system=("{{content}}\n\n",),
        system_in_user=True,
        function=("[TOOL_CALLS] {{content}}", EOS),
        observation=('[TOOL_RESULTS] {"content": {{content}}}[/TOOL_RESULTS]',),
        tool_format="mistral",
    ),
}
