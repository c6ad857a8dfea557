"""The reward-model replica of ``raytune-llm serve`` for a config with ``stage: rm``.

It answers LLaMA-Factory's ``POST /v1/score/evaluation`` (texts in, one score each): the model
loads as it trained (base + adapters + the value head of :mod:`raytune_llm.model.value_head`),
and each text is scored at its last token.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..config import Config


class RewardScorer:
    """One reward-model replica (the deployment ``RewardScorer``)."""

    def __init__(self, cfg: Config):
        from ..model.value_head import load_reward_model

        self.model, self.tokenizer = load_reward_model(cfg)
        self.lock = asyncio.Lock()  # one scoring batch at a time per replica

    async def score(self, texts: list[str], max_length: int | None) -> dict[str, Any]:
        from ..model.value_head import score_texts

        async with self.lock:
            try:
                scores = await asyncio.to_thread(
                    score_texts, self.model, self.tokenizer, texts, max_length or 1024
                )
            except Exception as err:  # a bad request must not take the replica down
                return {"error": {"status": 500, "message": f"scoring failed: {err}",
                                  "type": "server_error", "code": None}}  # fmt: skip
        return {"scores": scores}
