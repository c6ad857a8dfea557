"""Checkpoints in Hugging Face formats, plus what a run needs to continue exactly.

A checkpoint folder holds the adapter (``adapter_model.safetensors``) or the model
(``model.safetensors``), the tokenizer with its chat template, ``trainer_state.json``,
``rng_state.pth`` and the engine's state (see :mod:`.engines`: ``optimizer.pt`` and
``scheduler.pt`` for DDP, ``global_step<N>/`` for DeepSpeed, ``fsdp_state/`` for FSDP). Each
rank writes its part into a fresh local folder and hands it to ``ray.train.report``, which merges
the parts in storage and registers the checkpoint only once every copy is complete, so a save
interrupted half-way never replaces the last good checkpoint.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

STATE_FILES = (
    "optimizer.pt",
    "scheduler.pt",
    "trainer_state.json",
    "rng_state.pth",
    "latest",
    "zero_to_fp32.py",
)


@dataclass
class TrainState:
    """Where a run is: optimiser steps done, micro-batches done in the current epoch, tokens."""

    global_step: int = 0
    epoch: int = 0
    micro_in_epoch: int = 0
    tokens: int = 0


def save_checkpoint(engine: Any, tokenizer: Any, state: TrainState) -> Path | None:
    """Write this rank's part of a checkpoint into a new temporary folder and return it.

    Every rank calls this (saving a sharded model is collective). Rank 0 writes the Hugging Face
    model or adapter, the tokenizer, the run state and the random state; each rank writes its
    engine shards. Returns None for a rank that wrote nothing.
    """
    folder = Path(tempfile.mkdtemp(prefix="raytune-llm-ckpt-"))
    engine.save_pretrained(folder, tokenizer)
    engine.save_state(folder, state.global_step)
    if engine.rank == 0:
        rng = {"python": random.getstate(), "torch": torch.get_rng_state()}
        torch.save(rng, folder / "rng_state.pth")
        (folder / "trainer_state.json").write_text(json.dumps(asdict(state), indent=2))
    if not any(folder.iterdir()):
        folder.rmdir()
        return None
    return folder


def _weights(folder: Path, stem: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    index = folder / f"{stem}.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return {k: v for f in files for k, v in load_file(folder / f).items()}
    return load_file(folder / f"{stem}.safetensors")


def load_weights(model: Any, folder: Path) -> None:
    """Load a checkpoint's adapter or full model weights into the (unwrapped) model (and a
    reward model's value head)."""
    if hasattr(model, "v_head"):
        from ..model.value_head import load_value_head

        load_value_head(model, folder)
        model = model.lm
    if (folder / "adapter_model.safetensors").is_file():
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, _weights(folder, "adapter_model"))
        return
    result = model.load_state_dict(_weights(folder, "model"), strict=False)
    tied = {k for k in result.missing_keys if "lm_head" in k}
    if result.unexpected_keys or set(result.missing_keys) - tied:
        raise RuntimeError(f"checkpoint {folder} does not match the model: {result}")


def load_checkpoint(engine: Any, folder: Path) -> TrainState:
    """Restore weights, optimiser, schedule and random state from a checkpoint folder."""
    engine.load_state(folder)
    rng = torch.load(folder / "rng_state.pth", weights_only=False)
    random.setstate(rng["python"])
    torch.set_rng_state(rng["torch"])
    return TrainState(**json.loads((folder / "trainer_state.json").read_text()))


def export_final(checkpoint_dir: Path, output_dir: Path) -> list[str]:
    """Copy the model and tokenizer of the final checkpoint to output_dir's top level."""
    copied = []
    for item in checkpoint_dir.iterdir():
        if item.is_file() and item.name not in STATE_FILES:  # engine folders are skipped too
            shutil.copy2(item, output_dir / item.name)
            copied.append(item.name)
    return sorted(copied)
