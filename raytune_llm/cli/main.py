"""The ``raytune-llm`` command line: verbs dispatched by a dict, each in a lazily imported module.

    raytune-llm train examples/train_lora/llama3_lora_sft.yaml learning_rate=1e-4

Only argparse is imported at start-up, so ``raytune-llm --help`` answers at once; a verb imports
what it needs when it runs. Bad input ends with a message and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .. import __version__

CONFIG_VERBS_EPILOG = (
    "CONFIG is a YAML file of LLaMA-Factory keys; KEY=VALUE pairs after it override keys "
    "(values are read as YAML: lora_rank=16 dataset=a,b tune.num_samples=8). "
    "`raytune-llm keys` lists every key."
)


@dataclass(frozen=True)
class Command:
    """One verb: its one-line help, the function that runs it, and its own arguments."""

    help: str
    target: str
    takes_config: bool = True
    arguments: Callable[[argparse.ArgumentParser], None] | None = field(default=None)

    def run(self, args: argparse.Namespace) -> int:
        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module(module), name)(args)


def _validate_args(p: argparse.ArgumentParser) -> None:
    from .info import VALIDATE_HELP

    p.description = VALIDATE_HELP
    p.add_argument(
        "--only-set", action="store_true", help="print only the keys the config sets, not defaults"
    )


def _keys_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("section", nargs="?", help="only this section (model, data, train, ...)")
    p.add_argument("--yaml", action="store_true", help="print a commented YAML template")


def _env_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-ray", action="store_true", help="skip asking Ray which devices it sees")


def _tiny_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("output_dir", help="directory to write the model and tokenizer to")
    p.add_argument("--arch", default="tiny-llama", choices=["tiny-llama", "tiny-qwen2"])
    p.add_argument("--hidden-size", type=int, help="width (default 64)")
    p.add_argument("--num-layers", type=int, help="decoder layers (default 2)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty output_dir")


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-n", "--num-examples", type=int, default=3, help="examples to show (3)")
    p.add_argument("--split", choices=["train", "eval"], default="train", help="which data")


def _chat_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--system", metavar="TEXT", help="system prompt (default: the config's default_system)"
    )


def _webui_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")


RUN = "raytune_llm.cli.run"
INFO = "raytune_llm.cli.info"

COMMANDS: dict[str, Command] = {
    "train": Command(
        "fine-tune a model on Ray Train (pt, sft, rm, ppo, dpo, kto, orpo)", f"{RUN}:train"
    ),
    "tune": Command(
        "search hyperparameters with Ray Tune and promote the best trial", f"{RUN}:tune"
    ),
    "chat": Command(
        "chat with a model (and its adapters) in the terminal", f"{RUN}:chat", arguments=_chat_args
    ),
    "serve": Command("serve an OpenAI-compatible API with Ray Serve", f"{RUN}:serve"),
    "predict": Command("generate predictions for a dataset with Ray Data", f"{RUN}:predict"),
    "eval": Command("evaluate on MMLU, C-Eval or CMMLU", f"{RUN}:evaluate"),
    "export": Command("merge adapters and export (optionally quantized)", f"{RUN}:export"),
    "data": Command(
        "preview the tokenised data: examples with trained-on tokens marked, and counts",
        "raytune_llm.cli.data:data",
        arguments=_data_args,
    ),
    "k8s": Command(
        "print a run's KubeRay manifests (ConfigMap + RayJob or RayService), or --check manifests",
        "raytune_llm.cli.k8s:k8s",
        takes_config=False,  # it declares CONFIG itself: `k8s --check FILE` needs none
        arguments=lambda p: importlib.import_module("raytune_llm.cli.k8s").arguments(p),
    ),
    "webui": Command("open the web UI", f"{RUN}:webui", takes_config=False, arguments=_webui_args),
    "validate": Command(
        "check a config and print its resolved values", f"{INFO}:validate", arguments=_validate_args
    ),
    "keys": Command(
        "list every config key with its default and meaning",
        f"{INFO}:keys",
        takes_config=False,
        arguments=_keys_args,
    ),
    "env": Command(
        "print versions, devices Ray sees, and optional pieces",
        f"{INFO}:env",
        takes_config=False,
        arguments=_env_args,
    ),
    "tiny": Command(
        "build a tiny Llama or Qwen2 model with its tokenizer, locally",
        f"{INFO}:tiny",
        takes_config=False,
        arguments=_tiny_args,
    ),
    "version": Command("print the version", f"{INFO}:version", takes_config=False),
}
"""Verb → command. ``raytune-llm --help`` lists them in this order."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raytune-llm",
        description="Fine-tune, tune, evaluate, chat with, serve and export LLMs from one YAML "
        "file, on a local Ray instance or a Ray cluster.",
    )
    parser.add_argument("--version", action="version", version=f"raytune-llm {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for name, command in COMMANDS.items():
        sub = verbs.add_parser(
            name,
            help=command.help,
            description=command.help[0].upper() + command.help[1:] + ".",
            epilog=CONFIG_VERBS_EPILOG if command.takes_config else None,
        )
        if command.takes_config:
            sub.add_argument("config", metavar="CONFIG", help="YAML config file")
            sub.add_argument(
                "overrides", nargs="*", metavar="KEY=VALUE", help="override a config key"
            )
            sub.add_argument(
                "--verbose", action="store_true",
                help="also show the notices Ray's own processes print (hidden by default)",
            )  # fmt: skip
        if command.arguments:
            command.arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``raytune-llm`` console script; returns the exit code."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # KEY=VALUE overrides may also follow the verb's options (`data cfg.yaml -n 2 lora_rank=4`).
    stray = [a for a in extra if a.startswith("-") or "=" not in a]
    if stray or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    from ..utils.errors import UserError

    if getattr(args, "verbose", False):
        from ..utils.quiet import VERBOSE_ENV

        os.environ[VERBOSE_ENV] = "1"
    try:
        return COMMANDS[args.verb].run(args)
    except UserError as err:
        print(f"raytune-llm {args.verb}: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"raytune-llm {args.verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
