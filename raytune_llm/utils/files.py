"""Folders written whole or not at all: build in a temporary folder beside the target, then
rename it into place."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def publish(tmp: Path, out: Path, *, overwrite: bool) -> None:
    """Rename ``tmp`` to ``out`` atomically; an existing ``out`` is moved aside first if
    ``overwrite`` (and deleted once the new folder is in place)."""
    old = None
    if overwrite and out.exists() and (not out.is_dir() or any(out.iterdir())):
        old = out.with_name(f".{out.name}.old-{os.getpid()}-{tmp.name[-8:]}")
        out.rename(old)
    try:
        os.rename(tmp, out)  # fails if `out` is a non-empty directory (e.g. another writer won)
    finally:
        if old is not None:
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)
