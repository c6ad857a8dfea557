"""What a config's ``serve:`` section names, resolved: served names, adapters, key, resources.

Every key has a default: a config without ``serve:`` serves its model on 127.0.0.1:8000 with one
replica. The section is declared and validated with the config (raytune_llm.config.serve); this
module resolves what it names. No ray or torch import here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..config import Config
from ..config.serve import ServeArgs
from ..utils.errors import UserError

API_KEY_ENV = ("RAYTUNE_LLM_API_KEY", "API_KEY")
"""Environment variables read, in order, for the API key when ``serve.api_key`` is unset."""


def serve_args(cfg: Config) -> ServeArgs:
    """The config's ``serve:`` section (validated with the config), or its defaults when absent."""
    return cfg.serve if cfg.serve is not None else ServeArgs()


def base_name(cfg: Config, args: ServeArgs) -> str:
    """The name the base model is served as."""
    if args.model_name:
        return args.model_name
    path = cfg.model.model_name_or_path.rstrip("/")
    return Path(path).name.removeprefix("builtin:")


def served_adapters(cfg: Config, args: ServeArgs) -> dict[str, str]:
    """Adapter name → path: adapter_name_or_path's (named by folder), then serve.adapters."""
    from ..infer.backend import adapter_names

    adapters = adapter_names(cfg.model.adapter_name_or_path or [])
    adapters.update(args.adapters)
    best = promoted(cfg)
    if best is not None:
        adapters.setdefault("best", str(best))
    return {name: _local(path) for name, path in adapters.items()}


def promoted(cfg: Config) -> Path | None:
    """A sweep's best adapter (output_dir/best) when its tune: section says ``promote: serve``.

    Raises:
        UserError: when the sweep has not produced a best trial yet, or its best is a full
            model (serve that with model_name_or_path: OUTPUT_DIR/best instead).
    """
    if cfg.tune is None or cfg.tune.promote != "serve":
        return None
    best = Path(cfg.train.output_dir).expanduser().resolve() / "best"
    if (best / "adapter_config.json").is_file():
        return best
    if (best / "config.json").is_file():
        raise UserError(
            f"tune.promote serve: the sweep's best trial in {best} is a full model; serve it "
            f"with model_name_or_path: {best}"
        )
    raise UserError(
        f"tune.promote serve: {best} holds no adapter yet; run `raytune-llm tune` on this config "
        "first (the best completed trial is copied there)"
    )


def _local(path: str) -> str:
    """An existing local path made absolute (replicas run elsewhere); a hub id as given."""
    local = Path(path).expanduser()
    return str(local.resolve()) if local.exists() else path


def api_key(args: ServeArgs) -> str | None:
    """The key requests must present: serve.api_key, else the first API_KEY_ENV variable set."""
    if args.api_key:
        return args.api_key
    return next((os.environ[v] for v in API_KEY_ENV if os.environ.get(v)), None)


def replica_resources(cfg: Config, args: ServeArgs) -> dict[str, float]:
    """Ray actor options of one model replica: num_cpus and num_gpus."""
    given = cfg.ray.resources_per_worker or {}
    cpus = args.num_cpus if args.num_cpus is not None else given.get("CPU", 1)
    gpus = args.num_gpus if args.num_gpus is not None else given.get("GPU", 0)
    return {"num_cpus": float(cpus), "num_gpus": float(gpus)}


def scaling_options(args: ServeArgs) -> dict[str, Any]:
    """Deployment options for the replica count: num_replicas or autoscaling_config."""
    if args.autoscaling is not None:
        return {"autoscaling_config": args.autoscaling.model_dump()}
    return {"num_replicas": args.num_replicas or 1}
