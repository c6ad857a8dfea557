"""A real sweep: six LoRA trials of the tiny model under ASHA, its driver killed and rerun.

The sweep runs through the CLI in a child process (a process holds one Ray connection, and the
test kills it as a user's Ctrl-\\ or a lost node would); the second run must finish the sweep
without training again any trial that had finished.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXE = Path(sys.executable).with_name("raytune-llm")
SWEEP = ROOT / "examples" / "tune" / "tiny_lora_sweep.yaml"

pytestmark = pytest.mark.slow


def log_of(folder: Path) -> list[dict]:
    path = folder / "trainer_log.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.is_file() else []


def finished(out: Path) -> list[Path]:
    done = []
    for folder in (out / "trials").glob("trial-*"):
        log = log_of(folder)
        last = log[-1] if log else {"current_steps": 0, "total_steps": -1}
        complete = last["current_steps"] == last["total_steps"]
        if complete and (folder / f"checkpoint-{last['total_steps']}").is_dir():
            done.append(folder)
    return done


@pytest.fixture(scope="module")
def sweep(tiny_llama_dir, tmp_path_factory, ray_local):
    # ray_local: a second Ray instance on the machine while the sweep runs its own. Ray's State
    # API then cannot tell them apart unless the sweep names its own (utils/cluster.py); without
    # that, finished trials' worker reservations leaked and the next trials never started.
    out = tmp_path_factory.mktemp("tune") / "sweep"
    command = [str(EXE), "tune", str(SWEEP), f"model_name_or_path={tiny_llama_dir}",
               f"dataset_dir={ROOT / 'data'}", f"output_dir={out}", "max_samples=256",
               "max_steps=30", "save_steps=10"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, env=env, start_new_session=True)  # fmt: skip
    deadline = time.time() + 900  # a busy 2-core machine takes minutes per trial
    while time.time() < deadline and len(finished(out)) < 2 and first.poll() is None:
        time.sleep(2)
    assert first.poll() is None, first.stdout.read()[-3000:]
    time.sleep(3)  # let Ray Tune save its state once more, as it would before a crash
    os.killpg(first.pid, signal.SIGKILL)  # the driver and everything it started
    first.wait()
    done_before = {f.name: (f / "trainer_log.jsonl").read_text() for f in finished(out)}
    assert done_before  # at least one finished trial must survive the kill untouched

    second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-4000:]
    return out, done_before, second.stdout


def rows(out: Path) -> list[dict]:
    with (out / "trials.csv").open() as f:
        return list(csv.DictReader(f))


def test_the_sweep_ran_every_trial_and_asha_stopped_some(sweep):
    out, _, stdout = sweep
    trials = rows(out)
    assert len(trials) == 6
    assert {"learning_rate", "lora_rank", "final", "best", "steps", "status"} <= set(trials[0])
    stopped = [t for t in trials if t["status"].startswith("stopped early")]
    completed = [t for t in trials if t["status"] == "completed"]
    assert stopped and completed and len(stopped) + len(completed) == 6
    assert all(int(t["steps"]) < 30 for t in stopped)
    assert all(int(t["steps"]) == 30 for t in completed)
    assert (out / "tune_eval_loss.png").stat().st_size > 10_000
    assert "ranked by eval_loss" in stdout and "best trial" in stdout


def test_resumed_sweep_did_not_train_finished_trials_again(sweep):
    out, done_before, _ = sweep
    for name, log in done_before.items():
        assert (out / "trials" / name / "trainer_log.jsonl").read_text() == log, name


def test_best_trial_is_the_best_completed_one_and_loads(sweep, tiny_llama_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from raytune_llm.config import load_config

    out, _, _ = sweep
    finals = {}
    for t in rows(out):
        if t["status"] == "completed":  # recomputed from the trial's own log, not trials.csv
            log = log_of(out / "trials" / f"trial-{t['trial']}")
            finals[t["trial"]] = [e["eval_loss"] for e in log if "eval_loss" in e][-1]
    summary = json.loads((out / "sweep_results.json").read_text())
    assert summary["best_trial"] == min(finals, key=finals.get)
    assert summary["best_metric"] == pytest.approx(min(finals.values()))
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama_dir),
                                      out / "best")  # fmt: skip
    assert model.peft_config["default"].r == summary["best_params"]["lora_rank"]
    cfg = load_config(out / "best" / "config.yaml")
    assert cfg.tune is None and cfg.train.learning_rate == summary["best_params"]["learning_rate"]
