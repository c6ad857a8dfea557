"""Errors the user can fix: the CLI prints their message (no traceback) and exits with code 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user (a config, a file, a flag); the message says how to fix it."""

    exit_code = 2


class NotAvailableError(UserError):
    """A command or feature this version of raytune-llm does not provide (yet)."""

    exit_code = 3
