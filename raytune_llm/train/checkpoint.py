"""Checkpoints in Hugging Face formats, plus what a run needs to continue exactly.

A checkpoint folder holds the adapter (``adapter_model.safetensors``) or the model
(``model.safetensors``), the tokenizer with its chat template, and ``optimizer.pt``,
``scheduler.pt``, ``trainer_state.json`` and ``rng_state.pth``. It is written into a fresh local
folder and handed to ``ray.train.report``, which copies it to storage and registers it only once
the copy is complete, so a save interrupted half-way never replaces the last good checkpoint.
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

STATE_FILES = ("optimizer.pt", "scheduler.pt", "trainer_state.json", "rng_state.pth")


@dataclass
class TrainState:
    """Where a run is: optimiser steps done, micro-batches done in the current epoch, tokens."""

    global_step: int = 0
    epoch: int = 0
    micro_in_epoch: int = 0
    tokens: int = 0


def unwrap(model: Any) -> Any:
    """The model inside a DDP (or similar) wrapper."""
    return getattr(model, "module", model)


def save_model(model: Any, tokenizer: Any, folder: Path) -> None:
    """The adapter or full model and the tokenizer, loadable with from_pretrained."""
    unwrap(model).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)


def save_checkpoint(model, tokenizer, optimizer, scheduler, state: TrainState) -> Path:
    """Write a complete checkpoint into a new temporary folder and return it."""
    folder = Path(tempfile.mkdtemp(prefix="raytune-llm-ckpt-"))
    save_model(model, tokenizer, folder)
    torch.save(optimizer.state_dict(), folder / "optimizer.pt")
    torch.save(scheduler.state_dict(), folder / "scheduler.pt")
    rng = {"python": random.getstate(), "torch": torch.get_rng_state()}
    torch.save(rng, folder / "rng_state.pth")
    (folder / "trainer_state.json").write_text(json.dumps(asdict(state), indent=2))
    return folder


def _weights(folder: Path, stem: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    index = folder / f"{stem}.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return {k: v for f in files for k, v in load_file(folder / f).items()}
    return load_file(folder / f"{stem}.safetensors")


def load_checkpoint(model, optimizer, scheduler, folder: Path) -> TrainState:
    """Restore weights, optimiser, schedule and random state from a checkpoint folder."""
    inner = unwrap(model)
    if (folder / "adapter_model.safetensors").is_file():
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(inner, _weights(folder, "adapter_model"))
    else:
        result = inner.load_state_dict(_weights(folder, "model"), strict=False)
        tied = {k for k in result.missing_keys if "lm_head" in k}
        if result.unexpected_keys or set(result.missing_keys) - tied:
            raise RuntimeError(f"checkpoint {folder} does not match the model: {result}")
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=False))
    scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=False))
    rng = torch.load(folder / "rng_state.pth", weights_only=False)
    random.setstate(rng["python"])
    torch.set_rng_state(rng["torch"])
    return TrainState(**json.loads((folder / "trainer_state.json").read_text()))


def export_final(checkpoint_dir: Path, output_dir: Path) -> list[str]:
    """Copy the model and tokenizer of the final checkpoint to output_dir's top level."""
    copied = []
    for item in checkpoint_dir.iterdir():
        if item.is_file() and item.name not in STATE_FILES:
            shutil.copy2(item, output_dir / item.name)
            copied.append(item.name)
    return sorted(copied)
