"""`raytune-llm serve` as a process: it answers, and SIGTERM (what Kubernetes and systemd send)
stops it as Ctrl-C does: Serve shut down, exit code 0, no stack dump."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from helpers import free_port

pytestmark = pytest.mark.slow
EXE = Path(sys.executable).with_name("raytune-llm")


def test_sigterm_stops_the_server_cleanly(tiny_llama_dir, tmp_path):
    port = free_port()
    config = tmp_path / "serve.yaml"
    config.write_text(
        f"model_name_or_path: {tiny_llama_dir}\ntemplate: llama3\nmax_new_tokens: 4\n"
        f"serve:\n  port: {port}\n  model_name: tiny\n  num_cpus: 1\n"
    )
    log = (tmp_path / "serve.log").open("w+")
    proc = subprocess.Popen([str(EXE), "serve", str(config)], stdout=log,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        deadline = time.time() + 300
        while "serving tiny at" not in Path(log.name).read_text():
            assert proc.poll() is None and time.time() < deadline, Path(log.name).read_text()
            time.sleep(0.5)
        reply = requests.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=60,
                              json={"model": "tiny", "max_tokens": 2,
                                    "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
        assert reply.status_code == 200, reply.text
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = Path(log.name).read_text()
    assert code == 0, text
    assert "shutting down" in text
    assert "Traceback" not in text and "Aborted" not in text and "Fatal Python" not in text
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/health", timeout=5)
