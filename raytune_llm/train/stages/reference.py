"""The frozen reference policy of the DPO family and KTO.

Three kinds, chosen as LLaMA-Factory and TRL choose them:

* ``ref_model`` set: that model (with ``ref_model_adapters`` merged, optionally quantized),
  loaded once per worker and frozen;
* LoRA / QLoRA without ``ref_model``: the policy itself with its adapter disabled -- the frozen
  base, so the reference costs no second copy of the weights;
* full or freeze tuning: a frozen copy of the starting model, taken before the engine wraps it.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from ...config import Config


class Reference:
    """Computes the reference model's logits for a batch of inputs (no gradients)."""

    def __init__(self, kind: str, module: Any = None):
        self.kind, self.module, self.engine = kind, module, None

    @classmethod
    def for_policy(cls, cfg: Config, model: Any, tokenizer: Any, device: Any) -> Reference:
        """The reference that goes with the policy ``model`` (before the engine wraps it)."""
        ft = cfg.finetuning
        if ft.ref_model:
            return cls("ref_model", _load_ref_model(cfg, tokenizer, device))
        if ft.finetuning_type == "lora" and hasattr(model, "disable_adapter"):
            return cls("adapter_disabled")
        frozen = copy.deepcopy(model).eval()
        frozen.requires_grad_(False)
        return cls("frozen_copy", frozen)

    def bind(self, engine: Any) -> None:
        self.engine = engine

    @torch.no_grad()
    def logits(self, inputs: dict[str, Any]) -> torch.Tensor:
        """The reference's logits for ``inputs`` (labels are ignored)."""
        kwargs = {k: v for k, v in inputs.items() if k != "labels"}
        if self.kind == "adapter_disabled":
            with self.engine.inner.disable_adapter():
                return self.engine.model(**kwargs, use_cache=False).logits
        return self.module(**kwargs, use_cache=False).logits


def _load_ref_model(cfg: Config, tokenizer: Any, device: Any) -> Any:
    from ...model.adapter import setup_finetuning
    from ...model.loader import load_model

    ft = cfg.finetuning
    model_args = cfg.model.model_copy(
        update={
            "model_name_or_path": ft.ref_model,
            "adapter_name_or_path": [a.strip() for a in ft.ref_model_adapters.split(",")]
            if ft.ref_model_adapters
            else None,
            "quantization_bit": ft.ref_model_quantization_bit,
        }
    )
    ref_cfg = cfg.model_copy(update={"model": model_args})
    ref_cfg.finetuning = cfg.finetuning.model_copy(update={"finetuning_type": "lora"})
    model = load_model(ref_cfg, tokenizer, for_training=False, device=device)
    if model_args.adapter_name_or_path:
        model = setup_finetuning(model, ref_cfg, for_training=False)
    if not ft.ref_model_quantization_bit:
        model.to(device)
    model.eval().requires_grad_(False)
    return model


def check_ref_model(cfg: Config) -> None:
    """On the driver, before any worker starts: a ``ref_model`` must share the policy's
    tokenizer (the log-ratios compare the same token ids).

    Raises:
        UserError: naming ref_model, when it cannot be loaded or its vocabulary differs.
    """
    from ...model.loader import load_tokenizer
    from ...utils.errors import UserError

    ref = cfg.finetuning.ref_model
    if not ref:
        return
    policy = load_tokenizer(cfg.model).get_vocab()
    try:
        other = load_tokenizer(cfg.model.model_copy(update={"model_name_or_path": ref}))
    except UserError as err:
        raise UserError(f"ref_model {ref}: {err}") from None
    vocab = other.get_vocab()
    if vocab != policy:
        differ = len(set(vocab.items()) ^ set(policy.items()))
        raise UserError(
            f"ref_model {ref} has another tokenizer than model_name_or_path "
            f"{cfg.model.model_name_or_path} ({len(vocab)} against {len(policy)} tokens, "
            f"{differ} entries differ); the reference must share the policy's tokenizer: "
            "use a model of the same family, or leave ref_model unset"
        )
