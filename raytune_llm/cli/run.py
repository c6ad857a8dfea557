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
    """Chat in the terminal: streamed answers, history, ``clear`` and ``exit``."""
    from ..infer.backend import build_backend
    from ..infer.chat import ChatSession, run_chat
    from ..model.generate.sampling import SamplingParams

    cfg = load(args)
    backend = build_backend(cfg)
    system = args.system if args.system is not None else cfg.data.default_system or ""
    return run_chat(ChatSession(backend, SamplingParams.from_config(cfg.generation), system))


def serve(args: argparse.Namespace) -> int:
    """Serve the OpenAI-compatible API on Ray Serve (the serve: section) until Ctrl-C."""
    from ..serve.settings import serve_args

    cfg = load(args)
    settings = serve_args(cfg)  # a bad serve: section fails here, before Ray starts
    if cfg.finetuning.stage == "rm":  # a reward model: its value head must be there
        from ..model.value_head import reward_model_folder

        reward_model_folder(cfg)
    from ..serve.app import serve_forever

    serve_forever(cfg, settings)
    return 0


def predict(args: argparse.Namespace) -> int:
    """Generate for a whole dataset with Ray Data into output_dir/generated_predictions.jsonl."""
    from ..infer.predict import run_predict

    result = run_predict(load(args))
    m = result.metrics
    print(f"\npredicted {m['predict_samples']} examples in {m['predict_runtime']:.0f} s "
          f"({m['predict_samples_per_second']:g} examples/s, "
          f"{m['predict_tokens_per_second']:g} tokens/s); exact match "
          f"{m['predict_exact_match']:.1%}")  # fmt: skip
    if "predict_bleu-4" in m:
        names = ("bleu-4", "rouge-1", "rouge-2", "rouge-l")
        print("  " + ", ".join(f"{n.upper()} {m[f'predict_{n}']:.2f}" for n in names))
    print(f"  predictions: {result.predictions}")
    print(f"  results:     {result.output_dir / 'predict_results.json'}")
    return 0


def evaluate(args: argparse.Namespace) -> int:
    """Score multiple-choice benchmarks (MMLU, C-Eval, CMMLU layout) with Ray Data."""
    from ..eval.runner import run_eval, summary

    result = run_eval(load(args))
    print(f"\n{result.task.name} {result.task.split}: {result.task.size} questions x "
          f"{len(result.scores)} model(s) in {result.seconds:.0f} s "
          f"({result.questions_per_second:.1f} questions/s)")  # fmt: skip
    print(summary(result), end="")
    if result.save_dir is not None:
        print(f"  results: {result.save_dir}")
    return 0


def export(args: argparse.Namespace) -> int:
    """Merge adapters and write a deployable model (safetensors or gguf) with a Modelfile."""
    from ..export.run import run_export

    result = run_export(load(args))
    out = result.export_dir
    print(f"exported in {result.seconds:.1f} s ({result.merge} merge, {result.dtype}) to {out}:")
    print(f"  {', '.join(result.files)}")
    gguf = [f for f in result.files if f.endswith(".gguf")]
    how = (
        f"llama-cli -m {out / gguf[0]}"
        if gguf
        else f"AutoModelForCausalLM.from_pretrained('{out}')"
    )
    print(f"  load it: {how}; Ollama: ollama create NAME -f {out / 'Modelfile'}")
    if result.pushed_to:
        print(f"  pushed to the hub as {result.pushed_to}")
    return 0


def webui(args: argparse.Namespace) -> int:
    raise _not_yet("webui", "the web UI")
