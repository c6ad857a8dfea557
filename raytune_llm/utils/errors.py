"""Errors the user can fix: the CLI prints their message (no traceback) and exits with code 2."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar


class UserError(Exception):
    """Bad input from the user (a config, a file, a flag); the message says how to fix it."""

    exit_code = 2


class NotAvailableError(UserError):
    """A command or feature this version of raytune-llm does not provide (yet)."""

    exit_code = 3


E = TypeVar("E", bound=BaseException)


def find_error(exc: BaseException, kind: type[E]) -> E | None:
    """The exception of type ``kind`` inside one raised through Ray, or None.

    Ray re-raises a task's exception as a ``RayTaskError`` whose ``cause`` is the original, Ray
    Train gathers each worker's exception in ``WorkerGroupError.worker_failures``, and other
    wrappers keep it as ``__cause__``.
    """
    todo: list[BaseException | None] = [exc]
    seen: set[int] = set()
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        cause = getattr(current, "cause", None)
        # ``RayTaskError(DataError)`` is itself a DataError: the original is its cause
        for found in (cause, current):
            if isinstance(found, kind):
                return found
        todo.extend(getattr(current, "worker_failures", {}).values())
        todo.extend([cause if isinstance(cause, BaseException) else None, current.__cause__])
    return None


@contextmanager
def surfaced(kind: type[BaseException] = UserError) -> Iterator[None]:
    """Re-raise an error of type ``kind`` hidden in a Ray exception (a task's, a training
    worker's) as itself, so the CLI prints its message rather than Ray's report."""
    try:
        yield
    except Exception as exc:
        found = find_error(exc, kind)
        if found is None or found is exc:
            raise
        raise found from None
