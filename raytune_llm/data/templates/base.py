"""The chat-template contract shared by every family, and the helpers both kinds of template use.

A template turns canonical messages (``{"role", "content"}``; roles user, assistant, function: a
tool call, observation: a tool result) into token ids split at turn boundaries, so that the
tokenisation step can mask prompts and train answers. Two kinds implement it: `SlotTemplate`
(slots.py: LLaMA-Factory style format strings, one per family file) and `JinjaTemplate` (jinja.py:
the tokenizer's own chat template, for models no family matches).

Nothing here imports torch or transformers: a tokenizer object is passed in where ids are needed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from raytune_llm.utils.errors import UserError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

Message = dict[str, str]
PROMPT_ROLES = ("user", "observation")
ANSWER_ROLES = ("assistant", "function")


@dataclass(frozen=True)
class Special:
    """A special token of the tokenizer, named by its attribute (``bos_token`` / ``eos_token``).

    It is resolved when encoding (its id; skipped when the tokenizer has none) or rendering (its
    text; the template's default text when no tokenizer is given).
    """

    attr: str


BOS = Special("bos_token")
EOS = Special("eos_token")
Piece = str | Special


def check_messages(messages: Sequence[Message], *, end: str) -> None:
    """Check that messages alternate prompt-side / answer-side, starting prompt-side.

    Args:
        messages: The conversation.
        end: "answer" (training: ends with an answer) or "prompt" (generation: ends with a prompt).

    Raises:
        UserError: Naming the first message that breaks the pattern.
    """
    if not messages:
        raise UserError("a conversation needs at least one message")
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        expected = ANSWER_ROLES if i % 2 else PROMPT_ROLES
        if role not in expected:
            raise UserError(
                f"message {i} has role {role!r}; expected one of {list(expected)} (messages must "
                "alternate user/observation and assistant/function, starting with a user message)"
            )
        if not isinstance(message.get("content"), str):
            raise UserError(f"message {i} ({role}) has no string content")
    last_side = "answer" if len(messages) % 2 == 0 else "prompt"
    if last_side != end:
        raise UserError(
            f"the conversation ends with a {messages[-1]['role']} message; expected it to end with "
            f"{'an assistant/function' if end == 'answer' else 'a user/observation'} message"
        )


def pieces_to_ids(tokenizer: PreTrainedTokenizerBase, groups: list[list[Piece]]) -> list[list[int]]:
    """Token ids of each group of pieces, with one batched tokenizer call for all text pieces.

    Each text piece is tokenised on its own (no special tokens added), as LLaMA-Factory does, so a
    BPE merge never crosses a piece boundary.
    """
    texts = [p for group in groups for p in group if isinstance(p, str) and p]
    encoded = iter(tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else ())
    out = []
    for group in groups:
        ids: list[int] = []
        for piece in group:
            if isinstance(piece, Special):
                token_id = getattr(tokenizer, f"{piece.attr}_id", None)
                if token_id is not None:
                    ids.append(token_id)
            elif piece:
                ids.extend(next(encoded))
        out.append(ids)
    return out


def pieces_to_text(pieces: list[Piece], specials: dict[str, str | None]) -> str:
    """Join pieces into text, writing each special token as its text (skipped when None)."""
    return "".join(p if isinstance(p, str) else (specials.get(p.attr) or "") for p in pieces)


class Template(ABC):
    """The contract of a chat template (see the package docstring for the roles).

    Attributes:
        name: Registry name ("llama3", ...; "jinja" for a tokenizer's own template).
        default_system: System prompt used when a record has none.
        stop_words: Tokens that end a generation besides eos; the first replaces eos when
            `replace_eos`.
        efficient_eos: Answers carry no end marker; the tokeniser appends one eos at the end.
        replace_eos: Generation must stop at ``stop_words[0]``: `fix_tokenizer` makes it the eos.
        preserve_thinking: Keep the reasoning of earlier turns (reasoning templates).
        text_eos_token: Token that ends a pretraining document (None: the tokenizer's eos).
    """

    name: str
    default_system: str
    stop_words: tuple[str, ...]
    efficient_eos: bool
    replace_eos: bool
    preserve_thinking: bool
    text_eos_token: str | None

    @abstractmethod
    def encode_multiturn(
        self,
        tokenizer: PreTrainedTokenizerBase,
        messages: Sequence[Message],
        system: str = "",
        tools: str = "",
        *,
        drop_history_thinking: bool = False,
    ) -> list[tuple[list[int], list[int]]]:
        """One (prompt_ids, answer_ids) pair per answer turn.

        prompt_ids hold everything since the previous answer (bos, system and tool text in the
        first); answer_ids hold the answer with its end-of-turn marker. With
        `drop_history_thinking` (reasoning templates, LLaMA-Factory's mask_history without
        preserve_thinking) earlier answers lose their reasoning and only the last gets the empty
        thought block.
        """

    @abstractmethod
    def encode_prompt(
        self,
        tokenizer: PreTrainedTokenizerBase,
        messages: Sequence[Message],
        system: str = "",
        tools: str = "",
    ) -> list[int]:
        """Token ids of a generation prompt (messages end prompt-side), answer opener included."""

    @abstractmethod
    def render(
        self,
        messages: Sequence[Message],
        system: str = "",
        tools: str = "",
        add_generation_prompt: bool = False,
        *,
        tokenizer: PreTrainedTokenizerBase | None = None,
    ) -> str:
        """The conversation as text: what the encode methods tokenise, for preview and comparison.

        Special tokens are written with the tokenizer's text when one is given, else with the
        family's usual text.
        """

    @property
    @abstractmethod
    def supports_tools(self) -> bool:
        """Whether tool definitions, calls and results can be rendered."""

    def encode_oneturn(
        self,
        tokenizer: PreTrainedTokenizerBase,
        messages: Sequence[Message],
        system: str = "",
        tools: str = "",
    ) -> tuple[list[int], list[int]]:
        """(prompt_ids, answer_ids): everything before the last answer, and the last answer."""
        pairs = self.encode_multiturn(
            tokenizer, messages, system, tools, drop_history_thinking=not self.preserve_thinking
        )
        prompt = [i for source, target in pairs[:-1] for i in source + target]
        return prompt + pairs[-1][0], pairs[-1][1]

    def stop_token_ids(self, tokenizer: PreTrainedTokenizerBase) -> list[int]:
        """Ids that end a generation: the tokenizer's eos, then each stop word known to it."""
        ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        unk = getattr(tokenizer, "unk_token_id", None)
        for word in self.stop_words:
            token_id = tokenizer.convert_tokens_to_ids(word)
            if token_id is not None and token_id != unk and token_id not in ids:
                ids.append(token_id)
        return ids

    def fix_tokenizer(self, tokenizer: PreTrainedTokenizerBase) -> int:
        """Prepare a tokenizer for training and generation with this template (in place).

        As LLaMA-Factory: with `replace_eos` the first stop word becomes the eos; a tokenizer
        without eos gets ``<|endoftext|>``; a missing pad becomes the eos; the other stop words
        are registered as special tokens.

        Returns:
            How many tokens were added to the vocabulary (the model's embeddings must grow).
        """
        added = 0
        words = list(self.stop_words)
        if self.replace_eos and words:
            added += _set_eos(tokenizer, words.pop(0))
        if tokenizer.eos_token_id is None:
            added += _set_eos(tokenizer, "<|endoftext|>")
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        if words:
            added += _add_special(tokenizer, words)
        return added


def _add_special(tokenizer: Any, words: list[str]) -> int:
    """Register extra special tokens, keeping those already registered (transformers 5 and 4)."""
    try:
        return tokenizer.add_special_tokens(
            {"extra_special_tokens": words}, replace_extra_special_tokens=False
        )
    except TypeError:  # transformers 4 names them "additional"
        return tokenizer.add_special_tokens(
            {"additional_special_tokens": words}, replace_additional_special_tokens=False
        )


def _set_eos(tokenizer: Any, token: str) -> int:
    if tokenizer.eos_token == token:
        return 0
    return tokenizer.add_special_tokens({"eos_token": token})
