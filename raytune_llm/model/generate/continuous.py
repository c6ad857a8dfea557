"""Continuous batching: requests join and leave one running batch of a :class:`.Decoder`.

A scheduler thread owns the decoder. At every decoding step it removes the rows that finished,
admits waiting requests (prefilled together, their KV caches left-padded to the running batch's
length and stacked onto it), then decodes one token for every row. A request therefore never
waits for a whole batch to finish, and a batch never waits for stragglers to arrive.

Requests are admitted in arrival order; a model's active adapter is global, so a running batch
holds one adapter (entered with ``decoder.session(adapter)``), and a request for another adapter
waits until the rows ahead of it drain (rows behind it are not admitted past it: no starvation).
A model whose cache is not plain full attention (sliding-window layers) is batched statically
instead: new requests start together once the running batch has drained.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from .decode import Answer, Decoder, Event, left_padded
from .sampling import SamplingParams, next_tokens, seeded

Emit = Callable[[Event | BaseException], None]
"""Receives a row's events (row is always 0) or the exception that ended it."""


@dataclass(eq=False)
class _Row:
    adapter: str | None
    prompt: list[int]
    answer: Answer
    emit: Emit
    generator: Any = None
    pending: int = -1  # the last sampled token, fed at the next step
    position: int = 0  # position id of the pending token
    cancelled: bool = False


class ContinuousBatcher:
    """Decode submitted requests with continuous batching (see the module docstring).

    Args:
        decoder: the decoder (an inference backend, or a policy's); this batcher is its only
            user from now on.
        max_rows: most rows decoded together (1: one request at a time).
        wait_s: when idle, how long the first request waits for others to start with it.
        prepare: called in the scheduler thread before a batch for an adapter starts (loads the
            adapter if needed); an exception fails the requests that asked for it.
    """

    def __init__(
        self,
        decoder: Decoder,
        max_rows: int,
        wait_s: float = 0.0,
        prepare: Callable[[str | None], None] | None = None,
    ):
        self.decoder, self.max_rows, self.wait_s = decoder, max_rows, wait_s
        self.prepare = prepare or (lambda adapter: None)
        self._queue: deque[_Row] = deque()
        self._cond = threading.Condition()
        self.sizes: deque[int] = deque(maxlen=1000)  # rows per decoding step, for stats
        threading.Thread(target=self._loop, name="continuous-batcher", daemon=True).start()

    def submit(
        self, adapter: str | None, prompt: Sequence[int], params: SamplingParams, emit: Emit
    ) -> Callable[[], None]:
        """Queue a request; returns a function that cancels it (its row stops at the next step)."""
        row = _Row(adapter, list(prompt), Answer(params), emit, generator=seeded(params.seed))
        with self._cond:
            self._queue.append(row)
            self._cond.notify()

        def cancel() -> None:
            row.cancelled = True

        return cancel

    # ---- the scheduler -------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
            if self.wait_s:
                time.sleep(self.wait_s)  # let a burst gather before the first prefill
            adapter = self._queue[0].adapter
            try:
                self.prepare(adapter)
                self._run(adapter)
            except Exception as err:  # never let the scheduler die: fail who asked instead
                self._fail(self._take(adapter, len(self._queue)), err)
            if not self._queue:
                with suppress(Exception):  # idle: let go of adapters no longer wanted
                    self.prepare(None)

    def _take(self, adapter: str | None, n: int) -> list[_Row]:
        """Up to n queued rows for ``adapter`` from the head of the queue (arrival order)."""
        taken: list[_Row] = []
        with self._cond:
            while self._queue and len(taken) < n and self._queue[0].adapter == adapter:
                row = self._queue.popleft()
                if not row.cancelled:
                    taken.append(row)
        return taken

    @staticmethod
    def _fail(rows: list[_Row], err: BaseException) -> None:
        for row in rows:
            row.emit(err)

    def _run(self, adapter: str | None) -> None:
        """Decode batches for one adapter until no row is left and none of its requests waits."""
        state = _Batch()
        with self.decoder.session(adapter):
            while True:
                room = self.max_rows - len(state.rows)
                new = self._take(adapter, room if state.joinable or not state.rows else 0)
                try:
                    if new:
                        self._admit(state, new)
                    if not state.rows:
                        return
                    self.sizes.append(len(state.rows))
                    self._step(state)
                except Exception as err:  # a failed step fails its rows, never the server
                    self._fail(list({id(r): r for r in [*state.rows, *new]}.values()), err)
                    return

    def _admit(self, state: _Batch, rows: list[_Row]) -> None:
        """Prefill new rows together and stack their caches onto the running batch."""
        decoder = self.decoder
        ids, mask = left_padded([r.prompt for r in rows], decoder.pad_id, decoder.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = decoder.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
        )
        for row in rows:
            row.position = len(row.prompt)
        state.merge(rows, out.cache, mask)
        first = len(state.rows) - len(rows)
        self._sample(state, out.logits[:, -1, :], list(range(first, len(state.rows))))

    def _step(self, state: _Batch) -> None:
        """Feed every row its pending token; sample the next one."""
        torch, decoder = _torch(), self.decoder
        step_ids = torch.tensor([[r.pending] for r in state.rows], device=decoder.device)
        positions = torch.tensor([[r.position] for r in state.rows], device=decoder.device)
        state.mask = torch.cat([state.mask, state.mask.new_ones((len(state.rows), 1))], dim=1)
        out = decoder.model(
            input_ids=step_ids,
            attention_mask=state.mask,
            position_ids=positions,
            cache=state.cache,
            use_cache=True,
            logits_to_keep=1,
        )
        state.cache = out.cache
        for row in state.rows:
            row.position += 1
        self._sample(state, out.logits[:, -1, :], list(range(len(state.rows))))

    def _sample(self, state: _Batch, logits: Any, which: list[int]) -> None:
        """Next tokens of the rows ``which`` (indices into state.rows; logits in that order)."""
        torch, rows = _torch(), [state.rows[i] for i in which]
        params, generators = [r.answer.params for r in rows], [r.generator for r in rows]
        if any(p.repetition_penalty != 1.0 for p in params):
            seqs = [r.prompt + r.answer.token_ids for r in rows]
            history = left_padded(seqs, self.decoder.pad_id)[0]
        else:
            history = torch.zeros((len(rows), 1), dtype=torch.long)
        tokens = next_tokens(logits, params, history, generators)
        done = []
        for index, row, token in zip(which, rows, tokens.tolist(), strict=True):
            if row.cancelled or self._advance(row, int(token)):
                done.append(index)
        if done:
            state.drop(done)

    def _advance(self, row: _Row, token: int) -> bool:
        """Add a sampled token to a row and emit what it shows; True when the row is finished."""
        event = row.answer.add(token, self.decoder)
        row.pending = token
        if event is not None:
            row.emit(event)
        return row.answer.finish_reason is not None


class _Batch:
    """The running batch: its rows, their stacked KV cache and attention mask (left-padded)."""

    def __init__(self) -> None:
        self.rows: list[_Row] = []
        self.cache: Any = None
        self.mask: Any = None
        self.joinable = True  # False for caches other than plain DynamicLayer (sliding windows)

    def merge(self, rows: list[_Row], cache: Any, mask: Any) -> None:
        torch = _torch()
        if not self.rows:
            self.rows, self.cache, self.mask = list(rows), cache, mask
            layers = getattr(cache, "layers", [])
            self.joinable = all(type(layer).__name__ == "DynamicLayer" for layer in layers)
            return
        have, new = self.mask.size(1), mask.size(1)
        width = max(have, new)
        for old_layer, new_layer in zip(self.cache.layers, cache.layers, strict=True):
            for name in ("keys", "values"):
                a, b = getattr(old_layer, name), getattr(new_layer, name)
                setattr(
                    old_layer,
                    name,
                    torch.cat([_pad_left(a, width, -2), _pad_left(b, width, -2)], 0),
                )
        self.mask = torch.cat([_pad_left(self.mask, width, 1), _pad_left(mask, width, 1)], 0)
        self.rows += rows

    def drop(self, indices: list[int]) -> None:
        """Remove finished rows; cut the columns no remaining row attends to."""
        torch = _torch()
        gone = set(indices)
        keep = [i for i in range(len(self.rows)) if i not in gone]
        self.rows = [self.rows[i] for i in keep]
        if not keep:
            self.cache = self.mask = None
            return
        index = torch.tensor(keep, device=self.mask.device)
        self.mask = self.mask.index_select(0, index)
        used = self.mask.any(dim=0).nonzero()
        start = int(used[0]) if used.numel() else 0
        self.mask = self.mask[:, start:]
        for layer in self.cache.layers:
            layer.keys = layer.keys.index_select(0, index)[..., start:, :]
            layer.values = layer.values.index_select(0, index)[..., start:, :]


def _pad_left(x: Any, width: int, dim: int) -> Any:
    torch = _torch()
    missing = width - x.size(dim)
    if missing <= 0:
        return x
    shape = list(x.shape)
    shape[dim] = missing
    return torch.cat([torch.zeros(shape, dtype=x.dtype, device=x.device), x], dim=dim)


def _torch() -> Any:
    import torch

    return torch
