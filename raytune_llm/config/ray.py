"""Keys that place the run on a Ray cluster. LLaMA-Factory's own ray_* keys keep their meaning."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import field_validator

from .base import JsonDict, Section, doc


class RayArgs(Section):
    """Where and how wide the run goes."""

    ray_address: str | None = doc(
        None,
        "Ray cluster to join: auto, ray://host:10001, or host:6379. Unset uses RAY_ADDRESS when "
        "set, else starts a local Ray instance for this run.",
    )
    ray_num_workers: int = doc(
        1,
        "Training workers (processes, one per GPU on GPU nodes); for predict and eval, the "
        "inference backends.",
        gt=0,
    )
    resources_per_worker: JsonDict | None = doc(
        None,
        "Resources each worker holds, e.g. {CPU: 4, GPU: 1}; unset means one GPU per worker "
        "where the cluster has GPUs, else a share of the CPUs.",
    )
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = doc(
        "PACK", "How workers are placed on nodes (STRICT_SPREAD: one per node)."
    )
    ray_run_name: str | None = doc(
        None, "Name of the run in Ray's storage; the same name again resumes it."
    )
    ray_storage_path: str | None = doc(
        None,
        "Where Ray keeps checkpoints and results: a shared folder or s3:// / gs:// URI on a "
        "cluster (default: output_dir).",
    )
    ray_storage_filesystem: Literal["s3", "gs", "gcs"] | None = doc(
        None, "Filesystem of ray_storage_path when it is a bucket without a scheme."
    )
    ray_init_kwargs: JsonDict | None = doc(
        None, "Extra arguments to ray.init, e.g. {runtime_env: {env_vars: {...}}}."
    )
    max_failures: int = doc(
        0,
        "Restarts allowed after a worker or node is lost (-1: unlimited); each restart resumes "
        "from the latest checkpoint.",
        ge=-1,
    )

    @field_validator("resources_per_worker")
    @classmethod
    def _amounts(cls, value: dict[str, Any] | None) -> dict[str, float] | None:
        if value is not None:
            wrong = {
                k: v
                for k, v in value.items()
                if isinstance(v, bool) or not isinstance(v, (int, float))
            }
            if wrong:
                raise ValueError(f"resource amounts must be numbers, got {wrong}")
            bad = {k: v for k, v in value.items() if v < 0}
            if bad:
                raise ValueError(f"resource amounts must be >= 0, got {bad}")
            if not any(v > 0 for v in value.values()):
                raise ValueError("must ask for at least one resource, e.g. {CPU: 1}")
        return value
