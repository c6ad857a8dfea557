"""``ray job submit`` of jobs/train.py to a ``ray start --head`` cluster of the test's own.

The cluster is isolated from any other Ray on this machine: its own --temp-dir (sessions, logs,
sockets), free ports, and a token of its own for Ray 2.60's token authentication
(RAY_AUTH_MODE=token + RAY_AUTH_TOKEN, for the cluster and for the client), so ~/.ray/auth_token
is neither read nor written. `ray stop` stops every Ray on the machine, so the test stops its
cluster by killing the processes whose command lines name its temp dir, and nothing else.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from helpers import free_port

ROOT = Path(__file__).resolve().parents[2]
RAY = Path(sys.executable).with_name("ray")
DEMO = "examples/demo/tiny_lora_sft.yaml"  # relative: resolved in the job's working_dir


def cluster_processes(temp_dir: str, gcs_port: int) -> list[psutil.Process]:
    """This cluster's processes: those naming its temp dir or its GCS address, and their children.

    Workers and agents rename themselves (ray::IDLE) but are children of its raylet; the Ray
    client server names only the GCS address.
    """
    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter(["cmdline"]):
        parts = proc.info["cmdline"] or []
        if any(temp_dir in p or p.endswith(f":{gcs_port}") for p in parts):
            with contextlib.suppress(psutil.Error):
                for p in [proc, *proc.children(recursive=True)]:
                    found[p.pid] = p
    return list(found.values())


def stop_cluster(temp_dir: str, gcs_port: int) -> None:
    """SIGTERM, then SIGKILL, the processes of this cluster only: `ray stop` would stop all."""
    procs = cluster_processes(temp_dir, gcs_port)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(procs, timeout=10)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    # Workers started meanwhile are found on a second look.
    for proc in cluster_processes(temp_dir, gcs_port):
        with contextlib.suppress(psutil.Error):
            proc.kill()


@pytest.fixture
def head(tmp_path) -> Iterator[tuple[str, dict[str, str]]]:
    """A one-node cluster on 127.0.0.1 with its dashboard; yields (address, client env)."""
    temp_dir = tempfile.mkdtemp(prefix="rtj", dir="/tmp")  # short: Ray's socket paths
    port, dash = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    # The job's `python` is the first on the cluster's PATH: this venv's, which has the libraries.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": uuid.uuid4().hex, "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}  # fmt: skip
    start = [str(RAY), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
             "--num-cpus=2", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
             f"--dashboard-port={dash}", f"--temp-dir={temp_dir}",
             "--disable-usage-stats",
             f"--ray-client-server-port={free_port()}",
             # Every port of its own: the tests' shared Ray instance holds the default ones.
             f"--dashboard-agent-listen-port={free_port()}",
             f"--dashboard-agent-grpc-port={free_port()}",
             f"--runtime-env-agent-port={free_port()}",
             f"--metrics-export-port={free_port()}"]  # fmt: skip
    try:
        proc = subprocess.run(start, capture_output=True, text=True, env=env, timeout=180)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        yield f"http://127.0.0.1:{dash}", env
    finally:
        stop_cluster(temp_dir, port)
        shutil.rmtree(temp_dir, ignore_errors=True)


def ray_cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(RAY), *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=timeout)  # fmt: skip


def test_job_submit_runs_a_training(head, tiny_llama_dir, tmp_path):
    address, env = head
    out = tmp_path / "job-run"
    for _ in range(30):  # the head's agent may still be starting: "No available agent"
        submit = ray_cli(
            env, "job", "submit", "--address", address, "--runtime-env", "jobs/runtime_env.yaml",
            "--no-wait", "--", "python", "jobs/train.py", DEMO,
            f"model_name_or_path={tiny_llama_dir}", "dataset_dir=data", f"output_dir={out}",
            "max_samples=32", "max_steps=4", "save_steps=4", "logging_steps=2",
            "eval_strategy=no", "plot_loss=false", "disable_tqdm=true",
        )  # fmt: skip
        if "No available agent" not in submit.stderr:
            break
        time.sleep(2)
    assert submit.returncode == 0, submit.stdout[-2000:] + submit.stderr[-3000:]
    job_id = next(
        w.strip("'\"") for w in submit.stdout.split() if w.strip("'\"").startswith("raysubmit_")
    )

    deadline, status = time.time() + 300, ""
    while time.time() < deadline:
        polled = ray_cli(env, "job", "status", "--address", address, job_id)
        status = (polled.stdout + polled.stderr).lower()  # "Job 'raysubmit_…' succeeded"
        if any(f"' {s}" in status for s in ("succeeded", "failed", "stopped")):
            break
        time.sleep(3)
    logs = ray_cli(env, "job", "logs", "--address", address, job_id).stdout
    assert "' succeeded" in status, status[-1000:] + "\n" + logs[-5000:]

    assert "***** Running training *****" in logs
    assert "trained 4 steps" in logs and str(out) in logs
    assert "the cluster at" in logs  # joined the job's cluster, did not start a Ray of its own
    assert (out / "adapter_model.safetensors").is_file()
    assert (out / "checkpoint-4" / "trainer_state.json").is_file()
    lines = (out / "trainer_log.jsonl").read_text().splitlines()
    assert [json.loads(x)["current_steps"] for x in lines] == [2, 4]

    # Without the token the cluster refuses the client: token auth is really on.
    anon = {k: v for k, v in env.items() if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    anon["HOME"] = str(tmp_path)  # no ~/.ray/auth_token to fall back on
    refused = ray_cli(anon, "job", "status", "--address", address, job_id)
    assert refused.returncode != 0
    assert "succeeded" not in (refused.stdout + refused.stderr).lower()
