"""``raytune-llm k8s``: print the KubeRay manifests of a run, or check manifests a user edited.

raytune-llm k8s examples/train_lora/llama3_lora_sft_ray.yaml --kind rayjob | kubectl apply -f -
raytune-llm k8s --check cluster/rayjob-train.yaml
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..utils.errors import UserError


def arguments(p: argparse.ArgumentParser) -> None:
    """The k8s verb's own arguments (it takes CONFIG itself: --check needs none)."""
    p.add_argument("config", nargs="?", metavar="CONFIG", help="YAML config of the run")
    p.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="override a config key, as for train"
    )
    p.add_argument(
        "--kind",
        default="rayjob",
        help="rayjob (train the config, then delete the cluster) or rayservice (serve it)",
    )
    p.add_argument("--image", help="image with raytune-llm installed (cluster/Dockerfile)")
    p.add_argument("--name", help="name of the RayJob/RayService (default: from the config)")
    p.add_argument("--pvc", help="PersistentVolumeClaim of the shared volume (raytune-llm-shared)")
    p.add_argument(
        "--check",
        nargs="+",
        metavar="MANIFEST",
        help="check these manifest files against the KubeRay v1.7.0 CRDs instead of rendering",
    )


def k8s(args: argparse.Namespace) -> int:
    """Render (or --check) KubeRay manifests; problems exit with status 2."""
    if args.check:
        if args.config or args.overrides:
            raise UserError("--check takes manifest files only, not a config")
        return _check(args.check)
    if not args.config:
        raise UserError("give a CONFIG to render, or --check MANIFEST to check manifests")
    from ..cluster import DEFAULT_IMAGE, DEFAULT_PVC, KINDS, Options, render, to_text
    from ..config.errors import did_you_mean
    from .info import load

    if args.kind not in KINDS:
        hint = did_you_mean(args.kind, KINDS)
        raise UserError(f"--kind got {args.kind!r}{hint}; valid: {', '.join(KINDS)}")
    cfg = load(args)
    options = Options(
        kind=args.kind,
        image=args.image or DEFAULT_IMAGE,
        name=args.name,
        pvc=args.pvc or DEFAULT_PVC,
    )
    rendered = render(cfg, args.config, options)
    command = ["raytune-llm", "k8s", args.config, *args.overrides, "--kind", args.kind]
    for flag in ("image", "name", "pvc"):
        command += [f"--{flag}", getattr(args, flag)] if getattr(args, flag) else []
    print(to_text(rendered, command, options), end="")
    return 0


def _check(paths: list[str]) -> int:
    from ..cluster import check_text

    bad = 0
    for path in paths:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as err:
            raise UserError(f"cannot read {path}: {err.strerror or err}") from None
        count, problems = check_text(text)
        if problems:
            bad += len(problems)
            print(f"{path}: {len(problems)} problem{'s' if len(problems) != 1 else ''}")
            for problem in problems:
                print(f"  - {problem.render()}")
        else:
            print(f"{path}: {count} manifest{'s' if count != 1 else ''} valid (KubeRay v1.7.0)")
    if bad:
        raise UserError(f"{bad} problem{'s' if bad != 1 else ''} in the manifests above")
    return 0
