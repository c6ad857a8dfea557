"""Stage pt: continued pre-training on plain text (every token a target)."""

from .causal_lm import causal_lm_loss_terms as loss_terms

__all__ = ["loss_terms"]
