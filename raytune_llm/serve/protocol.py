"""The OpenAI API shapes the server speaks: requests (pydantic), responses, stream chunks, errors.

Only what the transformers backend can honour is accepted; anything else (n > 1, logprobs, tools
calls) is refused with a 400 naming the field, never silently ignored.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class ServeError(Exception):
    """A request the server refuses: an HTTP status and an OpenAI-style error body."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = (
            status,
            message,
            kind,
            param,
            code,
        )

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.kind, self.param, self.code)


def raise_for(result: dict[str, Any]) -> None:
    """Raise the ServeError a model replica's result carries as {"error": {...}}, if any."""
    if "error" in result:
        e = result["error"]
        raise ServeError(e["status"], e["message"], e["type"], code=e.get("code"))


def error_body(
    message: str, kind: str = "invalid_request_error", param: str | None = None, code: Any = None
) -> dict[str, Any]:
    """OpenAI's error object: {"error": {"message", "type", "param", "code"}}."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


UNSUPPORTED = (
    "tools",
    "functions",
    "logprobs",
    "top_logprobs",
    "response_format",
    "best_of",
    "suffix",
    "logit_bias",
    "presence_penalty",
    "frequency_penalty",
)
"""Request fields this server refuses when set (other unknown fields are ignored)."""


class _Request(BaseModel):
    """What chat and text completions share."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    model: str
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = Field(1, ge=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    user: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _supported(cls, data: Any) -> Any:
        if isinstance(data, dict):
            given = [k for k in UNSUPPORTED if data.get(k) not in (None, False, [], 0)]
            if given:
                raise ValueError(f"not supported by this server: {', '.join(given)}")
        return data

    @field_validator("n")
    @classmethod
    def _one(cls, value: int) -> int:
        if value != 1:
            raise ValueError("only n=1 is supported; send one request per answer")
        return value

    @field_validator("stop")
    @classmethod
    def _few_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences")
        return value

    def overrides(self) -> dict[str, Any]:
        """Sampling settings this request sets (SamplingParams.with_overrides arguments)."""
        return {
            "max_new_tokens": self.max_completion_tokens or self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "stop": self.stop,
            "seed": self.seed,
        }

    @property
    def include_usage(self) -> bool:
        return bool((self.stream_options or {}).get("include_usage"))


class ChatMessage(BaseModel):
    """One message; content is text or a list of text parts."""

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            parts = []
            for part in self.content:
                if part.get("type") != "text" or not isinstance(part.get("text"), str):
                    raise ServeError(400, "only text content parts are supported", param="messages")
                parts.append(part["text"])
            return "".join(parts)
        return self.content or ""


ROLES = {"user": "user", "assistant": "assistant", "tool": "observation", "function": "function"}
"""OpenAI role → the template's role."""


class ChatRequest(_Request):
    """POST /v1/chat/completions."""

    messages: list[ChatMessage] = Field(min_length=1)

    def conversation(self) -> tuple[list[dict[str, str]], str]:
        """(messages in the template's roles, system prompt)."""
        system = [m.text() for m in self.messages if m.role in ("system", "developer")]
        messages = [
            {"role": ROLES[m.role], "content": m.text()}
            for m in self.messages
            if m.role not in ("system", "developer")
        ]
        return messages, "\n".join(system)


class CompletionRequest(_Request):
    """POST /v1/completions."""

    prompt: str | list[str]
    echo: bool = False

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and len(value) != 1:
            raise ValueError("give one prompt (a string); send one request per prompt")
        return value

    @field_validator("echo")
    @classmethod
    def _no_echo(cls, value: bool) -> bool:
        if value:
            raise ValueError("echo is not supported")
        return value

    def text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


class ScoreRequest(BaseModel):
    """POST /v1/score/evaluation (LLaMA-Factory's): texts to score with a reward model."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str
    messages: list[str] = Field(min_length=1, max_length=256)
    max_length: int | None = Field(None, gt=0)


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def response(rid: str, model: str, done: dict[str, Any], chat: bool) -> dict[str, Any]:
    """A whole chat or text completion from the model deployment's result."""
    answer = (
        {"message": {"role": "assistant", "content": done["text"]}}
        if chat
        else {"text": done["text"]}
    )
    return {
        "id": rid,
        "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, **answer, "finish_reason": done["finish_reason"], "logprobs": None}
        ],
        "usage": usage(done["prompt_tokens"], done["completion_tokens"]),
    }


def chunk(
    rid: str,
    model: str,
    chat: bool,
    delta: str | None,
    finish_reason: str | None = None,
    first: bool = False,
) -> dict[str, Any]:
    """One streamed chunk (chat.completion.chunk or text_completion)."""
    if chat:
        piece: dict[str, Any] = {"role": "assistant", "content": ""} if first else {}
        if delta:
            piece["content"] = delta
        choice: dict[str, Any] = {"index": 0, "delta": piece}
        kind = "chat.completion.chunk"
    else:
        choice = {"index": 0, "text": delta or ""}
        kind = "text_completion"
    choice.update(finish_reason=finish_reason, logprobs=None)
    return {
        "id": rid,
        "object": kind,
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
    }


def usage_chunk(rid: str, model: str, chat: bool, prompt: int, completion: int) -> dict[str, Any]:
    """The last chunk when stream_options.include_usage: no choices, the usage."""
    kind = "chat.completion.chunk" if chat else "text_completion"
    return {
        "id": rid,
        "object": kind,
        "created": int(time.time()),
        "model": model,
        "choices": [],
        "usage": usage(prompt, completion),
    }
