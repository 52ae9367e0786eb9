"""Where a study's plans run: a local process pool, or Ray tasks (imported only here, on demand).

Both hand each plan to ``task(spec, out_dir)`` and call ``finished(spec, row)`` as each ends
(``failed(spec, reason, attempts)`` for one that failed on every attempt). A
task that raises, or whose worker dies, is submitted again up to ``retries`` times; then its row
says failed, with the last error on one line. The retries are counted here, not by Ray
(``max_retries=0``), so that both executors retry alike.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

from .errors import DataError, one_line

__all__ = ["run_local", "run_ray"]

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


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise DataError("--executor ray: Ray is not installed (pip install energyopt[ray])") from None
    return ray


def run_ray(todo: list[Spec], out_dir: str, task: Task, workers: int, retries: int, address: str | None,
            finished: Finished, failed: Failed) -> None:
    """The plans as Ray tasks (``num_cpus=1`` each). Ray already started in this process is used
    as it is; else ``ray.init(address)`` joins a cluster (``ray://HOST:10001``), or without an
    address starts a local one of ``workers`` CPUs, shut down (and its session folder removed) at the
    end."""
    ray = _import_ray()
    started, temp_dir = False, None
    if not ray.is_initialized():
        try:
            if address:
                ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
            else:  # its session files (logs, sockets) in a folder of its own, removed at the end
                temp_dir = tempfile.mkdtemp(prefix="energyopt-ray-")
                ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
                         _temp_dir=temp_dir)
        except Exception as exc:  # noqa: BLE001 - any failure to reach the cluster is one line
            if temp_dir is not None:
                shutil.rmtree(temp_dir, ignore_errors=True)
            raise DataError(f"--executor ray: cannot start or reach Ray{f' at {address}' if address else ''} "
                            f"({_reason(exc)})") from None
        started = True
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(task)
        attempts = {s.index: 0 for s in todo}
        refs = {remote.remote(s, out_dir): s for s in todo}
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            for ref in ready:
                s = refs.pop(ref)
                attempts[s.index] += 1
                try:
                    row = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - a task's error or a dead worker: retry, then a row
                    if attempts[s.index] <= retries:
                        refs[remote.remote(s, out_dir)] = s
                    else:
                        failed(s, _reason(exc), attempts[s.index])
                    continue
                finished(s, {**row, "attempts": attempts[s.index]})
    finally:
        if started:
            ray.shutdown()
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
