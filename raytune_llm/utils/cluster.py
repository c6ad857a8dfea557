"""Join the Ray cluster a run names, or start a local Ray instance: the embedded default."""

from __future__ import annotations

import logging
import math
import os
import socket
from typing import Any


def connect(address: str | None = None, init_kwargs: dict[str, Any] | None = None) -> str:
    """Make sure this process is connected to Ray and say to what.

    Args:
        address: ``ray_address`` from the config; unset falls back to ``RAY_ADDRESS``, and
            without either a local instance is started for this process (no dashboard).
        init_kwargs: ``ray_init_kwargs`` from the config, passed to ``ray.init``.

    Returns:
        A short description: "the cluster at ADDRESS" or "a local Ray instance".
    """
    import ray

    address = address or os.environ.get("RAY_ADDRESS")
    where = f"the cluster at {address}" if address else "a local Ray instance"
    from .quiet import quiet_ray_driver, quiet_ray_logs

    quiet_ray_driver()
    if ray.is_initialized():
        quiet_ray_logs()
        return where
    # A local instance keeps its dashboard: Ray Train reads its State API to watch a run.
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": True}
    kwargs.update(init_kwargs or {})
    if not address:
        _name_the_api_server(kwargs)
    ray.init(address=address, **kwargs)
    quiet_ray_logs()
    return where


_API_SERVER = "RAY_API_SERVER_ADDRESS"
_named: list[str] = []  # the value this process gave _API_SERVER, if it gave one


def _name_the_api_server(kwargs: dict[str, Any]) -> None:
    """Point the State API of the local instance's processes at its own dashboard.

    Ray's State API finds "the" cluster on this machine by itself and fails when it finds two
    (a sweep next to a served model, a test next to a run). Ray Train's placement-group cleaner
    queries it from inside the cluster, so with two local instances the workers' reservations of
    a finished run inside a sweep trial were never released and the next trials waited forever.
    The instance's processes inherit this process's environment, so naming the dashboard's
    address here, before Ray starts them, keeps every query on the right instance.
    """
    if os.environ.get(_API_SERVER) and os.environ[_API_SERVER] not in _named:
        return  # the user's own choice
    port = int(kwargs.setdefault("dashboard_port", _free_port()))
    os.environ[_API_SERVER] = f"http://127.0.0.1:{port}"
    _named[:] = [os.environ[_API_SERVER]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def size_workers(
    count: int, cluster: dict[str, float], given: dict[str, float] | None, reserve: float
) -> dict[str, float] | None:
    """What each of ``count`` workers (training workers, inference backends) holds.

    ``given`` (resources_per_worker) when set; else one GPU and one CPU each where the cluster
    has a GPU for every worker; else an equal share of the CPUs left after ``reserve`` CPUs for
    Ray Data's tasks (a worker holding every CPU starves the data and hangs), in quarters of a
    CPU. None when that share would be below a quarter: too many workers for the CPUs.
    """
    if given:
        return {k: float(v) for k, v in given.items()}
    if cluster.get("GPU", 0.0) >= count:
        return {"GPU": 1.0, "CPU": 1.0}
    share = math.floor((cluster.get("CPU", 0.0) - reserve) / count * 4) / 4
    return {"CPU": share} if share >= 0.25 else None


def shortfall(
    count: int, each: dict[str, float], cluster: dict[str, float], keep_cpus: float = 0.0
) -> list[str]:
    """The resources ``count`` workers of size ``each`` need beyond the cluster's ("4 CPU"),
    keeping ``keep_cpus`` free for data tasks."""
    short = []
    for name, amount in each.items():
        need = amount * count + (keep_cpus if name == "CPU" else 0.0)
        if amount and need > cluster.get(name, 0.0):
            short.append(f"{amount * count:g} {name}")
    return short
