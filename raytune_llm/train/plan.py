"""What the driver decided about a run, handed to every worker: steps, threads, engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RunPlan:
    """The driver's plan of a run, read by the worker loop and the engines."""

    total_steps: int
    """Optimiser steps the run trains in all."""
    micro_per_epoch: int
    """Micro-batches each worker takes from one epoch of its shard."""
    threads: int = 1
    """torch threads per worker (the cores of its node it may use)."""
    packed: bool = False
    """Whether the rows are packed (see ``raytune_llm.data.pipeline.packing_on``)."""
    has_eval: bool = False
    """Whether an eval dataset is fed to the workers."""
    final_eval: bool = False
    """Evaluate after the last step (``do_eval``), unless the schedule evaluated there."""
    resume_from: str | None = None
    """A checkpoint folder to start from (``resume_from_checkpoint``)."""
    engine: str = "ddp"
    """ddp, deepspeed or fsdp."""
    deepspeed: dict[str, Any] | None = None
    """The DeepSpeed JSON as the user wrote it (filled in on each worker)."""
    hidden_size: int | None = None
    """The model's width, for DeepSpeed's ``auto`` bucket sizes."""
    zero_stage: int | None = None
    """The DeepSpeed ZeRO stage."""
    info: dict[str, Any] = field(default_factory=dict)
    """LLaMA-Factory's start-up figures (examples, epochs, batch sizes, total steps)."""
