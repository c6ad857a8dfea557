"""Distributed engines: how a worker's model is wrapped, stepped, checkpointed and saved.

* ``DDPEngine`` — one full replica per worker, gradients all-reduced (the default);
* ``DeepSpeedEngine`` — DeepSpeed ZeRO stage 0–3, optimiser and parameter offload, from a
  LLaMA-Factory ``deepspeed:`` JSON whose ``"auto"`` values are filled from the config as the
  Hugging Face Trainer fills them;
* ``FSDPEngine`` — PyTorch FSDP2 (``fully_shard``): every decoder layer and the root are sharded
  across the workers (parameters become DTensors), on GPU and on CPU alike.

The loop in :mod:`raytune_llm.train.worker` sees only this interface. Every method is called by
every worker at the same point (several of them are collective); only rank 0 writes the Hugging
Face files. A checkpoint folder holds the model or adapter in Hugging Face format plus the
engine's own state: ``optimizer.pt``/``scheduler.pt`` (DDP), ``global_step<N>/`` (DeepSpeed,
sharded per rank) or ``fsdp_state/`` (FSDP, torch.distributed.checkpoint, sharded per rank). The
ranks' folders are merged into one by ``ray.train.report``.
"""

from __future__ import annotations

import copy
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from ..config import Config
from ..config.deepspeed import zero_stage
from ..model.compile import layer_classes
from ..utils.errors import UserError
from .optim import build_optimizer, build_scheduler
from .plan import RunPlan


def unwrap(model: Any) -> Any:
    """The model inside a DDP or DeepSpeed wrapper."""
    return getattr(model, "module", model)


def _barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _numel(param: Any) -> tuple[int, int]:
    """(elements this rank holds, elements of the whole parameter)."""
    if hasattr(param, "ds_numel"):  # DeepSpeed ZeRO-3 partition
        return int(param.ds_tensor.numel()), int(param.ds_numel)
    if hasattr(param, "to_local"):  # DTensor (FSDP2)
        return int(param.to_local().numel()), int(param.numel())
    return int(param.numel()), int(param.numel())


class DDPEngine:
    """Data parallel with a full replica per worker (plain torch when there is one worker)."""

    name = "ddp"
    label = "DDP"

    def __init__(self, cfg: Config, plan: RunPlan, rank: int, world: int):
        self.cfg, self.plan, self.rank, self.world = cfg, plan, rank, world
        self.model: Any = None
        self.optimizer: Any = None
        self.scheduler: Any = None

    # ---- set-up --------------------------------------------------------------------------------

    def before_model_load(self) -> None:
        """Called before the model is loaded (ZeRO-3 loads it partitioned)."""

    def wrap(self, model: Any) -> None:
        import ray.train.torch

        strategy = "ddp" if self.world > 1 else None
        kwargs = {"find_unused_parameters": bool(self.cfg.train.ddp_find_unused_parameters)}
        self.model = ray.train.torch.prepare_model(
            model, parallel_strategy=strategy, parallel_strategy_kwargs=kwargs
        )
        self.optimizer = build_optimizer(self.model, self.cfg)
        self.scheduler = build_scheduler(self.optimizer, self.cfg, self.plan.total_steps)

    @property
    def inner(self) -> Any:
        """The Hugging Face (or PEFT) model itself."""
        return unwrap(self.model)

    def describe(self) -> dict[str, Any]:
        """What this rank holds: the share of the parameters, for the start-up log and tests."""
        local = full = 0
        sharded = 0
        for param in self.model.parameters():
            mine, whole = _numel(param)
            local, full = local + mine, full + whole
            sharded += mine < whole
        return {"engine": self.label, "local_params": local, "full_params": full,
                "sharded_tensors": sharded}  # fmt: skip

    # ---- one optimiser step --------------------------------------------------------------------

    def micro_batch(self, last: bool) -> AbstractContextManager:
        """Context for one micro-batch's forward and backward; gradients sync on the last."""
        if last or not hasattr(self.model, "no_sync"):
            return nullcontext()
        return self.model.no_sync()

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def step(self) -> float | None:
        """Clip, step the optimiser and the schedule, clear gradients; returns the grad norm."""
        norm = None
        max_norm = self.cfg.train.max_grad_norm
        if max_norm > 0:
            params = [p for p in self.model.parameters() if p.requires_grad]
            total = torch.nn.utils.clip_grad_norm_(params, max_norm)
            norm = float(total.full_tensor() if hasattr(total, "full_tensor") else total)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return norm

    def lr(self) -> float:
        return float(self.scheduler.get_last_lr()[0])

    # ---- checkpoints ---------------------------------------------------------------------------

    def save_state(self, folder: Path, step: int) -> None:
        """The optimiser and schedule (collective for sharded engines)."""
        if self.rank == 0:
            torch.save(self.optimizer.state_dict(), folder / "optimizer.pt")
            torch.save(self.scheduler.state_dict(), folder / "scheduler.pt")

    def load_state(self, folder: Path) -> None:
        """Weights, optimiser and schedule from a checkpoint folder."""
        from .checkpoint import load_weights

        load_weights(self.inner, folder)
        self.optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=False))
        self.scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=False))

    def full_state_dict(self) -> dict[str, torch.Tensor] | None:
        """The whole model's weights on rank 0 (None: the model's own state_dict will do)."""
        return None

    def save_pretrained(self, folder: Path, tokenizer: Any) -> None:
        """The adapter or full model and the tokenizer, loadable with from_pretrained (rank 0)."""
        state = self.full_state_dict()  # collective for sharded engines: every rank calls it
        if self.rank != 0:
            return
        kwargs = {"state_dict": state} if state is not None else {}
        self.inner.save_pretrained(folder, safe_serialization=True, **kwargs)
        tokenizer.save_pretrained(folder)


# ---- DeepSpeed ---------------------------------------------------------------------------------


def fill_deepspeed_config(
    config: dict[str, Any], cfg: Config, world: int, hidden_size: int | None
) -> dict[str, Any]:
    """Replace a LLaMA-Factory DeepSpeed JSON's ``"auto"`` values from the training keys.

    The same values the Hugging Face Trainer puts there: batch sizes and accumulation from the
    config, gradient clipping from max_grad_norm, fp16/bf16 from the precision keys, bucket
    sizes from the model's hidden size. The optimiser and schedule stay the config's own
    (optim, learning_rate, lr_scheduler_type, ...) unless the JSON names its own.
    """
    t = cfg.train
    out = copy.deepcopy(config)
    micro, accum = t.per_device_train_batch_size, t.gradient_accumulation_steps
    values = {
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": accum,
        "train_batch_size": micro * accum * world,
        "gradient_clipping": t.max_grad_norm,
    }
    for key, value in values.items():
        if out.get(key, "auto") == "auto":
            out[key] = value
    for key, on in (("fp16", t.fp16), ("bf16", t.bf16)):
        section = out.setdefault(key, {})
        if section.get("enabled", "auto") == "auto":
            section["enabled"] = bool(on)
    zero = out.setdefault("zero_optimization", {})
    sizes = {}
    if hidden_size:
        sizes = {
            "reduce_bucket_size": hidden_size * hidden_size,
            "stage3_prefetch_bucket_size": int(0.9 * hidden_size * hidden_size),
            "stage3_param_persistence_threshold": 10 * hidden_size,
        }
    for key in ("reduce_bucket_size", "stage3_prefetch_bucket_size",
                "stage3_param_persistence_threshold"):  # fmt: skip
        if zero.get(key) == "auto":
            if key not in sizes:
                raise UserError(
                    f"deepspeed: zero_optimization.{key} is 'auto' but the model's config has no "
                    "hidden_size to derive it from; give a number"
                )
            zero[key] = sizes[key]
    # Our own (torch) optimiser also runs where ZeRO offloads the optimiser (as in the HF Trainer).
    if "optimizer" not in out:
        out["zero_force_ds_cpu_optimizer"] = False
        out.setdefault("zero_allow_untested_optimizer", True)
    left = [k for k, v in _walk(out) if v == "auto"]
    if left:
        raise UserError(
            f"deepspeed: cannot fill 'auto' for {', '.join(left)}; give values in the JSON"
        )
    return out


def _walk(tree: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items = []
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            items += _walk(value, name + ".")
        else:
            items.append((name, value))
    return items


class DeepSpeedEngine(DDPEngine):
    """DeepSpeed ZeRO 0–3 (with CPU offload where the JSON asks for it)."""

    name = "deepspeed"

    def __init__(self, cfg: Config, plan: RunPlan, rank: int, world: int):
        super().__init__(cfg, plan, rank, world)
        self.config = fill_deepspeed_config(plan.deepspeed or {}, cfg, world, plan.hidden_size)
        self.stage = zero_stage(self.config)
        self.label = f"DeepSpeed ZeRO-{self.stage}"
        self._hf_config: Any = None

    def before_model_load(self) -> None:
        import deepspeed

        # DeepSpeed joins the process group Ray Train set up (gloo on CPU, nccl on GPU).
        deepspeed.init_distributed(
            dist_backend=dist.get_backend() if dist.is_initialized() else None
        )
        if self.stage == 3:
            # Kept alive for from_pretrained: it then builds the model already partitioned.
            from transformers.integrations import HfDeepSpeedConfig

            self._hf_config = HfDeepSpeedConfig(self.config)

    def wrap(self, model: Any) -> None:
        import deepspeed

        optimizer = None
        if "optimizer" not in self.config:
            optimizer = build_optimizer(model, self.cfg)
        total = self.plan.total_steps

        def schedule(opt: Any) -> Any:
            return build_scheduler(opt, self.cfg, total)

        self.model, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model,
            optimizer=optimizer,
            model_parameters=None if optimizer is not None else model.parameters(),
            lr_scheduler=None if "scheduler" in self.config else schedule,
            config=self.config,
            dist_init_required=False,
        )

    def micro_batch(self, last: bool) -> AbstractContextManager:
        self.model.set_gradient_accumulation_boundary(last)
        return nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        # The loop already divides by the step's tokens: no further scaling by accumulation.
        self.model.backward(loss, scale_wrt_gas=False)

    def step(self) -> float | None:
        self.model.step()  # clips, steps optimiser and schedule, zeroes gradients
        norm = self.model.get_global_grad_norm()
        return None if norm is None else float(norm)

    def lr(self) -> float:
        return float(self.model.get_lr()[0])

    def save_state(self, folder: Path, step: int) -> None:
        lora = self.cfg.finetuning.finetuning_type != "full"
        self.model.save_checkpoint(
            str(folder), tag=f"global_step{step}", exclude_frozen_parameters=lora
        )

    def load_state(self, folder: Path) -> None:
        latest = (folder / "latest").read_text().strip()
        path, _ = self.model.load_checkpoint(
            str(folder), tag=latest, load_module_strict=False,
            load_optimizer_states=True, load_lr_scheduler_states=True,
        )  # fmt: skip
        if path is None:
            raise RuntimeError(f"DeepSpeed could not load the checkpoint in {folder}/{latest}")

    def full_state_dict(self) -> dict[str, torch.Tensor] | None:
        if self.stage != 3:
            return None
        return self.model._zero3_consolidated_16bit_state_dict()


# ---- FSDP2 -------------------------------------------------------------------------------------


def configured_layer_classes(cfg: Config) -> str | list[str] | None:
    """The decoder layer class(es) a config names in ``fsdp_config``, if any."""
    options = cfg.train.fsdp_config or {}
    return options.get("transformer_layer_cls_to_wrap") or options.get(
        "fsdp_transformer_layer_cls_to_wrap"
    )


class FSDPEngine(DDPEngine):
    """FSDP2: each decoder layer and the root module sharded across all workers."""

    name = "fsdp"
    label = "FSDP2 (fully_shard)"

    def _layer_classes(self, model: Any) -> set[str]:
        return layer_classes(model, configured_layer_classes(self.cfg))

    def wrap(self, model: Any) -> None:
        from torch.distributed.fsdp import CPUOffloadPolicy, fully_shard

        words = self.cfg.train.fsdp  # config.train.FSDP_WORDS, checked at load
        device = next(model.parameters()).device
        options: dict[str, Any] = {"reshard_after_forward": "shard_grad_op" not in words}
        if "offload" in words:
            options["offload_policy"] = CPUOffloadPolicy(pin_memory=device.type == "cuda")
        classes = self._layer_classes(model)
        layers = [m for m in model.modules() if type(m).__name__ in classes]
        if not layers:
            raise UserError(
                "fsdp: found no layer to shard; set fsdp_config.transformer_layer_cls_to_wrap "
                "to the model's decoder layer class (e.g. LlamaDecoderLayer)"
            )
        for layer in layers:
            fully_shard(layer, **options)
        fully_shard(model, **options)
        self.model = model
        self.optimizer = build_optimizer(model, self.cfg)
        self.scheduler = build_scheduler(self.optimizer, self.cfg, self.plan.total_steps)

    def micro_batch(self, last: bool) -> AbstractContextManager:
        self.model.set_requires_gradient_sync(last)
        return nullcontext()

    def _options(self, full: bool) -> Any:
        from torch.distributed.checkpoint.state_dict import StateDictOptions

        return StateDictOptions(full_state_dict=full, cpu_offload=full)

    def save_state(self, folder: Path, step: int) -> None:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict

        model_state, optim_state = get_state_dict(
            self.model, self.optimizer, options=self._options(False)
        )
        state = {"model": model_state, "optimizer": optim_state}
        dcp.save(state, checkpoint_id=str(folder / "fsdp_state"))
        if self.rank == 0:
            torch.save(self.scheduler.state_dict(), folder / "scheduler.pt")

    def load_state(self, folder: Path) -> None:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

        model_state, optim_state = get_state_dict(
            self.model, self.optimizer, options=self._options(False)
        )
        state = {"model": model_state, "optimizer": optim_state}
        dcp.load(state, checkpoint_id=str(folder / "fsdp_state"))
        set_state_dict(
            self.model,
            self.optimizer,
            model_state_dict=state["model"],
            optim_state_dict=state["optimizer"],
            options=self._options(False),
        )
        self.scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=False))

    def full_state_dict(self) -> dict[str, torch.Tensor] | None:
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        state = get_model_state_dict(self.model, options=self._options(True))
        return state if self.rank == 0 else None


ENGINES = {"ddp": DDPEngine, "deepspeed": DeepSpeedEngine, "fsdp": FSDPEngine}


def engine_name(cfg: Config) -> str:
    if cfg.train.deepspeed:
        return "deepspeed"
    if cfg.train.fsdp:
        return "fsdp"
    return "ddp"


def build_engine(cfg: Config, plan: RunPlan, rank: int, world: int) -> DDPEngine:
    return ENGINES[plan.engine](cfg, plan, rank, world)
