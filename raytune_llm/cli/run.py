"""Verbs that run work on Ray: train, tune, chat, serve, predict, eval, export, webui.

Each checks its config first, so a bad YAML fails in a second with every problem listed, before
Ray or a model starts.
"""

from __future__ import annotations

import argparse

from .. import __version__
from ..utils.errors import NotAvailableError
from .info import load


def _not_yet(verb: str, what: str) -> NotAvailableError:
    return NotAvailableError(
        f"{what} is not available in raytune-llm {__version__} yet; the config was checked "
        "and nothing was run."
    )


def train(args: argparse.Namespace) -> int:
    from ..config.render import plan

    cfg = load(args)
    print(f"{args.config} is valid; the run would be:")
    for label, text in plan(cfg):
        print(f"  {label:<9} {text}")
    raise _not_yet("train", "training on Ray Train")


def tune(args: argparse.Namespace) -> int:
    load(args)
    raise _not_yet("tune", "hyperparameter search with Ray Tune")


def chat(args: argparse.Namespace) -> int:
    load(args)
    raise _not_yet("chat", "terminal chat")


def serve(args: argparse.Namespace) -> int:
    load(args)
    raise _not_yet("serve", "the OpenAI-compatible Ray Serve API")


def predict(args: argparse.Namespace) -> int:
    load(args)
    raise _not_yet("predict", "batch prediction with Ray Data")


def evaluate(args: argparse.Namespace) -> int:
    load(args)
    raise _not_yet("eval", "benchmark evaluation (MMLU, C-Eval, CMMLU)")


def export(args: argparse.Namespace) -> int:
    load(args)
    raise _not_yet("export", "adapter merging and export")


def webui(args: argparse.Namespace) -> int:
    raise _not_yet("webui", "the web UI")
