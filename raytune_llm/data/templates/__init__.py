"""Chat templates: one file per model family, and `get_template` to pick one.

    from raytune_llm.data.templates import get_template
    template = get_template("llama3", tokenizer)          # or None: inferred from the tokenizer
    pairs = template.encode_multiturn(tokenizer, messages, system, tools)

Names follow LLaMA-Factory's ``template`` values. Importing this package needs no torch or
transformers; the tokenizer is passed in.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from raytune_llm.config.errors import did_you_mean
from raytune_llm.utils.errors import UserError

from . import basic, deepseek, gemma, llama, mistral, phi, qwen
from .base import BOS, EOS, Message, Special, Template
from .jinja import JinjaTemplate, infer_template
from .slots import SlotTemplate
from .tools import TOOL_FORMATS, get_tool_format

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

TEMPLATES: dict[str, Template] = {
    **basic.TEMPLATES,
    **llama.TEMPLATES,
    **qwen.TEMPLATES,
    **mistral.TEMPLATES,
    **gemma.TEMPLATES,
    **phi.TEMPLATES,
    **deepseek.TEMPLATES,
}
TEMPLATE_NAMES: tuple[str, ...] = tuple(sorted(TEMPLATES))


def get_template(
    name: str | None,
    tokenizer: PreTrainedTokenizerBase,
    *,
    default_system: str | None = None,
    tool_format: str | None = None,
    enable_thinking: bool | None = True,
    preserve_thinking: bool = False,
) -> Template:
    """The chat template called `name`, or the one inferred from the tokenizer when None.

    The registry is never modified: options give a copy. Call ``template.fix_tokenizer(tokenizer)``
    once, before training or generation, to make the eos / stop words what the template needs.

    Args:
        name: A name in `TEMPLATE_NAMES`, or None to match the tokenizer's chat template against
            the known families (else wrap that Jinja template; "empty" when it has none).
        tokenizer: The model's tokenizer.
        default_system: System prompt for records without one (the config key of that name).
        tool_format: Override the family's tool format (a name in `TOOL_FORMATS`).
        enable_thinking / preserve_thinking: Reasoning templates' options (see `SlotTemplate`).

    Raises:
        UserError: For an unknown template or tool format, naming the valid ones.
    """
    if name is None:
        template = infer_template(tokenizer, TEMPLATES)
    elif name in TEMPLATES:
        template = TEMPLATES[name]
    else:
        raise UserError(
            f"template: unknown template {name!r}{did_you_mean(name, TEMPLATE_NAMES)}; "
            f"valid templates: {', '.join(TEMPLATE_NAMES)}"
        )
    changes: dict[str, object] = {}
    if default_system is not None:
        changes["default_system"] = default_system
    if isinstance(template, SlotTemplate):
        if tool_format is not None:
            get_tool_format(tool_format)
            changes["tool_format"] = tool_format
        changes.update(enable_thinking=enable_thinking, preserve_thinking=preserve_thinking)
    elif tool_format is not None:
        raise UserError(
            "tool_format needs a named template: the tokenizer's own chat template writes tools "
            "its own way"
        )
    return dataclasses.replace(template, **changes) if changes else template


__all__ = [
    "BOS",
    "EOS",
    "TEMPLATES",
    "TEMPLATE_NAMES",
    "TOOL_FORMATS",
    "JinjaTemplate",
    "Message",
    "SlotTemplate",
    "Special",
    "Template",
    "get_template",
]
