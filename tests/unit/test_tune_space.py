"""The tune: section is checked with the config, before any trial: settings, search space,
metric, concurrency."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from raytune_llm.config import ConfigError, load_config
from raytune_llm.tune.space import to_ray_space, tune_args
from raytune_llm.tune.sweep import _concurrency, _search
from raytune_llm.utils.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
SWEEP = ROOT / "examples" / "tune" / "tiny_lora_sweep.yaml"
EXE = Path(sys.executable).with_name("raytune-llm")


def write(text: str) -> Path:
    import tempfile

    folder = Path(tempfile.mkdtemp())
    (folder / "sweep.yaml").write_text(text)
    return folder / "sweep.yaml"


def _line(text: str, start: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if line.startswith(start))


def cfg(*overrides: str):
    return load_config(SWEEP, [f"dataset_dir={ROOT / 'data'}", *overrides])


def problems(*overrides: str) -> dict[str, str]:
    with pytest.raises(ConfigError) as err:
        cfg(*overrides)
    return {p.key: p.message for p in err.value.problems}


def test_the_example_space_is_valid_and_becomes_ray_distributions():
    from ray.tune.search.sample import Categorical, Float

    c = cfg()
    args = tune_args(c)
    assert (args.metric, args.mode, args.num_samples, args.scheduler) == (
        "eval_loss",
        "min",
        6,
        "asha",
    )
    space = to_ray_space(args)
    assert isinstance(space["learning_rate"], Float) and isinstance(space["lora_rank"], Categorical)
    lrs = [space["learning_rate"].sample() for _ in range(50)]
    assert all(1e-4 <= x <= 1e-2 for x in lrs)


def test_grid_search_takes_every_choice():
    c = cfg("tune.search_alg=grid", "tune.param_space={lora_rank: {choice: [4, 8]}}")
    space = to_ray_space(tune_args(c))
    assert space["lora_rank"] == {"grid_search": [4, 8]}


def test_unknown_key_and_distribution_are_named():
    found = problems(
        "tune.param_space={learning_rat: {uniform: [0.1, 0.2]}, lora_rank: {choise: [4]},"
        " warmup_ratio: {uniform: [0.5, 0.1]}}"
    )
    assert "did you mean 'learning_rate'" in found["tune.param_space.learning_rat"]
    assert "did you mean 'choice'" in found["tune.param_space.lora_rank"]
    assert "low < high" in found["tune.param_space.warmup_ratio"]


def test_values_a_trial_could_not_use_are_refused():
    found = problems(
        "tune.param_space={lora_rank: {choice: [8, 0]}, lr_scheduler_type: [cosine, wavy]}"
    )
    assert "value 0 gives an invalid trial" in found["tune.param_space.lora_rank"]
    assert "'wavy'" in found["tune.param_space.lr_scheduler_type"]
    found = problems("tune.param_space={output_dir: [a, b]}")
    assert "the sweep sets this key itself" in found["tune.param_space.output_dir"]


def test_metric_must_be_one_a_trial_reports():
    assert "no trial reports 'accuracy'" in problems("tune.metric=accuracy")["tune.metric"]
    assert "eval_loss needs evaluation" in problems("eval_strategy=no")["tune.metric"]


def test_settings_are_strict():
    with pytest.raises(ConfigError) as err:
        cfg("tune.schedular=asha", "tune.scheduler=hyperband")
    found = {p.key: p.message for p in err.value.problems}
    assert "did you mean 'scheduler'" in found["tune.schedular"]
    assert "hyperband" in found["tune.scheduler"]
    assert all(p.source == "command line" for p in err.value.problems)
    in_file = SWEEP.read_text().replace("scheduler: asha", "schedular: asha")
    with pytest.raises(ConfigError) as err:
        load_config(write(in_file), [f"dataset_dir={ROOT / 'data'}"])
    (problem,) = err.value.problems
    assert problem.key == "tune.schedular" and problem.line == _line(in_file, "tune:")


def test_a_trial_value_this_version_cannot_train_is_refused():
    found = problems("tune.param_space={report_to: [none, swanlab]}")
    assert (
        "value 'swanlab' gives a trial this version cannot train: report_to swanlab"
        in (found["tune.param_space.report_to"])
    )


def test_tune_without_a_section_is_refused():
    c = load_config(SWEEP, [f"dataset_dir={ROOT / 'data'}", "tune=null"])
    with pytest.raises(ConfigError, match="needs a tune: section with a param_space"):
        tune_args(c)


def test_concurrency_is_sized_to_the_cluster():
    two = {"CPU": 2.0}
    args = tune_args(cfg())
    assert _concurrency(cfg(), args, two, [two]) == 2
    seven = args.model_copy(update={"max_concurrent_trials": 7})
    with pytest.raises(UserError, match=r"7 concurrent trials x .*tune\.max_concurrent_trials"):
        _concurrency(cfg(), seven, two, [two])
    assert _search(cfg(), args, 2).max_concurrent == 2  # Tune starts no more trials than fit
    auto = tune_args(cfg()).model_copy(update={"max_concurrent_trials": None})
    assert _concurrency(cfg(), auto, {"CPU": 8.0}, [{"CPU": 8.0}]) == 2  # at most 2 per node


def test_cli_refuses_a_bad_space_without_starting_ray(tmp_path):
    out = tmp_path / "sweep"
    proc = subprocess.run(
        [str(EXE), "tune", str(SWEEP), f"output_dir={out}",
         "tune.param_space={lora_rank: {loguniform: [0, 8]}}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "tune.param_space.lora_rank" in proc.stderr and "low > 0" in proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()
