"""Verbs that inspect rather than run: validate, keys, env, tiny, version."""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import logging
import os
import platform
import sys
from pathlib import Path

from .. import __version__
from ..utils.errors import UserError


def load(args: argparse.Namespace):
    """Load and validate the config named on the command line, printing its warnings."""
    from ..config import load_config

    cfg = load_config(args.config, args.overrides)
    for warning in cfg.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return cfg


VALIDATE_HELP = (
    "Checks a config as train, tune and serve check it before Ray starts, and prints its "
    "resolved values. Every key, the tune: and serve: sections and the rules across keys are "
    "checked at once (exit status 2, each problem with its key and line). A config that trains "
    "(do_train: true, or a tune: section: a sweep's trials train) is also checked for what this "
    "version cannot train yet (exit status 3), as `train` and `tune` check it. A config with "
    "do_train: false and no tune: section is taken to be for serve, chat, predict, eval or "
    "export: validate accepts it, `train` refuses it. Only `tune` asks for a tune: section."
)


def validate(args: argparse.Namespace) -> int:
    """Refuse what ``train``, ``tune`` and ``serve`` refuse for a config reason (VALIDATE_HELP).

    Only what marks a config as meant for a verb is left to the verb: ``train`` refuses
    do_train: false, ``tune`` a config without a tune: section.
    """
    from ..config.available import check_trainable
    from ..config.render import to_yaml

    cfg = load(args)
    if cfg.train.do_train or cfg.tune is not None:
        check_trainable(cfg)
    print(f"# {args.config} is valid" + (" (with overrides)" if args.overrides else ""))
    print(to_yaml(cfg, only_set=args.only_set), end="")
    return 0


def keys(args: argparse.Namespace) -> int:
    from ..config import SECTIONS
    from ..config.errors import did_you_mean
    from ..config.render import describe_keys, template_yaml

    if args.section and args.section not in SECTIONS:
        hint = did_you_mean(args.section, SECTIONS)
        raise UserError(f"unknown section {args.section!r}{hint}; sections: {', '.join(SECTIONS)}")
    print((template_yaml if args.yaml else describe_keys)(args.section), end="")
    return 0


def version(args: argparse.Namespace) -> int:
    print(f"raytune-llm {__version__}")
    return 0


def tiny(args: argparse.Namespace) -> int:
    from ..model.tiny import build_tiny_model

    overrides = {}
    if args.hidden_size:
        overrides["hidden_size"] = args.hidden_size
    if args.num_layers:
        overrides["num_layers"] = args.num_layers
    out = Path(args.output_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not args.overwrite:
        raise UserError(
            f"{out} exists and is not an empty directory; pass --overwrite to replace it"
        )
    try:
        path = build_tiny_model(out, args.arch, overwrite=args.overwrite, **overrides)
    except ValueError as err:
        raise UserError(str(err)) from None
    print(f"wrote {args.arch} to {path}")
    print(f"use it with: model_name_or_path: {path}")
    return 0


STACK = (
    "torch",
    "ray",
    "transformers",
    "peft",
    "trl",
    "datasets",
    "accelerate",
    "deepspeed",
    "bitsandbytes",
    "vllm",
    "pyarrow",
    "pydantic",
)


def _version_of(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _probe(label: str, check) -> str:
    logging.disable(logging.WARNING)  # libraries log their own probing noise; we report instead
    try:
        result = check()
    except Exception as err:  # an optional piece failing to load is what we report
        result = f"no ({type(err).__name__}: {str(err).splitlines()[0][:80] if str(err) else ''})"
    finally:
        logging.disable(logging.NOTSET)
    return f"  {label:<22} {result}"


def _gpu() -> str:
    import torch

    if not torch.cuda.is_available():
        return "no CUDA device"
    names = {torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())}
    return f"{torch.cuda.device_count()} x {', '.join(sorted(names))} (CUDA {torch.version.cuda})"


def _deepspeed_ops() -> str:
    os.environ.setdefault("DS_BUILD_OPS", "0")
    from deepspeed.ops.op_builder import CPUAdamBuilder

    ok = CPUAdamBuilder().is_compatible(verbose=False)
    return "cpu_adam can be built (compiled on first use)" if ok else "cpu_adam cannot be built"


def _bitsandbytes() -> str:
    import bitsandbytes

    return f"yes ({bitsandbytes.__version__})"


def _vllm() -> str:
    importlib.import_module("vllm")
    return "yes"


def _bf16() -> str:
    import torch

    if torch.cuda.is_available():
        return "yes (GPU)" if torch.cuda.is_bf16_supported() else "no (GPU lacks bf16)"
    cpuinfo = Path("/proc/cpuinfo")
    flags = cpuinfo.read_text() if cpuinfo.exists() else ""
    fast = "amx_bf16" in flags or "avx512_bf16" in flags
    return "yes (CPU, native bf16 instructions)" if fast else "emulated on this CPU (slow)"


def _ray_view() -> str:
    import ray

    address = os.environ.get("RAY_ADDRESS")
    ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        resources = ray.cluster_resources()
        nodes = len([n for n in ray.nodes() if n.get("Alive")])
    finally:
        ray.shutdown()
    where = f"cluster at {address}" if address else "a local instance started for this check"
    shown = ", ".join(
        f"{k}={v / 2**30:.1f} GiB" if "memory" in k else f"{k}={v:g}"
        for k, v in sorted(resources.items())
        if "node:" not in k
    )
    return f"{nodes} node(s), {shown} ({where})"


def env(args: argparse.Namespace) -> int:
    print(f"raytune-llm {__version__}")
    print(f"  {'python':<22} {platform.python_version()} ({sys.executable})")
    print(f"  {'platform':<22} {platform.platform()}")
    for package in STACK:
        print(f"  {package:<22} {_version_of(package)}")
    print("devices and optional pieces:")
    print(_probe("GPU", _gpu))
    print(_probe("bf16", _bf16))
    print(_probe("bitsandbytes", _bitsandbytes))
    print(_probe("deepspeed ops", _deepspeed_ops))
    print(_probe("vllm", _vllm))
    if not args.no_ray:
        print(_probe("ray resources", _ray_view))
    return 0
