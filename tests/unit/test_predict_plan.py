"""What `raytune-llm predict` decides before Ray or a model starts: backends, refusals, labels."""

from __future__ import annotations

import pytest

from raytune_llm.config import load_config
from raytune_llm.infer.predict import (
    PREDICTIONS,
    ActorPlan,
    check_predict,
    plan_actors,
    split_example,
)
from raytune_llm.utils.errors import NotAvailableError, UserError

BASE = {
    "model_name_or_path": "builtin:tiny-llama",
    "stage": "sft",
    "do_predict": True,
    "predict_with_generate": True,
    "eval_dataset": "demo_alpaca_eval",
}


def cfg(tmp_path, **values):
    return load_config(None, values={**BASE, "output_dir": str(tmp_path / "out"), **values})


def test_backends_leave_cpu_for_the_reads_and_take_a_gpu_each(tmp_path):
    assert plan_actors(cfg(tmp_path), {"CPU": 2}) == ActorPlan(1, 1.5, 0.0, 2)
    assert plan_actors(cfg(tmp_path, ray_num_workers=2), {"CPU": 8}) == ActorPlan(2, 3.75, 0, 4)
    assert plan_actors(cfg(tmp_path, ray_num_workers=4), {"CPU": 16, "GPU": 2}) == ActorPlan(
        2, 1.0, 1.0, 1
    )
    given = cfg(tmp_path, resources_per_worker={"CPU": 1})
    assert plan_actors(given, {"CPU": 2}) == ActorPlan(1, 1.0, 0.0, 1)
    with pytest.raises(UserError, match="ray_num_workers 4 backends need 4 CPU"):
        plan_actors(cfg(tmp_path, ray_num_workers=4, resources_per_worker={"CPU": 1}), {"CPU": 2})


def test_predict_refuses_before_anything_runs(tmp_path):
    out = check_predict(cfg(tmp_path))
    assert out == (tmp_path / "out").resolve() and not out.exists()
    out.mkdir()
    (out / "notes.txt").write_text("other files are left alone")
    assert check_predict(cfg(tmp_path)) == out
    (out / PREDICTIONS).write_text("{}\n")
    with pytest.raises(UserError, match="overwrite_output_dir"):
        check_predict(cfg(tmp_path))
    assert check_predict(cfg(tmp_path, overwrite_output_dir=True)) == out
    with pytest.raises(NotAvailableError, match="beam search"):
        check_predict(cfg(tmp_path / "b", num_beams=2))
    with pytest.raises(NotAvailableError, match="vllm"):
        check_predict(cfg(tmp_path / "v", infer_backend="vllm"))
    no_out = load_config(None, values={"model_name_or_path": "builtin:tiny-llama"})
    with pytest.raises(UserError, match=r"output_dir: required.*eval_dataset: no data"):
        check_predict(no_out)


def test_the_last_answer_is_the_label():
    example = {
        "messages": [
            {"role": "user", "content": "q1"},
            {"role": "assistant", "content": "a1"},
            {"role": "user", "content": "q2"},
            {"role": "assistant", "content": "a2"},
        ],
        "system": "s",
        "tools": "",
    }
    messages, system, tools, label = split_example(example)
    assert [m["content"] for m in messages] == ["q1", "a1", "q2"]
    assert (system, tools, label) == ("s", "", "a2")
    assert split_example({"messages": [{"role": "user", "content": "q"}]})[3] == ""


def test_train_points_a_predict_config_to_predict(tmp_path):
    from raytune_llm.config.available import unavailable

    assert unavailable(cfg(tmp_path)) == [
        ("do_predict", "do_predict: this config predicts; run `raytune-llm predict CONFIG`")
    ]
    both = cfg(tmp_path, do_train=True, dataset="demo_alpaca")
    assert "after training with do_predict: false" in " ".join(m for _, m in unavailable(both))
