"""Local paths become absolute before work leaves the driver's working directory."""

from __future__ import annotations

from pathlib import Path

from raytune_llm.config import load_config
from raytune_llm.config.paths import absolute_values, make_paths_absolute

ROOT = Path(__file__).resolve().parents[2]


def test_local_paths_resolve_and_hub_names_stay(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    values = {"model_name_or_path": "meta-llama/Meta-Llama-3-8B", "dataset_dir": "data",
              "output_dir": "saves/x", "adapter_name_or_path": "data,org/adapter",
              "deepspeed": "examples/deepspeed/ds_z2_config.json"}  # fmt: skip
    out = absolute_values(values)
    assert out["model_name_or_path"] == "meta-llama/Meta-Llama-3-8B"  # not here: a hub name
    assert out["dataset_dir"] == str(ROOT / "data")
    assert out["output_dir"] == str(ROOT / "saves" / "x")  # written: resolved even if absent
    assert out["adapter_name_or_path"] == f"{ROOT / 'data'},org/adapter"
    assert out["deepspeed"] == str(ROOT / "examples" / "deepspeed" / "ds_z2_config.json")
    assert values["dataset_dir"] == "data"  # the input is not changed


def test_config_paths_resolve_in_place(monkeypatch):
    monkeypatch.chdir(ROOT)
    cfg = load_config(ROOT / "examples" / "demo" / "tiny_lora_sft.yaml")
    make_paths_absolute(cfg)
    assert cfg.data.dataset_dir == str(ROOT / "data")
    assert cfg.model.model_name_or_path == "builtin:tiny-llama"
    assert Path(cfg.train.output_dir).is_absolute()
