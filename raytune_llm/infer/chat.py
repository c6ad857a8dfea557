"""A terminal chat with the model (and its adapters), as ``llamafactory-cli chat``.

    raytune-llm chat examples/inference/llama3_lora_sft.yaml --system "Answer briefly."

The whole conversation is rendered with the run's chat template each turn (exactly as training
rendered it) and the answer is printed as its tokens come. ``clear`` forgets the conversation,
``exit`` (or Ctrl-D, Ctrl-C) ends the session.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import TextIO

from ..data.templates import Message
from ..model.generate.decode import ContextLengthError
from ..model.generate.sampling import SamplingParams
from .backend import TransformersBackend

HELP = "Type a message and press Enter; `clear` forgets the conversation, `exit` ends the chat."


class ChatSession:
    """A conversation with a backend: its history, system prompt and sampling settings."""

    def __init__(self, backend: TransformersBackend, params: SamplingParams, system: str = ""):
        self.backend, self.params, self.system = backend, params, system
        self.history: list[Message] = []

    def prompt_ids(self, query: str) -> list[int]:
        """The prompt of the next turn: the whole conversation, then ``query``."""
        messages = [*self.history, {"role": "user", "content": query}]
        return self.backend.encode_chat(messages, self.system)

    def reply(self, query: str) -> Iterator[str]:
        """Stream the answer to ``query``; the exchange joins the history once it is complete.

        Raises:
            ContextLengthError: when the conversation leaves no room for an answer (the history
                is left as it was).
        """
        prompt = self.prompt_ids(query)
        self.backend.check_prompt(prompt, self.params)
        answer = ""
        for event in self.backend.stream(prompt, self.params):
            answer += event.delta
            if event.delta:
                yield event.delta
        self.history += [{"role": "user", "content": query},
                         {"role": "assistant", "content": answer}]  # fmt: skip

    def clear(self) -> None:
        """Forget the conversation (the system prompt stays)."""
        self.history = []


def banner(session: ChatSession) -> str:
    """What the chat says first: the model, adapters, template, settings and how to use it."""
    backend, cfg, p = session.backend, session.backend.cfg, session.params
    adapters = ", ".join(cfg.model.adapter_name_or_path or []) or "none"
    template = cfg.data.template or "the tokenizer's own chat template"
    sampling = (
        f"sampling (temperature {p.temperature:g}, top_p {p.top_p:g}, top_k {p.top_k})"
        if p.do_sample
        else "greedy decoding"
    )
    lines = [
        f"raytune-llm chat: {cfg.model.model_name_or_path} on {backend.device}",
        f"  adapters (merged): {adapters}",
        f"  template: {template}; {sampling}; at most {p.max_new_tokens} new tokens",
    ]
    if session.system:
        lines.append(f"  system prompt: {session.system}")
    return "\n".join([*lines, HELP])


def run_chat(session: ChatSession, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> int:
    """The read-answer loop; returns the exit code (0: ``exit``, end of input or Ctrl-C)."""
    print(banner(session), file=stdout, flush=True)
    try:
        while True:
            query = _read(stdin, stdout)
            if query is None or query.strip() == "exit":
                break
            if not query.strip():
                continue
            if query.strip() == "clear":
                session.clear()
                print("History has been removed.", file=stdout, flush=True)
                continue
            print("Assistant: ", end="", file=stdout, flush=True)
            try:
                for piece in session.reply(query):
                    print(piece, end="", file=stdout, flush=True)
            except ContextLengthError as err:
                print(f"[{err}; type `clear` to start a new conversation]", end="", file=stdout)
            print(file=stdout, flush=True)
    except KeyboardInterrupt:
        pass
    print(file=stdout, flush=True)
    return 0


def _read(stdin: TextIO, stdout: TextIO) -> str | None:
    """One line from the user (None at the end of input), with line editing on a terminal."""
    if stdin is sys.stdin and stdout is sys.stdout and stdin.isatty():
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401  (arrow keys and history in input())
        try:
            return input("\nUser: ")
        except EOFError:
            return None
    print("\nUser: ", end="", file=stdout, flush=True)
    line = stdin.readline()
    return line.rstrip("\r\n") if line else None
