"""The training loop in Ray Train's local mode (no Ray cluster): its log entries count real tokens.

.venv/bin/python -m pytest tests/unit/test_worker_local.py
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from helpers import train_in_local_mode

from raytune_llm.config import load_config
from raytune_llm.train.worker import real_tokens

LENGTHS = [5, 9, 3, 7, 4, 6, 8, 2]


class Shard:
    """A dataset shard of variable-length rows, batched as Ray Data's numpy batches are."""

    def __init__(self, rows: list[list[int]]):
        self.rows = rows

    def iter_batches(self, *, batch_size: int, drop_last: bool, **_):
        for i in range(0, len(self.rows) - len(self.rows) % batch_size, batch_size):
            ids = np.empty(batch_size, dtype=object)
            ids[:] = [np.asarray(r) for r in self.rows[i : i + batch_size]]
            yield {"input_ids": ids, "labels": ids.copy()}


def test_real_tokens_counts_rows_not_padding():
    ragged = np.empty(2, dtype=object)
    ragged[:] = [np.arange(3), np.arange(5)]
    assert real_tokens({"input_ids": ragged}) == 8
    assert real_tokens({"input_ids": np.zeros((2, 4))}) == 8


def _train_local(tmp_path, model_dir, *, eval_rows=None, eval_shard=None, **values) -> list[dict]:
    """Train 4 steps in Ray Train's local mode on LENGTHS rows (evaluating on ``eval_rows``, or
    on ``eval_shard``, when given); returns the board's entries."""
    cfg = load_config(values={
        "model_name_or_path": str(model_dir), "finetuning_type": "lora", "stage": "sft",
        "do_train": True, "dataset": "unused", "template": "llama3",
        "disable_shuffling": True, "per_device_train_batch_size": 2,
        "max_steps": 4, "logging_steps": 1, "save_strategy": "no", "report_to": "none",
        "output_dir": str(tmp_path / "out"), "disable_gradient_checkpointing": True, **values,
    })  # fmt: skip
    rows = [list(range(10, 10 + n)) for n in LENGTHS]
    if eval_rows:
        eval_shard = Shard(eval_rows)
    datasets = {"train": Shard(rows)} | ({"eval": eval_shard} if eval_shard else {})
    entries, _ = train_in_local_mode(cfg, datasets, len(rows), cfg.data.packing, tmp_path)
    return entries


@pytest.mark.parametrize("packing", [False, True])
def test_local_mode_logs_effective_tokens_and_seconds(tiny_llama_dir, tmp_path, packing):
    entries = _train_local(tmp_path, tiny_llama_dir, packing=packing, neat_packing=packing)
    (start,) = [e for e in entries if e["kind"] == "start"]
    assert start["torch_threads"] == 2
    assert start["fused_lora"] == 7 * 2  # every linear layer of the tiny Llama's two layers
    assert start["compiled_modules"] == 0
    logs = [e for e in entries if e["kind"] == "log"]
    assert [e["current_steps"] for e in logs] == [1, 2, 3, 4]
    assert [e["effective_tokens"] for e in logs] == list(np.cumsum(LENGTHS).reshape(4, 2)[:, 1])
    seconds = [e["train_seconds"] for e in logs]
    assert all(0 < a < b for a, b in itertools.pairwise(seconds))
    # the padded rows of a neat-packed batch count their padding in total_tokens only
    assert logs[-1]["total_tokens"] >= logs[-1]["effective_tokens"] == sum(LENGTHS)


def test_torch_compile_compiles_each_layer_and_trains_the_same(tiny_llama_dir, tmp_path):
    """torch_compile: true compiles the parts of both decoder layers, runs them compiled (with
    gradient checkpointing on, as by default, padding-free rows of changing length whose
    attention runs per example, and an evaluation every two steps), and the loss curves are the
    uncompiled ones."""
    import torch._dynamo

    evals = [list(range(20, 20 + n)) for n in (6, 11, 3, 8)]
    common = {"packing": False, "disable_gradient_checkpointing": False, "eval_dataset": "unused",
              "eval_strategy": "steps", "eval_steps": 2, "per_device_eval_batch_size": 2,
              "eval_rows": evals}  # fmt: skip
    eager = _train_local(tmp_path / "eager", tiny_llama_dir, **common)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):  # never falls back
        compiled = _train_local(tmp_path / "compiled", tiny_llama_dir, torch_compile=True, **common)
    (start,) = [e for e in compiled if e["kind"] == "start"]
    # per layer: self_attn, mlp and the two RMSNorms
    assert start["compiled_modules"] == 4 * 2
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 4
    for key, count in (("loss", 4), ("eval_loss", 2)):
        curves = [
            [e[key] for e in run if e["kind"] == "log" and key in e] for run in (eager, compiled)
        ]
        assert len(curves[1]) == count
        assert curves[1] == pytest.approx(curves[0], rel=1e-4)


class CountingShard(Shard):
    """A Shard that counts the passes made over it."""

    def __init__(self, rows: list[list[int]]):
        super().__init__(rows)
        self.passes = 0

    def iter_batches(self, **kwargs):
        self.passes += 1
        yield from super().iter_batches(**kwargs)


def test_eval_set_is_read_once_and_do_eval_evaluates_at_the_end(
    tiny_llama_dir, tmp_path, monkeypatch
):
    """Evaluations every 2 steps of 5, and do_eval's final one after step 5: the eval shard is
    read once (in the background, from the loop's start) when it fits; when it does not, that
    read-ahead finds out and each evaluation reads it again. The losses are the same."""
    from raytune_llm.train import worker

    curves = []
    for kept_bytes, passes in ((1 << 30, 1), (8, 1 + 3)):
        monkeypatch.setattr(worker, "EVAL_KEPT_BYTES", kept_bytes)
        evals = CountingShard([list(range(20, 20 + n)) for n in (6, 11, 3, 8)])
        entries = _train_local(tmp_path / str(passes), tiny_llama_dir, eval_shard=evals,
                               max_steps=5, eval_dataset="unused", eval_strategy="steps",
                               eval_steps=2, per_device_eval_batch_size=2, do_eval=True,
                               packing=False, learning_rate=1e-2)  # fmt: skip
        logs = [e for e in entries if e["kind"] == "log"]
        assert [e["current_steps"] for e in logs if "eval_loss" in e] == [2, 4, 5]
        assert evals.passes == passes
        assert all(0 <= e["data_wait_seconds"] <= e["train_seconds"] for e in logs)
        curves.append([e["eval_loss"] for e in logs if "eval_loss" in e])
    assert curves[0] == pytest.approx(curves[1], rel=1e-5)
    assert len(set(curves[0])) == 3  # the model changed between the evaluations
