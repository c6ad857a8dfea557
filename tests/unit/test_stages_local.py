"""Each preference stage trains in the real worker loop (Ray Train's local mode, no cluster):
its metrics are logged under TRL's names, its parameters change, the reward model saves its
value head, and the LoRA reference is the base model (the adapter disabled).

.venv/bin/python -m pytest tests/unit/test_stages_local.py
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import train_in_local_mode

from raytune_llm.config import load_config

PROMPTS = [[11, 12, 13], [14, 15], [16, 17, 18, 19], [20, 21]]


def _pairs(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        prompt = PROMPTS[i % len(PROMPTS)]
        chosen, rejected = [30 + i % 5, 31, 2], [40 + i % 3, 41, 42, 2]
        rows.append({
            "chosen_input_ids": prompt + chosen, "chosen_labels": [-100] * len(prompt) + chosen,
            "rejected_input_ids": prompt + rejected,
            "rejected_labels": [-100] * len(prompt) + rejected,
        })  # fmt: skip
    return rows


def _kto(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        prompt, answer = PROMPTS[i % len(PROMPTS)], [30 + i % 4, 31, 2]
        kl_answer = [40 + i % 3, 41, 2]
        rows.append({"input_ids": prompt + answer, "labels": [-100] * len(prompt) + answer,
                     "kl_input_ids": prompt + kl_answer,
                     "kl_labels": [-100] * len(prompt) + kl_answer,
                     "kto_tag": i % 2 == 0})  # fmt: skip
    return rows


class Shard:
    """Rows of any columns, batched as Ray Data's numpy batches are (ragged columns as objects)."""

    def __init__(self, rows: list[dict]):
        self.rows = rows

    def iter_batches(self, *, batch_size: int, drop_last: bool, **_):
        for i in range(0, len(self.rows) - len(self.rows) % batch_size, batch_size):
            chunk = self.rows[i : i + batch_size]
            batch = {}
            for key in chunk[0]:
                column = np.empty(len(chunk), dtype=object)
                column[:] = [np.asarray(r[key]) for r in chunk]
                batch[key] = column if isinstance(chunk[0][key], list) else column.astype(bool)
            yield batch


def train_local(tmp_path, model_dir, rows, eval_rows=None, **values):
    """Train in local mode; returns (board entries, the final checkpoint folder)."""
    cfg = load_config(values={
        "model_name_or_path": str(model_dir), "finetuning_type": "lora", "do_train": True,
        "dataset": "unused", "template": "llama3", "disable_shuffling": True,
        "per_device_train_batch_size": 2, "max_steps": 4, "logging_steps": 1,
        "save_strategy": "no", "report_to": "none", "learning_rate": 1e-3,
        "output_dir": str(tmp_path / "out"), "disable_gradient_checkpointing": True,
        **({"eval_dataset": "unused", "eval_strategy": "steps", "eval_steps": 2,
            "per_device_eval_batch_size": 2} if eval_rows
           else {}),
        **values,
    })  # fmt: skip
    datasets = {"train": Shard(rows)} | ({"eval": Shard(eval_rows)} if eval_rows else {})
    entries, result = train_in_local_mode(cfg, datasets, len(rows), False, tmp_path)
    return entries, result.checkpoint.path


def _logs(entries):
    return [e for e in entries if e["kind"] == "log"]


DPO_METRICS = {"rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
               "logps/chosen", "logps/rejected"}  # fmt: skip


@pytest.mark.parametrize(
    "values",
    [
        {"stage": "dpo"},
        {"stage": "dpo", "pref_loss": "hinge", "pref_ftx": 0.5},
        {"stage": "dpo", "pref_loss": "simpo"},
        {"stage": "orpo"},
        {"stage": "dpo", "pref_bco_weight": 0.5, "ld_alpha": 0.5},
    ],
    ids=["sigmoid", "hinge+ftx", "simpo", "orpo", "bco+ld"],
)
def test_dpo_family_logs_trl_metrics_and_separates(tiny_llama_dir, tmp_path, values):
    entries, _ = train_local(tmp_path, tiny_llama_dir, _pairs(8), eval_rows=_pairs(4),
                             max_steps=8, **values)  # fmt: skip
    logs = _logs(entries)
    assert set(logs[0]) >= DPO_METRICS
    assert {"eval_loss"} | {f"eval_{m}" for m in DPO_METRICS} <= set(logs[-1])
    first, last = logs[0], logs[-1]
    assert last["rewards/margins"] > first["rewards/margins"]
    assert last["loss"] < first["loss"]


def test_dpo_reference_is_the_base_for_lora(tiny_llama_dir, tmp_path):
    """With LoRA the reference is the adapter-disabled policy: at the first step the policy IS
    the reference (lora_B starts at zero), so every reward is exactly 0 and the sigmoid loss
    log(2)."""
    entries, _ = train_local(tmp_path, tiny_llama_dir, _pairs(2), max_steps=1, stage="dpo")
    (log,) = _logs(entries)
    assert log["rewards/chosen"] == 0 and log["rewards/rejected"] == 0
    assert log["loss"] == pytest.approx(np.log(2), rel=1e-6)


def test_dpo_full_finetuning_uses_a_frozen_copy(tiny_llama_dir, tmp_path):
    entries, _ = train_local(tmp_path, tiny_llama_dir, _pairs(8), max_steps=4,
                             finetuning_type="full", stage="dpo", learning_rate=1e-4)  # fmt: skip
    logs = _logs(entries)
    assert logs[0]["rewards/chosen"] == 0 and logs[0]["loss"] == pytest.approx(np.log(2))
    assert logs[-1]["rewards/margins"] > 0  # the policy moved away from the frozen copy


def test_reward_model_learns(tiny_llama_dir, tmp_path):
    entries, _ = train_local(tmp_path, tiny_llama_dir, _pairs(8), eval_rows=_pairs(4),
                             stage="rm", max_steps=10)  # fmt: skip
    logs = _logs(entries)
    assert {"accuracy", "margin", "eval_accuracy", "eval_loss"} <= set(logs[-1])
    assert logs[-1]["eval_accuracy"] == 1.0 and logs[-1]["margin"] > logs[0]["margin"]


def test_value_head_saves_as_llamafactory_and_loads_back(tiny_llama_dir, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from raytune_llm.model.value_head import ValueHeadLM, has_value_head, load_value_head
    from raytune_llm.train.checkpoint import load_weights

    def build():
        lm = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
        return ValueHeadLM(get_peft_model(lm, LoraConfig(r=4, target_modules=["q_proj"])))

    model = build()
    with torch.no_grad():
        model.v_head.weight.fill_(0.5)
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.fill_(0.1)
    model.save_pretrained(tmp_path)
    head = load_file(tmp_path / "value_head.safetensors")
    assert set(head) == {"v_head.summary.weight", "v_head.summary.bias"}
    assert head["v_head.summary.weight"].shape == (1, 64) and has_value_head(tmp_path)
    assert (tmp_path / "adapter_model.safetensors").is_file()
    ids = torch.tensor([[1, 5, 9, 14]])
    want = model(input_ids=ids)
    again = build()
    load_weights(again, tmp_path)  # as resuming does: the adapter and the head
    assert torch.allclose(again(input_ids=ids), want)
    fresh = load_value_head(build(), tmp_path)
    assert torch.equal(fresh.v_head.weight, model.v_head.weight)


def test_kto_rewards_separate(tiny_llama_dir, tmp_path):
    entries, _ = train_local(tmp_path, tiny_llama_dir, _kto(8), stage="kto", max_steps=8,
                             kto_chosen_weight=1.0, kto_rejected_weight=1.5)  # fmt: skip
    logs = _logs(entries)
    assert {"kl", "rewards/chosen", "rewards/rejected", "logps/chosen"} <= set(logs[0])
    gap = [e["rewards/chosen"] - e["rewards/rejected"] for e in logs]
    assert gap[0] == pytest.approx(0, abs=1e-9) and gap[-1] > 0.05
