"""DDP, FSDP2 and DeepSpeed ZeRO-2/3 on two CPU workers: the same training, really sharded.

Every engine averages gradients over the workers and steps the same optimiser and schedule, so
on the same data the loss curves and the trained weights agree; FSDP and ZeRO-3 runs must hold
half of each parameter per worker, and still write one consolidated Hugging Face model.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from raytune_llm.config import load_config
from raytune_llm.train.launch import run_training

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "demo" / "tiny_lora_sft.yaml"
DS = ROOT / "examples" / "deepspeed"

pytestmark = pytest.mark.slow


def train(model_dir: Path, out: Path, *overrides: str):
    cfg = load_config(
        DEMO,
        [
            f"model_name_or_path={model_dir}",
            f"dataset_dir={ROOT / 'data'}",
            f"output_dir={out}",
            "overwrite_output_dir=false",
            "max_samples=64",
            "max_steps=4",
            "save_steps=2",
            "logging_steps=1",
            "eval_strategy=no",
            "plot_loss=false",
            "disable_tqdm=true",
            "ray_num_workers=2",
            "per_device_train_batch_size=4",
            "gradient_accumulation_steps=2",
            "disable_shuffling=true",
            *overrides,
        ],
    )
    return run_training(cfg, show_bar=False)


def losses(result) -> list[float]:
    return [e["loss"] for e in result.history if "loss" in e]


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key].float(), b[key].float(), atol=2e-5, rtol=1e-4)


@pytest.fixture(scope="module")
def lora_runs(ray_local, tiny_llama_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("engines")
    engines = {
        "ddp": [],
        # FSDP with the decoder layers' parts compiled; uncompiled FSDP trains the full model
        # in test_full_finetune_writes_one_model_and_resumes
        "fsdp": ["fsdp=full_shard auto_wrap", "torch_compile=true"],
        "zero2": [f"deepspeed={DS / 'ds_z2_config.json'}"],
    }
    return {
        name: (root / name, train(tiny_llama_dir, root / name, *extra))
        for name, extra in engines.items()
    }


def test_lora_engines_train_alike(lora_runs):
    ddp_out, ddp = lora_runs["ddp"]
    assert ddp.steps == 4 and len(losses(ddp)) == 4
    ref = load_file(ddp_out / "adapter_model.safetensors")
    for name in ("fsdp", "zero2"):
        out, result = lora_runs[name]
        assert result.steps == 4
        assert losses(result) == pytest.approx(losses(ddp), rel=1e-4), name
        # The consolidated adapter at the top of output_dir is the DDP run's, to float noise.
        assert_same_weights(load_file(out / "adapter_model.safetensors"), ref)


def test_fsdp_compiles_the_parts_of_each_sharded_layer(lora_runs):
    assert lora_runs["fsdp"][1].run_info["compiled_modules"] == 4 * 2
    assert lora_runs["zero2"][1].run_info["compiled_modules"] == 0


def assert_half(info: dict, label: str) -> None:
    assert info["engine"].startswith(label)
    # Each of the two workers holds about half of every parameter (odd sizes round up).
    assert info["sharded_tensors"] >= 20
    assert 0.49 < info["local_params"] / info["full_params"] < 0.52


def test_fsdp_really_shards_and_ddp_and_zero2_do_not(lora_runs):
    assert_half(lora_runs["fsdp"][1].run_info, "FSDP2")
    for name in ("ddp", "zero2"):  # ZeRO-2 shards optimizer state and gradients, not weights
        info = lora_runs[name][1].run_info
        assert info["local_params"] == info["full_params"] and info["sharded_tensors"] == 0


def test_sharded_checkpoints_hold_every_rank(lora_runs):
    fsdp = lora_runs["fsdp"][0] / "checkpoint-4"
    assert {p.name for p in (fsdp / "fsdp_state").iterdir()} == {
        ".metadata",
        "__0_0.distcp",
        "__1_0.distcp",
    }
    zero = lora_runs["zero2"][0] / "checkpoint-4"
    assert (zero / "latest").read_text().strip() == "global_step4"
    names = {p.name for p in (zero / "global_step4").iterdir()}
    assert {f"zero_pp_rank_{r}_mp_rank_00_optim_states.pt" for r in (0, 1)} <= names
    for folder in (fsdp, zero):  # the Hugging Face adapter is in every checkpoint too
        assert (folder / "adapter_model.safetensors").is_file()


def test_lora_from_sharded_engines_loads_in_peft(lora_runs, tiny_llama_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    for name in ("fsdp", "zero2"):
        base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
        model = PeftModel.from_pretrained(base, lora_runs[name][0])
        lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
        assert lora_b and all(p.abs().sum() > 0 for p in lora_b)  # trained, not the zero init


@pytest.mark.parametrize(
    ("engine", "extra"),
    [
        ("fsdp", ["fsdp=full_shard offload"]),
        ("zero3", [f"deepspeed={DS / 'ds_z3_offload_config.json'}"]),
    ],
)
def test_full_finetune_writes_one_model_and_resumes(
    ray_local, tiny_llama_dir, tmp_path, engine, extra
):
    from transformers import AutoModelForCausalLM

    full = ["finetuning_type=full", "learning_rate=1e-3", "max_steps=2", *extra]
    out = tmp_path / engine
    first = train(tiny_llama_dir, out, *full)
    assert first.steps == 2
    assert_half(first.run_info, {"fsdp": "FSDP2", "zero3": "DeepSpeed ZeRO-3"}[engine])
    # One consolidated model, loadable by plain from_pretrained, that differs from the start.
    model = AutoModelForCausalLM.from_pretrained(out)
    start = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    before = dict(start.named_parameters())
    moved = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert len(moved) > 10
    assert not list(out.glob("*.distcp")) and not (out / "latest").exists()

    # Running again with more steps continues from checkpoint-2 (optimizer state included).
    second = train(tiny_llama_dir, out, *[x for x in full if x != "max_steps=2"], "max_steps=3")
    assert second.steps == 3 and second.run_info["resumed_step"] == 2
    steps = [json.loads(x)["current_steps"] for x in (out / "trainer_log.jsonl").open()]
    assert steps == [1, 2, 3]
