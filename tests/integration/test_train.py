"""Training end to end on a real local Ray: outputs, logs, checkpoints, resume, refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from raytune_llm.config import load_config
from raytune_llm.train.launch import run_training
from raytune_llm.utils.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
EXE = Path(sys.executable).with_name("raytune-llm")
DEMO = ROOT / "examples" / "demo" / "tiny_lora_sft.yaml"
LF_FIELDS = {"current_steps", "total_steps", "loss", "lr", "epoch", "percentage", "elapsed_time",
             "remaining_time", "throughput", "total_tokens"}  # fmt: skip


def cfg_of(model_dir, out, *overrides):
    return load_config(
        DEMO,
        [
            f"model_name_or_path={model_dir}",
            f"dataset_dir={ROOT / 'data'}",
            f"output_dir={out}",
            "overwrite_output_dir=false",
            "max_samples=96",
            "eval_steps=10",
            "logging_steps=5",
            "save_steps=10",
            *overrides,
        ],
    )


def log_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def lora_run(ray_local, tiny_llama_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "lora"
    result = run_training(cfg_of(tiny_llama_dir, out, "max_steps=20"), show_bar=False)
    return out, result


def test_lora_run_writes_hugging_face_outputs(lora_run, tiny_llama_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, result = lora_run
    assert result.steps == 20
    assert {p.name for p in out.glob("checkpoint-*")} == {"checkpoint-10", "checkpoint-20"}
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    model = PeftModel.from_pretrained(base, out)
    changed = [n for n, p in model.named_parameters() if "lora_B" in n and p.abs().sum() > 0]
    assert changed  # the adapter really trained (lora_B starts at zero)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.chat_template and "<|start_header_id|>" in tokenizer.chat_template
    for name in ("all_results.json", "train_results.json", "training_loss.png"):
        assert (out / name).is_file()
    assert json.loads((out / "all_results.json").read_text())["eval_loss"] > 0
    assert not (out / "eval_results.json").exists()  # only do_eval writes it


def test_lora_run_logs_like_llama_factory(lora_run):
    out, _ = lora_run
    lines = log_lines(out)
    train_lines = [e for e in lines if "loss" in e]
    assert [e["current_steps"] for e in train_lines] == [5, 10, 15, 20]
    assert set(train_lines[0]) >= LF_FIELDS
    assert [e["current_steps"] for e in lines if "eval_loss" in e] == [10, 20]
    assert train_lines[-1]["percentage"] == 100.0 and train_lines[-1]["total_steps"] == 20
    lrs = [e["lr"] for e in train_lines]
    assert lrs[0] > lrs[-1]  # cosine decay
    assert train_lines[-1]["loss"] < train_lines[0]["loss"]


def test_resume_continues_from_the_last_checkpoint(lora_run, tiny_llama_dir):
    out, _ = lora_run
    # resumed without evaluations during training, but do_eval: one evaluation after the end
    cfg = cfg_of(tiny_llama_dir, out, "max_steps=30", "eval_strategy=no", "do_eval=true")
    result = run_training(cfg, show_bar=False)
    assert result.steps == 30
    lines = [e for e in log_lines(out) if "loss" in e]
    steps = [e["current_steps"] for e in lines]
    assert steps[:4] == [5, 10, 15, 20] and steps[4:] == [25, 30]  # no step repeated
    assert (out / "checkpoint-30").is_dir()
    evals = [e for e in log_lines(out) if "eval_loss" in e]
    assert [e["current_steps"] for e in evals] == [10, 20, 30]
    results = json.loads((out / "eval_results.json").read_text())
    assert results["eval_loss"] == evals[-1]["eval_loss"] and results["epoch"] == evals[-1]["epoch"]
    assert json.loads((out / "all_results.json").read_text())["eval_loss"] == results["eval_loss"]


def test_full_finetuning_with_two_workers(ray_local, tiny_llama_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "full"
    cfg = cfg_of(tiny_llama_dir, out, "finetuning_type=full", "max_steps=6", "ray_num_workers=2",
                 "learning_rate=1e-3", "eval_strategy=no", "save_steps=100")  # fmt: skip
    result = run_training(cfg, show_bar=False)
    assert result.steps == 6
    trained = AutoModelForCausalLM.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    assert not torch.equal(trained.lm_head.weight, base.lm_head.weight)
    start = json.loads((out / "trainer_log.jsonl").read_text().splitlines()[0])
    assert start["total_steps"] == 6


def test_non_empty_output_dir_is_refused_or_replaced_safely(ray_local, tiny_llama_dir, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="overwrite_output_dir"):
        run_training(cfg_of(tiny_llama_dir, out, "max_steps=2"), show_bar=False)
    # A run that fails after replacing output_dir puts the old content back.
    failing = cfg_of(tiny_llama_dir, out, "overwrite_output_dir=true", "max_steps=2",
                     "ray_num_workers=64")  # fmt: skip
    with pytest.raises(UserError, match="ray_num_workers is 64"):
        run_training(failing, show_bar=False)
    assert (out / "notes.txt").read_text() == "mine"
    run_training(cfg_of(tiny_llama_dir, out, "overwrite_output_dir=true", "max_steps=2",
                        "save_steps=100", "eval_strategy=no"), show_bar=False)  # fmt: skip
    assert not (out / "notes.txt").exists() and (out / "adapter_model.safetensors").exists()
    assert not list(tmp_path.glob(".taken.replaced-*"))


def test_train_verb_end_to_end(tiny_llama_dir, tmp_path):
    out = tmp_path / "cli"
    result = subprocess.run(
        [str(EXE), "train", str(DEMO), f"model_name_or_path={tiny_llama_dir}",
         f"dataset_dir={ROOT / 'data'}", f"output_dir={out}", "max_samples=64", "max_steps=8",
         "save_steps=4", "eval_strategy=no", "disable_tqdm=true"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "***** Running training *****" in result.stdout
    assert "Total optimization steps = 8" in result.stdout
    assert "trained 8 steps" in result.stdout and str(out) in result.stdout
    assert (out / "adapter_model.safetensors").is_file()
