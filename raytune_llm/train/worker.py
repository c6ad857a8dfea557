"""The training loop each Ray Train worker runs, top to bottom.

load tokenizer + model → adapter (full | freeze | lora | qlora) → engine (DDP | DeepSpeed |
FSDP, see :mod:`.engines`) with its optimiser + schedule → resume → for each optimiser step:
micro-batches from this worker's Ray Data shard → stage loss → clip → step → log / evaluate /
checkpoint through ``ray.train.report``.

Log entries carry LLaMA-Factory's fields plus ``effective_tokens`` (non-padding tokens trained
since the loop started: the tokens of the batches' rows before collation adds any padding) and
``train_seconds`` (seconds since the loop started), from which steady throughput can be read
between any two entries, and ``data_wait_seconds`` (of those, the seconds rank 0 spent waiting
for its next training or eval batch). The same loop runs in-process, without a Ray cluster, in
Ray Train's local mode (``ScalingConfig(num_workers=0)``), fed by any object with ``iter_batches``.

Every token of an optimiser step weighs the same, however the tokens fall into micro-batches and
workers: each micro-batch's summed token loss is divided by the step's target tokens over all
workers (every engine averages gradients over workers, so the loss is scaled by the world size).
"""

from __future__ import annotations

import functools
import math
import shutil
import threading
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import ray.train
import torch
import torch.distributed as dist

from ..config import Config
from ..model.adapter import setup_finetuning, trainable_parameters
from ..model.compile import check_compiler, compile_layers, layer_classes
from ..model.fused_lora import fuse_lora_linears
from ..model.loader import compute_dtype, load_model, load_tokenizer
from ..model.varlen import use_varlen_sdpa
from .checkpoint import TrainState, load_checkpoint, save_checkpoint
from .collate import Layout
from .engines import build_engine, configured_layer_classes
from .plan import RunPlan
from .progress import log_entry
from .stages import STAGES, Stage, Terms

EVAL_KEPT_BYTES = 1 << 30
"""The most token memory one worker keeps of its eval shard between evaluations."""


def _all_sum(*values: float) -> list[float]:
    """Sum numbers over all workers (a no-op with one worker)."""
    if not (dist.is_available() and dist.is_initialized()):
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor)
    return tensor.tolist()


def real_tokens(batch: dict[str, Any]) -> int:
    """Tokens in a Ray Data batch's rows (every ``*input_ids`` column: a preference pair's two
    answers, a KTO example and its KL pair): padding only comes later, from the collate."""
    columns = [c for c in batch if c.endswith("input_ids")]
    return int(sum(len(row) for c in columns for row in batch[c]))


class Window:
    """Sums of the loss, its units and each metric over some micro-batches (a logging window,
    an evaluation), averaged over all workers when read."""

    def __init__(self, metrics: tuple[str, ...]):
        self.names = metrics
        self.loss, self.units = 0.0, 0.0
        self.sums = dict.fromkeys(metrics, 0.0)
        self.counts = dict.fromkeys(metrics, 0.0)

    def add(self, terms: Terms, units: float) -> None:
        self.loss += float(terms.loss.detach())
        self.units += units
        for name in self.names:
            total, count = terms.metrics[name]
            self.sums[name] += float(total)
            self.counts[name] += float(count)

    def averages(self, prefix: str = "") -> dict[str, float]:
        """{prefix + "loss": ..., prefix + metric: ...} over every worker (a collective)."""
        values = _all_sum(self.loss, self.units, *self.sums.values(), *self.counts.values())
        n = len(self.names)
        out = {f"{prefix}loss": values[0] / max(values[1], 1.0)}
        for i, name in enumerate(self.names):
            total, count = values[2 + i], values[2 + n + i]
            if count > 0:
                out[prefix + name] = total / count
        return out


class KeptShard:
    """A worker's eval shard, read once in a background thread as soon as the worker starts
    (so no evaluation waits for the pipeline) and kept in memory for every evaluation when the
    shards of all workers fit ``EVAL_KEPT_BYTES``. One that does not fit is read again at each
    evaluation instead (the decision is collective: a shard that is read again needs every
    worker to read it too)."""

    def __init__(self, passes: Any):
        """``passes``: makes one pass over the shard (``iter_batches`` with its settings)."""
        self._passes = passes
        self._kept: list[dict[str, Any]] | None = []
        self._error: BaseException | None = None
        self._decided: bool | None = None
        self._thread = threading.Thread(target=self._read, name="eval-read-ahead", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        size = 0
        try:
            for batch in self._passes():
                size += real_tokens(batch) * 8
                if self._kept is not None and size <= EVAL_KEPT_BYTES:
                    self._kept.append(batch)
                else:  # too large to keep: the pass still runs to its end, as all shards must
                    self._kept = None
        except BaseException as err:  # shown by the evaluation that needs the batches
            self._error, self._kept = err, None

    def batches(self, world: int) -> list[dict[str, Any]] | Any:
        """The kept batches, or a fresh pass over the shard."""
        if self._decided is None:
            self._thread.join()
            if self._error is not None:
                raise self._error
            (fits,) = _all_sum(float(self._kept is not None))
            self._decided = fits == world
            if not self._decided:
                self._kept = None
        return self._kept if self._decided else self._passes()


class Recipe:
    """One worker's share of a run; ``run()`` trains to the end."""

    def __init__(self, cfg: Config, plan: RunPlan, board: Any):
        self.setup_started = time.time()
        self.cfg, self.plan, self.board = cfg, plan, board
        ctx = ray.train.get_context()
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()
        t = cfg.train
        self.eval_set: KeptShard | None = None
        if plan.has_eval and (t.eval_strategy != "no" or plan.final_eval):
            # read ahead while the model loads and the first steps run
            self.eval_set = KeptShard(self._eval_passes())
        torch.set_num_threads(plan.threads)
        self.device = ray.train.torch.get_device()
        from transformers import set_seed

        set_seed(cfg.train.seed)
        self.tokenizer = load_tokenizer(cfg.model)
        from ..data.templates import get_template

        template = get_template(cfg.data.template, self.tokenizer)
        added = template.fix_tokenizer(self.tokenizer)
        self.engine = build_engine(cfg, plan, self.rank, self.world)
        self.engine.before_model_load()
        model = load_model(cfg, self.tokenizer, for_training=True, device=self.device)
        if added:
            model.resize_token_embeddings(len(self.tokenizer), pad_to_multiple_of=64)
        if not plan.packed or cfg.data.neat_packing:  # examples kept apart: SDPA per example
            use_varlen_sdpa(model)
        model = setup_finetuning(model, cfg, for_training=True)
        self.stage: Stage = STAGES[cfg.finetuning.stage](cfg)
        model = self.stage.prepare(model, tokenizer=self.tokenizer, device=self.device)
        # DeepSpeed and FSDP gather a module's parameters when it runs: lora_B must run there
        self.fused_lora = fuse_lora_linears(model) if self.engine.name == "ddp" else 0
        self.compiled = self._compile(model) if cfg.train.torch_compile else 0
        self.trainable, self.total = trainable_parameters(model)
        self.attn = getattr(model.config, "_attn_implementation", None) or "sdpa"
        self.engine.wrap(model)
        self.stage.bind(self.engine)
        self.model = self.engine.model
        self.dtype = compute_dtype(cfg)
        mixed = cfg.train.bf16 or cfg.train.fp16
        self.layout = Layout(packed=plan.packed, neat=cfg.data.neat_packing,
                             pad_token_id=self.tokenizer.pad_token_id,
                             attn_implementation=self.attn,
                             dtype=self.dtype if mixed else torch.float32,
                             device=self.device)  # fmt: skip
        self.state = TrainState()
        self.accum = cfg.train.gradient_accumulation_steps
        self.started, self.window = time.time(), Window(self.stage.metrics)
        self.clock, self.effective, self.waited = time.perf_counter(), 0, 0.0

    # ---- helpers -----------------------------------------------------------------------------

    def _compile(self, model: Any) -> int:
        """torch_compile: compile the parts of each decoder layer (the driver checked its own
        C++ compiler; a node without one fails here with the same message)."""
        if self.device.type == "cpu":
            check_compiler()
        return compile_layers(model, layer_classes(model, configured_layer_classes(self.cfg)))

    def _push(self, entry: dict[str, Any]) -> None:
        if self.rank == 0:
            self.board.push.remote(entry)

    def _autocast(self):
        t = self.cfg.train
        if not (t.bf16 or t.fp16):
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def _inputs(self, batch: dict[str, Any]) -> dict[str, Any]:
        return self.stage.collate(batch, self.layout)

    def _waited(self, batches: Any) -> Any:
        """The batches, adding the time spent waiting for each to ``self.waited``."""
        it = iter(batches)
        while True:
            clock = time.perf_counter()
            batch = next(it, None)
            self.waited += time.perf_counter() - clock
            if batch is None:
                return
            yield batch

    def _train_batches(self, epoch: int) -> Any:
        """One epoch of this worker's training shard (reshuffled per epoch), timed."""
        t = self.cfg.train
        shuffle = not self.cfg.finetuning.disable_shuffling
        return self._waited(ray.train.get_dataset_shard("train").iter_batches(
            batch_size=t.per_device_train_batch_size,
            batch_format="numpy",
            drop_last=True,
            local_shuffle_buffer_size=self.cfg.data.buffer_size if shuffle else None,
            local_shuffle_seed=(t.data_seed or t.seed) + epoch if shuffle else None,
        ))  # fmt: skip

    def _eval_passes(self) -> Any:
        """A function that makes one pass over this worker's eval shard."""
        shard = ray.train.get_dataset_shard("eval")
        return functools.partial(shard.iter_batches, batch_format="numpy", drop_last=False,
                                 batch_size=self.cfg.train.per_device_eval_batch_size)  # fmt: skip

    # ---- resume, evaluate, save --------------------------------------------------------------

    def resume(self) -> None:
        checkpoint = ray.train.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as folder:
                self.state = load_checkpoint(self.engine, Path(folder))
        elif self.plan.resume_from:
            self.state = load_checkpoint(self.engine, Path(self.plan.resume_from))
        if self.state.micro_in_epoch >= self.plan.micro_per_epoch:  # saved at an epoch's end
            self.state.epoch, self.state.micro_in_epoch = self.state.epoch + 1, 0

    def _eval_batches(self) -> Any:
        """This worker's eval batches (read ahead in the background, kept when they fit)."""
        assert self.eval_set is not None, "evaluations are due only when the eval set is read"
        clock = time.perf_counter()
        batches = self.eval_set.batches(self.world)
        self.waited += time.perf_counter() - clock
        return batches if isinstance(batches, list) else self._waited(batches)

    def evaluate(self) -> dict[str, float]:
        """eval_loss and the stage's metrics as eval_<name>, over the whole eval set."""
        self.model.eval()
        window = Window(self.stage.metrics)
        with torch.no_grad(), self._autocast():
            for batch in self._eval_batches():
                inputs = self._inputs(batch)
                window.add(self.stage.loss(self.model, inputs), self.stage.weight(inputs))
        self.model.train()
        return window.averages("eval_")

    def report(self, metrics: dict[str, Any], *, checkpoint: bool) -> None:
        """Every worker calls this at the same steps (Ray Train's report is a barrier).

        Each rank hands Ray its own part of the checkpoint; Ray merges them into one folder.
        """
        if not checkpoint:
            ray.train.report(metrics)
            return
        folder = save_checkpoint(self.engine, self.tokenizer, self.state)
        try:
            saved = ray.train.Checkpoint.from_directory(str(folder)) if folder else None
            name = f"checkpoint-{self.state.global_step}"
            ray.train.report(metrics, checkpoint=saved, checkpoint_dir_name=name)
        finally:
            if folder:
                shutil.rmtree(folder, ignore_errors=True)

    # ---- the loop ----------------------------------------------------------------------------

    def _due(self, every: int | float | None, strategy: str, epoch_end: bool) -> bool:
        step, total = self.state.global_step, self.plan.total_steps
        if strategy == "no" or every is None:
            return False
        if strategy == "epoch":
            return epoch_end
        interval = every if every >= 1 else max(1, math.ceil(every * total))
        return step % int(interval) == 0

    def _accumulated(self, epoch: int):
        """This epoch's micro-batches, gradient_accumulation_steps at a time (resume-aware)."""
        batches = iter(self._train_batches(epoch))
        for _ in range(self.state.micro_in_epoch):  # resuming mid-epoch: skip what was done
            next(batches, None)
        while group := [b for _, b in zip(range(self.accum), batches, strict=False)]:
            yield group

    def _step(self, group: list[dict[str, Any]]) -> float | None:
        """One optimiser step over a group of micro-batches; returns the grad norm.

        Each micro-batch's summed loss is divided by the units (target tokens, pairs,
        examples) of the whole step on all workers, times the world size (engines average
        gradients over workers)."""
        inputs = [self._inputs(b) for b in group]
        units = [self.stage.weight(x) for x in inputs]
        self.effective += sum(real_tokens(b) for b in group)
        (step_units,) = _all_sum(sum(units))
        for i, x in enumerate(inputs):
            self.state.tokens += int(x["input_ids"].numel()) * self.world
            with self.engine.micro_batch(last=i == len(inputs) - 1):
                with self._autocast():
                    terms = self.stage.loss(self.model, x)
                    loss = terms.loss * self.world / max(step_units, 1.0)
                self.engine.backward(loss)
            self.window.add(terms, units[i])
        grad_norm = self.engine.step()
        self.state.global_step += 1
        self.state.micro_in_epoch += len(group)
        return grad_norm

    def _after_step(self, grad_norm: float | None) -> bool:
        """Log, evaluate and checkpoint when due; returns whether the epoch is over."""
        t, step = self.cfg.train, self.state.global_step
        micro_per_epoch = self.plan.micro_per_epoch
        epoch_end = self.state.micro_in_epoch >= micro_per_epoch
        progress = self.state.epoch + min(self.state.micro_in_epoch / max(micro_per_epoch, 1), 1)
        metrics: dict[str, Any] = {}
        if self._due(t.logging_steps, t.logging_strategy, epoch_end) or (
            step == 1 and t.logging_first_step
        ):
            metrics.update(self.window.averages())
            metrics["lr"] = self.engine.lr()
            if grad_norm is not None:
                metrics["grad_norm"] = grad_norm
            self.window = Window(self.stage.metrics)
        last = step >= self.plan.total_steps
        evaluate = self.plan.has_eval and (
            self._due(t.eval_steps or t.logging_steps, t.eval_strategy, epoch_end)
            or (last and self.plan.final_eval)
        )
        if evaluate:
            metrics.update(self.evaluate())
        if metrics:
            total = self.plan.total_steps
            (effective,) = _all_sum(self.effective)
            entry = log_entry(step, total, progress, self.started, self.state.tokens, **metrics,
                              effective_tokens=int(effective),
                              train_seconds=round(time.perf_counter() - self.clock, 4),
                              data_wait_seconds=round(self.waited, 4))  # fmt: skip
            self._push(entry)
        save = self._due(t.save_steps, t.save_strategy, epoch_end)
        if evaluate or save or last:
            self.report(metrics | {"step": step, "epoch": progress}, checkpoint=save or last)
        return epoch_end

    def run(self) -> None:
        """Train until total_steps optimiser steps are done (resuming if a checkpoint exists)."""
        self.resume()
        total = self.plan.total_steps
        self._push({"kind": "start", "trainable": self.trainable, "total": self.total,
                    "resumed_step": self.state.global_step, **self.plan.info,
                    "stage": self.stage.name,
                    "torch_threads": torch.get_num_threads(), "fused_lora": self.fused_lora,
                    "compiled_modules": self.compiled,
                    "setup_seconds": round(time.time() - self.setup_started, 2),
                    **self.engine.describe()})  # fmt: skip
        self.started, self.window = time.time(), Window(self.stage.metrics)
        self.clock, self.effective, self.waited = time.perf_counter(), 0, 0.0
        self.model.train()
        while self.state.global_step < total:
            for group in self._accumulated(self.state.epoch):
                grad_norm = self._step(group)
                if self._after_step(grad_norm) or self.state.global_step >= total:
                    break
            self.state.epoch += 1
            self.state.micro_in_epoch = 0


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train's entry point on every worker."""
    import logging
    import warnings

    from transformers.utils import logging as hf_logging

    from ..utils.quiet import quiet_bitsandbytes

    # The driver's progress bar and log are the run's display: no per-worker loading bars,
    # no notes about optional kernels or deprecations inside the libraries.
    quiet_bitsandbytes()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", "`is_gradient_checkpointing`", FutureWarning)
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    try:  # this module logs each checkpoint report at INFO under its file path, not ray.train
        from ray.train.v2._internal.execution import context

        logging.getLogger(context.__file__).setLevel(logging.WARNING)
    except ImportError:
        pass
    Recipe(config["cfg"], config["plan"], config["board"]).run()
