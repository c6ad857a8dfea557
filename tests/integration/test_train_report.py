"""report_to and push_to_hub on a real short run: what the trackers and the hub receive.

The trackers' own readers load what they wrote (TensorBoard's EventAccumulator, MLflow's client,
W&B's offline summary) and must agree with trainer_log.jsonl. The hub, which cannot run here, is
a small local HTTP server answering huggingface_hub's real client with the hub's replies.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import FakeHub

from raytune_llm.config import load_config
from raytune_llm.train.launch import run_training
from raytune_llm.train.trackers import installed

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "demo" / "tiny_lora_sft.yaml"
EXTRA = [name for name in ("mlflow", "wandb") if installed(name)]


@pytest.fixture(scope="module")
def run(ray_local, tiny_llama_dir, tmp_path_factory):
    from huggingface_hub import constants

    root = tmp_path_factory.mktemp("report")
    out, hub = root / "tracked", FakeHub()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", (root / "mlruns").as_uri())
        mp.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps its file store for opt-ins
        mp.setenv("WANDB_MODE", "offline")
        mp.setenv("WANDB_DIR", str(root))
        mp.setenv("HF_TOKEN", "hf_dummy")
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):  # this run's driver may upload
            mp.delenv(name)
        mp.setattr(constants, "HF_HUB_OFFLINE", False)
        mp.setattr(constants, "ENDPOINT", hub.url)
        cfg = load_config(DEMO, [
            f"model_name_or_path={tiny_llama_dir}", f"dataset_dir={ROOT / 'data'}",
            f"output_dir={out}", "max_samples=32", "max_steps=4", "logging_steps=1",
            "eval_steps=2", "save_steps=2", f"report_to={','.join(['tensorboard', *EXTRA])}",
            "run_name=tracked-run", "push_to_hub=true", "hub_strategy=checkpoint",
        ])  # fmt: skip
        run_training(cfg, show_bar=False)
    hub.server.shutdown()
    logged = [json.loads(x) for x in (out / "trainer_log.jsonl").read_text().splitlines()]
    return out, root, hub, logged


def series(logged: list[dict], key: str) -> list[tuple[int, float]]:
    return [(e["current_steps"], e[key]) for e in logged if key in e]


def test_tensorboard_holds_the_logged_losses(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, _, _, logged = run
    (logdir,) = (out / "runs").iterdir()  # output_dir/runs/<date>_<host>, as the HF Trainer
    events = EventAccumulator(str(logdir))
    events.Reload()

    def scalars(tag: str) -> list[tuple[int, float]]:
        return [(e.step, pytest.approx(e.value, rel=1e-6)) for e in events.Scalars(tag)]

    assert series(logged, "loss") == scalars("train/loss")
    assert [s for s, _ in series(logged, "loss")] == [1, 2, 3, 4]
    assert series(logged, "eval_loss") == scalars("eval/loss")
    assert [s for s, _ in scalars("eval/loss")] == [2, 4]
    assert series(logged, "lr") == scalars("train/learning_rate")
    assert {"train/grad_norm", "train/epoch"} <= set(events.Tags()["scalars"])


@pytest.mark.skipif("mlflow" not in EXTRA, reason="mlflow is not installed")
def test_mlflow_holds_the_logged_losses(run):
    from mlflow.tracking import MlflowClient

    _, root, _, logged = run
    client = MlflowClient(tracking_uri=(root / "mlruns").as_uri())
    (found,) = client.search_runs(["0"])
    assert found.info.run_name == "tracked-run" and found.info.status == "FINISHED"
    losses = [(m.step, m.value) for m in client.get_metric_history(found.info.run_id, "loss")]
    assert sorted(losses) == series(logged, "loss")
    assert found.data.params["learning_rate"] == "0.005" and "hub_token" not in found.data.params


@pytest.mark.skipif("wandb" not in EXTRA, reason="wandb is not installed")
def test_wandb_offline_run_holds_the_logged_losses(run):
    _, root, _, logged = run
    # wandb's Python package has no reader for its offline record log: look for the values.
    (records,) = (root / "wandb").glob("offline-run-*/run-*.wandb")
    data = records.read_bytes()
    assert b"tracked-run" in data and b"train/loss" in data and b"eval/loss" in data
    assert all(json.dumps(loss).encode() in data for _, loss in series(logged, "loss"))


def test_push_to_hub_uploads_the_model_without_checkpoints(run):
    out, _, hub, _ = run
    sent = set(hub.files)
    assert (
        hub.files["adapter_model.safetensors"] == (out / "adapter_model.safetensors").read_bytes()
    )
    assert {"adapter_config.json", "tokenizer.json", "trainer_log.jsonl", "all_results.json",
            "train_results.json"} <= sent  # fmt: skip
    assert any(name.startswith("runs/") for name in sent)  # TensorBoard logs, as the HF Trainer
    assert not [name for name in sent if name.startswith(("checkpoint", "."))]  # nor Ray's files
    checkpoint = {name.split("/", 1)[1] for name in sent if name.startswith("last-checkpoint/")}
    assert checkpoint == {
        p.relative_to(out / "checkpoint-4").as_posix()
        for p in (out / "checkpoint-4").rglob("*")
        if p.is_file()
    }
