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
    from ..train.launch import run_training

    cfg = load(args)
    print(f"{args.config} is valid; the run:")
    for label, text in plan(cfg):
        print(f"  {label:<9} {text}")
    result = run_training(cfg)
    out = result.output_dir
    print(f"\ntrained {result.steps} steps in {result.seconds:.0f} s; results in {out}")
    if result.history:
        losses = [e["loss"] for e in result.history if "loss" in e]
        if len(losses) > 1:
            print(f"  loss {losses[0]:.4f} -> {losses[-1]:.4f}")
        if "eval_loss" in result.metrics:
            print(f"  eval_loss {result.metrics['eval_loss']:.4f}")
    kind = "adapter" if (out / "adapter_config.json").exists() else "model"
    print(f"  the {kind}, with its tokenizer and chat template, is in {out}")
    if kind == "adapter":
        print(
            "  load it: PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(BASE), "
            f"'{out}')"
        )
    return 0


def tune(args: argparse.Namespace) -> int:
    from ..tune.sweep import format_table, run_sweep

    result = run_sweep(load(args))
    out = result.output_dir
    print(f"\n{len(result.trials)} trial(s), ranked by {result.metric} ({result.mode}):")
    print(format_table(result))
    print(f"\n  every trial: {out / 'trials.csv'}; the curves: {out / f'tune_{result.metric}.png'}")
    if result.best is None:
        print("  no trial completed: nothing promoted")
        return 1
    best = out / "best"
    print(f"  best trial {result.best.trial_id} {result.best.params}: its model is in {best}")
    print(f"  rerun it alone: raytune-llm train {best / 'config.yaml'}")
    return 0


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
