"""The results files a finished run writes into output_dir, as LLaMA-Factory writes them."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest

from raytune_llm.config import load_config
from raytune_llm.train.launch import _finish

HISTORY = [
    {"current_steps": 5, "loss": 3.0, "epoch": 0.5, "total_tokens": 500},
    {"current_steps": 10, "loss": 2.0, "eval_loss": 2.5, "eval_accuracy": 0.6, "epoch": 1.0,
     "total_tokens": 1000},
    {"current_steps": 12, "loss": 1.0, "eval_loss": 2.25, "eval_accuracy": 0.7, "epoch": 1.2,
     "total_tokens": 1200},
]  # fmt: skip


def finish(tmp_path, stage: str, do_eval: bool) -> dict:
    cfg = load_config(values={
        "model_name_or_path": "m", "stage": stage, "do_train": True, "dataset": "d",
        "output_dir": str(tmp_path), "do_eval": do_eval, "val_size": 0.1, "plot_loss": False,
        "report_to": "none",
    })  # fmt: skip
    result = SimpleNamespace(checkpoint=None, metrics={"step": 12, "epoch": 1.2})
    done = _finish(cfg, tmp_path, result, HISTORY, seconds=6.0)
    return done.metrics


@pytest.mark.parametrize("stage", ["pt", "sft"])
def test_do_eval_writes_eval_results_and_pt_its_perplexity(tmp_path, stage):
    metrics = finish(tmp_path, stage, do_eval=True)
    evaluated = json.loads((tmp_path / "eval_results.json").read_text())
    expected = {"epoch": 1.2, "eval_loss": 2.25, "eval_accuracy": 0.7}
    if stage == "pt":
        expected["perplexity"] = pytest.approx(math.exp(2.25))
    assert evaluated == expected
    every = json.loads((tmp_path / "all_results.json").read_text())
    assert every == metrics and every["train_loss"] == 2.0 and every["epoch"] == 1.2
    assert {k: every[k] for k in expected} == expected
    assert json.loads((tmp_path / "train_results.json").read_text())["train_steps_per_second"] == 2


def test_without_do_eval_all_results_still_has_the_last_evaluation(tmp_path):
    every = finish(tmp_path, "sft", do_eval=False)
    assert not (tmp_path / "eval_results.json").exists()
    assert every["eval_loss"] == 2.25 and every["eval_accuracy"] == 0.7
    assert "perplexity" not in every
