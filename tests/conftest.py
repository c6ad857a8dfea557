"""Session-wide test setup: never reach the Hugging Face hub; build tiny models once."""

import os

# Set before anything imports huggingface_hub / transformers / datasets.
for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ[_var] = "1"

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory):
    """A tiny Llama-3-style model + tokenizer directory, built once per session."""
    from raytune_llm.model.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-llama", "tiny-llama")


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tmp_path_factory):
    """A tiny Qwen2-style model + tokenizer directory, built once per session."""
    from raytune_llm.model.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-qwen2", "tiny-qwen2")


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray instance (2 CPUs) shared by every test that asks for it; shut down at the end."""
    import ray
    import ray.data

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, address="local")
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="session")
def tiny_lora_adapters(tiny_llama_dir, tmp_path_factory):
    """Two LoRA adapters of the tiny Llama made directly with peft, with different random
    weights (so they answer differently): {"alpha": path, "beta": path}."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("lora-adapters")
    for seed, name in enumerate(("alpha", "beta")):
        torch.manual_seed(seed)
        base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
        lora = LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False)
        get_peft_model(base, lora).save_pretrained(root / name)
    return {"alpha": str(root / "alpha"), "beta": str(root / "beta")}
