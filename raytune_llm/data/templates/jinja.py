"""The tokenizer's own Jinja chat template as a `Template`, and inference of a known family from it.

`infer_template` reads a tokenizer's chat template, tries the families whose special markers it
contains, and keeps the first whose rendering of a few probe conversations equals the tokenizer's
(the default system prompt is read off the tokenizer's rendering). When none agrees, the Jinja
template itself is wrapped: turns are found by rendering growing prefixes of the conversation,
which needs a template that renders earlier turns the same whatever follows them.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from raytune_llm.utils.errors import UserError

from .base import Message, Template, check_messages
from .tools import parse_calls, parse_tools

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# Families tried when a chat template contains all of the markers, most specific first.
FAMILY_MARKERS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("<|start_header_id|>", "<|eot_id|>"), ("llama3",)),
    (("<|im_start|>", "<|im_sep|>"), ("phi4",)),
    (("<|im_start|>", "<think>"), ("qwen3", "qwen3_nothink")),
    (("<|im_start|>",), ("qwen", "chatml")),
    (("<start_of_turn>",), ("gemma", "gemma2")),
    (("<|user|>", "<|end|>"), ("phi",)),
    (("<｜User｜>",), ("deepseek3", "deepseekr1")),
    (("<<SYS>>",), ("llama2",)),
    (("[INST]",), ("mistral", "llama2")),
    (("User: ", "Assistant:"), ("deepseek",)),
)
_PROBE = (
    {"role": "user", "content": "Hi there"},
    {"role": "assistant", "content": "Hello again"},
    {"role": "user", "content": "Count to three"},
    {"role": "assistant", "content": "one two three"},
)
_PROBE_SYSTEM = "Be brief."
_SENTINEL = "\x00SYSTEM\x00"


def chat_template_text(tokenizer: PreTrainedTokenizerBase) -> str | None:
    """The tokenizer's default chat template (None when it has none)."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, Mapping):
        template = template.get("default")
    return template if isinstance(template, str) and template.strip() else None


@dataclass(frozen=True)
class JinjaTemplate(Template):
    """A tokenizer's Jinja chat template, rendered as ``apply_chat_template`` does.

    Turns are split by rendering the conversation up to each answer, with and without it; the
    template decides everything else (reasoning options such as `drop_history_thinking` do not
    apply).

    Attributes:
        chat_template: The Jinja source.
        specials: The tokenizer's special tokens map (bos_token, eos_token, ...) as the template
            sees them.
        name: "jinja".
        default_system: System prompt sent when a record has none ("" leaves it to the template).
    """

    chat_template: str
    specials: tuple[tuple[str, str], ...] = ()
    name: str = "jinja"
    default_system: str = ""
    stop_words: tuple[str, ...] = ()
    efficient_eos: bool = False
    replace_eos: bool = False
    preserve_thinking: bool = False
    text_eos_token: str | None = None

    @classmethod
    def from_tokenizer(cls, tokenizer: PreTrainedTokenizerBase) -> JinjaTemplate:
        """Wrap the tokenizer's chat template (UserError when it has none)."""
        template = chat_template_text(tokenizer)
        if template is None:
            raise UserError("the tokenizer has no chat template; set `template` to a named one")
        specials = {k: v for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)}
        return cls(chat_template=template, specials=tuple(sorted(specials.items())))

    @property
    def supports_tools(self) -> bool:
        return "tools" in self.chat_template

    def _conversation(self, messages: Sequence[Message], system: str) -> list[dict[str, Any]]:
        system = system or self.default_system
        out: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
        for message in messages:
            role, content = message["role"], message["content"]
            if role == "function":
                calls = [
                    {"type": "function", "function": {"name": n, "arguments": json.loads(a)}}
                    for n, a in parse_calls(content)
                ]
                out.append({"role": "assistant", "content": "", "tool_calls": calls})
            else:
                out.append({"role": "tool" if role == "observation" else role, "content": content})
        return out

    def _render(
        self, conversation: list[dict[str, Any]], tools: list[dict[str, Any]], generation: bool
    ) -> str:
        from jinja2 import TemplateError
        from transformers.utils.chat_template_utils import render_jinja_template

        if tools and not self.supports_tools:
            raise UserError("the tokenizer's chat template has no tool format; set `template`")
        try:
            out = render_jinja_template(
                [conversation],
                tools=tools or None,
                chat_template=self.chat_template,
                add_generation_prompt=generation,
                **dict(self.specials),
            )
        except TemplateError as err:
            raise UserError(f"the tokenizer's chat template failed: {err}") from None
        out = out[0] if isinstance(out, tuple) else out
        return out[0] if isinstance(out, list) else out

    def render(
        self,
        messages: Sequence[Message],
        system: str = "",
        tools: str = "",
        add_generation_prompt: bool = False,
        *,
        tokenizer: PreTrainedTokenizerBase | None = None,
    ) -> str:
        check_messages(messages, end="answer" if len(messages) % 2 == 0 else "prompt")
        conversation = self._conversation(messages, system)
        return self._render(conversation, parse_tools(tools), add_generation_prompt)

    def encode_prompt(
        self,
        tokenizer: PreTrainedTokenizerBase,
        messages: Sequence[Message],
        system: str = "",
        tools: str = "",
    ) -> list[int]:
        text = self.render(messages, system, tools, add_generation_prompt=True)
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    def encode_multiturn(
        self,
        tokenizer: PreTrainedTokenizerBase,
        messages: Sequence[Message],
        system: str = "",
        tools: str = "",
        *,
        drop_history_thinking: bool = False,
    ) -> list[tuple[list[int], list[int]]]:
        check_messages(messages, end="answer")
        conversation = self._conversation(messages, system)
        definitions = parse_tools(tools)
        skip = len(conversation) - len(messages)  # the system message
        full = self._render(conversation, definitions, False)
        pieces, start = [], 0
        for j in range(1, len(messages), 2):
            prompt = self._render(conversation[: skip + j], definitions, True)
            answer = self._render(conversation[: skip + j + 1], definitions, False)
            prompt_end = len(prompt)
            if prompt_end < start or not (full.startswith(answer) and answer.startswith(prompt)):
                raise UserError(
                    "the tokenizer's chat template renders earlier turns differently once later "
                    "turns follow (for example it drops their reasoning), so answers cannot be "
                    "told apart from prompts; set `template` to a named template"
                )
            pieces += [full[start:prompt_end], full[prompt_end : len(answer)]]
            start = len(answer)
        ids = tokenizer(pieces, add_special_tokens=False)["input_ids"]
        return [(ids[i], ids[i + 1]) for i in range(0, len(ids), 2)]


def _default_system(
    template: Template, jinja: JinjaTemplate, tokenizer: PreTrainedTokenizerBase
) -> str | None:
    """The default system prompt that makes `template` render like `jinja` (None: no such)."""
    probe = list(_PROBE[:1])
    target = jinja.render(probe, add_generation_prompt=True)
    bare = dataclasses.replace(template, default_system="")
    ours = bare.render(probe, _SENTINEL, add_generation_prompt=True, tokenizer=tokenizer)
    before, _, after = ours.partition(_SENTINEL)
    candidates = [""]
    if target.startswith(before) and target.endswith(after) and len(target) > len(before + after):
        candidates.insert(0, target[len(before) : len(target) - len(after)])
    for candidate in candidates:
        found = dataclasses.replace(template, default_system=candidate)
        if found.render(probe, add_generation_prompt=True, tokenizer=tokenizer) == target:
            return candidate
    return None


def _agrees(template: Template, jinja: JinjaTemplate, tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether `template` renders the probe conversations exactly as the tokenizer does."""
    probes = [(_PROBE[:2], "", False), (_PROBE[:3], _PROBE_SYSTEM, True)]
    if not getattr(template, "reasoning", False):  # reasoning templates differ on history turns
        probes.append((_PROBE, _PROBE_SYSTEM, False))
    for messages, system, generation in probes:
        try:
            expected = jinja.render(list(messages), system, add_generation_prompt=generation)
        except UserError:  # e.g. a template that refuses system messages
            continue
        ours = template.render(list(messages), system, "", generation, tokenizer=tokenizer)
        if ours != expected:
            return False
    return True


def infer_template(
    tokenizer: PreTrainedTokenizerBase, templates: Mapping[str, Template]
) -> Template:
    """The known family that renders like the tokenizer's chat template, else that template itself.

    A tokenizer without a chat template gets `templates["empty"]`, as in LLaMA-Factory.
    """
    source = chat_template_text(tokenizer)
    if source is None:
        return templates["empty"]
    jinja = JinjaTemplate.from_tokenizer(tokenizer)
    for markers, names in FAMILY_MARKERS:
        if not all(marker in source for marker in markers):
            continue
        for name in names:
            try:
                default_system = _default_system(templates[name], jinja, tokenizer)
                if default_system is None:
                    continue
                candidate = dataclasses.replace(templates[name], default_system=default_system)
                if _agrees(candidate, jinja, tokenizer):
                    return candidate
            except UserError:  # the tokenizer's template cannot render a probe
                continue
    return jinja
