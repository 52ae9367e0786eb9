"""A killed or interrupted `energyopt solve` leaves no process and no temporary file behind.

Each test runs the CLI in a subprocess with a fake slow step (a backend whose solve sleeps in the
watchdog's child, or a plan write that sleeps inside ``atomic_path``), signals the CLI, and looks
for what is left: the child's process (through /proc or ``os.kill(pid, 0)``) and ``.*.tmp``
files."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import ROOT, lognormal_workload

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process checks through /proc")

_SCRIPT = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path

    marker, mode = Path(sys.argv[1]), sys.argv[2]
    if mode == "inprocess":  # the real HiGHS, in this process (no time limit: no watchdog child)
        import scipy.optimize

        real_milp = scipy.optimize.milp

        def marked_milp(c, *args, **kw):
            if len(c) > 5000:  # the exact model itself, not a small MILP before it
                marker.write_text(f"{os.getpid()} - 0")
            return real_milp(c, *args, **kw)

        scipy.optimize.milp = marked_milp
    elif mode == "solve":  # the backend sleeps in the watchdog's child
        import energyopt.solvers.highs as highs

        def slow_solve(self, model, **kw):
            import tempfile

            import subprocess

            fd, scratch = tempfile.mkstemp(suffix=".mps")  # as PuLP writes its model for CBC
            cbc = subprocess.Popen(["sleep", "60"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)  # as PuLP starts CBC
            marker.write_text(f"{os.getpid()} {scratch} {cbc.pid}")
            time.sleep(60)

        highs.HighsSolver.solve = slow_solve
        # the in-process LP of methods/strong.py gives no answer, so the backend is asked
        from types import SimpleNamespace

        import energyopt.methods.strong as strong

        strong._lp = lambda model, time_limit_s: SimpleNamespace(status=1, x=None, fun=None)
    else:  # the plan's write sleeps with its temporary file open
        import energyopt.schedule as schedule
        from energyopt.writers import atomic_path

        def slow_write(table, path):
            with atomic_path(path) as tmp:
                Path(tmp).write_text("query_id\\n")
                marker.write_text(f"{os.getpid()} {tmp} 0")
                time.sleep(60)

        schedule.write_table_csv = slow_write
    from energyopt.cli import main

    main(sys.argv[3:], prog_name="energyopt")
""")


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting to be reaped counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _start(tmp_path: Path, mode: str, synthetic_fleet: Path, synthetic_models: Path,
           own_group: bool = False) -> tuple[subprocess.Popen, int, Path, str, int]:
    wl = tmp_path / "w.csv"
    lognormal_workload(20, seed=1).to_csv(wl, index=False)
    script, marker, out = tmp_path / "run.py", tmp_path / "pid", tmp_path / "plan"
    script.write_text(_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(marker), mode, "solve", str(wl), "--fleet", str(synthetic_fleet),
         "--models", str(synthetic_models), "--solver", "highs", "--formulation", "exact", "--time-limit", "60",
         "--out", str(out), "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path, start_new_session=own_group,
    )
    t0 = time.monotonic()
    while not (marker.exists() and marker.read_text()):
        if proc.poll() is not None or time.monotonic() - t0 > 60:
            proc.kill()
            out_b, err_b = proc.communicate()
            pytest.fail(f"the slow step never started (exit {proc.returncode}): {err_b.decode()[-2000:]}")
        time.sleep(0.05)
    pid, scratch, grandchild = marker.read_text().split()
    return proc, int(pid), out, scratch, int(grandchild)


def _gone_within_check(done, seconds: float) -> bool:
    t0 = time.monotonic()
    while not done():
        if time.monotonic() - t0 > seconds:
            return False
        time.sleep(0.02)
    return True


def _gone_within(pid: int, seconds: float) -> bool:
    return _gone_within_check(lambda: not _alive(pid), seconds)


@pytest.mark.parametrize(("sig", "code", "group"), [(signal.SIGTERM, 143, False), (signal.SIGINT, 130, False),
                                                  (signal.SIGKILL, -9, False), (signal.SIGKILL, -9, True)])
def test_a_killed_solve_leaves_no_backend_child(tmp_path, synthetic_fleet, synthetic_models, sig, code, group):
    """The backend's child and the process it started (as PuLP starts CBC) are gone within 2 s, and
    so is the call's temporary folder; also when the SIGKILL goes to the command's whole process
    group, as `timeout -s KILL` sends it (the guard that cleans up must not die with the group)."""
    proc, child, out, scratch, cbc = _start(tmp_path, "solve", synthetic_fleet, synthetic_models, own_group=group)
    assert child != proc.pid and _alive(child) and _alive(cbc) and Path(scratch).exists()
    if group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    try:
        proc.wait(timeout=10)
        gone = _gone_within(child, 2.0)  # before reading stderr: a surviving child would hold it open
        cbc_gone = _gone_within(cbc, 2.0)
    finally:
        for pid in (child, cbc):  # a failing run must not leave them behind either
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        proc.kill()
        proc.communicate(timeout=10)
        folder = Path(scratch).parent
        folder_left = not _gone_within_check(lambda: not folder.exists(), 2.0)
        if folder.name.startswith("energyopt-solve-"):  # (a safety net: a failing run leaves nothing either)
            shutil.rmtree(folder, ignore_errors=True)
    assert gone, f"the backend child {child} outlived its parent"
    assert cbc_gone, f"the backend's own child {cbc} outlived the solve"
    assert proc.returncode == code
    assert folder.name.startswith("energyopt-solve-")  # the call's own temporary folder, not /tmp
    assert not folder_left  # the backend's temporary files go with the call (after a SIGKILL: the guard's work)
    assert not list(out.glob(".*.tmp")) if out.exists() else True


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGKILL, -9)])
def test_a_solve_stopped_while_writing_leaves_no_temporary_file(tmp_path, synthetic_fleet, synthetic_models, sig, code):
    """Stopped in mid-write, even by SIGKILL (no handler runs), the plan's folder holds no partial
    file and no temporary one: on Linux the file being written has no name until it is complete."""
    proc, pid, out, tmp, _ = _start(tmp_path, "write", synthetic_fleet, synthetic_models)
    assert pid == proc.pid and (tmp.startswith("/proc/self/fd/") or Path(tmp).exists())
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == code, err.decode()[-2000:]
    assert "Traceback" not in err.decode()
    assert not list(out.glob(".*.tmp")) and not (out / "assignment.csv").exists(), list(out.iterdir())


def test_the_watchdog_child_closes_the_read_end_and_dies_with_its_parent(tmp_path):
    """The child holds only the write end of the result pipe, and it is killed when its parent
    dies even when nobody signals its process group (the parent killed with SIGKILL)."""
    script = tmp_path / "w.py"
    script.write_text(textwrap.dedent("""
        import os, sys, time
        from pathlib import Path
        from energyopt.solvers.base import Solver
        from energyopt.solvers.watchdog import solve_with_watchdog

        marker = Path(sys.argv[1])

        class Slow(Solver):
            name = "slow"

            @classmethod
            def available(cls):
                return True

            def solve(self, model, **kw):
                pipes = []
                for f in os.listdir("/proc/self/fd"):
                    try:
                        pipes.append(os.readlink(f"/proc/self/fd/{f}"))
                    except OSError:  # the listing's own descriptor, closed by now
                        pass
                pipes = [p for p in pipes if p.startswith("pipe:")]
                import tempfile

                marker.write_text(f"{os.getpid()} {len(pipes)} {len(set(pipes))} {tempfile.gettempdir()}")
                time.sleep(60)

        solve_with_watchdog(Slow(), None, time_limit_s=60)
    """))
    marker = tmp_path / "pid"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, str(script), str(marker)], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.monotonic()
    while not (marker.exists() and marker.read_text()):
        assert proc.poll() is None and time.monotonic() - t0 < 60
        time.sleep(0.05)
    pid_s, n_pipe_fds_s, n_pipes_s, folder = marker.read_text().split()
    pid, n_pipe_fds, n_pipes = int(pid_s), int(n_pipe_fds_s), int(n_pipes_s)
    proc.kill()
    proc.wait(timeout=10)
    gone = _gone_within(pid, 2.0)
    if not gone:
        os.kill(pid, signal.SIGKILL)
    if Path(folder).name.startswith("energyopt-solve-"):  # nothing cleans up after a SIGKILL
        shutil.rmtree(folder, ignore_errors=True)
    assert gone, f"the backend child {pid} outlived its parent"
    assert n_pipe_fds == n_pipes  # no pipe is held at both ends (fd of the read and the write end)


@pytest.mark.parametrize(("sig", "code", "said"), [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")])
def test_a_solve_inside_an_in_process_milp_ends_on_a_signal(tmp_path, sig, code, said):
    """Without a time limit HiGHS runs in the CLI's own process, inside C code where Python's signal
    handlers wait until it returns (minutes for the 1,000-query example's exact model): the
    command still ends within 2 s of the signal, with the signal's exit code and nothing written."""
    script, marker, out = tmp_path / "run.py", tmp_path / "pid", tmp_path / "plan"
    script.write_text(_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(marker), "inprocess", "solve", str(ROOT / "examples" / "workload.csv"),
         "--solver", "highs", "--formulation", "exact", "--out", str(out), "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path)
    t0 = time.monotonic()
    while not (marker.exists() and marker.read_text()):
        if proc.poll() is not None or time.monotonic() - t0 > 120:
            proc.kill()
            pytest.fail(f"HiGHS never started (exit {proc.returncode}): {proc.communicate()[1].decode()[-2000:]}")
        time.sleep(0.05)
    time.sleep(4.0)  # well inside HiGHS: signalled within its first second, it returned to Python in tries here
    assert proc.poll() is None, "the exact model of 1,000 queries was solved before the signal"
    sent = time.monotonic()
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the command did not end within 10 s of the signal")
    assert time.monotonic() - sent < 2.0
    assert proc.returncode == code and err.decode().strip().splitlines()[-1] == said
    assert not out.exists() or not any(out.iterdir())
