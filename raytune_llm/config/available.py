"""What this version cannot train yet, though the config is valid: refused before Ray starts.

``raytune-llm train`` and ``raytune-llm tune`` call :func:`check_trainable`; ``raytune-llm
validate`` calls it for a config that trains (``do_train: true``). These are refusals of a
feature, not mistakes: they exit with status 3, each naming its key and line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .deepspeed import read_deepspeed_config, zero_stage
from .errors import UnavailableError
from .finetuning import TRAINABLE_STAGES

if TYPE_CHECKING:
    from .config import Config


def unavailable(cfg: Config) -> list[tuple[str, str]]:
    """What the config asks of a training run that this version does not do yet, as
    (key, message) pairs, each message saying what to do instead."""
    t, out = cfg.train, []
    if cfg.finetuning.stage not in TRAINABLE_STAGES:
        stage = cfg.finetuning.stage
        out.append(("stage", f"stage {stage} (stages now: {', '.join(TRAINABLE_STAGES)})"))
    if not t.do_train and not t.do_predict:
        out.append(
            ("do_train", "do_train is false: set do_train: true (evaluation alone comes with eval)")
        )
    sharded = t.fsdp or (t.deepspeed and zero_stage(read_deepspeed_config(cfg) or {}) == 3)
    if cfg.model.quantization_bit and sharded:
        out.append(
            (
                "quantization_bit",
                "quantization_bit with FSDP or ZeRO-3 (QLoRA trains with DDP or ZeRO 0-2)",
            )
        )
    ft = cfg.finetuning
    frozen_copy = ft.finetuning_type != "lora" or ft.ref_model
    free = ft.stage == "dpo" and ft.pref_loss in ("orpo", "simpo")
    zero3 = t.deepspeed and zero_stage(read_deepspeed_config(cfg) or {}) == 3
    if zero3 and frozen_copy and ft.stage in ("dpo", "kto") and not free:
        kind = "ref_model" if ft.ref_model else f"finetuning_type {ft.finetuning_type}"
        out.append(
            (
                "deepspeed",
                f"stage {ft.stage} with ZeRO-3 and a reference model of its own ({kind}): use "
                "LoRA (its reference is the base with the adapter disabled), FSDP, or ZeRO 0-2",
            )
        )
    if t.torch_compile and t.deepspeed:
        out.append(("torch_compile", "torch_compile with DeepSpeed (compile with DDP or FSDP)"))
    if "swanlab" in t.report_to:
        out.append(("report_to", "report_to swanlab (use tensorboard, wandb or mlflow)"))
    if t.do_predict:
        out.append(
            (
                "do_predict",
                "do_predict: run `raytune-llm predict CONFIG` (after training with do_predict: "
                "false, with adapter_name_or_path or model_name_or_path set to the trained "
                "output_dir)"
                if t.do_train
                else "do_predict: this config predicts; run `raytune-llm predict CONFIG`",
            )
        )
    return out


def check_trainable(cfg: Config) -> None:
    """Refuse, before any Ray or model work, a config this version cannot train.

    Raises:
        UnavailableError: (exit status 3) naming each key, its line and what to do instead.
    """
    missing = unavailable(cfg)
    if missing:
        raise UnavailableError([cfg.problem(k, m) for k, m in missing], cfg.source)
