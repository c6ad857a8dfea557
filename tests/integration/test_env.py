"""`raytune-llm env` asks a real (local) Ray instance which devices it sees."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXE = Path(sys.executable).with_name("raytune-llm")


def test_env_reports_what_ray_sees():
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    result = subprocess.run([str(EXE), "env"], capture_output=True, text=True, timeout=180, env=env)
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if "ray resources" in x)
    assert "1 node(s)" in line and f"CPU={os.cpu_count()}" in line
    assert "local instance" in line
