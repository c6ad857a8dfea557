"""Slot templates: a family's format written as strings with a ``{{content}}`` placeholder.

Each message is rendered by filling its role's slot; special tokens the tokenizer names (bos,
eos) are `Special` pieces. Unlike LLaMA-Factory, the generation prompt (e.g. the assistant header)
is a slot of its own, so `render` can stop before it; when encoding it is joined to the text of the
prompt turn before tokenising, which gives LLaMA-Factory's tokens.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .base import (
    ANSWER_ROLES,
    Message,
    Piece,
    Template,
    check_messages,
    pieces_to_ids,
    pieces_to_text,
)
from .tools import get_tool_format, parse_calls, parse_tools

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

CONTENT = "{{content}}"
Slot = tuple[Piece, ...]


def _fill(slot: Slot, content: str) -> list[Piece]:
    return [p.replace(CONTENT, content, 1) if isinstance(p, str) else p for p in slot]


def _join(first: list[Piece], second: Sequence[Piece]) -> list[Piece]:
    """Concatenate, merging the touching texts into one piece (tokenised together)."""
    if first and second and isinstance(first[-1], str) and isinstance(second[0], str):
        return [*first[:-1], first[-1] + second[0], *second[1:]]
    return [*first, *second]


@dataclass(frozen=True)
class SlotTemplate(Template):
    """A template made of slots (see the module docstring).

    Attributes:
        name: Registry name.
        user: Slot of a user message.
        assistant: Slot of an answer, its end-of-turn marker included.
        generation: The generation prompt that opens an answer (may be empty).
        system: Slot of the system prompt (and tool text).
        observation: Slot of a tool result (default: `user`).
        function: Slot of a tool-calling answer (default: `assistant`).
        prefix: Pieces before everything (usually bos).
        default_system: System prompt used when a record has none.
        stop_words: Tokens that end a generation besides eos.
        efficient_eos: Answers end without eos; one is appended to the whole example.
        replace_eos: `stop_words[0]` must become the tokenizer's eos for generation.
        system_in_user: Put the filled system slot inside the first user message (Llama-2 style).
        tool_format: Name in `TOOL_FORMATS` of how tools and calls are written.
        reasoning: Answers may open with a thought block (`thought_words`); see `enable_thinking`.
        thought_words: Opening and closing text of a thought block.
        enable_thinking: True: answers without a thought get an empty one, trained. False: thoughts
            are removed and an empty one ends the prompt, untrained. None: thoughts are kept, and
            answers without one get an empty one in the prompt.
        preserve_thinking: Keep earlier answers' thoughts in prompts.
        bos_text / eos_text: Text of bos / eos when rendering without a tokenizer.
        text_eos_token: Token ending a pretraining document (None: the tokenizer's eos).
    """

    name: str
    user: Slot
    assistant: Slot
    generation: Slot = ()
    system: Slot = (CONTENT,)
    observation: Slot | None = None
    function: Slot | None = None
    prefix: Slot = ()
    default_system: str = ""
    stop_words: tuple[str, ...] = ()
    efficient_eos: bool = False
    replace_eos: bool = False
    system_in_user: bool = False
    tool_format: str = "default"
    reasoning: bool = False
    thought_words: tuple[str, str] = ("<think>\n", "\n</think>\n\n")
    enable_thinking: bool | None = True
    preserve_thinking: bool = False
    bos_text: str = "<s>"
    eos_text: str = "</s>"
    text_eos_token: str | None = None

    @property
    def supports_tools(self) -> bool:
        return True

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
        think = "last" if drop_history_thinking else "all"
        groups = self._pieces(messages, system, tools, drop_history_thinking, think, True)
        ids = pieces_to_ids(tokenizer, groups)
        return [(ids[i], ids[i + 1]) for i in range(0, len(ids), 2)]

    def encode_oneturn(
        self,
        tokenizer: PreTrainedTokenizerBase,
        messages: Sequence[Message],
        system: str = "",
        tools: str = "",
    ) -> tuple[list[int], list[int]]:
        check_messages(messages, end="answer")
        strip = not self.preserve_thinking
        ids = pieces_to_ids(tokenizer, self._pieces(messages, system, tools, strip, "last", True))
        return [i for group in ids[:-1] for i in group], ids[-1]

    def encode_prompt(
        self,
        tokenizer: PreTrainedTokenizerBase,
        messages: Sequence[Message],
        system: str = "",
        tools: str = "",
    ) -> list[int]:
        check_messages(messages, end="prompt")
        strip = not self.preserve_thinking
        groups = self._pieces(messages, system, tools, strip, "none", True)
        return [i for group in pieces_to_ids(tokenizer, groups) for i in group]

    def render(
        self,
        messages: Sequence[Message],
        system: str = "",
        tools: str = "",
        add_generation_prompt: bool = False,
        *,
        tokenizer: PreTrainedTokenizerBase | None = None,
    ) -> str:
        ends_with_answer = len(messages) % 2 == 0
        check_messages(messages, end="answer" if ends_with_answer else "prompt")
        if ends_with_answer:
            groups = self._pieces(messages, system, tools, False, "all", True)
            if add_generation_prompt:
                groups.append([*self.generation, *self._prompt_thought()])
        else:
            strip = not self.preserve_thinking
            groups = self._pieces(messages, system, tools, strip, "none", add_generation_prompt)
        if tokenizer is None:
            specials = {"bos_token": self.bos_text, "eos_token": self.eos_text}
        else:
            specials = {"bos_token": tokenizer.bos_token, "eos_token": tokenizer.eos_token}
        return "".join(pieces_to_text(group, specials) for group in groups)

    def _prompt_thought(self) -> list[Piece]:
        """The empty thought that ends a generation prompt when thinking is off."""
        return [self.thought_words[0] + self.thought_words[1]] if self._thinks_in_prompt() else []

    def _thinks_in_prompt(self) -> bool:
        return self.reasoning and not self.enable_thinking

    def _has_thought(self, text: str) -> bool:
        open_, close = (w.strip() for w in self.thought_words)
        return open_ in text or close in text

    def _strip_thought(self, text: str) -> str:
        open_, close = map(re.escape, self.thought_words)
        return re.sub(f"{open_}(.*?){close}", "", text, flags=re.DOTALL).lstrip("\n")

    def _head(self, system: str, tools: str) -> tuple[list[Piece], str]:
        """Pieces before the first message, and the system text to inline into it (Llama-2)."""
        fmt = get_tool_format(self.tool_format)
        definitions = parse_tools(tools)
        tool_text = fmt.describe(definitions) if definitions else ""
        head: list[Piece] = list(self.prefix)
        system = system or self.default_system
        if tool_text and fmt.before_turns:
            head.append(tool_text)
        elif tool_text:
            system = fmt.join_system(system, tool_text)
        if not system:
            return head, ""
        filled = _fill(self.system, system)
        if self.system_in_user:
            return head, "".join(p for p in filled if isinstance(p, str))
        return head + filled, ""

    def _answer(self, message: Message, strip: bool) -> tuple[list[Piece], str]:
        """Pieces of an answer, and its text after thought removal (to test for a thought)."""
        text = self._strip_thought(message["content"]) if strip else message["content"]
        if message["role"] == "assistant":
            return _fill(self.assistant, text), text
        thought, call_text = "", text
        if self.reasoning:
            open_, close = map(re.escape, self.thought_words)
            found = re.search(f"{open_}(.*?){close}", text, flags=re.DOTALL)
            if found:
                thought, call_text = found.group(0), text.replace(found.group(0), "")
        calls = get_tool_format(self.tool_format).format_calls(parse_calls(call_text))
        return _fill(self.function or self.assistant, thought + calls), text

    def _pieces(
        self,
        messages: Sequence[Message],
        system: str,
        tools: str,
        strip_history: bool,
        think: str,
        generation_at_end: bool,
    ) -> list[list[Piece]]:
        """Pieces of each message; the first message's group holds the prefix and system.

        Args:
            messages: A checked conversation.
            system, tools: The record's system prompt and tool definitions.
            strip_history: Remove the thoughts of answers before the last message.
            think: Which answers lacking a thought get an empty one: "all", "last" or "none".
            generation_at_end: End a conversation that ends prompt-side with the generation
                prompt (and, with thinking off, the empty thought).
        """
        head, inline = self._head(system, tools)
        # The answer being trained on, if any: every answer of a generation prompt is history.
        last_answer = len(messages) - 1 if messages[-1]["role"] in ANSWER_ROLES else -1
        groups: list[list[Piece]] = []
        for i, message in enumerate(messages):
            role, content = message["role"], message["content"]
            if role in ANSWER_ROLES:
                strip = self.reasoning and (
                    self.enable_thinking is False or (strip_history and i != last_answer)
                )
                pieces, text = self._answer(message, strip)
                wanted = think == "all" or (think == "last" and i == last_answer)
                if self.reasoning and wanted and not self._has_thought(text):
                    thought = self.thought_words[0] + self.thought_words[1]
                    if self.enable_thinking:  # the model learns to write the empty thought
                        pieces = [thought, *pieces]
                    else:  # the prompt writes it for the model
                        groups[-1] = [*groups[-1], thought]
                groups.append(pieces)
                continue
            if role == "user":
                pieces = _fill(self.user, inline + content if i == 0 else content)
            else:
                pieces = _fill(self.observation or self.user, content)
            if i < len(messages) - 1 or generation_at_end:
                pieces = _join(pieces, self.generation)
                if i == len(messages) - 1:
                    pieces += self._prompt_thought()
            groups.append(pieces)
        groups[0] = [*head, *groups[0]]
        return groups
