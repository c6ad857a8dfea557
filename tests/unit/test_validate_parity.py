"""`raytune-llm validate` refuses what `train`, `tune` and `serve` refuse for a config reason.

Each bad config goes through `validate` and through the verb itself (the real CLI, in this
process); both must exit with the same status and name the same problems, key and line. Every
one of these refusals happens before Ray starts: ray.init is replaced by a tripwire, so a
refusal that came late (after Ray, or on a worker) fails the test instead of starting a cluster.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from raytune_llm.cli.main import main

ROOT = Path(__file__).resolve().parents[2]

BASE = (
    "model_name_or_path: builtin:tiny-llama\n"
    "do_train: true\n"
    "dataset: demo_alpaca\n"
    f"dataset_dir: {ROOT / 'data'}\n"
    "template: llama3\n"
    "output_dir: {out}\n"
)
SWEEP = (
    "eval_dataset: demo_alpaca_eval\neval_strategy: steps\n"
    "tune:\n  metric: eval_loss\n  param_space:\n    learning_rate: [1.0e-4, 1.0e-3]\n"
)

# (name, what the config adds to BASE, the verbs that must refuse it, exit status, key)
CASES = [
    ("optim", "optim: adamw_torh\n", ("train",), 2, "optim"),
    ("fsdp words", "fsdp: full_shard hybrid_shard\n", ("train",), 2, "fsdp"),
    ("unknown key", "learning_rat: 1.0e-4\n", ("train", "serve"), 2, "learning_rat"),
    ("bf16 and fp16", "bf16: true\nfp16: true\n", ("train",), 2, "fp16"),
    ("deepspeed file", "deepspeed: no/such/ds.json\n", ("train",), 2, "deepspeed"),
    ("stage", "stage: ppo\nreward_model: some/reward\n", ("train",), 3, "stage"),
    ("qlora sharded", "quantization_bit: 4\nfsdp: full_shard\n", ("train",), 3, "quantization_bit"),
    (
        "compile with deepspeed",
        "torch_compile: true\ndeepspeed: {zero_optimization: {stage: 2}}\n",
        ("train",),
        3,
        "torch_compile",
    ),
    ("tracker", "report_to: swanlab\n", ("train",), 3, "report_to"),
    (
        "predict while training",
        "do_predict: true\npredict_with_generate: true\n",
        ("train",),
        3,
        "do_predict",
    ),
    ("sweep tracker", "report_to: swanlab\n" + SWEEP, ("train", "tune"), 3, "report_to"),
    ("tune setting", SWEEP + "  schedular: asha\n", ("train", "tune"), 2, "tune.schedular"),
    (
        "tune space",
        SWEEP.replace("[1.0e-4, 1.0e-3]", "{loguniform: [0, 1.0e-3]}"),
        ("tune",),
        2,
        "tune.param_space.learning_rate",
    ),
    (
        "tune metric",
        SWEEP.replace("eval_strategy: steps", "eval_strategy: 'no'"),
        ("tune",),
        2,
        "tune.metric",
    ),
    ("serve port", "serve:\n  port: 99999\n", ("serve", "train"), 2, "serve.port"),
    (
        "serve scaling",
        "serve:\n  num_replicas: 2\n  autoscaling: {max_replicas: 2}\n",
        ("serve",),
        2,
        "serve",
    ),
]


@pytest.fixture
def no_ray(monkeypatch):
    import ray

    def tripwire(*args, **kwargs):
        raise AssertionError("Ray was started: this refusal came too late")

    monkeypatch.setattr(ray, "init", tripwire)


def _run(capsys, *argv: str) -> tuple[int, list[str]]:
    code = main(list(argv))
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.startswith("  - ")]


@pytest.mark.parametrize(
    ("name", "extra", "verbs", "status", "key"), CASES, ids=[c[0] for c in CASES]
)
def test_validate_refuses_what_the_verb_refuses(tmp_path, capsys, no_ray, name, extra, verbs,
                                                status, key):  # fmt: skip
    path = tmp_path / f"{name.replace(' ', '_')}.yaml"
    path.write_text(BASE.format(out=tmp_path / "out") + extra)
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1)
                if text.startswith(key.split(".")[0] + ":"))  # fmt: skip
    code, problems = _run(capsys, "validate", str(path))
    assert code == status, problems
    assert any(p.startswith(f"  - {key} ({path}:{line}): ") for p in problems), problems
    for verb in verbs:
        assert _run(capsys, verb, str(path)) == (code, problems), verb
    assert not (tmp_path / "out").exists()


def test_a_config_that_does_not_train_is_not_held_to_the_training_rules(tmp_path, capsys, no_ray):
    """do_train: false is a serve, chat or predict config: validate accepts it, train refuses."""
    path = tmp_path / "serve.yaml"
    path.write_text(
        "model_name_or_path: builtin:tiny-llama\ntemplate: llama3\nreport_to: swanlab\n"
    )
    assert _run(capsys, "validate", str(path)) == (0, [])
    code, problems = _run(capsys, "train", str(path))
    assert code == 3 and "  - do_train: do_train is false" in " ".join(problems), problems
