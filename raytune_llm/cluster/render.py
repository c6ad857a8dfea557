"""``raytune-llm k8s``: a config → a ConfigMap holding it, and the RayJob or RayService running it.

A RayJob runs ``raytune-llm train`` (``raytune-llm tune`` when the config has a ``tune:`` section,
with pods for ``tune.max_concurrent_trials`` trials at once); a RayService runs the application of
``raytune-llm serve``.

How the run's files get into the pods:

- the config: in a ConfigMap mounted at /config (``raytune-llm train /config/NAME.yaml``);
- a DeepSpeed JSON file: inlined into that config as a mapping (``deepspeed: {...}``);
- what the run reads (dataset_dir, media_dir, task_dir), when relative: from the image, whose
  working directory /app is the checkout it was built from (``cluster/Dockerfile``);
- what the run writes (output_dir, logging_dir, tokenized_path, export_dir, save_dir,
  ray_storage_path) and what it reads of earlier runs (adapter_name_or_path,
  resume_from_checkpoint), when relative: on the shared volume (a ReadWriteMany PVC mounted at
  /mnt/shared in every pod), so checkpoints are seen by every worker and outputs outlive the
  cluster. An s3:// or gs:// ray_storage_path is kept: checkpoints then go to the bucket.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .. import __version__
from ..config import Config, load_config
from ..config.compat import ALIASES
from ..utils.errors import UserError
from .pods import CONFIG_DIR, SHARED, WORKDIR, cluster_spec, worker_resources, worker_shape
from .rules import check_document, name_rules

Kind = Literal["rayjob", "rayservice"]
KINDS: tuple[str, ...] = ("rayjob", "rayservice")
DEFAULT_IMAGE = f"raytune-llm:{__version__}"
DEFAULT_PVC = "raytune-llm-shared"
SERVE_IMPORT_PATH = "raytune_llm.serve.app:build_app"
"""The serve command's Ray Serve application (``raytune-llm serve`` builds the same one)."""

READ_FROM_IMAGE = ("dataset_dir", "media_dir", "task_dir")
ON_SHARED = (
    "output_dir",
    "logging_dir",
    "tokenized_path",
    "export_dir",
    "save_dir",
    "cache_dir",
    "resume_from_checkpoint",
    "ray_storage_path",
)


@dataclass(frozen=True)
class Options:
    """How to render: the kind, the image, the name, the shared volume's claim."""

    kind: Kind = "rayjob"
    image: str = DEFAULT_IMAGE
    name: str | None = None
    pvc: str = DEFAULT_PVC


@dataclass
class Rendered:
    """The manifests of one run, and what a reader should know about them."""

    documents: list[dict[str, Any]]
    config_text: str
    notes: list[str] = field(default_factory=list)


def resource_name(text: str, limit: int = 47) -> str:
    """A DNS-1035 label from free text: ``Llama3_LoRA.sft`` → ``llama3-lora-sft``."""
    name = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    name = re.sub(r"^[^a-z]+", "", name)[:limit].rstrip("-")
    return name or "raytune-llm"


def _is_uri(path: str) -> bool:
    return "://" in path


def _place(path: str, root: str) -> str:
    return path if _is_uri(path) or posixpath.isabs(path) else posixpath.normpath(f"{root}/{path}")


def pod_config(cfg: Config) -> tuple[dict[str, Any], list[str]]:
    """The keys the user set, with paths resolved for the pods; and notes on what was changed."""
    given = {ALIASES.get(k, k) for k in cfg.user_keys}
    flat = {k: v for k, v in cfg.to_flat().items() if k in given}
    notes = []
    if flat.pop("ray_address", None):
        notes.append("ray_address dropped: the job joins its own cluster (RAY_ADDRESS)")
    for key in READ_FROM_IMAGE:
        if isinstance(flat.get(key), str):
            flat[key] = _place(flat[key], WORKDIR)
    for key in ON_SHARED:
        value = flat.get(key)
        if isinstance(value, str):
            flat[key] = _place(value, SHARED)
            if posixpath.isabs(value) and not value.startswith(SHARED + "/"):
                notes.append(f"{key} {value} is not on the shared volume ({SHARED})")
    if flat.get("adapter_name_or_path"):
        flat["adapter_name_or_path"] = [_place(p, SHARED) for p in flat["adapter_name_or_path"]]
    model = cfg.model.model_name_or_path
    if not model.startswith("builtin:") and Path(model).is_dir() and not Path(model).is_absolute():
        flat["model_name_or_path"] = _place(model, SHARED)
        notes.append(f"model_name_or_path {model} is a local folder: copy it to {SHARED}/{model}")
    if isinstance(cfg.train.deepspeed, str):
        flat["deepspeed"] = json.loads(Path(cfg.train.deepspeed).read_text(encoding="utf-8"))
        notes.append(f"deepspeed {cfg.train.deepspeed} is inlined into the config")
    resources, note = worker_resources(cfg)
    flat["resources_per_worker"] = {k: int(v) if v == int(v) else v for k, v in resources.items()}
    notes += [note] if note else []
    load_config(values=flat)  # what the pod will run must be a valid config
    return flat, notes


def _config_text(flat: dict[str, Any], command: str) -> str:
    body = yaml.safe_dump(flat, sort_keys=False, default_flow_style=False, width=100)
    return f"# {command}\n# Rendered by raytune-llm k8s: paths are those of the pods.\n{body}"


def _service_spec(file: str, cluster: dict[str, Any]) -> dict[str, Any]:
    app = {
        "applications": [
            {
                "name": "llm",
                "route_prefix": "/",
                "import_path": SERVE_IMPORT_PATH,
                "args": {"config": f"{CONFIG_DIR}/{file}"},
            }
        ]
    }
    serve_config = (
        "# The application of `raytune-llm serve` (raytune_llm.serve.app:build_app),\n"
        "# built from the config in the ConfigMap: the base model and its adapters.\n"
        + yaml.safe_dump(app, sort_keys=False)
    )
    return {"serveConfigV2": serve_config, "rayClusterConfig": cluster}


def _job_spec(command: str, cluster: dict[str, Any]) -> dict[str, Any]:
    return {
        "entrypoint": command,
        "submissionMode": "K8sJobMode",
        "shutdownAfterJobFinishes": True,
        "ttlSecondsAfterFinished": 600,
        "backoffLimit": 0,
        "runtimeEnvYAML": yaml.safe_dump(
            {"env_vars": {"TOKENIZERS_PARALLELISM": "false"}}, sort_keys=False
        ),
        "rayClusterSpec": cluster,
    }


def _trials(cfg: Config, notes: list[str]) -> int:
    """Trials a tune sweep runs at once: its max_concurrent_trials, else one."""
    at_once = cfg.tune.max_concurrent_trials if cfg.tune is not None else None
    if not at_once:
        notes.append("tune.max_concurrent_trials is unset: the cluster runs one trial at once")
    return int(at_once or 1)


def render(cfg: Config, config_path: str | Path, options: Options = Options()) -> Rendered:
    """Render the ConfigMap and the RayJob (or RayService) that run ``cfg`` on KubeRay.

    Raises:
        UserError: when the name given is not one KubeRay accepts, or the result does not
            validate against the KubeRay CRDs (then a bug, reported with every problem).
    """
    name = options.name or resource_name(cfg.ray.ray_run_name or Path(config_path).stem)
    kind = "RayService" if options.kind == "rayservice" else "RayJob"
    wrong = [message for _, message in name_rules(kind, {"name": name})]
    if wrong:
        raise UserError(f"--name: {'; '.join(wrong)}")
    file = re.sub(r"[^-._a-zA-Z0-9]", "-", Path(config_path).name)
    file = file if file.endswith((".yaml", ".yml")) else f"{file}.yaml"
    flat, notes = pod_config(cfg)
    verb = "serve" if kind == "RayService" else "tune" if cfg.tune is not None else "train"
    command = f"raytune-llm {verb} {CONFIG_DIR}/{file}"
    config_text = _config_text(flat, command)
    per_worker = {k: float(v) for k, v in flat["resources_per_worker"].items()}
    shape = worker_shape(cfg, per_worker, _trials(cfg, notes) if verb == "tune" else 1)
    labels = {"app.kubernetes.io/name": "raytune-llm", "app.kubernetes.io/instance": name}
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{name}-config", "labels": labels},
        "data": {file: config_text},
    }
    serve = kind == "RayService"
    cluster = cluster_spec(shape, options.image, options.pvc, f"{name}-config", serve=serve)
    run = {
        "apiVersion": "ray.io/v1",
        "kind": kind,
        "metadata": {"name": name, "labels": labels},
        "spec": _service_spec(file, cluster) if serve else _job_spec(command, cluster),
    }
    documents = [config_map, run]
    problems = [p for i, d in enumerate(documents, 1) for p in check_document(d, i)]
    if problems:
        raise UserError(
            "the rendered manifests do not validate against KubeRay v1.7.0:\n"
            + "\n".join(f"  - {p.render()}" for p in problems)
        )
    return Rendered(documents, config_text, notes)


def to_text(rendered: Rendered, command: list[str], options: Options) -> str:
    """The manifests as one YAML stream, headed by the command that made it and the notes."""
    head = [
        f"# {shlex.join(command)}",
        "# Apply: the same command | kubectl apply -f -  (needs KubeRay: docs/cluster.md)",
        f"# Needs: the image {options.image} in a registry the nodes can pull from",
        f"# (cluster/Dockerfile), and the PVC {options.pvc} (cluster/storage.yaml) mounted at "
        f"{SHARED}.",
    ]
    head += [f"# note: {n}" for n in rendered.notes]

    class _Literal(yaml.SafeDumper):
        pass

    def _string(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    _Literal.add_representer(str, _string)
    docs = [yaml.dump(d, Dumper=_Literal, sort_keys=False, width=100) for d in rendered.documents]
    return "\n".join(head) + "\n---\n" + "---\n".join(docs)
