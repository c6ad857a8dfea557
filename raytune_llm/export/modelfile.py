"""An Ollama ``Modelfile`` for an export: FROM, TEMPLATE from the run's chat template, SYSTEM,
one ``PARAMETER stop`` per stop token and ``num_ctx``, as LLaMA-Factory writes it.

The TEMPLATE is the slot template rewritten in Ollama's Go template language: the prefix, the
system slot when there is a system prompt, then each message through its role's slot; a user
message is followed by the generation prompt (the assistant header), so the model's answer starts
where training taught it to. A template given as the tokenizer's own Jinja has no Go equivalent:
then TEMPLATE is left out and Ollama reads the chat template stored with the model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..data.templates import Template
from ..data.templates.slots import CONTENT, SlotTemplate

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

MAX_NUM_CTX = 4096
"""num_ctx is the model's context length, at most this (Ollama allocates the whole window)."""


def _slots(slot: tuple, tokenizer: PreTrainedTokenizerBase, placeholder: str) -> str:
    parts = []
    for piece in slot:
        if isinstance(piece, str):
            parts.append(piece.replace(CONTENT, "{{ ." + placeholder + " }}"))
        else:
            parts.append(getattr(tokenizer, piece.attr, None) or "")
    return "".join(parts)


def ollama_template(template: SlotTemplate, tokenizer: PreTrainedTokenizerBase) -> str:
    """The Go template text of a slot template (see the module docstring)."""
    prefix = _slots(template.prefix, tokenizer, "Content")
    system = _slots(template.system, tokenizer, "System")
    user = _slots(template.user, tokenizer, "Content")
    generation = _slots(template.generation, tokenizer, "Content")
    assistant = _slots(template.assistant, tokenizer, "Content")
    tool = _slots(template.observation or template.user, tokenizer, "Content")
    return (
        f"{prefix}{{{{ if .System }}}}{system}{{{{ end }}}}"
        f'{{{{ range .Messages }}}}{{{{ if eq .Role "user" }}}}{user}{generation}'
        f'{{{{ else if eq .Role "tool" }}}}{tool}{generation}'
        f'{{{{ else if eq .Role "assistant" }}}}{assistant}{{{{ end }}}}{{{{ end }}}}'
    )


def stop_words(template: Template, tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """The tokens that end an answer: the tokenizer's eos, then the template's stop words."""
    return [tokenizer.convert_ids_to_tokens(i) for i in template.stop_token_ids(tokenizer)]


def modelfile(
    template: Template, tokenizer: PreTrainedTokenizerBase, source: str, context_length: int
) -> str:
    """The Modelfile text.

    Args:
        template: the run's chat template (``template`` key), its tokenizer fixed.
        tokenizer: the exported tokenizer.
        source: what FROM names: ``.`` (the safetensors folder) or ``./model-q8_0.gguf``.
        context_length: the model's max_position_embeddings (num_ctx is capped at 4096).
    """
    lines = ["# Ollama Modelfile written by raytune-llm export", "", f"FROM {source}", ""]
    if isinstance(template, SlotTemplate):
        lines += [f'TEMPLATE """{ollama_template(template, tokenizer)}"""', ""]
    if template.default_system:
        lines += [f'SYSTEM """{template.default_system}"""', ""]
    lines += [f'PARAMETER stop "{word}"' for word in stop_words(template, tokenizer)]
    lines.append(f"PARAMETER num_ctx {min(context_length, MAX_NUM_CTX)}")
    return "\n".join(lines) + "\n"
