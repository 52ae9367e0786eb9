"""Where a study's plans (and a campaign's tasks) run: a local process pool, or Ray tasks
(imported only here, on demand).

Both hand each plan to ``task(spec, out_dir)`` and call ``finished(spec, row)`` as each ends
(``failed(spec, reason, attempts)`` for one that failed on every attempt). A
task that raises, or whose worker dies, is submitted again up to ``retries`` times; then its row
says failed, with the last error on one line. The retries are counted here, not by Ray
(``max_retries=0``), so that both executors retry alike.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import json
import logging
import multiprocessing
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

from .errors import DataError, one_line

__all__ = ["run_local", "run_ray", "ray_session"]

#: a study's plan (energyopt.study's PlanSpec: anything picklable with an ``index``)
Spec = Any
Task = Callable[[Spec, str], dict[str, Any]]
Finished = Callable[[Spec, dict[str, Any]], None]
#: records a plan that failed on every attempt: (plan, one-line reason, attempts)
Failed = Callable[[Spec, str, int], None]


def _reason(exc: BaseException) -> str:
    return one_line(f"{type(exc).__name__}: {exc}", 240)


def run_local(todo: list[Spec], out_dir: str, task: Task, workers: int, retries: int, finished: Finished,
              failed: Failed) -> None:
    """The plans on a pool of ``workers`` processes (started fresh: ``spawn``). A worker that
    dies breaks the pool, and every plan still in it ends with it: a new pool takes them, each
    counting one attempt."""
    attempts = {s.index: 0 for s in todo}
    pending = list(todo)
    ctx = multiprocessing.get_context("spawn")
    while pending:
        with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = {pool.submit(task, s, out_dir): s for s in pending}
            pending = []
            broken = False
            while futures:
                done, _ = cf.wait(futures, return_when=cf.FIRST_COMPLETED)
                for f in done:
                    s = futures.pop(f)
                    attempts[s.index] += 1
                    exc = f.exception()
                    if exc is None:
                        finished(s, {**f.result(), "attempts": attempts[s.index]})
                        continue
                    broken = broken or isinstance(exc, cf.process.BrokenProcessPool)
                    if attempts[s.index] > retries:
                        failed(s, _reason(exc), attempts[s.index])
                    elif broken:  # this pool takes nothing more: the next one will
                        pending.append(s)
                    else:
                        futures[pool.submit(task, s, out_dir)] = s
        pending.sort(key=lambda s: s.index)


def _import_ray(option: str = "--executor ray") -> Any:
    try:
        import ray
    except ImportError:
        raise DataError(f"{option}: Ray is not installed (pip install energyopt[ray])") from None
    return ray


def _needs(options: dict[str, Any]) -> dict[str, float]:
    """The node resources a task's Ray options ask for (``CPU``, ``GPU`` and custom ones)."""
    need = {"CPU": float(options.get("num_cpus", 1))}
    if options.get("num_gpus"):
        need["GPU"] = float(options["num_gpus"])
    return need | {k: float(v) for k, v in (options.get("resources") or {}).items()}


def _check_placeable(ray: Any, todo: list[Spec], task_options: Callable[[Spec], dict[str, Any]]) -> None:
    """Every task fits on some live node of the cluster, or a one-line error before any runs (Ray
    would keep an unplaceable task pending for ever)."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    for s in todo:
        need = _needs(task_options(s))
        if not any(all(node.get(k, 0.0) >= v for k, v in need.items()) for node in nodes):
            custom = {k: int(v) if v == int(v) else v for k, v in need.items() if k not in ("CPU", "GPU")}
            wanted = ", ".join(f"{k}={v:g}" for k, v in need.items())
            hint = (f" (on a node that has it: ray start --resources '{json.dumps(custom)}'"
                    + (f" --num-gpus {need['GPU']:g}" if "GPU" in need else "") + ")") if custom else ""
            raise DataError(f"--executor ray: no node of the Ray cluster offers {wanted} for {s}{hint}")


@contextlib.contextmanager
def ray_session(address: str | None, cpus: int, local_node: dict[str, Any] | None = None, *,
                option: str = "--executor ray") -> Iterator[Any]:
    """Ray for the duration of the block: already started in this process, used as it is; else
    ``ray.init(address)`` joins a cluster (``ray://HOST:10001``), or without an address a local
    one of ``cpus`` CPUs starts (``local_node``: more ``ray.init`` arguments), shut down (and its
    session folder removed) at the end. A failure to start or reach it is one line naming ``option``."""
    ray = _import_ray(option)
    started, temp_dir = False, None
    if not ray.is_initialized():
        try:
            if address:
                ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
            else:  # its session files (logs, sockets) in a folder of its own, removed at the end
                temp_dir = tempfile.mkdtemp(prefix="energyopt-ray-")
                ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
                         _temp_dir=temp_dir, **(local_node or {}))
        except Exception as exc:  # noqa: BLE001 - any failure to reach the cluster is one line
            if temp_dir is not None:
                shutil.rmtree(temp_dir, ignore_errors=True)
            raise DataError(f"{option}: cannot start or reach Ray{f' at {address}' if address else ''} "
                            f"({_reason(exc)})") from None
        started = True
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)


def run_ray(todo: list[Spec], out_dir: str, task: Task, workers: int, retries: int, address: str | None,
            finished: Finished, failed: Failed, *, task_options: Callable[[Spec], dict[str, Any]] | None = None,
            local_node: dict[str, Any] | None = None) -> None:
    """The plans as Ray tasks (``num_cpus=1`` each, or ``task_options(spec)``: Ray's ``num_cpus``,
    ``num_gpus``, ``resources``; a task that no live node can take is an error before any runs). Ray
    already started in this process is used as it is; else ``ray.init(address)`` joins a cluster
    (``ray://HOST:10001``), or without an address starts a local one of ``workers`` CPUs (and
    ``local_node``: more ``ray.init`` arguments, such as ``resources`` and ``num_gpus``), shut down
    (and its session folder removed) at the end."""
    with ray_session(address, workers, local_node, option="--executor ray") as ray:
        remote = ray.remote(num_cpus=1, max_retries=0)(task)
        if task_options is not None:
            _check_placeable(ray, todo, task_options)

        def submit(s: Spec) -> Any:
            return (remote.options(**task_options(s)) if task_options is not None else remote).remote(s, out_dir)

        attempts = {s.index: 0 for s in todo}
        refs = {submit(s): s for s in todo}
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            for ref in ready:
                s = refs.pop(ref)
                attempts[s.index] += 1
                try:
                    row = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - a task's error or a dead worker: retry, then a row
                    if attempts[s.index] <= retries:
                        refs[submit(s)] = s
                    else:
                        failed(s, _reason(exc), attempts[s.index])
                    continue
                finished(s, {**row, "attempts": attempts[s.index]})
