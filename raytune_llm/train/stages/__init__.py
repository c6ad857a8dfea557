"""Training stages: one module per stage, each giving the loss of one batch.

A stage module exposes ``loss_terms(model, batch) -> (summed token loss, target tokens)``; the loop
in :mod:`raytune_llm.train.worker` divides by the tokens of the whole optimiser step. Stages of
later releases (rm, dpo, kto, orpo, ppo) slot in as one module and one line here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import pt, sft

LossTerms = Callable[[Any, dict[str, Any]], tuple[Any, Any]]

STAGES: dict[str, LossTerms] = {"pt": pt.loss_terms, "sft": sft.loss_terms}
"""Stage → its batch loss. ``raytune_llm.config.STAGES`` lists every stage the config accepts."""
