"""Config problems, gathered and reported together.

Every problem names its key, what was given and what would be valid; the loader collects all of
them before raising one :class:`ConfigError`, so a user fixes a YAML file in one pass.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

from ..utils.errors import UserError


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


class ConfigError(UserError):
    """Raised with every problem found in a config, never just the first."""

    def __init__(self, problems: Iterable[Problem], origin: str | None = None):
        self.problems = sorted(problems, key=lambda p: (p.line or 10**9, p.key))
        self.origin = origin
        super().__init__(self.render())

    def render(self) -> str:
        n = len(self.problems)
        head = f"invalid config {self.origin}" if self.origin else "invalid config"
        lines = [f"{head}: {n} problem{'s' if n != 1 else ''}"]
        lines += [f"  - {p.render()}" for p in self.problems]
        return "\n".join(lines)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return `` (did you mean 'x'?)`` for the closest choice, or an empty string."""
    by_lower = {str(c).lower(): str(c) for c in choices}
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.7)
    return f" (did you mean '{by_lower[close[0]]}'?)" if close else ""
