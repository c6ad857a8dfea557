"""Ray pods sized from a config: the head, and worker groups that hold the run's workers exactly.

One Ray Train worker per worker pod, the pod sized to ``resources_per_worker`` (its GPUs, its CPUs
plus one for Ray Data's tasks), ``ray_num_workers`` pods; with ``placement_strategy: STRICT_PACK``
every worker must share one node, so one pod holds them all. The cluster is sized to the run, so
Ray Train's placement group fits it and nothing is left idle.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from ..config import Config

RAY_VERSION = "2.60.0"
"""The Ray in the image (rayVersion): the project's ray pin."""

SHARED = "/mnt/shared"
"""Where the shared volume (PVC) is mounted in every pod: outputs, checkpoints, the HF cache."""

CONFIG_DIR = "/config"
"""Where the run's ConfigMap is mounted: the config the job runs."""

WORKDIR = "/app"
"""The image's working directory: the project checkout the image was built from."""

DATA_CPUS = 1
"""CPUs each worker pod has beyond its worker's, for Ray Data's tasks."""

HEAD_CPUS, HEAD_MEMORY = 2, "8Gi"


@dataclass(frozen=True)
class WorkerShape:
    """One worker group: how many pods, and what each holds."""

    pods: int
    workers_per_pod: int
    cpus: int
    gpus: int
    memory_gi: int
    custom: dict[str, float]
    per_worker: dict[str, float]


def worker_resources(cfg: Config) -> tuple[dict[str, float], str | None]:
    """The resources one Ray Train worker asks for, and a note when they were chosen here.

    ``resources_per_worker`` as given; unset, one GPU (a built-in tiny model: one CPU), written
    into the pod's config so that Ray Train asks for exactly what the pods hold.
    """
    given = cfg.ray.resources_per_worker
    if given:
        return {k: float(v) for k, v in given.items()}, None
    if cfg.model.model_name_or_path.startswith("builtin:"):
        return {"CPU": 1.0}, "resources_per_worker is unset: a built-in tiny model gets 1 CPU"
    return {"GPU": 1.0, "CPU": 1.0}, (
        "resources_per_worker is unset: each worker gets 1 GPU and 1 CPU; set it (e.g. "
        "resources_per_worker.CPU=2 for CPU-only pods) to size the pods otherwise"
    )


def worker_shape(cfg: Config, per_worker: dict[str, float], trials: int = 1) -> WorkerShape:
    """Size the worker pods so that the run's placement group fits them exactly.

    Args:
        cfg: the run's config (ray_num_workers, placement_strategy).
        per_worker: what one Ray Train worker asks for (see :func:`worker_resources`).
        trials: runs at once (a tune sweep's max_concurrent_trials), each with its own workers.
    """
    n = cfg.ray.ray_num_workers
    together = cfg.ray.placement_strategy == "STRICT_PACK"
    per_pod = n if together else 1
    cpus = math.ceil(per_worker.get("CPU", 1.0) * per_pod) + DATA_CPUS
    gpus = math.ceil(per_worker.get("GPU", 0.0) * per_pod)
    asked = per_worker.get("memory")
    memory = math.ceil(asked * per_pod / 2**30) + 2 if asked else 2 * cpus + 32 * gpus
    custom = {
        k: v * per_pod
        for k, v in per_worker.items()
        if k not in ("CPU", "GPU", "memory", "object_store_memory")
    }
    pods = (1 if together else n) * trials
    return WorkerShape(pods, per_pod, cpus, gpus, max(memory, 4), custom, per_worker)


def _container(name: str, image: str, cpus: int, memory: str, gpus: int = 0) -> dict[str, Any]:
    amounts: dict[str, Any] = {"cpu": str(cpus), "memory": memory}
    if gpus:
        amounts["nvidia.com/gpu"] = str(gpus)
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "workingDir": WORKDIR,
        "resources": {"requests": dict(amounts), "limits": dict(amounts)},
        "env": [
            {"name": "HF_HOME", "value": f"{SHARED}/hf-cache"},
            {"name": "TOKENIZERS_PARALLELISM", "value": "false"},
            {
                "name": "HF_TOKEN",
                "valueFrom": {
                    "secretKeyRef": {"name": "hf-token", "key": "token", "optional": True}
                },
            },
        ],
        "volumeMounts": [
            {"name": "shared", "mountPath": SHARED},
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "dshm", "mountPath": "/dev/shm"},
        ],
    }


def _volumes(pvc: str, config_map: str) -> list[dict[str, Any]]:
    return [
        {"name": "shared", "persistentVolumeClaim": {"claimName": pvc}},
        {"name": "config", "configMap": {"name": config_map}},
        {"name": "dshm", "emptyDir": {"medium": "Memory"}},
    ]


def cluster_spec(
    shape: WorkerShape, image: str, pvc: str, config_map: str, *, serve: bool = False
) -> dict[str, Any]:
    """A RayCluster spec: a CPU head that runs no work, and the worker group of ``shape``."""
    head = _container("ray-head", image, HEAD_CPUS, HEAD_MEMORY)
    ports = [("gcs-server", 6379), ("dashboard", 8265), ("client", 10001)]
    ports += [("serve", 8000)] if serve else []
    head["ports"] = [{"name": n, "containerPort": p} for n, p in ports]
    worker = _container("ray-worker", image, shape.cpus, f"{shape.memory_gi}Gi", shape.gpus)
    params = {"num-cpus": str(shape.cpus), "num-gpus": str(shape.gpus)}
    if shape.custom:
        params["resources"] = '"' + json.dumps(shape.custom).replace('"', '\\"') + '"'
    pod: dict[str, Any] = {"containers": [worker], "volumes": _volumes(pvc, config_map)}
    if shape.gpus:
        pod["tolerations"] = [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
        ]
    group = {
        "groupName": "gpu-workers" if shape.gpus else "cpu-workers",
        "replicas": shape.pods,
        "minReplicas": 1 if serve else shape.pods,
        "maxReplicas": shape.pods,
        "rayStartParams": params,
        "template": {"spec": pod},
    }
    return {
        "rayVersion": RAY_VERSION,
        "enableInTreeAutoscaling": serve,
        "authOptions": {"mode": "token"},
        "headGroupSpec": {
            "rayStartParams": {"num-cpus": "0", "dashboard-host": "0.0.0.0"},
            "template": {"spec": {"containers": [head], "volumes": _volumes(pvc, config_map)}},
        },
        "workerGroupSpecs": [group],
    }
