"""The raytune-llm command line: verbs, help, exit codes and the import budget of start-up."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from raytune_llm.cli.main import COMMANDS, build_parser, main

ROOT = Path(__file__).resolve().parents[2]
EXE = Path(sys.executable).with_name("raytune-llm")
PROMISED_VERBS = {
    "train", "tune", "chat", "serve", "predict", "eval", "export", "webui", "validate", "env",
    "version", "tiny",
}  # fmt: skip

THREE_MISTAKES = """\
model_name_or_path: meta-llama/Meta-Llama-3-8B-Instruct
stage: sftt
finetuning_type: lora
lora_rank: -1
learning_rat: 1.0e-4
"""


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(EXE), *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_verbs_dict_and_parser_agree():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "verb")
    assert set(subparsers.choices) == set(COMMANDS) >= PROMISED_VERBS
    for name, command in COMMANDS.items():
        module, _, function = command.target.partition(":")
        assert callable(getattr(importlib.import_module(module), function)), name


@pytest.mark.parametrize("verb", sorted(COMMANDS))
def test_every_verb_has_help(verb, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([verb, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert COMMANDS[verb].help.split()[0] in out.lower()
    if COMMANDS[verb].takes_config:
        assert "KEY=VALUE" in out


def test_validate_prints_resolved_config(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model_name_or_path: builtin:tiny-llama\nlora_rank: 4\n")
    assert main(["validate", str(cfg), "lora_alpha=32"]) == 0
    out = capsys.readouterr().out
    assert "is valid" in out
    assert "lora_rank: 4" in out and "lora_alpha: 32" in out and "learning_rate: 5.0e-05" in out


def test_three_mistakes_exit_2_without_traceback(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(THREE_MISTAKES)
    for verb in ("validate", "train", "tune", "serve"):
        result = run_cli(verb, str(cfg))
        assert result.returncode == 2, (verb, result.stderr)
        assert "Traceback" not in result.stderr + result.stdout
        err = result.stderr
        assert "3 problems" in err
        assert "learning_rat" in err and "lora_rank" in err and "stage" in err
        assert "did you mean 'learning_rate'" in err and "did you mean 'sft'" in err


def test_missing_config_file_and_bad_flag():
    result = run_cli("validate", "no/such.yaml")
    assert result.returncode == 2 and "config file not found: no/such.yaml" in result.stderr
    result = run_cli("keys", "trian")
    assert result.returncode == 2 and "did you mean 'train'" in result.stderr
    result = run_cli("trian")
    assert result.returncode == 2 and "invalid choice" in result.stderr


def test_what_is_not_available_yet_is_said_plainly(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "model_name_or_path: builtin:tiny-llama\ndo_train: true\ndataset: demo_alpaca\n"
        "output_dir: out\nper_device_train_batch_size: 4\ngradient_accumulation_steps: 2\n"
        "ray_num_workers: 2\nreport_to: swanlab\n"
    )
    assert main(["train", str(cfg)]) == 3
    captured = capsys.readouterr()
    assert "4 per worker x 2 workers x 2 accumulation = 16 per step" in captured.out
    assert "cannot train this config yet" in captured.err
    assert f"report_to ({cfg}:8): report_to swanlab" in captured.err
    assert not (tmp_path / "out").exists()
    assert main(["webui"]) == 3


def test_keys_lists_every_key(capsys):
    from raytune_llm.config import KEY_OWNER

    assert main(["keys"]) == 0
    out = capsys.readouterr().out
    assert all(f"  {key}:" in out for key in KEY_OWNER)
    assert main(["keys", "ray", "--yaml"]) == 0
    assert "# Training workers" in capsys.readouterr().out


def test_version():
    result = run_cli("version")
    assert result.returncode == 0 and result.stdout.startswith("raytune-llm 0.")
    assert run_cli("--version").stdout == result.stdout


def test_help_and_validate_import_nothing_heavy(tmp_path):
    """`--help` and `validate` must answer fast: no torch, ray or transformers at start-up."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model_name_or_path: builtin:tiny-llama\n")
    probe = (
        "import sys\n"
        "from raytune_llm.cli.main import main\n"
        f"assert main(['validate', {str(cfg)!r}]) == 0\n"
        "heavy = {'torch', 'ray', 'transformers', 'peft', 'datasets', 'numpy'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_env_without_ray():
    result = run_cli("env", "--no-ray")
    assert result.returncode == 0, result.stderr
    for name in ("torch", "ray", "transformers", "GPU", "deepspeed ops", "vllm", "bitsandbytes"):
        assert name in result.stdout
    assert "no CUDA device" in result.stdout or "CUDA" in result.stdout


def test_tiny_builds_a_loadable_model_and_never_overwrites_silently(tmp_path):
    from transformers import AutoConfig

    out = tmp_path / "tiny"
    result = run_cli("tiny", str(out), "--arch", "tiny-qwen2", "--num-layers", "1")
    assert result.returncode == 0, result.stderr
    assert AutoConfig.from_pretrained(out).num_hidden_layers == 1
    again = run_cli("tiny", str(out))
    assert again.returncode == 2 and "--overwrite" in again.stderr
    assert "Traceback" not in again.stderr
    assert AutoConfig.from_pretrained(out).model_type == "qwen2"


def test_builtin_names_agree_with_the_kit():
    from raytune_llm.config.model import BUILTIN_MODELS
    from raytune_llm.model.tiny import TINY_MODELS

    assert set(BUILTIN_MODELS) == set(TINY_MODELS)
