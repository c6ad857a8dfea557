"""``raytune-llm train``: the driver side of a run.

check config and data → decide fresh / resume / replace for output_dir → join or start Ray →
size the workers to the cluster → stream the data → TorchTrainer.fit with a live progress bar →
copy the final adapter or model to output_dir, write the results and the loss plot.
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Config
from ..config.available import check_trainable
from ..config.deepspeed import read_deepspeed_config, zero_stage
from ..config.paths import make_paths_absolute
from ..data.errors import surface_data_errors
from ..data.pipeline import check_data, packing_on, prepare_data
from ..model.compile import check_compiler
from ..model.loader import load_model_config, load_tokenizer
from ..utils.cluster import connect, shortfall, size_workers
from ..utils.errors import UserError, surfaced
from ..utils.quiet import quiet_ray_driver
from .checkpoint import export_final
from .engines import engine_name, fill_deepspeed_config
from .hub import check_hub, push_output
from .plan import RunPlan
from .progress import DriverLog, ProgressBoard, plot_loss
from .stages.reference import check_ref_model
from .trackers import build_trackers


@dataclass
class Workers:
    """How the run is placed: Ray's scaling settings, CPUs per data task, torch threads."""

    num_workers: int
    resources: dict[str, float]
    use_gpu: bool
    data_cpus: float
    threads: int
    strategy: str


def plan_workers(
    cfg: Config, cluster: dict[str, float], nodes: list[dict[str, float]], runs: int = 1
) -> Workers:
    """Size the workers to what the cluster has, and refuse plainly what it cannot hold.

    Without resources_per_worker, a worker takes one GPU where the cluster has enough, else an
    equal share of the CPUs left after a reserve for Ray Data's tasks (a worker holding every
    CPU would starve the data pipeline and hang). torch runs as many threads as the node has
    cores per worker, whatever fraction of a CPU Ray books for the worker. ``runs`` runs of
    this size share the cluster at once (the concurrent trials of a sweep).
    """
    r = cfg.ray
    n = r.ray_num_workers * runs  # the workers of all runs at once
    cpus = cluster.get("CPU", 0.0)
    # Training streams the whole data pipeline beside the workers: a quarter of the CPUs for it.
    resources = size_workers(n, cluster, r.resources_per_worker, min(max(0.5, 0.25 * cpus), 2.0))
    if resources is None:
        asked = f"ray_num_workers is {n}"
        if runs > 1:
            asked = f"{runs} concurrent trials x ray_num_workers {r.ray_num_workers} is {n}"
        raise UserError(
            f"{asked} but the cluster has {cpus:g} CPUs: too few to give each worker a share "
            "and keep some for data; use "
            + ("fewer concurrent trials (tune.max_concurrent_trials) or " if runs > 1 else "")
            + "fewer workers"
        )
    short = shortfall(n, resources, cluster)
    if short:
        name = short[0].split()[-1]
        times = f"{runs} concurrent trials x " if runs > 1 else ""
        raise UserError(
            f"{times}ray_num_workers {r.ray_num_workers} x resources_per_worker {resources} "
            f"needs {short[0]} but the cluster has {cluster.get(name, 0.0):g}; lower "
            + ("tune.max_concurrent_trials, " if runs > 1 else "")
            + "ray_num_workers or resources_per_worker, or add nodes"
        )
    fits = [_fits(node, resources) for node in nodes]
    if r.placement_strategy == "STRICT_SPREAD" and sum(1 for f in fits if f) < r.ray_num_workers:
        raise UserError(
            f"placement_strategy STRICT_SPREAD puts each of the {r.ray_num_workers} workers on "
            "its own node, "
            f"but only {sum(1 for f in fits if f)} node(s) can hold one"
        )
    node_cpus = max((node.get("CPU", 0.0) for node in nodes), default=cpus)
    per_node = runs if "SPREAD" in r.placement_strategy else min(n, max(1, max(fits, default=1)))
    threads = max(1, int(node_cpus // per_node))
    gpu = resources.get("GPU", 0) > 0
    return Workers(r.ray_num_workers, resources, gpu, 0.25, threads, r.placement_strategy)


def _fits(node: dict[str, float], resources: dict[str, float]) -> int:
    """How many workers of this size a node can hold."""
    counts = [node.get(k, 0.0) / v for k, v in resources.items() if v > 0]
    return int(min(counts)) if counts else 0


def alive_nodes() -> list[dict[str, float]]:
    import ray

    return [n["Resources"] for n in ray.nodes() if n.get("Alive")]


@dataclass
class ClusterView:
    """What a run may be planned on: the nodes up now, plus those an autoscaler can still add."""

    resources: dict[str, float]
    """Totals to plan against: the larger of what is up and what the autoscaler can reach."""
    nodes: list[dict[str, float]]
    """Each node up now, then each node the autoscaler's node groups can add."""
    now: dict[str, float]
    """The totals of the nodes up now."""
    now_nodes: list[dict[str, float]]
    """The nodes up now."""

    def waits_for(self, workers: Workers, runs: int = 1) -> str:
        """Why the nodes up now cannot hold the workers of ``runs`` runs ('' when they can)."""
        n = workers.num_workers * runs
        short = [f"{v * n:g} {k}" for k, v in sorted(workers.resources.items())
                 if v * n > self.now.get(k, 0.0) + 1e-9]  # fmt: skip
        if short:
            have = _amounts(self.now)
            return f"the workers need {', '.join(short)}; the nodes up now have {have}"
        if workers.strategy == "STRICT_SPREAD":
            holding = sum(1 for node in self.now_nodes if _fits(node, workers.resources))
            if holding < workers.num_workers:
                return (
                    f"STRICT_SPREAD puts each of the {workers.num_workers} workers on its own "
                    f"node; {holding} node(s) up now can hold one"
                )
        return ""


def grow(
    now: dict[str, float],
    nodes: list[dict[str, float]],
    groups: list[tuple[dict[str, float], int]],
    largest: int,
) -> ClusterView:
    """The view of a cluster whose autoscaler can add nodes of ``groups`` ((resources, max count;
    -1 for no limit), ``largest`` of each at most: no run needs more nodes than workers)."""
    extra = []
    for resources, count in groups:
        extra += [dict(resources) for _ in range(largest if count < 0 else min(count, largest))]
    reach: dict[str, float] = {}
    for node in extra:
        for k, v in node.items():
            reach[k] = reach.get(k, 0.0) + v
    totals = {k: max(now.get(k, 0.0), reach.get(k, 0.0)) for k in {*now, *reach}}
    return ClusterView(totals, list(nodes) + extra, dict(now), list(nodes))


def cluster_view(cfg: Config, runs: int = 1) -> ClusterView:
    """The connected cluster, grown by what its autoscaler (KubeRay, the cluster launcher)
    reports it can add: a run sized for nodes not up yet is planned, and its workers wait for
    them (RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S), instead of being refused or put on CPUs."""
    import ray
    import ray._private.state as ray_state

    now = {k: float(v) for k, v in ray.cluster_resources().items()}
    nodes = alive_nodes()
    try:
        config = ray_state.state.get_cluster_config()
    except Exception:  # an older GCS or a client connection: no autoscaler report to read
        config = None
    groups = []
    for group in getattr(config, "node_group_configs", None) or []:
        if group.max_count != 0 and group.resources:
            resources = {k: float(v) for k, v in group.resources.items()}
            groups.append((resources, group.max_count))
    return grow(now, nodes, groups, max(1, cfg.ray.ray_num_workers * runs))


def output_policy(cfg: Config) -> tuple[Path, str, Path | None]:
    """Decide what happens to output_dir: ("fresh" | "resume" | "replace", and the old copy).

    An existing run's checkpoints are resumed from; a folder with other content is refused
    unless overwrite_output_dir is set, and then it is moved aside (and deleted only once the
    new run has finished), so a failed run never leaves a half-overwritten output_dir.
    """
    out = Path(cfg.train.output_dir).expanduser().resolve()
    if not out.exists() or not any(out.iterdir()):
        return out, "fresh", None
    if not out.is_dir():
        raise UserError(f"output_dir {out} is a file; give a folder")
    if cfg.train.overwrite_output_dir:
        aside = out.with_name(f".{out.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
        out.rename(aside)
        return out, "replace", aside
    if any(out.glob("checkpoint-*")):
        return out, "resume", None
    raise UserError(
        f"output_dir {out} exists and is not empty; set overwrite_output_dir: true to replace "
        "it, or choose another output_dir"
    )


def keep_tokenised(cfg: Config, data: Any) -> tuple[Any, Any, int]:
    """Run the data graph once and keep its tokenised (and packed) blocks for the whole run.

    Every epoch then iterates the kept blocks (reshuffled per epoch by the workers) instead of
    reading, converting and tokenising again: Ray holds them in its object store and spills
    what does not fit to local disk, so the driver holds only block references, however large
    the data. With ``streaming: true`` the graph runs again for each epoch instead (only the
    row count is taken first), for data that should not be kept. The eval set stays lazy: the
    workers read it while training starts and keep it (``worker.KeptShard``).

    Returns:
        (train, eval, number of training rows).
    """
    if cfg.data.streaming:
        return data.train, data.eval, data.train.count()
    train = data.train.materialize()
    return train, data.eval, train.count()


def _plan(
    cfg: Config, n_train: int, workers: Workers, has_eval: bool, packed: bool, engine: dict
) -> RunPlan:
    t = cfg.train
    per_worker = n_train // workers.num_workers
    micro_per_epoch = per_worker // t.per_device_train_batch_size
    if micro_per_epoch == 0:
        raise UserError(
            f"the training data has {n_train} rows, fewer than per_device_train_batch_size "
            f"{t.per_device_train_batch_size} x {workers.num_workers} workers"
        )
    steps_per_epoch = math.ceil(micro_per_epoch / t.gradient_accumulation_steps)
    total = t.max_steps if t.max_steps > 0 else math.ceil(steps_per_epoch * t.num_train_epochs)
    return RunPlan(
        total_steps=total,
        micro_per_epoch=micro_per_epoch,
        threads=workers.threads,
        packed=packed,
        has_eval=has_eval,
        final_eval=has_eval and cfg.train.do_eval,
        resume_from=cfg.train.resume_from_checkpoint,
        **engine,
        info={
            "num_examples": n_train,
            "num_epochs": t.num_train_epochs if t.max_steps <= 0 else total / steps_per_epoch,
            "batch_size": t.per_device_train_batch_size,
            "world_size": workers.num_workers,
            "accumulation": t.gradient_accumulation_steps,
            "total_steps": total,
        },
    )


def _engine_plan(cfg: Config, world: int) -> dict[str, Any]:
    """The engine and its settings, checked on the driver so that mistakes surface before Ray
    starts any worker (the DeepSpeed JSON is read here: workers run in another folder)."""
    name = engine_name(cfg)
    if name != "deepspeed":
        return {"engine": name}
    raw = read_deepspeed_config(cfg) or {}
    hidden = getattr(load_model_config(cfg.model), "hidden_size", None)
    filled = fill_deepspeed_config(raw, cfg, world, hidden)
    return {"engine": name, "deepspeed": raw, "hidden_size": hidden,
            "zero_stage": zero_stage(filled)}  # fmt: skip


def _amounts(resources: dict[str, float]) -> str:
    """'2 CPU, 1 GPU': the schedulable resources, without Ray's memory and node markers."""
    shown = [
        f"{v:g} {k}"
        for k, v in sorted(resources.items())
        if not k.startswith("node:") and k not in ("memory", "object_store_memory")
    ]
    return ", ".join(shown) or "nothing"


def _engine_words(engine: dict[str, Any]) -> str:
    if engine["engine"] == "deepspeed":
        return f"DeepSpeed ZeRO-{engine['zero_stage']}"
    return {"fsdp": "FSDP", "ddp": "DDP"}[engine["engine"]]


def _quiet_ray() -> None:
    """The driver's progress bar is the run's one progress display: no Ray Data bars or logs."""
    import logging

    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    quiet_ray_driver()


@dataclass
class TrainResult:
    """What a finished run left in output_dir."""

    output_dir: Path
    steps: int
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    seconds: float
    run_info: dict[str, Any] = field(default_factory=dict)
    """The start entry of the last attempt: plan, parameter counts, engine and sharding."""


def run_training(
    cfg: Config, *, show_bar: bool = True, runs: int = 1, callbacks: list | None = None
) -> TrainResult:
    """Train as the config says; see the module docstring for the order of things.

    Args:
        cfg: the run's config.
        show_bar: draw the progress bar on the driver (unless disable_tqdm).
        runs: how many runs of this size share the cluster at once (a sweep's trials).
        callbacks: extra Ray Train callbacks (a sweep's report to Ray Tune).
    """
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    from .worker import train_loop_per_worker

    check_trainable(cfg)  # what this version cannot train yet (config.available)
    # A tracker not installed, or a hub that cannot take the upload, is refused before Ray
    # starts or a training step is spent.
    trackers = build_trackers(cfg)
    if cfg.train.push_to_hub:
        check_hub(cfg)
    if cfg.train.resume_from_checkpoint and not Path(cfg.train.resume_from_checkpoint).is_dir():
        raise UserError(
            f"resume_from_checkpoint {cfg.train.resume_from_checkpoint} is not a folder"
        )
    make_paths_absolute(cfg)  # workers run in another working directory
    # Ray Train gives up on workers that take over 60 s to start; a busy laptop or a cluster
    # that is still adding nodes can take longer. (Ray passes this on to its controller.)
    os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "600")
    check_data(cfg)
    check_ref_model(cfg)
    out, mode, aside = output_policy(cfg)
    started = time.time()
    try:
        where = connect(cfg.ray.ray_address, cfg.ray.ray_init_kwargs)
        phases = {"Ray": time.time() - started}
        view = cluster_view(cfg, runs)
        workers = plan_workers(cfg, view.resources, view.nodes, runs)
        engine = _engine_plan(cfg, workers.num_workers)
        if cfg.train.torch_compile and not workers.use_gpu:
            check_compiler()
        short = view.waits_for(workers, runs)
        if short:
            print(f"raytune-llm: {short}: waiting for the autoscaler to add nodes")
        print(
            f"raytune-llm: training on {where}: {workers.num_workers} worker(s) x "
            f"{workers.resources}, {workers.threads} torch thread(s) each, "
            f"{_engine_words(engine)} ({mode} {out})"
        )
        packed = packing_on(cfg)
        _quiet_ray()
        print("raytune-llm: reading and tokenising the data ...", flush=True)
        clock = time.time()
        with surface_data_errors():
            data = prepare_data(cfg, functools.partial(load_tokenizer, cfg.model),
                                num_cpus=workers.data_cpus)  # fmt: skip
            data.train, data.eval, n_train = keep_tokenised(cfg, data)
        phases["data"] = time.time() - clock
        kept = "read again each epoch" if cfg.data.streaming else "kept for the run"
        print(f"raytune-llm: data ready in {phases['data']:.1f} s: {n_train:,} training rows "
              f"({kept}); starting the workers and loading the model ...", flush=True)  # fmt: skip
        plan = _plan(cfg, n_train, workers, data.eval is not None, packed, engine)
        board = ray.remote(num_cpus=0)(ProgressBoard).remote()
        storage = cfg.ray.ray_storage_path or str(out.parent)
        name = cfg.ray.ray_run_name or out.name
        trainer = TorchTrainer(
            train_loop_per_worker,
            train_loop_config={"cfg": cfg, "plan": plan, "board": board},
            torch_config=TorchConfig(timeout_s=cfg.train.ddp_timeout),
            scaling_config=ray.train.ScalingConfig(
                num_workers=workers.num_workers,
                use_gpu=workers.use_gpu,
                resources_per_worker=workers.resources,
                placement_strategy=workers.strategy,
            ),
            run_config=ray.train.RunConfig(
                name=name,
                storage_path=storage,
                callbacks=callbacks,
                failure_config=ray.train.FailureConfig(max_failures=cfg.ray.max_failures),
                checkpoint_config=ray.train.CheckpointConfig(
                    num_to_keep=cfg.train.save_total_limit
                ),
                logging_config=ray.train.LoggingConfig(log_level="WARNING"),
            ),
            datasets={
                k: v for k, v in (("train", data.train), ("eval", data.eval)) if v is not None
            },
        )
        bar = show_bar and not cfg.train.disable_tqdm
        with (
            DriverLog(board, out, show_bar=bar, trackers=trackers, phases=phases) as log,
            surfaced(UserError),  # a data or config mistake a worker found: its own message
        ):
            result = trainer.fit()
    except BaseException:
        if aside is not None and aside.exists():
            if out.exists():
                shutil.rmtree(out, ignore_errors=True)
            aside.rename(out)  # the replaced run comes back untouched
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
    done = _finish(cfg, out, result, log.history, time.time() - started)
    done.run_info = dict(log.started or {})
    return done


def _perplexity(loss: float) -> float:
    try:
        return math.exp(loss)
    except OverflowError:
        return float("inf")


def _finish(cfg: Config, out: Path, result: Any, history: list, seconds: float) -> TrainResult:
    """Copy the final model to output_dir, write the results files and plots, push_to_hub."""
    if result.checkpoint is not None:
        with result.checkpoint.as_directory() as folder:
            export_final(Path(folder), out)
    metrics = dict(result.metrics or {})
    steps = int(metrics.get("step", 0))
    losses = [e["loss"] for e in history if "loss" in e]
    train_results = {
        "epoch": metrics.get("epoch"),
        "train_loss": sum(losses) / len(losses) if losses else None,
        "train_runtime": round(seconds, 2),
        "train_steps_per_second": round(steps / seconds, 3) if seconds else None,
        "total_tokens": history[-1]["total_tokens"] if history else 0,
    }
    (out / "train_results.json").write_text(json.dumps(train_results, indent=2))
    all_results = dict(train_results)
    evals = [e for e in history if "eval_loss" in e]
    if evals:  # the last evaluation's metrics, as LLaMA-Factory's all_results.json has them
        all_results.update({k: v for k, v in evals[-1].items() if k.startswith("eval_")})
    if cfg.train.do_eval and evals:  # LLaMA-Factory's eval_results.json (with pt: perplexity)
        last_eval = {k: v for k, v in evals[-1].items() if k.startswith("eval_")}
        eval_results = {"epoch": evals[-1].get("epoch"), **last_eval}
        if cfg.finetuning.stage == "pt":
            eval_results["perplexity"] = _perplexity(eval_results["eval_loss"])
        (out / "eval_results.json").write_text(json.dumps(eval_results, indent=2))
        all_results.update(eval_results)
        all_results["epoch"] = train_results["epoch"]
    (out / "all_results.json").write_text(json.dumps(all_results, indent=2))
    if cfg.finetuning.plot_loss:
        plot_loss(out, history)
    if cfg.train.push_to_hub:
        repo = push_output(cfg, out)
        print(f"raytune-llm: pushed {out} to the hub as {repo}")
    return TrainResult(out, steps, all_results, history, seconds)
