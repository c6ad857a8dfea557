"""``raytune-llm eval``: multiple-choice benchmarks (MMLU, C-Eval, CMMLU) as Ray Data inference.

    raytune-llm eval examples/demo/tiny_eval.yaml

The driver reads the task (:mod:`.tasks`; every problem found before Ray starts), builds each
question's prompt in the ``eval_style`` asked for (:mod:`.prompts`), and streams the questions
through ``map_batches`` over an actor pool sized as predict sizes it (``ray_num_workers``
backends, ``resources_per_worker`` or one GPU each where there are GPUs; see
:func:`raytune_llm.infer.predict.plan_actors`), ``batch_size`` questions per forward pass. Each
model of ``eval_checkpoints`` (or the config's model alone) gets its own pass and its own column
in the table (:mod:`.report`), written to ``save_dir`` with the predictions.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Config
from ..config.paths import make_paths_absolute
from ..infer.backend import adapter_names
from ..infer.predict import ActorPlan, map_on_actors, plan_actors, quiet_ray_data
from ..utils.cluster import connect
from ..utils.errors import UserError, surfaced
from .prompts import chat_messages, harness_context, pick_shots
from .report import Predictions, Tally, format_table, tally, write_results
from .scoring import ChoiceScorer
from .tasks import Task, load_task

REUSE_MODES = ("reuse_dataset_if_exists", "reuse_cache_if_exists")


@dataclass(frozen=True)
class EvalModel:
    """One column of the table: a model and the adapters merged into it."""

    name: str
    model: str
    adapters: tuple[str, ...] = ()


@dataclass
class EvalResult:
    """What a finished evaluation found and wrote."""

    task: Task
    plan: ActorPlan
    scores: dict[str, Predictions]
    tallies: dict[str, dict[str, Tally]]
    seconds: float
    save_dir: Path | None = None
    written: list[Path] = field(default_factory=list)

    @property
    def questions_per_second(self) -> float:
        return self.task.size * len(self.scores) / self.seconds if self.seconds else 0.0


def _expand(entry: str) -> list[Path]:
    """The model folders an eval_checkpoints entry stands for (see the key's description)."""
    path = Path(entry).expanduser().resolve()
    if not path.is_dir():
        raise UserError(f"eval_checkpoints: {entry} is not a folder")
    steps = [(int(p.name[11:]), p) for p in path.glob("checkpoint-*") if p.name[11:].isdigit()]
    folders = [p for _, p in sorted(steps)]
    if (path / "adapter_config.json").is_file() or (path / "config.json").is_file():
        folders.append(path)
    if not folders:
        raise UserError(
            f"eval_checkpoints: {entry} holds no adapter (adapter_config.json), model "
            "(config.json) or checkpoint-N folders"
        )
    return folders


def eval_models(cfg: Config) -> list[EvalModel]:
    """The models to score: each of ``eval_checkpoints``, or the config's model and adapters."""
    base = cfg.model.model_name_or_path
    entries = cfg.eval.eval_checkpoints
    if not entries:
        return [EvalModel("model", base, tuple(cfg.model.adapter_name_or_path or ()))]
    if cfg.model.adapter_name_or_path:
        raise UserError(
            "eval_checkpoints and adapter_name_or_path: each eval_checkpoints entry replaces "
            "adapter_name_or_path; set only one of them"
        )
    folders = [p for e in entries if e != "base" for p in _expand(e)]
    names = {path: name for name, path in adapter_names([str(p) for p in folders]).items()}
    models = []
    for entry in entries:
        if entry == "base":
            models.append(EvalModel("base", base))
            continue
        for path in _expand(entry):
            adapter = (path / "adapter_config.json").is_file()
            models.append(
                EvalModel(names[str(path)], base, (str(path),))
                if adapter
                else EvalModel(names[str(path)], str(path))
            )
    return models


def check_eval(cfg: Config) -> tuple[Task, Path | None, list[EvalModel]]:
    """What can be refused before Ray or a model starts: (task, save_dir, models)."""
    args = cfg.eval
    if not args.task:
        raise UserError("task: required; name the benchmark and split, e.g. task: mmlu_test")
    save_dir = Path(args.save_dir).expanduser().resolve() if args.save_dir else None
    if save_dir is not None and save_dir.exists():
        raise UserError(
            f"save_dir {save_dir} already exists; results are never overwritten: remove it or "
            "choose another save_dir"
        )
    models = eval_models(cfg)
    task = load_task(args.task_dir, args.task, args.n_shot)
    if not task.size:
        raise UserError(f"task {args.task}: {task.source} holds no questions in that split")
    return task, save_dir, models


def question_rows(task: Task, cfg: Config) -> list[dict[str, Any]]:
    """One row per question: its subject, index and prompt (JSON messages, or harness text)."""
    args, rows = cfg.eval, []
    for subject in task.subjects:
        for i, q in enumerate(subject.questions):
            shots = pick_shots(subject.dev, args.n_shot, args.eval_style, cfg.train.seed,
                               f"{subject.key}/{i}")  # fmt: skip
            if args.eval_style == "harness":
                prompt = harness_context(q, shots, subject.name, args.lang)
            else:
                messages = chat_messages(q, shots, subject.name, args.lang)
                prompt = json.dumps(messages, ensure_ascii=False)
            rows.append({"subject": subject.key, "index": i, "prompt": prompt})
    return rows


def _config_for(cfg: Config, model: EvalModel) -> Config:
    out = cfg.model_copy(deep=True)
    out.model.model_name_or_path = model.model
    out.model.adapter_name_or_path = list(model.adapters) or None
    return out


def _score(cfg: Config, rows: list[dict[str, Any]], plan: ActorPlan) -> Predictions:
    import ray.data

    blocks = max(1, min(len(rows), plan.actors * 4))
    questions = ray.data.from_items(rows, override_num_blocks=blocks)
    scored = map_on_actors(questions, ChoiceScorer, cfg, plan, cfg.eval.batch_size)
    found: dict[tuple[str, int], str] = {}
    with surfaced():
        for batch in scored.iter_batches(batch_size=None, batch_format="pyarrow"):
            for row in batch.to_pylist():
                found[row["subject"], row["index"]] = row["predict"]
    predictions: Predictions = {}
    for row in rows:  # in task order, whatever order the actors answered in
        key = (row["subject"], row["index"])
        predictions.setdefault(key[0], {})[str(key[1])] = found[key]
    return predictions


def run_eval(cfg: Config, *, log: Any = print) -> EvalResult:
    """Score every model on the task and write the results (see the module docstring).

    Args:
        cfg: the run's config (model, adapters, the eval keys, ``seed``, ``ray_*``).
        log: where progress lines go.
    """
    import ray

    task, save_dir, models = check_eval(cfg)
    args = cfg.eval
    if args.download_mode not in REUSE_MODES:
        log(f"warning: download_mode {args.download_mode}: nothing is downloaded; the task is "
            f"read from {task.source}")  # fmt: skip
    make_paths_absolute(cfg)  # the backends run in other processes
    rows = question_rows(task, cfg)
    where = connect(cfg.ray.ray_address, cfg.ray.ray_init_kwargs)
    plan = plan_actors(cfg, ray.cluster_resources())
    quiet_ray_data()
    log(f"raytune-llm: {args.task} ({task.size} questions, {len(task.subjects)} subjects, "
        f"{args.n_shot}-shot, eval_style {args.eval_style}) on {where}: {plan.actors} "
        f"backend(s) x {plan.num_gpus:g} GPU, {plan.num_cpus:g} CPU, batches of "
        f"{args.batch_size}")  # fmt: skip
    scores: dict[str, Predictions] = {}
    started = time.time()
    for model in models:
        began = time.time()
        scores[model.name] = _score(_config_for(cfg, model), rows, plan)
        average = tally(task, scores[model.name])["Average"].accuracy
        shown = "-" if average is None else f"{100 * average:.2f}"
        log(f"  {model.name}: average {shown} ({task.size / (time.time() - began):.1f} "
            "questions/s)")  # fmt: skip
    result = EvalResult(task, plan, scores, {n: tally(task, p) for n, p in scores.items()},
                        time.time() - started, save_dir)  # fmt: skip
    if save_dir is not None:
        header = (f"# {args.task}, {args.n_shot}-shot, eval_style {args.eval_style}, lang "
                  f"{args.lang}, from {task.source}\n")  # fmt: skip
        result.written = write_results(save_dir, task, scores, header)
    return result


def summary(result: EvalResult) -> str:
    """The table of a finished evaluation, for the terminal."""
    return format_table(result.task, result.scores)
