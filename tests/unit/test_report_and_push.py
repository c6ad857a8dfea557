"""report_to and push_to_hub: metric names, refusals before Ray starts, what a push uploads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import FakeHub, free_port

from raytune_llm.cli.main import main
from raytune_llm.config import load_config
from raytune_llm.train import trackers
from raytune_llm.train.hub import push_output, upload_patterns
from raytune_llm.train.progress import DriverLog, log_entry
from raytune_llm.utils.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
EXE = Path(sys.executable).with_name("raytune-llm")
DEMO = ROOT / "examples" / "demo" / "tiny_lora_sft.yaml"
INFO = {"num_examples": 96, "num_epochs": 2, "batch_size": 8, "world_size": 1,
        "accumulation": 1, "total_steps": 12, "trainable": 10, "total": 100}  # fmt: skip


def demo_cfg(tmp_path: Path, *overrides: str):
    return load_config(DEMO, [f"output_dir={tmp_path / 'out'}", *overrides])


def test_metrics_take_the_hugging_face_trainers_names():
    entry = log_entry(4, 8, 0.5, 0.0, 400, loss=1.5, lr=1e-3, grad_norm=0.7, eval_loss=1.2)
    assert trackers.hf_metrics(entry, prefixed=True) == {
        "train/loss": 1.5, "train/learning_rate": 1e-3, "train/grad_norm": 0.7,
        "eval/loss": 1.2, "train/epoch": 0.5, "train/num_input_tokens_seen": 400.0,
    }  # fmt: skip
    assert set(trackers.hf_metrics(entry, prefixed=False)) == {
        "loss", "learning_rate", "grad_norm", "eval_loss", "epoch", "num_input_tokens_seen"
    }  # fmt: skip


def test_trackers_and_push_are_no_longer_refused_but_swanlab_is(tmp_path):
    from raytune_llm.config.available import unavailable

    asks = demo_cfg(tmp_path, "report_to=tensorboard,wandb,mlflow", "push_to_hub=true")
    assert unavailable(asks) == []
    assert unavailable(demo_cfg(tmp_path, "report_to=swanlab")) == [
        ("report_to", "report_to swanlab (use tensorboard, wandb or mlflow)")
    ]


def test_report_to_all_is_every_tracker_installed(monkeypatch):
    monkeypatch.setattr(trackers, "installed", lambda name: name != "wandb")
    assert trackers.tracker_names(["all"]) == ["tensorboard", "mlflow"]
    assert trackers.tracker_names(["none"]) == []
    assert trackers.tracker_names(["wandb", "tensorboard"]) == ["wandb", "tensorboard"]


def test_a_tracker_not_installed_is_refused_by_the_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(trackers, "installed", lambda name: name == "tensorboard")
    out, report = f"output_dir={tmp_path / 'out'}", "report_to=tensorboard,wandb,mlflow"
    code = main(["train", str(DEMO), out, report])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "report_to asks for wandb, mlflow, which are not installed" in err
    assert "pip install wandb for wandb; pip install mlflow for mlflow" in err
    assert not (tmp_path / "out").exists()


def test_tensorboard_follows_a_restart_from_a_checkpoint(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = demo_cfg(tmp_path, f"logging_dir={tmp_path / 'tb'}", "report_to=tensorboard")
    log = DriverLog(None, tmp_path, show_bar=False, trackers=trackers.build_trackers(cfg))
    # Attempt 1 logs steps 2..8, checkpoints at 4 and dies; attempt 2 redoes 6 and 8.
    entries = [
        {"kind": "start", "resumed_step": 0, **INFO},
        *(log_entry(s, 12, s / 6, 0.0, 10 * s, loss=10.0 - s) for s in (2, 4, 6, 8)),
        {"kind": "start", "resumed_step": 4, **INFO},
        *(log_entry(s, 12, s / 6, 0.0, 10 * s, loss=20.0 - s) for s in (6, 8, 10)),
    ]
    for entry in entries:
        kind = entry.pop("kind")
        (log._start if kind == "start" else log._log)(entry)
    log._each("finish")
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    losses = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert losses == [(2, 8.0), (4, 6.0), (6, 14.0), (8, 12.0), (10, 10.0)]
    assert "args/text_summary" in events.Tags()["tensors"]  # the config, as the HF callback


def test_a_failing_tracker_is_dropped_and_the_log_goes_on(tmp_path, capsys):
    class Broken:
        name = "wandb"

        def start(self, info):
            raise RuntimeError("api_key not configured")

    log = DriverLog(None, tmp_path, show_bar=False, trackers=[Broken()])
    log._start(dict(INFO, resumed_step=0))
    log._log(log_entry(2, 12, 0.2, 0.0, 20, loss=3.0))
    assert "report_to wandb stopped (start: api_key not configured)" in capsys.readouterr().out
    assert log.trackers == [] and (tmp_path / "trainer_log.jsonl").is_file()


def _train_cli(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(EXE), "train", str(DEMO), f"output_dir={tmp_path / 'out'}", "push_to_hub=true"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env,
    )  # fmt: skip


def test_push_to_hub_offline_or_unreachable_is_refused_before_ray(tmp_path):
    offline = _train_cli(tmp_path, {**os.environ, "HF_HUB_OFFLINE": "1"})
    assert offline.returncode == 2, offline.stderr
    assert "Traceback" not in offline.stderr
    assert "push_to_hub is true but the Hugging Face hub is switched off here " in offline.stderr
    assert "set push_to_hub: false" in offline.stderr
    assert "training on" not in offline.stdout and not (tmp_path / "out").exists()

    online = {k: v for k, v in os.environ.items() if not k.endswith("_OFFLINE")}
    port = free_port()
    closed = {**online, "HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_TOKEN": "hf_dummy"}
    unreachable = _train_cli(tmp_path, closed)
    assert unreachable.returncode == 2, unreachable.stderr
    assert "Traceback" not in unreachable.stderr
    assert f"the hub at http://127.0.0.1:{port} cannot be reached" in unreachable.stderr
    assert "training on" not in unreachable.stdout and not (tmp_path / "out").exists()


def test_push_to_hub_without_a_token_says_how_to_log_in(tmp_path, monkeypatch):
    from raytune_llm.train.hub import check_hub

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE")
    monkeypatch.setenv("HF_TOKEN", "")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # no saved login
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    with pytest.raises(UserError, match="no Hugging Face token was found: log in with `hf auth"):
        check_hub(demo_cfg(tmp_path, "push_to_hub=true"))


@pytest.mark.parametrize(
    ("role", "said"),
    [(None, r"does not accept the token \(not logged in\)"), ("read", "the token is read-only")],
)
def test_push_to_hub_with_a_token_that_cannot_push_is_refused(role, said, tmp_path, monkeypatch):
    from huggingface_hub import constants

    from raytune_llm.train.hub import check_hub

    hub = FakeHub(role=role)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    try:
        with pytest.raises(UserError, match=said):
            check_hub(demo_cfg(tmp_path, "push_to_hub=true", "hub_token=hf_dummy"))
    finally:
        hub.server.shutdown()


def test_what_a_push_uploads(tmp_path):
    from huggingface_hub.utils import filter_repo_objects

    out = tmp_path / "run"
    for name in ("adapter_model.safetensors", "tokenizer.json", "all_results.json",
                 "runs/May01_host/events.out.tfevents.1", "checkpoint-4/model.pt",
                 "checkpoint-12/model.pt", "checkpoint-8/model.pt", ".validate_storage_marker",
                 "checkpoint_manager_snapshot.json", "_tmp"):  # fmt: skip
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("x")

    def sent(strategy: str) -> tuple[set[str], str | None]:
        ignore, last = upload_patterns(out, strategy)
        files = [p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()]
        return set(filter_repo_objects(files, ignore_patterns=ignore)), last and last.name

    final = {"adapter_model.safetensors", "tokenizer.json", "all_results.json",
             "runs/May01_host/events.out.tfevents.1"}  # fmt: skip
    assert sent("every_save") == sent("end") == (final, None)
    assert sent("checkpoint") == (final, "checkpoint-12")
    files, last = sent("all_checkpoints")
    assert files == final | {f"checkpoint-{s}/model.pt" for s in (4, 8, 12)} and last is None


def test_a_failed_upload_says_the_model_is_still_in_output_dir(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "adapter_model.safetensors").write_text("x")
    cfg = demo_cfg(tmp_path, "push_to_hub=true", "hub_model_id=me/tiny")
    with pytest.raises(UserError) as err:
        push_output(cfg, out)  # the session is offline: the upload cannot happen
    assert f"training finished and the trained output is in {out}" in str(err.value)
    assert f"`hf upload me/tiny {out}`" in str(err.value)
    assert (out / "adapter_model.safetensors").is_file()
