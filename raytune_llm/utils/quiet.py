"""Keep third-party start-up chatter that carries no information for the user out of the logs."""

from __future__ import annotations

import logging
import os
import re


def quiet_third_party(has_cuda: bool) -> None:
    """Silence messages that only describe a missing optional speed-up.

    Args:
        has_cuda: whether a CUDA device is visible; without one DeepSpeed is told it runs on the
            CPU accelerator instead of guessing and warning that it guessed.
    """
    quiet_bitsandbytes()
    if not has_cuda:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")


def quiet_bitsandbytes() -> None:
    """bitsandbytes tries to fetch an optional CPU kernel from the hub when it is imported and
    warns when it cannot; raytune-llm never downloads at run time, so the warning is noise.
    Call before peft or transformers may import it (a training worker calls it first thing)."""
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


VERBOSE_ENV = "RAYTUNE_LLM_VERBOSE"
"""Set to 1 (``raytune-llm --verbose``) to see every line Ray's processes print."""

_RAY_NOISE = (
    # Ray Train's controller warns about its own preemption watcher's constructor arguments.
    re.compile(r"PreemptionWatcher.*constructor arguments in the object store"),
    # Ray Data's notices: bars off (we asked), each execution finished, deprecated options.
    re.compile(r"Progress bars disabled\. To enable"),
    re.compile(r"Dataset \S+ execution finished in"),
    re.compile(r"Registered dataset logger for dataset"),
    re.compile(r"RayDeprecationWarning"),
    # transformers' save_pretrained bar inside a worker (the driver's bar shows the run).
    re.compile(r"Writing model shards"),
)
_RAY_ACTORS = re.compile(r"^(DatasetManager|SplitCoordinator|TrainController|_StatsActor)$")


def _noise_free(lines: list[str], from_ray: bool) -> list[str]:
    """The lines worth showing: known noise goes, with a warning's source line after it."""
    kept: list[str] = []
    drop_next = False
    for line in lines:
        if drop_next and line.startswith("  "):  # the warnings module's "  source line"
            drop_next = False
            continue
        drop_next = False
        if any(p.search(line) for p in _RAY_NOISE) or (from_ray and "Warning: " in line):
            drop_next = "Warning: " in line
            continue
        kept.append(line)
    return kept


class _DriverNoise(logging.Filter):
    """Drops the driver's own Ray notices that tell a user nothing (see ``_RAY_NOISE``)."""

    patterns = (*_RAY_NOISE, re.compile(r"Token authentication is enabled for this Ray cluster"))

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(p.search(message) for p in self.patterns)


def quiet_ray_driver() -> None:
    """The same for what Ray logs in this process (call before ray.init, and again once
    ray.data is imported): its note that a local instance has token authentication on, Ray
    Data's note that its bars are off."""
    if os.environ.get(VERBOSE_ENV, "") not in ("", "0"):
        return
    for name in ("ray", "ray.data"):  # Ray Data logs through its own handlers
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, _DriverNoise) for f in handler.filters):
                handler.addFilter(_DriverNoise())


def quiet_ray_logs() -> None:
    """Keep Ray's own notices out of the terminal (the driver's bar and our messages stay).

    Ray forwards what its workers and actors print to the driver; this filters that stream on
    the driver, dropping only the known lines that tell a user nothing (``_RAY_NOISE``, and
    warnings from Ray's internal actors). Everything else, errors included, passes through.
    ``RAYTUNE_LLM_VERBOSE=1`` (``raytune-llm --verbose``) shows it all. Call after ray.init.
    """
    if os.environ.get(VERBOSE_ENV, "") not in ("", "0"):
        return
    try:
        from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher
    except ImportError:  # another Ray layout: show everything rather than fail
        return
    with dispatcher._lock:
        handlers = list(dispatcher.handlers)
    for name, handler in handlers:
        if name != "ray_print_logs" or getattr(handler, "_raytune_llm", False):
            continue

        def filtered(data: dict, _show=handler) -> None:
            actor = str(data.get("actor_name") or "")
            lines = _noise_free(list(data.get("lines") or []), bool(_RAY_ACTORS.match(actor)))
            if lines:
                _show({**data, "lines": lines})

        filtered._raytune_llm = True  # type: ignore[attr-defined]
        dispatcher.remove_handler(name)
        dispatcher.add_handler(name, filtered)
