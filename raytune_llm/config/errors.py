"""Config problems, gathered and reported together.

Every problem names its key, what was given and what would be valid; the loader collects all of
them before raising one :class:`ConfigError`, so a user fixes a YAML file in one pass.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..utils.errors import NotAvailableError, UserError


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config.

    Attributes:
        key: the YAML key (dotted inside sections, e.g. ``tune.metric``); empty for the file.
        message: what is wrong and what would be valid.
        line: the 1-based line of the key in the YAML file, when known.
        source: where the value came from: a file path, or ``command line``.
    """

    key: str
    message: str
    line: int | None = None
    source: str | None = None

    def render(self) -> str:
        where = ""
        if self.source and self.line:
            where = f" ({self.source}:{self.line})"
        elif self.source == "command line":
            where = " (command line)"
        return f"{self.key or '<config>'}{where}: {self.message}"


def locate(
    key: str,
    message: str,
    lines: Mapping[str, int],
    origins: Mapping[str, str | None],
    source: str | None,
) -> Problem:
    """A problem with ``key`` at the line of its top-level key, when that came from ``source``."""
    top = key.split(".", 1)[0]
    origin = origins.get(top)
    return Problem(key, message, lines.get(top) if origin == source else None, origin)


class ConfigError(UserError):
    """Raised with every problem found in a config, never just the first."""

    heading = "invalid config {origin}"

    def __init__(self, problems: Iterable[Problem], origin: str | None = None):
        self.problems = sorted(problems, key=lambda p: (p.line or 10**9, p.key))
        self.origin = origin
        super().__init__(self.render())

    def render(self) -> str:
        n = len(self.problems)
        head = self.heading.format(origin=self.origin or "").replace(" ()", "").strip()
        lines = [f"{head}: {n} problem{'s' if n != 1 else ''}"]
        lines += [f"  - {p.render()}" for p in self.problems]
        return "\n".join(lines)


class UnavailableError(ConfigError, NotAvailableError):
    """A valid config asking for what this version cannot do yet (exit status 3)."""

    heading = "this version cannot train this config yet ({origin})"


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return `` (did you mean 'x'?)`` for the closest choice, or an empty string."""
    by_lower = {str(c).lower(): str(c) for c in choices}
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.7)
    return f" (did you mean '{by_lower[close[0]]}'?)" if close else ""
