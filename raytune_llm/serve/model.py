"""The model replicas: the transformers backend, adapters loaded on demand, continuous batching.

* Adapters are Serve multiplexed models: the ingress routes a request for adapter ``x`` with
  ``multiplexed_model_id=x`` to a replica that holds it; Serve's LRU keeps the
  ``max_adapters_per_replica`` most recently used on each replica. The backend loads an adapter
  when a batch first needs it and lets go of those Serve evicted when it switches or idles.
* Every request, streamed or not, is decoded by one :class:`ContinuousBatcher` per replica:
  requests join the running batch at the next decoding step and leave it when they finish
  (``max_batch_size`` rows at most; ``batching: false`` decodes one request at a time).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from ray import serve

from ..config import Config
from ..infer.backend import TransformersBackend
from ..model.generate.continuous import ContinuousBatcher
from ..model.generate.decode import ContextLengthError, Event
from ..model.generate.sampling import SamplingParams
from ..utils.errors import UserError


class _Loaded:
    """An adapter held by Serve's multiplexing LRU; Serve calls ``__del__`` to evict it."""

    def __init__(self, server: ModelServer, name: str):
        self.server, self.name, self.active = server, name, True

    def __del__(self) -> None:
        if getattr(self, "active", False):
            self.active = False
            self.server.wanted.discard(self.name)


def _error(err: BaseException) -> dict[str, Any]:
    status = 400 if isinstance(err, UserError) else 500
    kind = "invalid_request_error" if status == 400 else "server_error"
    code = "context_length_exceeded" if isinstance(err, ContextLengthError) else None
    return {"error": {"status": status, "message": str(err), "type": kind, "code": code}}


class ModelServer:
    """One model replica (the deployment ``ModelServer`` of the application)."""

    def __init__(
        self,
        cfg: Config,
        name: str,
        adapters: dict[str, str],
        max_adapters: int,
        batching: bool,
        max_batch_size: int,
        batch_wait_timeout_s: float,
    ):
        cfg = cfg.model_copy(
            update={"model": cfg.model.model_copy(update={"adapter_name_or_path": None})}
        )  # adapters are served by name here, not merged into the base
        self.backend = TransformersBackend(cfg, name=name)
        self.paths = dict(adapters)
        self.defaults = SamplingParams.from_config(cfg.generation)
        self.wanted: set[str] = set()  # the adapters Serve's LRU holds for this replica
        rows = max_batch_size if batching else 1
        self.batcher = ContinuousBatcher(self.backend, rows, batch_wait_timeout_s, self._switch)

        async def load_adapter(adapter: str) -> _Loaded:
            self.wanted.add(adapter)  # loaded by the batcher when a batch first needs it
            return _Loaded(self, adapter)

        self.get_adapter = serve.multiplexed(max_num_models_per_replica=max_adapters)(load_adapter)

    def _switch(self, adapter: str | None) -> None:
        """Before a batch for ``adapter`` (None: base or idle): unload evicted ones, load it."""
        for name in list(self.backend.adapters):
            if name != adapter and name not in self.wanted:
                self.backend.remove_adapter(name)
        if adapter is not None and adapter not in self.backend.adapters:
            self.backend.add_adapter(adapter, self.paths[adapter])

    def stats(self, reset: bool = False) -> dict[str, Any]:
        """Loaded adapters and rows per decoding step since the last reset (tests, benchmarks)."""
        sizes = list(self.batcher.sizes)
        if reset:
            self.batcher.sizes.clear()
        return {
            "adapters": list(self.backend.adapters),
            "steps": len(sizes),
            "mean_batch": sum(sizes) / len(sizes) if sizes else 0.0,
            "largest_batch": max(sizes, default=0),
        }

    # ---- requests ------------------------------------------------------------------------------

    def _prepare(self, payload: dict[str, Any], overrides: dict[str, Any]) -> tuple[Any, ...]:
        if "messages" in payload:
            prompt = self.backend.encode_chat(payload["messages"], payload.get("system", ""))
        else:
            prompt = self.backend.encode_text(payload["prompt"])
        params = self.backend.check_prompt(prompt, self.defaults.with_overrides(**overrides))
        return payload.get("adapter"), prompt, params

    async def _events(self, adapter: str | None, prompt: list[int], params: SamplingParams):
        """The request's events from the batcher; cancels its row if the caller goes away."""
        if adapter is not None:
            await self.get_adapter(adapter)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Event | BaseException] = asyncio.Queue()
        cancel = self.batcher.submit(
            adapter, prompt, params, lambda e: loop.call_soon_threadsafe(queue.put_nowait, e)
        )
        try:
            while True:
                event = await queue.get()
                yield event
                if isinstance(event, BaseException) or event.finish_reason:
                    return
        finally:
            cancel()

    async def complete(self, payload: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
        """A whole answer: {text, finish_reason, prompt_tokens, completion_tokens} or {error}."""
        try:
            adapter, prompt, params = self._prepare(payload, overrides)
        except UserError as err:
            return _error(err)
        text, reason, tokens = "", "length", 0
        async for event in self._events(adapter, prompt, params):
            if isinstance(event, BaseException):
                return _error(event)
            text, tokens = text + event.delta, event.tokens
            reason = event.finish_reason or reason
        return {
            "text": text,
            "finish_reason": reason,
            "prompt_tokens": len(prompt),
            "completion_tokens": tokens,
        }

    async def stream(
        self, payload: dict[str, Any], overrides: dict[str, Any]
    ) -> AsyncIterator[dict[str, Any]]:
        """First {prompt_tokens} (or {error}), then {delta, finish_reason, tokens} pieces."""
        try:
            adapter, prompt, params = self._prepare(payload, overrides)
        except UserError as err:
            yield _error(err)
            return
        yield {"prompt_tokens": len(prompt)}
        async for event in self._events(adapter, prompt, params):
            if isinstance(event, BaseException):
                yield _error(event)
                return
            yield {
                "delta": event.delta,
                "finish_reason": event.finish_reason,
                "tokens": event.tokens,
            }
