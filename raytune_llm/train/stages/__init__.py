"""Training stages: one module per stage, each a small class the worker loop drives.

See :mod:`.base` for what a stage provides (prepare, collate, weight, loss). A new stage is one
module, one line in ``STAGES`` and its name in ``raytune_llm.config.TRAINABLE_STAGES``; a test
checks the three agree.
"""

from __future__ import annotations

from .base import Stage, Terms
from .causal_lm import CausalLM, Pretrain
from .dpo import DPO
from .kto import KTO
from .rm import RewardModel

STAGES: dict[str, type[Stage]] = {
    "pt": Pretrain,
    "sft": CausalLM,
    "rm": RewardModel,
    "dpo": DPO,
    "orpo": DPO,  # stage orpo is dpo with pref_loss orpo
    "kto": KTO,
}
"""Stage name → its class. ``raytune_llm.config.STAGES`` lists every stage the config accepts."""

__all__ = ["STAGES", "Stage", "Terms"]
