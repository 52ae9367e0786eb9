"""An outer time limit: some backends overrun their own (HiGHS, PuLP's model transfer, SCIP).

With a time limit, the backend runs in a forked child that starts its own process group (so
CBC, which PuLP runs as a further subprocess, goes with it). If no answer comes within
``grace_factor × limit + grace_s``, the whole group is killed and the result says so.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import signal
import time

from ..formulation import MatrixModel
from ..schema import BoundSource, Status, Termination
from .base import Solver, SolveResult

__all__ = ["solve_with_watchdog"]


def _child(solver: Solver, model: MatrixModel, kwargs: dict, conn) -> None:
    os.setpgrp()
    # the answer goes through the pipe; what a backend's C code prints to stdout (HiGHS sometimes
    # prints internal messages even with its log off) must not mix with the program's output
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    try:
        conn.send(("ok", solver.solve(model, **kwargs)))
    except BaseException as exc:  # reported to the parent, which raises it
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def solve_with_watchdog(solver: Solver, model: MatrixModel, *, time_limit_s: float | None, grace_factor: float = 1.5,
                        grace_s: float = 10.0, **kwargs) -> SolveResult:
    if time_limit_s is None or "fork" not in mp.get_all_start_methods():
        return solver.solve(model, time_limit_s=time_limit_s, **kwargs)
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    t0 = time.perf_counter()
    p = ctx.Process(target=_child, args=(solver, model, {"time_limit_s": time_limit_s, **kwargs}, child), daemon=True)
    p.start()
    child.close()
    assert p.pid is not None  # a started process has its id
    wait = grace_factor * time_limit_s + grace_s
    try:
        if parent.poll(wait):
            kind, payload = parent.recv()
            p.join(5)
            if kind == "error":
                raise RuntimeError(f"{solver.name} failed: {payload}")
            return payload
    except EOFError:
        p.join(5)
        return SolveResult(Status.ERROR, None, math.nan, -math.inf, BoundSource.NONE, solver.name, time.perf_counter() - t0,
                           f"{solver.name} exited without an answer (exit code {p.exitcode})")
    finally:
        parent.close()
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        p.kill()
    p.join(5)
    return SolveResult(Status.NO_SOLUTION, None, math.nan, -math.inf, BoundSource.NONE, solver.name, time.perf_counter() - t0,
                       f"{solver.name} ignored its {time_limit_s:g} s time limit; stopped by the watchdog after {wait:g} s",
                       termination=Termination.WATCHDOG)
