"""The ``serve:`` section of a config: where the API listens, what it serves, how it scales.

```yaml
serve:
  port: 8000
  adapters: {sql: saves/llama3-8b/lora/sql, chat: saves/llama3-8b/lora/chat}
  max_adapters_per_replica: 4
  autoscaling: {min_replicas: 1, max_replicas: 4, target_ongoing_requests: 8}
  num_gpus: 1
  max_batch_size: 16
```

Every key has a default: a config without ``serve:`` serves its model on 127.0.0.1:8000 with one
replica. Validated by load_config with the rest of the config; raytune_llm.serve runs it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .base import doc


class Autoscaling(BaseModel):
    """Serve autoscaling of the model replicas."""

    model_config = ConfigDict(extra="forbid")

    min_replicas: int = doc(1, "Fewest replicas kept up (0 scales to zero when idle).", ge=0)
    max_replicas: int = doc(1, "Most replicas under load.", ge=1)
    target_ongoing_requests: float = doc(
        8, "Requests in flight per replica that autoscaling aims at.", gt=0
    )

    @model_validator(mode="after")
    def _ordered(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) is above max_replicas ({self.max_replicas})"
            )
        return self


class ServeArgs(BaseModel):
    """Settings of ``raytune-llm serve`` (the ``serve:`` mapping of a config)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    host: str = doc("127.0.0.1", "Address the HTTP API binds to (0.0.0.0 to accept any).")
    port: int = doc(8000, "Port of the HTTP API.", ge=1, le=65535)
    route_prefix: str = doc("/", "Path the API sits under (/v1/... follows it).")
    api_key: str | None = doc(
        None,
        "Bearer token every route but /health requires (default: $RAYTUNE_LLM_API_KEY, then "
        "$API_KEY; none set: no key needed).",
    )
    model_name: str | None = doc(
        None, "Name the base model is served as (default: the last part of model_name_or_path)."
    )
    adapters: dict[str, str] = Field(
        default_factory=dict,
        description="LoRA adapters a request picks by `model` name: {name: path}. Adapters of "
        "adapter_name_or_path are served too, named after their folders.",
    )
    max_adapters_per_replica: int = doc(
        4, "Adapters a replica keeps loaded; the least recently used goes first.", ge=1
    )
    num_replicas: int | None = doc(None, "Fixed number of model replicas (default 1).", ge=1)
    autoscaling: Autoscaling | None = doc(
        None, "Scale replicas with load: {min_replicas, max_replicas, target_ongoing_requests}."
    )
    num_cpus: float | None = doc(
        None, "CPUs per model replica (default: resources_per_worker's CPU, else 1).", ge=0
    )
    num_gpus: float | None = doc(
        None, "GPUs per model replica (default: resources_per_worker's GPU, else 0).", ge=0
    )
    accelerator_type: str | None = doc(None, "Accelerator a replica needs, e.g. A100 (vLLM).")
    max_ongoing_requests: int = doc(
        64, "Requests a replica holds at once (queued beyond this at the proxy).", ge=1
    )
    batching: bool = doc(
        True,
        "Continuous batching: requests of the same model join the running batch at the next "
        "decoding step; false decodes one request at a time.",
    )
    max_batch_size: int = doc(16, "Most requests decoded together by a replica.", ge=1)
    batch_wait_timeout_s: float = doc(
        0.01, "When a replica is idle, how long a request waits for others to start with it.", ge=0
    )

    @field_validator("route_prefix")
    @classmethod
    def _slash(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"must start with '/', got {value!r}")
        return value

    @field_validator("adapters")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [name for name in value if not name or "/" in name]
        if bad:
            raise ValueError(f"adapter names must be non-empty and without '/': {bad}")
        return value

    @model_validator(mode="after")
    def _one_scaling(self) -> ServeArgs:
        if self.num_replicas is not None and self.autoscaling is not None:
            raise ValueError("give num_replicas or autoscaling, not both")
        return self
