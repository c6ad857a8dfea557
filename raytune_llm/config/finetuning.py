"""Keys that choose what is trained: the stage, the finetuning type and the preference losses."""

from __future__ import annotations

from typing import Literal, get_args

from .base import CommaList, Section, doc

Stage = Literal["pt", "sft", "rm", "ppo", "dpo", "kto", "orpo"]

STAGES: tuple[str, ...] = get_args(Stage)
"""Every stage the config accepts: the one list. ``raytune_llm.data.stages.STAGE_DATA`` has an
entry for each and ``raytune_llm.train.stages.STAGES`` one for each trainable stage (a test
checks the three agree)."""

TRAINABLE_STAGES = ("pt", "sft", "rm", "dpo", "kto", "orpo")
"""The stages this version trains (the keys of raytune_llm.train.stages.STAGES); a config with
another stage validates but ``raytune-llm train`` refuses it (config.available)."""


class FinetuningArgs(Section):
    """The training stage and which parameters it updates."""

    stage: Stage = doc(
        "sft",
        "Training stage: pt (pre-training), sft (supervised), rm (reward model), ppo, dpo, kto, "
        "orpo (also reachable as stage dpo with pref_loss: orpo).",
    )
    finetuning_type: Literal["lora", "freeze", "full"] = doc(
        "lora", "Which parameters train: lora adapters, the last layers (freeze), or all (full)."
    )
    pure_bf16: bool = doc(False, "Train in pure bfloat16 without float32 master weights.")
    disable_shuffling: bool = doc(False, "Keep the training data in order (no shuffling).")
    early_stopping_steps: int | None = doc(
        None, "Stop when metric_for_best_model has not improved for this many evaluations.", gt=0
    )
    plot_loss: bool = doc(False, "Save training_loss.png (and eval loss) in output_dir.")
    compute_accuracy: bool = doc(False, "Report token accuracy at evaluation (stage sft).")
    include_effective_tokens_per_second: bool = doc(
        False, "Report throughput in trained (non-padding) tokens per second."
    )

    # Freeze tuning.
    freeze_trainable_layers: int = doc(
        2,
        "Freeze tuning: number of trainable layers; positive counts from the last layer, "
        "negative from the first.",
    )
    freeze_trainable_modules: CommaList = doc(
        ["all"], "Freeze tuning: trainable module names in those layers (all, mlp, self_attn, ...)."
    )
    freeze_extra_modules: CommaList | None = doc(
        None, "Freeze tuning: modules outside the layers that also train (e.g. embed_tokens)."
    )

    # LoRA.
    lora_rank: int = doc(8, "LoRA rank (the adapter's inner dimension).", gt=0)
    lora_alpha: int | None = doc(None, "LoRA scaling numerator (default: twice lora_rank).", gt=0)
    lora_dropout: float = doc(0.0, "Dropout on the LoRA input.", ge=0, lt=1)
    lora_target: CommaList = doc(
        ["all"], "Modules that get LoRA adapters: all linear layers, or names like q_proj,v_proj."
    )
    additional_target: CommaList | None = doc(
        None, "Modules trained in full and saved with the adapter (modules_to_save), e.g. lm_head."
    )
    loraplus_lr_ratio: float | None = doc(
        None, "LoRA+: learning-rate ratio of the B matrices to the A matrices.", gt=0
    )
    loraplus_lr_embedding: float = doc(1e-6, "LoRA+: learning rate of embedding adapters.", gt=0)
    use_rslora: bool = doc(False, "Rank-stabilised LoRA scaling (alpha / sqrt(rank)).")
    use_dora: bool = doc(False, "Weight-decomposed LoRA (DoRA).")
    pissa_init: bool = doc(False, "Initialise the adapter with PiSSA.")
    pissa_iter: int = doc(16, "PiSSA fast-SVD iterations (-1 for exact SVD).", ge=-1)
    pissa_convert: bool = doc(False, "Save the PiSSA adapter converted to a plain LoRA adapter.")
    create_new_adapter: bool = doc(
        False, "Train a fresh adapter on top of the loaded ones instead of continuing the last."
    )

    # Preference stages.
    pref_beta: float = doc(0.1, "beta of the preference loss (DPO, KTO, ORPO, SimPO).", gt=0)
    pref_ftx: float = doc(0.0, "Weight of the supervised loss added to the DPO loss.", ge=0)
    pref_bco_weight: float = doc(
        0.0, "Weight of the Binary Classifier Optimization term in DPO.", ge=0
    )
    ld_alpha: float | None = doc(
        None, "LD-DPO: weight of the log-probabilities of tokens past the shared length.", ge=0
    )
    pref_loss: Literal["sigmoid", "hinge", "ipo", "kto_pair", "orpo", "simpo"] = doc(
        "sigmoid",
        "Stage dpo's loss: sigmoid (DPO), hinge, ipo, kto_pair, orpo or simpo (orpo and simpo "
        "need no reference model).",
    )
    dpo_label_smoothing: float = doc(
        0.0, "Robust DPO label smoothing, between 0 and 0.5.", ge=0, le=0.5
    )
    kto_chosen_weight: float = doc(1.0, "KTO weight of desirable examples.", gt=0)
    kto_rejected_weight: float = doc(1.0, "KTO weight of undesirable examples.", gt=0)
    simpo_gamma: float = doc(0.5, "SimPO target reward margin.", ge=0)
    ref_model: str | None = doc(
        None, "Reference model for DPO/KTO/PPO (default: the model being trained, frozen)."
    )
    ref_model_adapters: str | None = doc(None, "Adapter(s) to load on the reference model.")
    ref_model_quantization_bit: Literal[4, 8] | None = doc(
        None, "Load the reference model quantized to 4 or 8 bits."
    )
    reward_model: str | None = doc(None, "Reward model for PPO (a path, hub id or API URL).")
    reward_model_adapters: str | None = doc(None, "Adapter(s) to load on the reward model.")
    reward_model_quantization_bit: Literal[4, 8] | None = doc(
        None, "Load the reward model quantized to 4 or 8 bits."
    )
    reward_model_type: Literal["lora", "full", "api"] = doc(
        "lora", "PPO reward model kind: a LoRA adapter on the policy, a full model, or an API."
    )
    ppo_buffer_size: int = doc(1, "PPO: mini-batches per experience buffer.", gt=0)
    ppo_epochs: int = doc(4, "PPO: optimisation epochs per experience buffer.", gt=0)
    ppo_score_norm: bool = doc(False, "PPO: normalise reward scores.")
    ppo_target: float = doc(6.0, "PPO: target KL value for adaptive KL control.", gt=0)
    ppo_whiten_rewards: bool = doc(False, "PPO: whiten rewards before computing advantages.")
