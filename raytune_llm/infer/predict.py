"""Batch prediction: an answer for every example of a dataset, generated with Ray Data.

    raytune-llm predict examples/train_lora/llama3_lora_predict.yaml

LLaMA-Factory's ``do_predict`` with ``predict_with_generate``. The examples (``eval_dataset``;
else the ``val_size`` split of ``dataset``; else all of ``dataset``) stream from the data
pipeline into ``map_batches`` over an actor pool, one backend per actor (the model with
``adapter_name_or_path`` merged, one GPU each where the cluster has GPUs), that renders each
prompt with the run's chat template, exactly as training did, and decodes a batch of
``per_device_eval_batch_size`` prompts together with the ``generation`` keys. The driver writes

* ``output_dir/generated_predictions.jsonl``: ``{"prompt", "predict", "label"}`` per line, in
  dataset order (the prompt as the model saw it, special tokens included; the label is the
  example's reference answer), and
* ``output_dir/predict_results.json``: counts, exact match, throughput and, with the
  ``metrics`` extra installed, LLaMA-Factory's ``predict_bleu-4`` and ``predict_rouge-1/2/l``
  (:mod:`.nlg_metrics`).

Both are written to a temporary file and renamed when complete, so an earlier result is never
half overwritten; an existing result is refused unless ``overwrite_output_dir``. With
``do_sample`` each example is sampled with its own generator seeded by ``seed``, so a rerun
with the same settings writes the same answers.
"""

from __future__ import annotations

import json
import os
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Config
from ..config.paths import make_paths_absolute
from ..data.errors import DataError, surface_data_errors
from ..data.pipeline import check_data, prediction_examples
from ..utils.cluster import connect, shortfall, size_workers
from ..utils.errors import NotAvailableError, UserError

PREDICTIONS = "generated_predictions.jsonl"
RESULTS = "predict_results.json"
PROGRESS_SECONDS = 30
READ_CPUS = 0.25
"""CPUs each read / convert task reserves: the backends never starve the data (DESIGN.md)."""


@dataclass(frozen=True)
class ActorPlan:
    """How many backends run, and what each one holds."""

    actors: int
    num_cpus: float
    num_gpus: float
    threads: int  # torch threads in each backend (CPU backends)


@dataclass
class PredictResult:
    """What a finished prediction wrote."""

    output_dir: Path
    data: str  # which data was answered, in words
    plan: ActorPlan
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def predictions(self) -> Path:
        return self.output_dir / PREDICTIONS


def check_predict(cfg: Config) -> Path:
    """What can be refused before Ray or a model starts; returns the resolved output_dir."""
    problems = []
    if cfg.finetuning.stage != "sft":
        problems.append(
            f"stage {cfg.finetuning.stage}: predict generates answers, which is stage sft "
            "(set stage: sft)"
        )
    if not cfg.train.output_dir:
        problems.append("output_dir: required; generated_predictions.jsonl is written there")
    if not (cfg.data.eval_dataset or cfg.data.dataset):
        problems.append("eval_dataset: no data to predict for; name eval_dataset (or dataset)")
    if problems:
        raise UserError("cannot predict: " + "; ".join(problems))
    if cfg.model.infer_backend == "vllm":
        raise NotAvailableError(
            "predict with infer_backend vllm is not available yet; use infer_backend: huggingface"
        )
    beams = max(cfg.generation.num_beams, cfg.train.generation_num_beams or 1)
    if beams > 1:
        raise NotAvailableError(
            f"beam search (num_beams {beams}) is not available in predict yet; use num_beams: 1"
        )
    out = Path(cfg.train.output_dir).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise UserError(f"output_dir {out} is a file; give a folder")
    taken = [n for n in (PREDICTIONS, RESULTS) if (out / n).exists()]
    if taken and not cfg.train.overwrite_output_dir:
        raise UserError(
            f"output_dir {out} already holds {', '.join(taken)}; set overwrite_output_dir: true "
            "to replace them, or choose another output_dir"
        )
    return out


def plan_actors(cfg: Config, resources: dict[str, float]) -> ActorPlan:
    """Backends and their resources: ``ray_num_workers`` backends (at most one per GPU where the
    cluster has GPUs and resources_per_worker is unset), each sized by the rule training uses
    (utils.cluster.size_workers), with CPU kept for the read tasks."""
    n = cfg.ray.ray_num_workers
    given = cfg.ray.resources_per_worker
    if not given and resources.get("GPU", 0) >= 1:
        n = min(n, int(resources["GPU"]))  # backends are independent: as many as there are GPUs
    # Prediction only reads beside the backends: two read tasks' worth of CPU is kept for it.
    each = size_workers(n, resources, given, 2 * READ_CPUS) or {"CPU": 0.25}
    cpus, gpus = each.get("CPU", 1.0 if given else 0.0), each.get("GPU", 0.0)
    short = shortfall(n, {"CPU": cpus, "GPU": gpus}, resources, READ_CPUS)
    if short:
        raise UserError(
            f"ray_num_workers {n} backends need {' and '.join(short)} (resources_per_worker "
            f"{given or 'unset'}) but the cluster has {resources.get('CPU', 0):g} CPU and "
            f"{resources.get('GPU', 0):g} GPU; ask for fewer workers or resources"
        )
    return ActorPlan(n, cpus, gpus, max(1, round(cpus)))


def split_example(example: dict[str, Any]) -> tuple[list[dict[str, str]], str, str, str]:
    """(prompt messages, system, tools, reference answer) of a canonical sft example."""
    messages = list(example["messages"])
    label = ""
    if messages and messages[-1]["role"] in ("assistant", "function"):
        label = messages.pop()["content"]
    return messages, example.get("system", ""), example.get("tools", ""), label


class Predictor:
    """One backend per actor: a batch of canonical examples → prompt, predict, label (in order)."""

    def __init__(self, cfg: Config, threads: int):
        import torch
        from transformers.utils import logging as hf_logging

        from ..model.generate.sampling import SamplingParams
        from .backend import build_backend

        hf_logging.disable_progress_bar()  # the driver reports progress
        if not torch.cuda.is_available():
            torch.set_num_threads(threads)  # Ray sets one thread per whole CPU held (DESIGN.md)
        self.backend = build_backend(cfg)
        self.params = SamplingParams.from_config(cfg.generation).with_overrides(
            seed=cfg.train.seed if cfg.generation.do_sample else None
        )

    def __call__(self, batch: Any) -> dict[str, list]:
        backend = self.backend
        prompts, labels = [], []
        examples = batch.column("_example").to_pylist()
        for raw, where in zip(examples, batch.column("_where").to_pylist(), strict=True):
            messages, system, tools, label = split_example(pickle.loads(raw))
            try:
                ids = backend.encode_chat(messages, system, tools)
            except UserError as err:
                raise DataError(str(err), where=where) from None
            if len(ids) >= backend.context_length:
                raise DataError(
                    f"the prompt is {len(ids)} tokens but the model's context is "
                    f"{backend.context_length}; shorten it or leave it out (max_samples)",
                    where=where,
                )
            prompts.append(ids)
            labels.append(label)
        answers = backend.generate(prompts, self.params)
        decode = backend.tokenizer.decode
        return {
            "prompt": [decode(p, skip_special_tokens=False) for p in prompts],
            "predict": [a.text for a in answers],
            "label": labels,
            "prompt_tokens": [a.prompt_tokens for a in answers],
            "completion_tokens": [a.completion_tokens for a in answers],
        }


def quiet_ray_data() -> None:
    """Ray Data settings of batch inference: results in dataset order, no bars or banners."""
    import logging

    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.execution_options.preserve_order = True  # the file is in dataset order
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    # A failing task is reported once, as the exception the command prints, not also as a log.
    logging.getLogger("ray.data").setLevel(logging.CRITICAL)


def map_on_actors(ds: Any, udf: type, cfg: Config, plan: ActorPlan, batch_size: int) -> Any:
    """``ds`` through ``udf(cfg=cfg, threads=...)`` on the plan's actor pool, one row per row in,
    ``batch_size`` rows per call as pyarrow tables (predict's and eval's batch inference)."""
    import ray.data

    return ds.map_batches(
        udf,
        fn_constructor_kwargs={"cfg": cfg, "threads": plan.threads},
        compute=ray.data.ActorPoolStrategy(size=plan.actors),
        batch_size=batch_size,
        batch_format="pyarrow",
        num_cpus=plan.num_cpus,
        num_gpus=plan.num_gpus,
        udf_modifying_row_count=False,
    )


def run_predict(cfg: Config, *, log: Any = print) -> PredictResult:
    """Answer every example and write the predictions and results (see the module docstring).

    Args:
        cfg: the run's config (model, adapters, data, ``generation``, ``output_dir``).
        log: where progress lines go.
    """
    import ray

    out = check_predict(cfg)
    make_paths_absolute(cfg)  # the backends run in other processes
    check_data(cfg)  # names, registry, template: before Ray starts
    where = connect(cfg.ray.ray_address, cfg.ray.ray_init_kwargs)
    plan = plan_actors(cfg, ray.cluster_resources())
    quiet_ray_data()
    started = time.time()
    with surface_data_errors():
        examples, data, bad = prediction_examples(cfg, num_cpus=READ_CPUS)
        log(f"raytune-llm: predicting for {data} on {where}: {plan.actors} backend(s) x "
            f"{plan.num_gpus:g} GPU, {plan.num_cpus:g} CPU, batches of "
            f"{cfg.train.per_device_eval_batch_size}")  # fmt: skip
        answered = map_on_actors(examples, Predictor, cfg, plan,
                                 cfg.train.per_device_eval_batch_size)  # fmt: skip
        out.mkdir(parents=True, exist_ok=True)
        nlg = _nlg_scores(log)
        counts = _write_predictions(answered, out / PREDICTIONS, log, nlg)
    if bad is not None:  # skip_bad_records
        from ..data.readers import collect_bad_records

        log(collect_bad_records(bad).summary())
    seconds = time.time() - started
    metrics = _metrics(counts, seconds) | (nlg.result() if nlg is not None else {})
    _write_atomically(out / RESULTS, json.dumps(metrics, indent=2) + "\n")
    return PredictResult(out, data, plan, metrics)


def _nlg_scores(log: Any) -> Any:
    from .nlg_metrics import MISSING, NlgScores, metrics_available

    if metrics_available():
        return NlgScores()
    log(f"raytune-llm: {MISSING}; predict_results.json leaves them out")
    return None


def _write_predictions(ds: Any, path: Path, log: Any, nlg: Any = None) -> dict[str, int]:
    """Stream the answered rows into ``path`` (through a temporary file); return the counts."""
    partial = path.with_name(f".{path.name}.partial")
    counts = {"samples": 0, "exact": 0, "prompt_tokens": 0, "completion_tokens": 0}
    started = shown = time.time()
    try:
        with partial.open("w", encoding="utf-8") as f:
            for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
                for row in batch.to_pylist():
                    line = {k: row[k] for k in ("prompt", "predict", "label")}
                    f.write(json.dumps(line, ensure_ascii=False) + "\n")
                    counts["samples"] += 1
                    counts["exact"] += int(row["predict"].strip() == row["label"].strip())
                    if nlg is not None:
                        nlg.add(row["predict"], row["label"])
                    counts["prompt_tokens"] += row["prompt_tokens"]
                    counts["completion_tokens"] += row["completion_tokens"]
                if time.time() - shown > PROGRESS_SECONDS:
                    shown, n = time.time(), counts["samples"]
                    log(f"  {n} answered ({n / (shown - started):.2f} examples/s)")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return counts


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def _metrics(counts: dict[str, int], seconds: float) -> dict[str, float | int]:
    """LLaMA-Factory's ``predict_*`` keys that need no extra library."""
    n = counts["samples"]
    return {
        "predict_samples": n,
        "predict_exact_match": counts["exact"] / n if n else 0.0,
        "predict_prompt_tokens": counts["prompt_tokens"],
        "predict_generated_tokens": counts["completion_tokens"],
        "predict_runtime": round(seconds, 4),
        "predict_samples_per_second": round(n / seconds, 3) if seconds else 0.0,
        "predict_tokens_per_second": round(counts["completion_tokens"] / seconds, 3)
        if seconds
        else 0.0,
    }
