"""Issue 16's measurements: a small batch's fixed cost, sweep and compare, the bounds on the
example, time limits that hold, and a fast proof of infeasibility.

Each part prints one table; ratios sit beside the absolute times, which depend on the machine
(its processor count and load average are printed first: other work on a shared machine
stretches wall-clock times, so the user CPU time of each command is shown too).

* ``fixed``: ``energyopt solve examples/workload.csv`` (1,000 queries) end to end in a fresh
  process against the plan alone in a warm process (``plan()`` on loaded inputs), beside the
  parts of the start-up: the interpreter alone, ``import energyopt.cli``, and the libraries the
  default path cannot do without (numpy, pandas, pyarrow's CSV reader, scipy.sparse and
  scipy.optimize, whose HiGHS solves the plan), each in a fresh process; medians of
  ``--repeats``, the commands interleaved so that a change in the machine's load touches all of
  them alike. Two rows: with the bytecode of every module cached (as after ``pip install``:
  ``PYTHONPYCACHEPREFIX`` points at a folder of the run's own, warmed once), and without it
  where the environment sets ``PYTHONDONTWRITEBYTECODE`` (then energyopt's own modules are
  compiled in every process).
* ``series``: ``energyopt sweep --vary zeta`` and ``energyopt compare`` on the example, end to end,
  with the largest gap of the sweep's plans.
* ``bounds``: gap and time of the default solver on the example: energy, ``--idle``,
  ``--min-mean-accuracy 0.52``, and the same with ``--formulation decompose`` (the method the
  default used before) beside it.
* ``limits``: ``solve --time-limit T`` end to end against T + 2 s, on the example and on 100,000
  queries with a mean-accuracy floor (fleet scaled 100×); ``--busy N`` runs N CPU-bound processes
  beside it (the limit must hold on a machine busy with other work).
* ``infeasible``: a million queries on the unscaled default fleet: the time to "infeasible" end to
  end beside a fresh process that only imports the CLI and reads the same workload (what any
  command on the file costs), the ratio of the two, the problem's build and the capacity check's
  own times in process, and the reason printed; medians of ``--repeats``, interleaved.

Run from the repository root:

    python benchmarks/limits_and_bounds.py                       # every part
    python benchmarks/limits_and_bounds.py --parts fixed series  # some
    python benchmarks/limits_and_bounds.py --parts limits --busy 1  # time limits beside a busy process
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# as the CLI does (energyopt/cli.py), before numpy is imported: no huge-page advice for large arrays, so
# that the in-process figures are taken under the same setting as the commands'
os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")
ROOT = Path(__file__).resolve().parents[1]
PARTS = ("fixed", "series", "bounds", "limits", "infeasible")


def cli(args: list[str], out: Path | None = None) -> dict:
    """One energyopt command in a fresh process: wall and user+sys CPU seconds, exit code."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "energyopt.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "rc": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr}


def machine() -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    cpu = ""
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "")
    except OSError:
        pass
    return (f"{os.cpu_count()} processors{f' ({cpu})' if cpu else ''}, Python {platform.python_version()}, "
            f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


def _fresh(code: str, env: dict) -> dict:
    """``python -c code`` in a fresh process: wall and user+sys CPU seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"wall_s": wall, "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)}


#: what the default solve path cannot do without (the reader, the problem's tables, HiGHS)
LIBRARIES = "import numpy, pandas, pyarrow.csv, scipy.sparse, scipy.optimize"


def part_fixed(repeats: int, tmp: Path) -> None:
    from energyopt.inputs import load_inputs
    from energyopt.plan import plan

    wl, fl, fm = load_inputs(ROOT / "examples/workload.csv", ROOT / "examples/fleet.toml", ROOT / "models")
    plan(wl, fl, fm)  # warm: imports and first calls
    inproc, inproc_cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        plan(wl, fl, fm)
        inproc.append(time.perf_counter() - t0)
        inproc_cpu.append(time.process_time() - c0)
    p, pc = statistics.median(inproc), statistics.median(inproc_cpu)
    base = {**os.environ, "PYTHONPATH": str(ROOT)}
    cached = {k: v for k, v in base.items() if k != "PYTHONDONTWRITEBYTECODE"}
    cached["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    rows = [("bytecode cached", cached)]
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        rows.append(("PYTHONDONTWRITEBYTECODE set", base))
    solve = [sys.executable, "-m", "energyopt.cli", "solve", "examples/workload.csv", "-o", str(tmp / "fixed"), "--quiet"]
    subprocess.run(solve, check=True, cwd=ROOT, env=cached, capture_output=True)  # writes the cached bytecode
    print(f"\n## fixed cost of a 1,000-query solve (medians of {repeats}; wall s, CPU s in brackets)")
    print(f"in-process plan (plan() on loaded inputs, warm process): {p:.3f} s ({pc:.3f})")
    print(f"{'bytecode':<28} {'python -c pass':>15} {'import cli':>15} {'libraries':>15} {'end to end':>15} "
          f"{'e2e / plan':>13} {'libs / plan':>13} {'plan in e2e':>11}")
    for name, env in rows:
        got: dict[str, list[dict]] = {"pass": [], "cli": [], "libs": [], "e2e": []}
        cold: list[float] = []
        for _ in range(repeats):
            got["pass"].append(_fresh("pass", env))
            got["cli"].append(_fresh("import energyopt.cli", env))
            got["libs"].append(_fresh(LIBRARIES, env))
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            subprocess.run(solve, check=True, cwd=ROOT, env=env, capture_output=True)
            wall = time.perf_counter() - t0
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            got["e2e"].append({"wall_s": wall, "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)})
            t = json.loads((tmp / "fixed" / "summary.json").read_text())["timings_s"]
            cold.append(t["total_s"] - t.get("backend_s", 0.0))
        med = {k: (statistics.median(r["wall_s"] for r in v), statistics.median(r["cpu_s"] for r in v)) for k, v in got.items()}
        cells = " ".join(f"{w:7.3f} ({c:5.3f})" for w, c in (med[k] for k in ("pass", "cli", "libs", "e2e")))
        ratios = " ".join(f"{med[k][0] / p:5.2f} ({med[k][1] / pc:4.2f})" for k in ("e2e", "libs"))
        print(f"{name:<28} {cells} {ratios} {statistics.median(cold):11.3f}")
    print(f"libraries: {LIBRARIES}")
    print("plan in e2e: the fresh process's own plan (summary.json's timings_s: total_s less backend_s, the import of "
          "the backend's library)")


def _max_gap(csv: Path) -> float:
    import pandas as pd

    t = pd.read_csv(csv)
    return float(t.loc[t["method"] == "optimal", "gap"].max())


def part_series(tmp: Path) -> None:
    sw = cli(["sweep", "examples/workload.csv", "--vary", "zeta", "-o", str(tmp / "sweep")])
    cp = cli(["compare", "examples/workload.csv", "-o", str(tmp / "compare")])
    print("\n## sweep and compare on the example (one process each)")
    print(f"{'command':<22} {'wall s':>8} {'cpu s':>8} {'exit':>5} {'largest gap':>12}")
    print(f"{'sweep --vary zeta':<22} {sw['wall_s']:8.2f} {sw['cpu_s']:8.2f} {sw['rc']:>5} "
          f"{_max_gap(tmp / 'sweep' / 'sweep.csv'):12.4%}")
    import pandas as pd

    gaps = pd.read_csv(tmp / "compare" / "compare.csv")["gap"].dropna()
    print(f"{'compare':<22} {cp['wall_s']:8.2f} {cp['cpu_s']:8.2f} {cp['rc']:>5} {float(gaps.max()):12.4%}")


def part_bounds() -> None:
    from energyopt.inputs import load_inputs
    from energyopt.plan import plan

    wl, fl, fm = load_inputs(ROOT / "examples/workload.csv", ROOT / "examples/fleet.toml", ROOT / "models")
    print("\n## gaps on the example: the default (auto) beside decompose")
    print(f"{'case':<26} {'auto: method':>14} {'gap':>9} {'s':>7} {'decompose: gap':>15} {'s':>7} {'energy ratio':>13}")
    for name, kw in (("energy", {}), ("--idle", {"idle": True}), ("--min-mean-accuracy 0.52", {"min_mean_accuracy": 0.52})):
        t0 = time.perf_counter()
        a = plan(wl, fl, fm, **kw)
        ta = time.perf_counter() - t0
        t0 = time.perf_counter()
        d = plan(wl, fl, fm, formulation="decompose", **kw)
        td = time.perf_counter() - t0
        print(f"{name:<26} {a.formulation:>14} {a.gap:9.4%} {ta:7.2f} {d.gap:15.4%} {td:7.2f} {a.objective / d.objective:13.6f}")


def _scaled_fleet(tmp: Path, factor: int) -> Path:
    text = (ROOT / "examples" / "fleet.toml").read_text()
    text = re.sub(r"^count = (\d+)", lambda m: f"count = {int(m.group(1)) * factor}", text, flags=re.M)
    path = tmp / f"fleet-x{factor}.toml"
    path.write_text(text)
    return path


def _workload(tmp: Path, n: int, **kw) -> Path:
    sys.path.insert(0, str(ROOT / "examples"))
    from make_workload import make

    path = tmp / f"workload-{n}.csv"
    make(n, seed=1, **kw).to_csv(path, index=False)
    return path


def part_limits(tmp: Path, busy: int = 0) -> None:
    print(f"\n## --time-limit T: the whole command, end to end{f', beside {busy} busy processes' if busy else ''}")
    print(f"{'batch':<34} {'T s':>5} {'wall s':>8} {'wall - T':>9} {'exit':>5}  status")
    w100k = _workload(tmp, 100_000)
    f100 = _scaled_fleet(tmp, 100)
    cases = [("example (1,000)", ["examples/workload.csv"], 0.5), ("example (1,000)", ["examples/workload.csv"], 3.0),
             ("100,000, accuracy floor 0.55", [str(w100k), "--fleet", str(f100), "--min-mean-accuracy", "0.55"], 3.0),
             ("100,000, accuracy floor 0.55", [str(w100k), "--fleet", str(f100), "--min-mean-accuracy", "0.55"], 10.0)]
    hogs = [subprocess.Popen([sys.executable, "-c", "while 1: pass"]) for _ in range(busy)]
    try:
        rows = [(name, T, cli(["solve", *args, "--time-limit", str(T), "-o", str(tmp / "tl"), "--json"]))
                for name, args, T in cases]
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    for name, T, r in rows:
        try:
            doc = json.loads(r["stdout"])
            status = f"{doc['status']} (gap {doc['gap']:.4%})" if doc.get("gap") is not None else doc["status"]
        except (json.JSONDecodeError, KeyError, TypeError):
            status = (r["stderr"].strip().splitlines() or ["?"])[-1][:60]
        print(f"{name:<34} {T:5.1f} {r['wall_s']:8.2f} {r['wall_s'] - T:9.2f} {r['rc']:>5}  {status}")


def _timed(cmd: list[str], env: dict) -> dict:
    """One command in a fresh process: wall and user+sys CPU seconds, exit code, output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "rc": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr}


def part_infeasible(repeats: int, tmp: Path) -> None:
    from energyopt.inputs import load_inputs
    from energyopt.methods.capacity import capacity_shortfall
    from energyopt.problem import build_problem

    w1m = _workload(tmp, 1_000_000)
    # what any command on this file does: start, import the CLI and the reader, read the workload (with
    # the numpy setting the CLI makes)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NUMPY_MADVISE_HUGEPAGE": os.environ.get("NUMPY_MADVISE_HUGEPAGE", "0")}
    read = [sys.executable, "-c", f"import energyopt.cli; from energyopt.io import read_workload; read_workload({str(w1m)!r})"]
    solve = [sys.executable, "-m", "energyopt.cli", "solve", str(w1m), "-o", str(tmp / "inf"), "--quiet"]
    runs: dict[str, list[dict]] = {"read": [], "solve": []}
    for _ in range(repeats):  # interleaved: a change in the machine's load touches both alike
        runs["read"].append(_timed(read, env))
        runs["solve"].append(_timed(solve, env))
    med = {k: (statistics.median(r["wall_s"] for r in v), statistics.median(r["cpu_s"] for r in v)) for k, v in runs.items()}
    last = runs["solve"][-1]
    summary = json.loads((tmp / "inf" / "summary.json").read_text())
    wl, fl, fm = load_inputs(w1m, ROOT / "examples/fleet.toml", ROOT / "models")
    c0, t0 = time.process_time(), time.perf_counter()
    p = build_problem(wl, fl, fm)
    t_build, c_build = time.perf_counter() - t0, time.process_time() - c0
    c0, t0 = time.process_time(), time.perf_counter()
    short = capacity_shortfall(p)
    t_check, c_check = time.perf_counter() - t0, time.process_time() - c0
    print(f"\n## 1,000,000 queries on the default fleet (2 H100, 2 H200, 8 CPU slices, 900 s): medians of {repeats}; "
          "wall s, CPU s in brackets")
    print(f"{'start + read workload':>22} {'solve end to end':>17} {'solve / read':>13} {'exit':>5} "
          f"{'build (in process)':>19} {'check (in process)':>19}")
    print(f"{med['read'][0]:9.2f} ({med['read'][1]:5.2f}) {med['solve'][0]:9.2f} ({med['solve'][1]:5.2f}) "
          f"{med['solve'][0] / med['read'][0]:5.2f} ({med['solve'][1] / med['read'][1]:4.2f}) {last['rc']:>5} "
          f"{t_build:10.2f} ({c_build:5.2f}) {t_check:10.2f} ({c_check:5.2f})")
    print("solve's own timings_s:", summary.get("timings_s"), " solver:", summary.get("solver"))
    print("reason:", short.message() if short else "(none: the check passed)")
    print("the command printed:", (last["stdout"].strip().splitlines() or [""])[0][:400])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--busy", type=int, default=0, help="CPU-bound processes beside the limits part's commands")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    print("machine:", machine())
    with tempfile.TemporaryDirectory(prefix="energyopt-bench16-") as d:
        tmp = Path(d)
        for part in args.parts:
            if part == "fixed":
                part_fixed(args.repeats, tmp)
            elif part == "series":
                part_series(tmp)
            elif part == "bounds":
                part_bounds()
            elif part == "limits":
                part_limits(tmp, args.busy)
            else:
                part_infeasible(args.repeats, tmp)
    print("\nmachine after:", machine())


if __name__ == "__main__":
    main()
