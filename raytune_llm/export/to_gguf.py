"""Write the merged weights as one GGUF file (llama.cpp, Ollama) with the ``gguf`` package.

As llama.cpp's ``convert_hf_to_gguf.py`` does for the Llama and Qwen2 architectures: tensor names
from gguf's name map, Llama's q/k projections permuted to llama.cpp's rotary layout, 1-D tensors
(norms, biases) kept in f32, the hyperparameters under ``<arch>.*``, and the BPE tokenizer as a
``gpt2`` vocabulary (tokens, token types, merges, special ids, chat template). Tensors are
quantized and written one at a time, so memory holds one tensor, not the model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from ..utils.errors import UserError

ARCHS = {"llama": "LLAMA", "qwen2": "QWEN2"}
FILE_TYPES = {"f32": "ALL_F32", "f16": "MOSTLY_F16", "bf16": "MOSTLY_BF16",
              "q8_0": "MOSTLY_Q8_0", "q4_0": "MOSTLY_Q4_0"}  # fmt: skip
# Pre-tokenizer split regexes llama.cpp knows by name (tokenizer.ggml.pre).
PRE_TOKENIZERS = {
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+": "llama-bpe",
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+": "qwen2",
}


class Weights(Protocol):
    def layout(self) -> list[tuple[str, torch.dtype, tuple[int, ...]]]: ...
    def get(self, name: str) -> torch.Tensor: ...


def gguf_name(gguf_type: str) -> str:
    """The file name of a gguf export: ``model-q8_0.gguf``."""
    return f"model-{gguf_type}.gguf"


def check_gguf_model(config: dict[str, Any]) -> None:
    """Refuse, before anything is written, a model this writer cannot convert."""
    kind = config.get("model_type")
    if kind not in ARCHS:
        raise UserError(
            f"export_format gguf: model_type {kind!r} is not supported; raytune-llm writes gguf "
            f"for {', '.join(ARCHS)} models (use export_format: safetensors and llama.cpp's "
            "convert_hf_to_gguf.py for others)"
        )
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) not in ("default", None):
        raise UserError(
            f"export_format gguf: rope scaling {rope.get('rope_type')!r} is not supported yet; "
            "export safetensors and convert with llama.cpp's convert_hf_to_gguf.py"
        )


def _permute(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """llama.cpp's rotary layout for Llama's q/k rows (convert_hf_to_gguf's ``permute``)."""
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def _qtype(gguf: Any, gguf_type: str, gname: str, shape: tuple[int, ...]) -> Any:
    q = gguf.GGMLQuantizationType
    if len(shape) < 2 or gguf_type == "f32":
        return q.F32
    want = {"f16": q.F16, "bf16": q.BF16, "q8_0": q.Q8_0, "q4_0": q.Q4_0}[gguf_type]
    if want == q.Q4_0 and gname in ("token_embd.weight", "output.weight"):
        want = q.Q8_0  # as llama-quantize, the embeddings and output keep more bits
    block = gguf.GGML_QUANT_SIZES[want][0]
    return want if shape[-1] % block == 0 else q.F16


def _metadata(writer: Any, config: dict[str, Any], gguf: Any, gguf_type: str, name: str) -> None:
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    rope = config.get("rope_parameters") or {}
    writer.add_name(name)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(config.get("num_key_value_heads", heads))
    writer.add_rope_freq_base(float(rope.get("rope_theta", config.get("rope_theta", 10000.0))))
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_vocab_size(config["vocab_size"])
    writer.add_rope_dimension_count(head_dim)
    if head_dim != config["hidden_size"] // heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_file_type(getattr(gguf.LlamaFileType, FILE_TYPES[gguf_type]))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _tokenizer(writer: Any, folder: Path, vocab_size: int, gguf: Any) -> None:
    """The BPE vocabulary of the tokenizer saved in ``folder`` (tokenizer.json)."""
    data = json.loads((folder / "tokenizer.json").read_text())
    if data.get("model", {}).get("type") != "BPE":
        raise UserError("export_format gguf needs a BPE tokenizer (tokenizer.json of type BPE)")
    tokens = [f"[PAD{i}]" for i in range(vocab_size)]
    types = [gguf.TokenType.UNUSED] * vocab_size
    for token, i in data["model"]["vocab"].items():
        if i < vocab_size:
            tokens[i], types[i] = token, gguf.TokenType.NORMAL
    for added in data.get("added_tokens", []):
        if added["id"] < vocab_size:
            tokens[added["id"]] = added["content"]
            kind = gguf.TokenType.CONTROL if added.get("special") else gguf.TokenType.USER_DEFINED
            types[added["id"]] = kind
    pre = data.get("pre_tokenizer") or {}
    splits = [p for p in pre.get("pretokenizers", [pre]) if p.get("type") == "Split"]
    regex = splits[0].get("pattern", {}).get("Regex") if splits else None
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(PRE_TOKENIZERS.get(regex or "", "default"))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    gguf.SpecialVocab(folder, load_merges=True, n_vocab=vocab_size).add_to_gguf(writer, quiet=True)


def write_gguf(
    path: Path, weights: Weights, config: dict[str, Any], tokenizer_dir: Path, gguf_type: str
) -> None:
    """Write ``path`` from the weights, the HF config and the saved tokenizer.

    Args:
        path: the .gguf file to write.
        weights: the (merged) weights, read one tensor at a time.
        config: the model's config.json as a dict.
        tokenizer_dir: a folder holding the exported tokenizer.json / tokenizer_config.json.
        gguf_type: f32, f16, bf16, q8_0 or q4_0.
    """
    import gguf

    check_gguf_model(config)
    arch = getattr(gguf.MODEL_ARCH, ARCHS[config["model_type"]])
    names = gguf.get_tensor_name_map(arch, config["num_hidden_layers"])
    writer = gguf.GGUFWriter(path, gguf.MODEL_ARCH_NAMES[arch])
    _metadata(writer, config, gguf, gguf_type, tokenizer_dir.name)
    _tokenizer(writer, tokenizer_dir, config["vocab_size"], gguf)
    plan = []
    for name, _, shape in weights.layout():
        gname = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if gname is None:
            raise UserError(f"export_format gguf: no gguf name for tensor {name}")
        qtype = _qtype(gguf, gguf_type, gname, shape)
        nbytes = int(np.prod(gguf.quant_shape_to_byte_shape(shape, qtype)))
        writer.add_tensor_info(gname, shape, np.float32, nbytes, raw_dtype=qtype)
        plan.append((name, qtype))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    heads, kv_heads = config["num_attention_heads"], config.get("num_key_value_heads")
    for name, qtype in plan:
        w = weights.get(name).float()
        if config["model_type"] == "llama" and name.endswith("q_proj.weight"):
            w = _permute(w, heads)
        elif config["model_type"] == "llama" and name.endswith("k_proj.weight"):
            w = _permute(w, kv_heads or heads)
        writer.write_tensor_data(gguf.quants.quantize(w.numpy(), qtype))
    writer.close()
