"""An outer time limit: some backends overrun their own (HiGHS, PuLP's model transfer, SCIP).

With a time limit, the backend runs in a forked child that starts its own process group (so
CBC, which PuLP runs as a further subprocess, goes with it). If no answer comes within
``grace_factor × limit + grace_s``, the whole group is killed and the result says so.

No child outlives the call: the child asks the kernel to kill it when its parent dies (Linux's
``PR_SET_PDEATHSIG``; elsewhere it checks its parent once at the start), it closes the pipe end it
does not use (so a write into a pipe nobody reads fails instead of blocking), and an exception in
the parent while it waits (a ``KeyboardInterrupt``, or the CLI's SIGTERM handler raising) kills the
child's whole process group before it propagates; a small guard process kills that group if the
parent dies without a word (SIGKILL), so CBC, which PuLP starts, goes too. The guard has a process
group of its own, so a SIGKILL of the caller's whole group (as `timeout -s KILL` sends) leaves it to
clean up. The child's temporary files (PuLP's model and solution files) go into a folder of the
call's own, removed when the call ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import math
import multiprocessing as mp
import os
import shutil
import signal
import sys
import tempfile
import time

from ..formulation import MatrixModel
from ..progress import current_phase, listening, phase
from ..schema import BoundSource, Status, Termination
from .base import Solver, SolveResult

__all__ = ["solve_with_watchdog"]


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent(parent_pid: int) -> None:
    """Have the kernel kill this process when its parent dies (Linux); exit now if the parent is
    already gone (it died between the fork and the request, or there is no such request here)."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no libc to ask: the parent check below still holds
            pass
    if os.getppid() != parent_pid:
        os._exit(1)


def _child(solver: Solver, model: MatrixModel, kwargs: dict, conn, unused_conn, parent_pid: int, tmp_dir: str,
           relay: bool = False) -> None:
    _die_with_parent(parent_pid)
    # the backend's temporary files (PuLP's .mps and .sol, CBC's log) go into a folder the parent
    # removes, so a child killed in mid-solve leaves none in /tmp
    for var in ("TMPDIR", "TMP", "TEMP"):
        os.environ[var] = tmp_dir
    tempfile.tempdir = tmp_dir
    unused_conn.close()  # the parent's read end: holding it would let a send block forever
    # the parent's handlers (the CLI turns SIGTERM into an exception) are not the child's: a
    # signal ends the child at once, and the parent kills the child's group when it is stopped
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.setpgrp()
    # the answer goes through the pipe; what a backend's C code prints to stdout (HiGHS sometimes
    # prints internal messages even with its log off) must not mix with the program's output
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    try:
        # what the backend shows as it goes (CP-SAT's incumbents) reaches the parent's display through the pipe
        with listening(_Relay(conn)) if relay else contextlib.nullcontext(), phase(solver.name):
            result = solver.solve(model, **kwargs)
        conn.send(("ok", result))
    except BaseException as exc:  # reported to the parent, which raises it
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


class _Relay:
    """The child's progress listener: a phase's status goes to the parent (:func:`_wait_for` shows it
    beside the backend's row); the rest the parent's rows already say."""

    def __init__(self, conn) -> None:
        self.conn = conn

    def status(self, key: int, text: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(("status", text))

    def begin(self, key: int, name: str, total: int | None) -> None: ...

    def advance(self, key: int, steps: int) -> None: ...

    def end(self, key: int) -> None: ...

    def line(self, text: str) -> None: ...


def _kill_group(p) -> None:
    """Kill the child's process group (the child and what it started), and reap the child."""
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        p.kill()
    p.join(5)


def solve_with_watchdog(solver: Solver, model: MatrixModel, *, time_limit_s: float | None, grace_factor: float = 1.5,
                        grace_s: float = 10.0, **kwargs) -> SolveResult:
    if time_limit_s is None or "fork" not in mp.get_all_start_methods():
        return solver.solve(model, time_limit_s=time_limit_s, **kwargs)
    tmp_dir = tempfile.mkdtemp(prefix="energyopt-solve-")
    try:
        return _watch(solver, model, time_limit_s, grace_factor, grace_s, tmp_dir, kwargs)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def _open_fds() -> list[int]:
    try:
        return [int(f) for f in os.listdir("/proc/self/fd")]
    except OSError:
        return list(range(256))


def _start_guard(pid: int, tmp_dir: str) -> tuple[int, int] | None:
    """Fork a small guard that kills ``pid``'s process group if this process dies before
    :func:`_stop_guard` (a SIGKILL of the parent): the child's own children (CBC, which PuLP
    starts) do not die with the child. The guard holds no descriptor but its pipe's read end;
    end of file on it (the parent gone) means kill (and remove ``tmp_dir``), a byte means the call
    ended: exit."""
    if not hasattr(os, "fork"):
        return None
    r, w = os.pipe()
    guard = os.fork()
    if guard == 0:  # the guard: never returns into the parent's code
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            # a group of its own: a SIGKILL sent to the caller's whole group (`timeout -s KILL`,
            # a job control's kill) must leave the guard to clean up after the parent
            with contextlib.suppress(OSError):
                os.setpgrp()
            for fd in _open_fds():
                if fd != r:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            try:
                gone = os.read(r, 1) == b""
            except OSError:
                gone = True
            if gone:
                for kill in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
                    with contextlib.suppress(OSError):
                        kill()
                shutil.rmtree(tmp_dir, ignore_errors=True)
        finally:
            os._exit(0)
    os.close(r)
    return guard, w


def _stop_guard(guard: tuple[int, int] | None) -> None:
    """Tell the guard the call ended (it exits without killing anything) and reap it."""
    if guard is None:
        return
    pid, w = guard
    with contextlib.suppress(OSError):
        os.write(w, b"x")
    os.close(w)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _watch(solver: Solver, model: MatrixModel, time_limit_s: float, grace_factor: float, grace_s: float, tmp_dir: str,
           kwargs: dict) -> SolveResult:
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    t0 = time.perf_counter()
    p = ctx.Process(target=_child, args=(solver, model, {"time_limit_s": time_limit_s, **kwargs}, child, parent,
                                         os.getpid(), tmp_dir, current_phase().heard), daemon=True)
    p.start()
    child.close()
    assert p.pid is not None  # a started process has its id
    guard = _start_guard(p.pid, tmp_dir)
    try:
        return _wait_for(p, parent, solver, time_limit_s, grace_factor, grace_s, t0)
    finally:
        _stop_guard(guard)


def _wait_for(p, parent, solver: Solver, time_limit_s: float, grace_factor: float, grace_s: float,
              t0: float) -> SolveResult:
    wait = grace_factor * time_limit_s + grace_s
    end, shown = time.perf_counter() + wait, current_phase()
    try:
        while parent.poll(max(end - time.perf_counter(), 0.0)):
            kind, payload = parent.recv()
            if kind == "status":  # the backend's progress (the answer comes last)
                shown.show(payload)
                continue
            p.join(5)
            if kind == "error":
                raise RuntimeError(f"{solver.name} failed: {payload}")
            return payload
    except EOFError:
        p.join(5)
        return SolveResult(Status.ERROR, None, math.nan, -math.inf, BoundSource.NONE, solver.name, time.perf_counter() - t0,
                           f"{solver.name} exited without an answer (exit code {p.exitcode})")
    except BaseException:  # interrupted (Ctrl-C, SIGTERM through the CLI's handler): the child goes first
        _kill_group(p)
        raise
    finally:
        parent.close()
    _kill_group(p)
    return SolveResult(Status.NO_SOLUTION, None, math.nan, -math.inf, BoundSource.NONE, solver.name, time.perf_counter() - t0,
                       f"{solver.name} ignored its {time_limit_s:g} s time limit; stopped by the watchdog after {wait:g} s",
                       termination=Termination.WATCHDOG)
