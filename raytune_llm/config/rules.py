"""Checks across keys: contradictions no single key's type can express.

Each rule looks at a config whose sections each validated on their own and yields
``(key, message)`` pairs. Rules never import torch, ray or the datasets themselves; checks that
need the data (ranking data with stage sft, say) belong to the data pipeline.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

from .config import Config
from .tune import tune_problems

Rule = Callable[[Config], Iterator[tuple[str, str]]]
RULES: list[Rule] = []


def rule(fn: Rule) -> Rule:
    RULES.append(fn)
    return fn


@rule
def _precision(cfg: Config) -> Iterator[tuple[str, str]]:
    if cfg.train.bf16 and cfg.train.fp16:
        yield "fp16", "bf16 and fp16 are both true; set only one of them"


@rule
def _quantized_training(cfg: Config) -> Iterator[tuple[str, str]]:
    ft = cfg.finetuning.finetuning_type
    if cfg.model.quantization_bit and cfg.train.do_train and ft != "lora":
        yield (
            "quantization_bit",
            f"training a quantized model (QLoRA) needs finetuning_type: lora, got {ft}; "
            "remove quantization_bit or use lora",
        )
    if cfg.model.adapter_name_or_path and ft != "lora":
        yield "adapter_name_or_path", f"adapters need finetuning_type: lora, got {ft}"
    if cfg.model.quantization_bit:
        for key in ("pissa_init", "create_new_adapter"):
            if getattr(cfg.finetuning, key):
                yield key, "cannot be used with a quantized model (quantization_bit)"
        if cfg.model.resize_vocab:
            yield "resize_vocab", "cannot be used with a quantized model (quantization_bit)"
    if cfg.model.quantization_device_map and cfg.train.do_train:
        yield "quantization_device_map", "is for inference only; remove it to train"


@rule
def _datasets(cfg: Config) -> Iterator[tuple[str, str]]:
    tr, data = cfg.train, cfg.data
    if tr.do_train and not data.dataset:
        yield "dataset", "do_train is true but no dataset is named; name one from dataset_info.json"
    if tr.do_predict and not (data.eval_dataset or data.dataset):
        yield "eval_dataset", "do_predict is true but no dataset or eval_dataset is named"
    has_eval = bool(data.eval_dataset) or data.val_size > 0
    if tr.do_eval and not has_eval and not tr.do_predict:
        yield (
            "eval_dataset",
            "do_eval is true but there is no eval data; set eval_dataset or val_size",
        )
    if tr.eval_strategy != "no" and not has_eval:
        yield (
            "eval_strategy",
            (
                f"eval_strategy is {tr.eval_strategy!r} but there is no eval data; set "
                "eval_dataset or val_size, or eval_strategy: no"
            ),
        )
    if data.val_size > 0 and data.eval_dataset:
        yield "val_size", "cannot be used with eval_dataset; keep one of them"
    if data.val_size >= 1 and data.val_size != int(data.val_size):
        yield "val_size", f"got {data.val_size}; give a fraction below 1 or a whole count"
    if data.interleave_probs is not None:
        if data.mix_strategy == "concat":
            yield "interleave_probs", "is only used with mix_strategy interleave_under/over"
        elif data.dataset and len(data.interleave_probs) != len(data.dataset):
            yield (
                "interleave_probs",
                (f"has {len(data.interleave_probs)} values for {len(data.dataset)} datasets"),
            )
    if data.neat_packing and data.packing is False:
        yield "neat_packing", "neat_packing is a kind of packing; it cannot go with packing: false"


@rule
def _outputs(cfg: Config) -> Iterator[tuple[str, str]]:
    tr = cfg.train
    if (tr.do_train or tr.do_predict) and not tr.output_dir:
        yield "output_dir", "required when do_train or do_predict is true"
    if tr.load_best_model_at_end and tr.eval_strategy != tr.save_strategy:
        yield (
            "load_best_model_at_end",
            (
                f"needs eval_strategy ({tr.eval_strategy}) equal to save_strategy "
                f"({tr.save_strategy})"
            ),
        )
    if tr.predict_with_generate and cfg.finetuning.stage != "sft":
        yield "predict_with_generate", f"only works with stage sft, got {cfg.finetuning.stage}"
    if "none" in tr.report_to and len(tr.report_to) > 1:
        yield "report_to", "'none' cannot be combined with other trackers"
    if tr.push_to_hub and not (tr.hub_model_id or tr.output_dir):
        yield "hub_model_id", "push_to_hub needs hub_model_id or output_dir"


@rule
def _stages(cfg: Config) -> Iterator[tuple[str, str]]:
    ft = cfg.finetuning
    if ft.stage == "ppo" and cfg.train.do_train and not ft.reward_model:
        yield "reward_model", "stage ppo needs a reward_model"
    data = cfg.data
    if ft.stage != "sft":
        for key in ("neat_packing", "train_on_prompt", "mask_history"):
            if getattr(data, key):
                yield key, f"only works with stage sft, got {ft.stage}"
    if data.mask_history and data.train_on_prompt:
        yield "mask_history", "cannot be used with train_on_prompt"
    if ft.stage == "sft" and cfg.train.do_predict and not cfg.train.predict_with_generate:
        yield "predict_with_generate", "do_predict with stage sft needs predict_with_generate: true"
    yield from _preference(cfg)
    if ft.dpo_label_smoothing > 0 and ft.pref_loss != "sigmoid":
        yield "dpo_label_smoothing", f"only works with pref_loss sigmoid, got {ft.pref_loss}"
    if ft.stage == "ppo" and ft.reward_model_type == "lora" and ft.finetuning_type != "lora":
        yield "reward_model_type", "a lora reward model needs finetuning_type: lora"
    if ft.finetuning_type != "lora":
        for key in ("use_rslora", "use_dora", "pissa_init", "loraplus_lr_ratio"):
            if getattr(ft, key):
                yield key, f"only works with finetuning_type lora, got {ft.finetuning_type}"
    if ft.freeze_trainable_layers == 0:
        yield "freeze_trainable_layers", "must not be 0 (positive: last layers, negative: first)"


PREFERENCE_LOSSES = {"dpo": ("sigmoid", "hinge", "ipo", "kto_pair", "orpo", "simpo"),
                     "orpo": ("orpo",)}  # fmt: skip
REFERENCE_STAGES = ("dpo", "kto", "ppo")


def _preference(cfg: Config) -> Iterator[tuple[str, str]]:
    """The preference keys against the stage (pref_loss, packing, the reference model)."""
    ft, data, given = cfg.finetuning, cfg.data, cfg.user_keys
    if "pref_loss" in given:
        valid = PREFERENCE_LOSSES.get(ft.stage, ())
        if ft.pref_loss not in valid:
            why = f"valid for stage {ft.stage}: {', '.join(valid)}" if valid else (
                f"stage {ft.stage} takes no pref_loss; it is for stage dpo "
                f"({', '.join(PREFERENCE_LOSSES['dpo'])}) and orpo")  # fmt: skip
            yield "pref_loss", f"got {ft.pref_loss!r}; {why}"
    if data.packing and ft.stage not in ("pt", "sft"):
        yield "packing", f"stage {ft.stage} trains on whole examples; remove packing: true"
    free = ft.stage == "orpo" or (ft.stage == "dpo" and ft.pref_loss in ("orpo", "simpo"))
    uses_reference = ft.stage in REFERENCE_STAGES and not free
    for key in ("ref_model", "ref_model_adapters", "ref_model_quantization_bit"):
        if getattr(ft, key) and not uses_reference:
            loss = f" with pref_loss {ft.pref_loss}" if ft.stage == "dpo" else ""
            yield key, f"stage {ft.stage}{loss} uses no reference model; remove {key}"
    if (ft.ref_model_adapters or ft.ref_model_quantization_bit) and not ft.ref_model:
        yield "ref_model", "ref_model_adapters and ref_model_quantization_bit need a ref_model"


@rule
def _engines(cfg: Config) -> Iterator[tuple[str, str]]:
    tr = cfg.train
    if tr.deepspeed and tr.fsdp:
        yield "fsdp", "DeepSpeed and FSDP cannot be used together; keep one of deepspeed and fsdp"
    if isinstance(tr.deepspeed, str):
        path = Path(tr.deepspeed)
        if not path.is_file():
            yield "deepspeed", f"file not found: {tr.deepspeed} (looked in {Path.cwd()})"
        else:
            try:
                json.loads(path.read_text())
            except (OSError, ValueError) as err:
                yield "deepspeed", f"{tr.deepspeed} is not valid JSON: {err}"


@rule
def _export(cfg: Config) -> Iterator[tuple[str, str]]:
    ex = cfg.export
    if ex.export_quantization_bit and not ex.export_quantization_dataset:
        yield "export_quantization_dataset", "export_quantization_bit needs a calibration dataset"
    if ex.export_quantization_bit and cfg.model.adapter_name_or_path:
        yield (
            "export_quantization_bit",
            "cannot quantize together with adapters: export the merged model first (without "
            "export_quantization_bit), then quantize that export_dir as model_name_or_path",
        )
    if ex.export_format == "gguf":
        if ex.export_quantization_bit:
            yield (
                "export_quantization_bit",
                "is GPTQ, which gguf does not hold; choose a gguf type with export_gguf_type "
                "(q8_0, q4_0, f16, bf16, f32) instead",
            )
        if ex.export_legacy_format:
            yield "export_legacy_format", "writes .bin files; it cannot go with export_format gguf"


@rule
def _tune(cfg: Config) -> Iterator[tuple[str, str]]:
    yield from tune_problems(cfg)


def cross_check(cfg: Config) -> list[tuple[str, str]]:
    """Run every rule and return the problems found, as (key, message) pairs."""
    return [problem for check in RULES for problem in check(cfg)]


def cross_warnings(cfg: Config) -> list[str]:
    """Settings that are legal but probably not what the user meant."""
    tr = cfg.train
    out = []
    if tr.warmup_steps > 0 and tr.warmup_ratio > 0:
        out.append("warmup_steps and warmup_ratio are both set; warmup_steps wins")
    if tr.max_steps > 0 and "num_train_epochs" in cfg.user_keys:
        out.append("max_steps and num_train_epochs are both set; max_steps wins")
    return out
