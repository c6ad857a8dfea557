"""Stage sft: supervised fine-tuning on conversations (answers are the targets)."""

from .causal_lm import causal_lm_loss_terms as loss_terms

__all__ = ["loss_terms"]
