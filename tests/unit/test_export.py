"""Export's pieces on their own: the streaming safetensors files, shard planning, which adapters
the streamed merge takes, the Modelfile, calibration windows and the config rules."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from raytune_llm.config import load_config
from raytune_llm.config.errors import ConfigError
from raytune_llm.export import safetensors_io as st
from raytune_llm.export.gptq import calibration_windows
from raytune_llm.export.run import output_dtype
from raytune_llm.export.weights import streamable_lora


def test_streamed_safetensors_file_reads_back_with_the_library(tmp_path):
    tensors = {
        "a": torch.randn(3, 5),
        "b": torch.randn(7).to(torch.bfloat16),
        "c": torch.arange(6, dtype=torch.int64).reshape(2, 3),
        "empty": torch.empty(0, 4),
    }
    outs = [st.OutTensor(k, v.dtype, tuple(v.shape)) for k, v in tensors.items()]
    st.write_file(tmp_path / "x.safetensors", outs, lambda t: tensors[t.name])
    with safe_open(tmp_path / "x.safetensors", "pt") as f:
        assert f.metadata() == {"format": "pt"}
        for k, v in tensors.items():
            assert torch.equal(f.get_tensor(k), v)
    # and our reader reads files the library wrote
    save_file(tensors, tmp_path / "y.safetensors")
    for info in st.read_header(tmp_path / "y.safetensors"):
        assert torch.equal(st.read_tensor(info), tensors[info.name])


def test_write_file_refuses_a_tensor_of_another_shape(tmp_path):
    outs = [st.OutTensor("a", torch.float32, (2, 2))]
    with pytest.raises(ValueError, match=r"planned shape \(2, 2\)"):
        st.write_file(tmp_path / "x.safetensors", outs, lambda t: torch.zeros(4))


def test_shards_hold_at_most_the_limit_and_a_big_tensor_goes_alone():
    outs = [st.OutTensor(f"t{i}", torch.float32, (n,)) for i, n in enumerate([10, 10, 30, 5, 5])]
    shards = st.plan_shards(outs, max_bytes=100)  # 40 + 40 + 120 + 20 + 20 bytes
    assert [[t.name for t in s] for s in shards] == [["t0", "t1"], ["t2"], ["t3", "t4"]]
    assert st.shard_names(1) == ["model.safetensors"]
    assert st.shard_names(2, "pytorch_model", "bin")[1] == "pytorch_model-00002-of-00002.bin"


def test_output_dtype_follows_llama_factory():
    fp32 = [("w", torch.float32, (2,)), ("ids", torch.int64, (2,))]
    fp16 = [("w", torch.float16, (2,))]
    assert output_dtype("auto", fp32) == torch.bfloat16
    assert output_dtype("auto", fp16) == torch.float16
    assert output_dtype("float32", fp16) == torch.float32


def _adapter(folder, config: dict, tensors: dict) -> None:
    folder.mkdir()
    base = {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "bias": "none", "use_dora": False}
    (folder / "adapter_config.json").write_text(json.dumps(base | config))
    save_file(tensors, folder / "adapter_model.safetensors")


def test_streamed_merge_takes_plain_lora_and_names_what_it_cannot(tmp_path):
    pair = {
        "base_model.model.model.q.lora_A.weight": torch.zeros(2, 4),
        "base_model.model.model.q.lora_B.weight": torch.zeros(4, 2),
    }
    _adapter(tmp_path / "plain", {"use_rslora": True}, pair)
    lora = streamable_lora(tmp_path / "plain")
    assert not isinstance(lora, str)
    assert list(lora.pairs) == ["model.q.weight"] and lora.scale == pytest.approx(4 / 2**0.5)
    _adapter(tmp_path / "dora", {"use_dora": True}, pair)
    assert streamable_lora(tmp_path / "dora") == "it uses use_dora"
    saved = {**pair, "base_model.model.lm_head.weight": torch.zeros(4, 4)}
    _adapter(tmp_path / "saved", {}, saved)
    assert "not a LoRA A/B matrix" in streamable_lora(tmp_path / "saved")


def test_calibration_windows_cut_the_token_stream(tiny_llama_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    texts = iter(["the cat sat on the mat"] * 50)
    windows = calibration_windows(texts, tokenizer, nsamples=4, maxlen=16)
    assert len(windows) == 4
    assert all(len(w["input_ids"][0]) == 16 == len(w["attention_mask"][0]) for w in windows)
    assert any(tokenizer.eos_token_id in w["input_ids"][0] for w in windows)


@pytest.mark.parametrize(
    ("overrides", "key", "said"),
    [
        (["export_quantization_bit=5"], "export_quantization_bit", "4, 8"),
        (["export_quantization_bit=4"], "export_quantization_dataset", "calibration dataset"),
        (
            ["export_quantization_bit=4", "export_quantization_dataset=d.json",
             "adapter_name_or_path=a", "finetuning_type=lora"],
            "export_quantization_bit",
            "cannot quantize together with adapters",
        ),
        (["export_format=gguf", "export_legacy_format=true"], "export_legacy_format", "gguf"),
        (["export_gguf_type=q5_k"], "export_gguf_type", "q8_0"),
    ],
)  # fmt: skip
def test_export_rules(overrides, key, said):
    with pytest.raises(ConfigError) as err:
        load_config(None, ["model_name_or_path=builtin:tiny-llama", *overrides])
    problems = {p.key: p.message for p in err.value.problems}
    assert key in problems and said in problems[key], problems


def test_modelfile_follows_the_template(tiny_qwen2_dir):
    from transformers import AutoTokenizer

    from raytune_llm.data.templates import get_template
    from raytune_llm.export.modelfile import modelfile

    tokenizer = AutoTokenizer.from_pretrained(tiny_qwen2_dir)
    template = get_template("qwen", tokenizer)
    template.fix_tokenizer(tokenizer)
    text = modelfile(template, tokenizer, "./model-q8_0.gguf", 32768)
    assert "FROM ./model-q8_0.gguf\n" in text and "PARAMETER num_ctx 4096" in text
    stops = [ln.split('"')[1] for ln in text.splitlines() if ln.startswith("PARAMETER stop")]
    assert stops == ["<|im_end|>"] + [w for w in template.stop_words if w != "<|im_end|>"]
    assert f'SYSTEM """{template.default_system}"""' in text
    assert "<|im_start|>user\n{{ .Content }}<|im_end|>\n<|im_start|>assistant\n" in text
