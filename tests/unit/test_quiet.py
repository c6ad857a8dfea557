"""Ray's own notices stay out of the terminal; everything else its processes print comes through,
and RAYTUNE_LLM_VERBOSE shows it all. Lines go through Ray's real driver-side dispatcher."""

from __future__ import annotations

import pytest
from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher

from raytune_llm.utils.quiet import VERBOSE_ENV, quiet_ray_logs

PREEMPTION = (
    "[2026-12-03 14:29:14,385 E 28213 28254] core_worker.cc:2465: Actor with class name: "
    "'PreemptionWatcher' and ID: '7b0b' has constructor arguments in the object store and "
    "max_restarts > 0."
)
DEPRECATION = [
    "/x/ray/data/_internal/execution/interfaces/execution_options.py:436: RayDeprecationWarning: "
    "`ExecutionOptions.exclude_resources` is deprecated",
    "  self.exclude_resources = exclude_resources",
]


@pytest.fixture
def printed(monkeypatch):
    """Ray's print handler swapped for a recorder, restored afterwards."""
    seen: list[tuple[str, list[str]]] = []
    saved = list(dispatcher.handlers)
    dispatcher.handlers = [("ray_print_logs", lambda d: seen.append((d["actor_name"], d["lines"])))]
    monkeypatch.delenv(VERBOSE_ENV, raising=False)
    yield seen
    dispatcher.handlers = saved


def emit(actor: str, *lines: str) -> None:
    dispatcher.emit({"actor_name": actor, "lines": list(lines), "pid": 1, "is_err": True})


def test_noise_goes_and_the_rest_stays(printed):
    quiet_ray_logs()
    quiet_ray_logs()  # a second call does not filter twice or drop the handler
    assert len(dispatcher.handlers) == 1
    emit("TrainController", PREEMPTION)
    emit("DatasetManager", *DEPRECATION)
    emit("SplitCoordinator", "Progress bars disabled. To enable, set `...` = True`.",
         "✔️  Dataset train_0358_0 execution finished in 9.34 seconds")  # fmt: skip
    emit("SplitCoordinator", "UserWarning: something else", "  source()", "a real line")
    emit("RayTrainWorker", "UserWarning: a warning of ours", "  the source line")
    emit("TrainController", "Training failed: worker 0 died")
    emit("", "Writing model shards: 100%|██████████| 1/1")
    assert printed == [
        ("SplitCoordinator", ["a real line"]),
        ("RayTrainWorker", ["UserWarning: a warning of ours", "  the source line"]),
        ("TrainController", ["Training failed: worker 0 died"]),
    ]


def test_verbose_shows_everything(printed, monkeypatch):
    monkeypatch.setenv(VERBOSE_ENV, "1")
    quiet_ray_logs()
    emit("TrainController", PREEMPTION)
    emit("DatasetManager", *DEPRECATION)
    assert printed == [("TrainController", [PREEMPTION]), ("DatasetManager", DEPRECATION)]


def test_cli_verbose_flag_sets_the_variable(monkeypatch, tmp_path):
    import os

    from raytune_llm.cli.main import build_parser, main

    args = build_parser().parse_args(["validate", "cfg.yaml", "--verbose"])
    assert args.verbose
    monkeypatch.delenv(VERBOSE_ENV, raising=False)
    main(["validate", str(tmp_path / "missing.yaml"), "--verbose"])
    assert os.environ[VERBOSE_ENV] == "1"


def test_driver_notices_are_filtered_on_rays_own_handlers(monkeypatch):
    import logging

    import ray.data  # noqa: F401  (configures Ray Data's handlers)

    from raytune_llm.utils.quiet import quiet_ray_driver

    monkeypatch.delenv(VERBOSE_ENV, raising=False)
    quiet_ray_driver()
    quiet_ray_driver()
    for name in ("ray", "ray.data"):
        (handler, *_) = [h for h in logging.getLogger(name).handlers if h.filters]
        assert len(handler.filters) == 1

        def passes(message: str, handler=handler, name=name) -> bool:
            record = logging.LogRecord(name, logging.WARNING, __file__, 1, message, None, None)
            return bool(handler.filter(record))

        assert not passes("Token authentication is enabled for this Ray cluster. Set ...")
        assert not passes("Progress bars disabled. To enable, set `...`")
        assert passes("Failed to connect to GCS at 10.0.0.1:6379")
