"""The one-way dependency order of the package, checked so that it cannot rot silently."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "raytune_llm"
HEAVY = {"torch", "ray", "transformers", "peft", "trl", "datasets", "accelerate", "deepspeed"}


def test_import_contracts_hold():
    """utils → config → {data, model} → train → tune; serve/eval/export never use train/tune."""
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint), "--no-cache"], capture_output=True, text=True, cwd=PACKAGE.parent
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_the_web_ui_reaches_no_training_tuning_data_or_model_code():
    """The web UI writes a YAML and starts the CLI on it (a contract lint-imports keeps)."""
    import tomllib

    pyproject = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())
    contracts = pyproject["tool"]["importlinter"]["contracts"]
    webui = [c for c in contracts if c.get("source_modules") == ["raytune_llm.webui"]]
    assert len(webui) == 1 and webui[0]["type"] == "forbidden"
    assert set(webui[0]["forbidden_modules"]) == {
        f"raytune_llm.{name}" for name in ("train", "tune", "data", "model")
    }


def test_config_and_cli_import_nothing_heavy_at_module_level():
    offenders = []
    for folder in ("config", "cli", "utils"):
        for path in (PACKAGE / folder).glob("*.py"):
            for node in ast.parse(path.read_text()).body:
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in HEAVY]
    assert not offenders
