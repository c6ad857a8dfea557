"""Tiny Llama / Qwen2-architecture models with real-family tokenizers, built locally.

Tests and demos never download a model: `build_tiny_model` writes a directory that
`AutoModelForCausalLM.from_pretrained` and `AutoTokenizer.from_pretrained` load offline, and
`ensure_builtin_model` caches one per kit version. Everything is deterministic: the same call gives
byte-identical model.safetensors and tokenizer.json.

The tokenizer is a byte-level BPE trained with `tokenizers` on a fixed corpus (generic English plus
the demo tasks' phrases), with the pre-tokenizer regex, special tokens (same order, at the end of
the vocabulary) and chat template of the real family: Llama-3 (Meta-Llama-3-8B-Instruct) and
Qwen2 / Qwen2.5 (ChatML; default system "You are a helpful assistant.").

    python -c "from raytune_llm.model.tiny import build_tiny_model; build_tiny_model('m')"
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import torch
from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
)
from tokenizers.trainers import BpeTrainer
from transformers import (
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from raytune_llm.model._tiny_text import CHAT_TEMPLATES, PRETOKENIZE_REGEX, corpus
from raytune_llm.utils.files import publish

# Bump when anything that changes the built files changes: cached built-ins then rebuild.
KIT_VERSION = "1"
DEFAULT_TOKENIZER_VOCAB_SIZE = 2048

# Overrides for the ~30M-parameter benchmark model (29.4M with the default vocabulary).
BENCH_30M_OVERRIDES: dict[str, int] = {
    "hidden_size": 512,
    "num_layers": 8,
    "num_heads": 8,
    "num_kv_heads": 8,
    "intermediate_size": 1536,
}


@dataclass(frozen=True)
class TinyModelSpec:
    """Everything that makes a tiny model look like its real family.

    Attributes:
        family: "llama" or "qwen2"; picks the chat template and config class.
        special_tokens: Special tokens in the real family's id order, appended after the BPE
            vocabulary ("<|reserved_...|>" placeholders keep offsets equal to the real ones).
        added_tokens: Non-special added tokens (single ids, kept in decoded text).
        bos_token / eos_token / pad_token: The tokenizer's named tokens (bos None for Qwen2).
        config_bos / config_eos: bos_token_id / eos_token_id written to config.json.
        generation_eos: eos_token_id list of generation_config.json.
        add_bos: Whether encoding prepends bos (Llama-3 does, Qwen2 does not).
        tie_word_embeddings, rope_theta, rms_norm_eps: As in the real family's config.json.
    """

    family: str
    special_tokens: tuple[str, ...]
    added_tokens: tuple[str, ...]
    bos_token: str | None
    eos_token: str
    pad_token: str
    config_bos: str
    config_eos: str
    generation_eos: tuple[str, ...]
    add_bos: bool
    tie_word_embeddings: bool
    rope_theta: float
    rms_norm_eps: float
    defaults: dict[str, int] = field(
        default_factory=lambda: {
            "hidden_size": 64,
            "num_layers": 2,
            "num_heads": 4,
            "num_kv_heads": 2,
            "max_position_embeddings": 2048,
        }
    )


TINY_MODELS: dict[str, TinyModelSpec] = {
    "tiny-llama": TinyModelSpec(
        family="llama",
        special_tokens=(
            "<|begin_of_text|>",
            "<|end_of_text|>",
            "<|reserved_special_token_0|>",
            "<|reserved_special_token_1|>",
            "<|finetune_right_pad_id|>",
            "<|reserved_special_token_2|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|eom_id|>",
            "<|eot_id|>",
            "<|python_tag|>",
        ),
        added_tokens=(),
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        pad_token="<|finetune_right_pad_id|>",
        config_bos="<|begin_of_text|>",
        config_eos="<|eot_id|>",
        generation_eos=("<|end_of_text|>", "<|eot_id|>"),
        add_bos=True,
        tie_word_embeddings=False,
        rope_theta=500000.0,
        rms_norm_eps=1e-5,
    ),
    "tiny-qwen2": TinyModelSpec(
        family="qwen2",
        special_tokens=("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
        added_tokens=("<tool_call>", "</tool_call>"),
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        config_bos="<|endoftext|>",
        config_eos="<|im_end|>",
        generation_eos=("<|im_end|>", "<|endoftext|>"),
        add_bos=False,
        tie_word_embeddings=True,
        rope_theta=1000000.0,
        rms_norm_eps=1e-6,
    ),
}

_CLASSES = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}
_OVERRIDE_KEYS = {
    "hidden_size": "hidden_size",
    "num_layers": "num_hidden_layers",
    "num_heads": "num_attention_heads",
    "num_kv_heads": "num_key_value_heads",
    "intermediate_size": "intermediate_size",
    "vocab_size": "vocab_size",
    "max_position_embeddings": "max_position_embeddings",
}


def _spec(name: str) -> TinyModelSpec:
    if name not in TINY_MODELS:
        raise ValueError(f"unknown tiny model {name!r}; choose one of {sorted(TINY_MODELS)}")
    return TINY_MODELS[name]


@lru_cache(maxsize=8)
def _tokenizer_json(name: str, vocab_size: int) -> str:
    """Train the byte-level BPE of `name` (cached per process: training takes a moment)."""
    spec = _spec(name)
    extra = len(spec.special_tokens) + len(spec.added_tokens)
    if vocab_size < 256 + extra + 1:
        raise ValueError(
            f"tokenizer_vocab_size={vocab_size} is too small: it must be > {256 + extra}"
        )
    tok = Tokenizer(models.BPE(ignore_merges=spec.family == "llama"))
    if spec.family == "qwen2":  # as Qwen's tokenizer.json (and transformers' Qwen2Tokenizer)
        tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX[spec.family]), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(
        vocab_size=vocab_size - extra,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(), trainer=trainer)
    tok.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in spec.special_tokens]
    )
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in spec.added_tokens])
    byte_level = processors.ByteLevel(trim_offsets=False)
    if spec.add_bos:
        bos = spec.bos_token
        template = processors.TemplateProcessing(
            single=f"{bos} $A",
            pair=f"{bos} $A {bos} $B",
            special_tokens=[(bos, tok.token_to_id(bos))],
        )
        tok.post_processor = processors.Sequence([byte_level, template])
    else:
        tok.post_processor = byte_level
    return tok.to_str(pretty=True)


def build_tokenizer(
    name: str = "tiny-llama", vocab_size: int = DEFAULT_TOKENIZER_VOCAB_SIZE
) -> PreTrainedTokenizerFast:
    """Build the tiny family tokenizer as a `PreTrainedTokenizerFast` with its chat template.

    Args:
        name: A key of `TINY_MODELS`.
        vocab_size: Total tokens, special and added ones included (BPE may stop a little short).

    Returns:
        The tokenizer (transformers' fast tokenizer), bos/eos/pad set as in the real family.
    """
    spec = _spec(name)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json(name, vocab_size)),
        bos_token=spec.bos_token,
        eos_token=spec.eos_token,
        pad_token=spec.pad_token,
        unk_token=None,
        model_max_length=spec.defaults["max_position_embeddings"],
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = CHAT_TEMPLATES[spec.family]
    return tokenizer


def _model_config(
    name: str, tokenizer: PreTrainedTokenizerFast, vocab: int, overrides: dict[str, int]
) -> tuple[LlamaConfig | Qwen2Config, type[LlamaForCausalLM | Qwen2ForCausalLM]]:
    spec = _spec(name)
    unknown = sorted(set(overrides) - set(_OVERRIDE_KEYS))
    if unknown:
        raise ValueError(f"unknown override(s) {unknown}; allowed: {sorted(_OVERRIDE_KEYS)}")
    values = {**spec.defaults, **overrides}
    values.setdefault("intermediate_size", 2 * values["hidden_size"])
    values.setdefault("vocab_size", vocab)
    if values["vocab_size"] < len(tokenizer):
        raise ValueError(
            f"vocab_size={values['vocab_size']} < the tokenizer's {len(tokenizer)} tokens"
        )
    if values["hidden_size"] % values["num_heads"] or values["num_heads"] % values["num_kv_heads"]:
        raise ValueError(
            f"hidden_size={values['hidden_size']} must divide by num_heads={values['num_heads']}, "
            f"which must divide by num_kv_heads={values['num_kv_heads']}"
        )
    ids = tokenizer.convert_tokens_to_ids
    kwargs = {_OVERRIDE_KEYS[k]: v for k, v in values.items()}
    kwargs.update(
        bos_token_id=ids(spec.config_bos),
        eos_token_id=ids(spec.config_eos),
        pad_token_id=ids(spec.pad_token),
        tie_word_embeddings=spec.tie_word_embeddings,
        rms_norm_eps=spec.rms_norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": spec.rope_theta},
        dtype="float32",
    )
    config_class, model_class = _CLASSES[spec.family]
    return config_class(**kwargs), model_class


def tiny_model_config(
    name: str = "tiny-llama",
    *,
    tokenizer_vocab_size: int = DEFAULT_TOKENIZER_VOCAB_SIZE,
    **overrides: int,
) -> LlamaConfig | Qwen2Config:
    """The model config `build_tiny_model` would write, without building anything on disk.

    Useful to size a model first, e.g. ``AutoModelForCausalLM.from_config(cfg)`` under
    ``torch.device("meta")`` to count parameters. Arguments are those of `build_tiny_model`.
    """
    tokenizer = build_tokenizer(name, tokenizer_vocab_size)
    return _model_config(name, tokenizer, tokenizer_vocab_size, overrides)[0]


def _write_model(directory: Path, name: str, seed: int, vocab: int, overrides: dict) -> None:
    spec = _spec(name)
    tokenizer = build_tokenizer(name, vocab)
    config, model_class = _model_config(name, tokenizer, vocab, overrides)
    tokenizer.model_max_length = config.max_position_embeddings
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(config).eval()
    ids = tokenizer.convert_tokens_to_ids
    model.generation_config = GenerationConfig(
        bos_token_id=ids(spec.config_bos),
        eos_token_id=[ids(t) for t in spec.generation_eos],
        pad_token_id=ids(spec.pad_token),
    )
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def _is_complete(directory: Path) -> bool:
    names = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json")
    return all((directory / n).is_file() for n in names)


def build_tiny_model(
    output_dir: str | os.PathLike,
    name: str = "tiny-llama",
    *,
    overwrite: bool = False,
    seed: int = 0,
    tokenizer_vocab_size: int = DEFAULT_TOKENIZER_VOCAB_SIZE,
    **overrides: int,
) -> Path:
    """Build a tiny model + tokenizer directory, loadable offline with the Auto classes.

    The files are written into a temporary folder beside `output_dir` and renamed into place, so a
    crash never leaves a half-written model.

    Args:
        output_dir: Target directory; must not exist or be empty unless `overwrite`.
        name: A key of `TINY_MODELS`: "tiny-llama" or "tiny-qwen2".
        overwrite: Replace a non-empty `output_dir`.
        seed: Seed of the weight initialisation.
        tokenizer_vocab_size: Size of the trained tokenizer (special tokens included).
        **overrides: hidden_size, num_layers, num_heads, num_kv_heads, intermediate_size (default
            2 * hidden_size), vocab_size (model embedding rows, >= the tokenizer's size) and
            max_position_embeddings. `BENCH_30M_OVERRIDES` gives a ~30M-parameter model.

    Returns:
        The absolute path of the built directory.

    Raises:
        ValueError: For an unknown name or override, or a non-empty `output_dir` without
            `overwrite`.
    """
    out = Path(output_dir).expanduser().absolute()
    _spec(name)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise ValueError(
            f"{out} already exists and is not an empty directory; pass overwrite=True to replace it"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        _write_model(tmp, name, seed, tokenizer_vocab_size, overrides)
        tmp.chmod(0o755)
        publish(tmp, out, overwrite=overwrite)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def default_cache_dir() -> Path:
    """The built-in models' cache: $RAYTUNE_LLM_CACHE/models, else ~/.cache/raytune_llm/models."""
    root = os.environ.get("RAYTUNE_LLM_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "raytune_llm"
    return base / "models"


def ensure_builtin_model(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Return the cached directory of a built-in tiny model, building it on first use.

    Safe when several processes call it at once: each builds into a temporary folder and renames
    it into place; a loser of the race discards its copy and uses the winner's.

    Args:
        name: "tiny-llama" or "tiny-qwen2".
        cache_dir: Cache root; defaults to `default_cache_dir()`.

    Returns:
        The model directory, ``<cache_dir>/<name>-kit<KIT_VERSION>``.
    """
    _spec(name)
    root = Path(cache_dir).expanduser().absolute() if cache_dir else default_cache_dir()
    target = root / f"{name}-kit{KIT_VERSION}"
    if _is_complete(target):
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=root))
    try:
        _write_model(tmp, name, seed=0, vocab=DEFAULT_TOKENIZER_VOCAB_SIZE, overrides={})
        tmp.chmod(0o755)
        try:
            publish(tmp, target, overwrite=target.exists() and not _is_complete(target))
        except OSError:
            if not _is_complete(target):  # not a lost race: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
