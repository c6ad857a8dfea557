"""The serve: section is checked before Ray starts; its translation to ray.serve.llm's LLMConfig."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from raytune_llm.config import ConfigError, load_config
from raytune_llm.infer.vllm import vllm_available
from raytune_llm.serve.settings import (
    api_key,
    base_name,
    replica_resources,
    scaling_options,
    serve_args,
    served_adapters,
)
from raytune_llm.serve.vllm import build_vllm_app, llm_config_kwargs
from raytune_llm.utils.errors import UserError

EXE = Path(sys.executable).with_name("raytune-llm")
ROOT = Path(__file__).resolve().parents[2]
BASE = {"model_name_or_path": "meta-llama/Meta-Llama-3-8B-Instruct", "template": "llama3"}


def cfg(serve=None, **keys):
    values = {**BASE, **keys}
    if serve is not None:
        values["serve"] = serve
    return load_config(None, values=values)


def problems(serve) -> dict[str, str]:
    with pytest.raises(ConfigError) as err:
        serve_args(cfg(serve))
    return {p.key: p.message for p in err.value.problems}


def test_defaults_bind_loopback_with_one_cpu_replica(monkeypatch):
    for var in ("RAYTUNE_LLM_API_KEY", "API_KEY"):
        monkeypatch.delenv(var, raising=False)
    c = cfg()
    args = serve_args(c)
    assert (args.host, args.port, args.route_prefix, args.batching) == (
        "127.0.0.1",
        8000,
        "/",
        True,
    )
    assert base_name(c, args) == "Meta-Llama-3-8B-Instruct" and served_adapters(c, args) == {}
    assert replica_resources(c, args) == {"num_cpus": 1.0, "num_gpus": 0.0}
    assert scaling_options(args) == {"num_replicas": 1} and api_key(args) is None


def test_every_bad_setting_is_named_at_once():
    found = problems(
        {
            "prot": 80,
            "port": 0,
            "route_prefix": "v1",
            "autoscaling": {"min_replicas": 3, "max_replicas": 2},
            "max_batch_size": 0,
        }
    )
    assert "did you mean 'port'" in found["serve.prot"]
    assert "greater than or equal to 1" in found["serve.port"]
    assert "start with '/'" in found["serve.route_prefix"]
    assert "min_replicas (3) is above max_replicas (2)" in found["serve.autoscaling"]
    assert "serve.max_batch_size" in found
    assert "not both" in problems({"num_replicas": 2, "autoscaling": {}})["serve"]


def test_adapters_resources_and_key_resolve(tmp_path, monkeypatch):
    (tmp_path / "sft").mkdir()
    c = cfg(
        {"adapters": {"sql": "org/sql-lora"}, "autoscaling": {"max_replicas": 4}},
        adapter_name_or_path=str(tmp_path / "sft"),
        finetuning_type="lora",
        resources_per_worker={"CPU": 4, "GPU": 1},
    )
    args = serve_args(c)
    assert served_adapters(c, args) == {"sft": str(tmp_path / "sft"), "sql": "org/sql-lora"}
    assert replica_resources(c, args) == {"num_cpus": 4.0, "num_gpus": 1.0}
    assert scaling_options(args)["autoscaling_config"]["max_replicas"] == 4
    monkeypatch.setenv("API_KEY", "from-env")
    assert api_key(args) == "from-env"
    assert api_key(serve_args(cfg({"api_key": "given"}))) == "given"


def test_translation_to_llm_config_arguments():
    c = cfg(
        {
            "model_name": "llama3",
            "adapters": {"sql": "s3://bucket/loras/sql", "chat": "s3://bucket/loras/chat"},
            "max_adapters_per_replica": 2,
            "autoscaling": {"min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 4},
            "num_gpus": 2,
            "accelerator_type": "A100",
        },
        infer_backend="vllm",
        vllm_maxlen=2048,
        vllm_gpu_util=0.9,
        infer_dtype="bfloat16",
        vllm_config={"max_num_seqs": 64},
    )
    kwargs = llm_config_kwargs(c, serve_args(c))
    assert kwargs["model_loading_config"] == {
        "model_id": "llama3",
        "model_source": "meta-llama/Meta-Llama-3-8B-Instruct",
    }
    assert kwargs["lora_config"] == {
        "dynamic_lora_loading_path": "s3://bucket/loras",
        "max_num_adapters_per_replica": 2,
    }
    engine = kwargs["engine_kwargs"]
    assert engine["max_model_len"] == 2048 and engine["gpu_memory_utilization"] == 0.9
    assert engine["dtype"] == "bfloat16" and engine["enforce_eager"] is False
    assert engine["enable_lora"] is True and engine["max_lora_rank"] == 32
    assert engine["tensor_parallel_size"] == 2 and engine["max_num_seqs"] == 64
    assert kwargs["deployment_config"]["autoscaling_config"] == {
        "min_replicas": 1,
        "max_replicas": 3,
        "target_ongoing_requests": 4,
    }
    assert kwargs["accelerator_type"] == "A100"
    plain = llm_config_kwargs(cfg(infer_backend="vllm"), serve_args(cfg()))
    assert "lora_config" not in plain and plain["deployment_config"]["num_replicas"] == 1


def test_vllm_adapters_must_share_one_remote_folder():
    c = cfg({"adapters": {"sql": "/local/loras/sql"}}, infer_backend="vllm")
    with pytest.raises(UserError, match="one remote folder"):
        llm_config_kwargs(c, serve_args(c))


@pytest.mark.skipif(vllm_available(), reason="vLLM is installed here")
def test_vllm_backend_without_vllm_is_refused_plainly():
    c = cfg(infer_backend="vllm")
    with pytest.raises(UserError, match="vLLM is not installed"):
        build_vllm_app(c, serve_args(c))


def test_cli_serve_with_a_bad_section_exits_2_before_ray(tmp_path):
    bad = tmp_path / "serve.yaml"
    bad.write_text(
        "model_name_or_path: builtin:tiny-llama\ntemplate: llama3\n"
        "serve:\n  port: 99999\n  max_batch_sise: 4\n"
    )
    result = subprocess.run(
        [str(EXE), "serve", str(bad)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert f"serve.port ({bad}:3)" in result.stderr
    assert "did you mean 'max_batch_size'" in result.stderr


@pytest.mark.parametrize("path", sorted((ROOT / "examples" / "serve").glob("*.yaml")), ids=str)
def test_serve_examples_have_valid_sections(path):
    c = load_config(path)
    args = serve_args(c)
    assert args.max_batch_size >= 1 and base_name(c, args)


def test_build_app_is_what_serve_config_v2_imports():
    from ray.serve import Application

    from raytune_llm.serve.app import build_app

    path = ROOT / "examples" / "serve" / "tiny_serve.yaml"
    assert isinstance(build_app({"config": str(path)}), Application)
    assert isinstance(
        build_app({"config": str(path), "overrides": ["serve.port=9000"]}), Application
    )
    with pytest.raises(ValueError, match="config"):
        build_app({})
    if not vllm_available():
        with pytest.raises(UserError, match="vLLM is not installed"):
            build_app({"config": str(path), "overrides": ["infer_backend=vllm"]})


def test_a_sweeps_best_adapter_is_served_when_promoted(tmp_path):
    from raytune_llm.serve.settings import promoted

    sweep = ROOT / "examples" / "tune" / "tiny_lora_sweep.yaml"
    cfg = load_config(sweep, [f"output_dir={tmp_path}", "tune.promote=serve"])
    with pytest.raises(UserError, match="holds no adapter yet; run `raytune-llm tune`"):
        promoted(cfg)
    (tmp_path / "best").mkdir()
    (tmp_path / "best" / "adapter_config.json").write_text("{}")
    assert served_adapters(cfg, serve_args(cfg)) == {"best": str(tmp_path / "best")}
    not_promoted = load_config(sweep, [f"output_dir={tmp_path}"])
    assert served_adapters(not_promoted, serve_args(not_promoted)) == {}
