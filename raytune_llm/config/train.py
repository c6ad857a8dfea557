"""Training-loop keys: the Hugging Face TrainingArguments names LLaMA-Factory YAMLs carry.

Keys that mean nothing under Ray Train are accepted so that existing YAMLs run unchanged, and
``ignored=`` says why; the loader prints that reason as a one-line warning when a config sets one.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, field_validator

from .base import CommaList, JsonDict, Section, doc
from .errors import did_you_mean

SCHEDULERS = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
    "reduce_lr_on_plateau",
    "cosine_with_min_lr",
    "warmup_stable_decay",
)
REPORTERS = ("none", "all", "tensorboard", "wandb", "mlflow", "swanlab")
OPTIMIZERS = ("adamw_torch", "adamw_torch_fused", "adamw_hf", "adamw", "sgd")
"""The optimisers raytune_llm.train.optim builds."""
FSDP_WORDS = ("full_shard", "shard_grad_op", "offload", "auto_wrap")
"""The FSDP options the FSDP2 engine (raytune_llm.train.engines) does."""


def _no(value: Any) -> Any:
    """YAML 1.1 reads a bare ``no`` as false; LLaMA-Factory's loader reads it as the word."""
    return "no" if value is False else value


Strategy = Annotated[Literal["no", "steps", "epoch"], BeforeValidator(_no)]
SaveStrategy = Annotated[Literal["no", "steps", "epoch", "best"], BeforeValidator(_no)]


class TrainArgs(Section):
    """What to run, and how the optimiser, schedule, checkpoints and logs behave."""

    do_train: bool = doc(False, "Train the model.")
    do_eval: bool = doc(False, "Evaluate on eval_dataset (or the val_size split).")
    do_predict: bool = doc(
        False, "Generate predictions for the dataset (generated_predictions.jsonl)."
    )
    predict_with_generate: bool = doc(False, "Use generation, not teacher forcing, to predict.")
    output_dir: str | None = doc(
        None, "Where checkpoints, the final adapter or model, logs and results are written."
    )
    overwrite_output_dir: bool = doc(
        False, "Allow writing into a non-empty output_dir (otherwise the run refuses or resumes)."
    )
    resume_from_checkpoint: str | None = doc(
        None, "Checkpoint directory to resume from (default: the latest one in output_dir)."
    )
    per_device_train_batch_size: int = doc(8, "Training examples per worker per step.", gt=0)
    per_device_eval_batch_size: int = doc(8, "Evaluation examples per worker per step.", gt=0)
    gradient_accumulation_steps: int = doc(
        1, "Micro-batches accumulated before each optimiser step.", gt=0
    )
    learning_rate: float = doc(5e-5, "Peak learning rate.", gt=0)
    weight_decay: float = doc(0.0, "AdamW weight decay.", ge=0)
    adam_beta1: float = doc(0.9, "AdamW beta1.", ge=0, lt=1)
    adam_beta2: float = doc(0.999, "AdamW beta2.", ge=0, lt=1)
    adam_epsilon: float = doc(1e-8, "AdamW epsilon.", gt=0)
    optim: str = doc(
        "adamw_torch", "Optimizer name, as in transformers: " + ", ".join(OPTIMIZERS) + "."
    )
    max_grad_norm: float = doc(
        1.0, "Clip gradients to this global norm (0 turns clipping off).", ge=0
    )
    num_train_epochs: float = doc(3.0, "Passes over the training data.", gt=0)
    max_steps: int = doc(-1, "Stop after this many optimiser steps (overrides epochs when > 0).")
    lr_scheduler_type: str = doc("linear", "Learning-rate schedule: " + ", ".join(SCHEDULERS) + ".")
    lr_scheduler_kwargs: JsonDict | None = doc(
        None, "Extra schedule arguments, e.g. {min_lr_rate: 0.1} for cosine_with_min_lr."
    )
    warmup_ratio: float = doc(
        0.0, "Share of the steps spent warming up the learning rate.", ge=0, le=1
    )
    warmup_steps: int | float = doc(
        0, "Warm-up steps (overrides warmup_ratio when > 0); below 1, a share of the steps.", ge=0
    )
    bf16: bool = doc(False, "Train in bfloat16 mixed precision.")
    fp16: bool = doc(False, "Train in float16 mixed precision (GPU).")
    tf32: bool | None = doc(None, "Allow TF32 matrix multiplies on Ampere or newer GPUs.")
    gradient_checkpointing: bool | None = doc(
        None, "Recompute activations in the backward pass (see disable_gradient_checkpointing)."
    )
    seed: int = doc(42, "Random seed for initialisation, shuffling and sampling.")
    data_seed: int | None = doc(None, "Seed for data shuffling only (default: seed).")

    # Logging, evaluation and checkpoints.
    logging_steps: int | float = doc(
        500, "Log the loss every this many optimiser steps; below 1, a share of the steps.", gt=0
    )
    logging_strategy: Strategy = doc("steps", "When to log: steps, epoch or no.")
    logging_dir: str | None = doc(None, "TensorBoard log folder (default: output_dir/runs).")
    logging_first_step: bool = doc(False, "Also log the first step.")
    save_strategy: SaveStrategy = doc(
        "steps", "When to save checkpoints: steps, epoch, best (when the metric improves) or no."
    )
    save_steps: int | float = doc(
        500,
        "Save a checkpoint every this many optimiser steps; below 1, a share of the steps.",
        gt=0,
    )
    save_total_limit: int | None = doc(None, "Keep at most this many checkpoints.", gt=0)
    save_only_model: bool = doc(
        False, "Save only the weights in checkpoints, without optimizer state (cannot resume)."
    )
    eval_strategy: Strategy = doc("no", "When to evaluate: steps, epoch or no.")
    eval_steps: int | float | None = doc(
        None,
        "Evaluate every this many optimiser steps (default: logging_steps); below 1, a share of "
        "the steps.",
        gt=0,
    )
    load_best_model_at_end: bool = doc(False, "Keep the best checkpoint's weights at the end.")
    metric_for_best_model: str | None = doc(None, "Metric that picks the best checkpoint.")
    greater_is_better: bool | None = doc(None, "Whether a larger metric_for_best_model is better.")
    report_to: CommaList = doc(
        ["none"],
        "Where metrics go besides trainer_log.jsonl: none, tensorboard (logging_dir), wandb, "
        "mlflow, or all (every one installed).",
    )
    run_name: str | None = doc(None, "Name of the run in trackers and in Ray's storage.")
    disable_tqdm: bool | None = doc(None, "Turn off the progress bar.")
    include_num_input_tokens_seen: bool | Literal["all", "non_padding", "no"] = doc(
        False, "Log the number of input tokens seen (all, or non_padding only)."
    )
    eval_on_start: bool = doc(False, "Evaluate once before the first training step.")
    label_smoothing_factor: float = doc(0.0, "Label smoothing of the loss.", ge=0, lt=1)
    neftune_noise_alpha: float | None = doc(
        None, "NEFTune: add noise of this scale to embeddings while training.", gt=0
    )
    group_by_length: bool = doc(False, "Batch examples of similar length together.")
    generation_max_length: int | None = doc(
        None, "Longest generation when predicting (default: cutoff_len).", gt=0
    )
    generation_num_beams: int | None = doc(None, "Beams when predicting with generate.", gt=0)

    # Distribution.
    deepspeed: str | dict[str, Any] | None = doc(
        None, "DeepSpeed config: a JSON file (examples/deepspeed/ds_z3_config.json) or a mapping."
    )
    fsdp: CommaList = doc(
        [],
        "Fully sharded data parallel: " + ", ".join(FSDP_WORDS) + " (several, separated by "
        "spaces or commas).",
    )
    fsdp_config: dict[str, Any] | None = doc(None, "Extra FSDP options.")
    ddp_timeout: int = doc(1800, "Timeout of collective operations, in seconds.", gt=0)
    ddp_find_unused_parameters: bool | None = doc(
        None, "Let DDP tolerate parameters that get no gradient."
    )
    torch_compile: bool = doc(
        False,
        "Compile the parts of each decoder layer with torch.compile (inductor; CPU workers need "
        "a C++ compiler). Costs a compilation at the start, then runs the layers' element-wise "
        "work as fused kernels. With DDP and FSDP, not DeepSpeed.",
    )

    # Hub.
    push_to_hub: bool = doc(
        False,
        "Upload output_dir (the adapter or model, tokenizer, results) to the Hugging Face hub "
        "when the run ends; the hub and the token are checked before training starts.",
    )
    hub_model_id: str | None = doc(None, "Hub repository to push to (default: output_dir's name).")
    hub_token: str | None = doc(None, "Token for pushing to the hub.")
    hub_private_repo: bool | None = doc(None, "Create the hub repository as private.")
    hub_strategy: Literal["end", "every_save", "checkpoint", "all_checkpoints"] = doc(
        "every_save",
        "What goes to the hub, uploaded once when the run ends: the final model (end, "
        "every_save), also the latest checkpoint as last-checkpoint/ (checkpoint), or every "
        "checkpoint-* folder too (all_checkpoints).",
    )

    # TrainingArguments keys with no meaning under Ray Train (accepted, with a warning).
    dataloader_num_workers: int = doc(
        0, "Data-loading processes.", ignored="Ray Data feeds the workers", ge=0
    )
    dataloader_pin_memory: bool = doc(
        True, "Pin loader memory.", ignored="Ray Train moves batches to the device itself"
    )
    dataloader_persistent_workers: bool = doc(
        False, "Keep loader processes alive.", ignored="Ray Data feeds the workers"
    )
    remove_unused_columns: bool = doc(
        False, "Drop unused dataset columns.", ignored="the data pipeline keeps only model inputs"
    )
    local_rank: int = doc(-1, "Process rank.", ignored="Ray Train assigns ranks")
    ddp_backend: str | None = doc(
        None, "Collective backend.", ignored="Ray Train picks nccl on GPUs and gloo on CPUs"
    )
    label_names: CommaList | None = doc(
        None, "Names of the label inputs.", ignored="the stages set their label inputs themselves"
    )
    sortish_sampler: bool = doc(
        False, "Sort-ish sampling by length.", ignored="Ray Data shuffles the dataset"
    )
    use_cpu: bool = doc(
        False, "Train on the CPU.", ignored="workers use a GPU when resources_per_worker has one"
    )

    @field_validator("lr_scheduler_type")
    @classmethod
    def _known_scheduler(cls, value: str) -> str:
        return _one_of([value], SCHEDULERS, "unknown schedule")[0]

    @field_validator("optim")
    @classmethod
    def _known_optimizer(cls, value: str) -> str:
        return _one_of([value], OPTIMIZERS, "unknown optimizer")[0]

    @field_validator("report_to")
    @classmethod
    def _known_reporters(cls, value: list[str]) -> list[str]:
        return _one_of(value, REPORTERS, "unknown tracker")

    @field_validator("fsdp", mode="before")
    @classmethod
    def _fsdp_words(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return ["full_shard"] if value else []
        if isinstance(value, str):
            return value.replace(",", " ").split()
        return value

    @field_validator("fsdp")
    @classmethod
    def _known_fsdp_words(cls, value: list[str]) -> list[str]:
        note = " (hybrid_shard: run one worker per node with full_shard, or use DeepSpeed)"
        return _one_of(value, FSDP_WORDS, "unknown FSDP option", note * ("hybrid_shard" in value))


def _one_of(words: list[str], choices: tuple[str, ...], what: str, note: str = "") -> list[str]:
    """``words`` when each is one of ``choices``; else a ValueError naming the first that is not,
    the closest choice and every valid one."""
    bad = [w for w in words if w not in choices]
    if bad:
        hint = did_you_mean(bad[0], choices)
        raise ValueError(f"{what} {bad[0]!r}{hint}; valid: {', '.join(choices)}{note}")
    return words
