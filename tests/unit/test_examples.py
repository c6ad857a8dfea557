"""Every shipped example validates, opens with the command that runs it, and can be swapped onto
the tiny model for CPU runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from raytune_llm.cli.main import COMMANDS
from raytune_llm.config import load_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").rglob("*.yaml"))
DEEPSPEED = sorted((ROOT / "examples" / "deepspeed").glob("*.json"))


def test_there_are_examples_for_each_task():
    folders = {p.parent.name for p in EXAMPLES}
    assert {"train_lora", "train_qlora", "train_full", "merge_lora", "inference", "demo"} <= folders
    assert {p.name for p in DEEPSPEED} == {
        "ds_z0_config.json",
        "ds_z2_config.json",
        "ds_z2_offload_config.json",
        "ds_z3_config.json",
        "ds_z3_offload_config.json",
    }


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT / "examples")))
def test_example_validates_and_names_its_command(path, monkeypatch):
    monkeypatch.chdir(ROOT)  # examples name deepspeed configs relative to the project root
    first = path.read_text().splitlines()[0]
    match = re.fullmatch(r"# raytune-llm (\w+) (\S+)", first)
    assert match, f"first line must be the command that runs it, got {first!r}"
    verb, named = match.groups()
    assert verb in COMMANDS and named == str(path.relative_to(ROOT))
    cfg = load_config(path)
    tiny = load_config(path, ["model_name_or_path=builtin:tiny-llama"])
    assert tiny.to_flat() | {"model_name_or_path": cfg.model.model_name_or_path} == cfg.to_flat()


@pytest.mark.parametrize("path", DEEPSPEED, ids=lambda p: p.name)
def test_deepspeed_configs(path):
    ds = json.loads(path.read_text())
    stage = int(re.search(r"z(\d)", path.name).group(1))
    zero = ds["zero_optimization"]
    assert zero["stage"] == stage
    # Batch sizes and clipping come from the YAML, as in LLaMA-Factory.
    for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps"):
        assert ds[key] == "auto"
    if "offload" in path.name:
        assert zero["offload_optimizer"]["device"] == "cpu"
    if stage == 3:
        assert zero["stage3_gather_16bit_weights_on_model_save"] is True
