"""Release times at scale: a batch whose queries arrive over an hour, against the same batch released at once.

The workload is ``examples/make_workload.py``'s (lognormal tokens, accuracy floors 0.5 and 0.6 on
30% of the queries), with release times drawn uniformly over an hour (``--spread-s``, the first
at 0) and, on a fifth of the queries, a deadline a window after the release (``--window``, default
60-600 s): ``deadline_s = release_s + window``. The fleet is the default one scaled per 1,000
queries as in ``benchmarks/scale.py`` (2 H100s, 2 H200s and eight CPU slices per 1,000), with a
horizon of the spread plus 900 s, and a token-weighted mean-accuracy floor of 0.55.

Two batches are planned by ``energyopt solve`` end to end, each in a fresh process,
``--repeats`` times, alternating (the table shows medians):

* ``with releases``: as above;
* ``without``: the same queries and deadlines, every ``release_s`` 0 (the column dropped).

For each plan the benchmark re-reads ``assignment.csv`` beside the workload and counts the queries
that start before their release and those that end after their deadline (both must be 0), besides
the independent check ``energyopt solve`` runs itself. Run from the repository root:

    python benchmarks/releases.py [--queries 100000] [--repeats 3] [--seed 1]
    python benchmarks/releases.py --queries 19366 --fleet-scale 1 --min-mean-accuracy 0   # an Azure-conversation-sized hour
    python benchmarks/releases.py --trace AzureLLMInferenceTrace_conv.csv --fleet-scale 1 --min-mean-accuracy 0

With ``--trace FILE`` the batch is a workload file as it is (for example the public Azure LLM
inference trace, ``TIMESTAMP,ContextTokens,GeneratedTokens``, whose timestamps give the release
times): ``with releases`` is that file read as is, ``without`` the same queries (same ids, tokens,
floors and deadlines) with every release at 0. The horizon is the last release plus 900 s.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import _ENERGYOPT, ROOT  # noqa: E402  (one runner of a timed CLI process)


def make_batches(n: int, seed: int, spread_s: float, window: tuple[float, float], tmp: Path,
                 fleet_scale: int | None = None, batch_1: bool = False) -> tuple[Path, Path, Path]:
    """The workload with release times, the same without, and the scaled fleet."""
    sys.path.insert(0, str(ROOT / "examples"))
    from make_workload import make

    wl = make(n, seed=seed, deadline_fraction=0.2, deadline_range=window)  # deadline_s: the window for now
    rng = np.random.default_rng(seed + 1)
    release = np.round(rng.uniform(0, spread_s, n), 3)
    release -= release.min()  # the first arrival at 0
    wl["release_s"] = release
    wl["deadline_s"] = np.round(release + wl["deadline_s"], 3)  # NaN stays NaN: no deadline
    with_rel = tmp / f"releases-{n}.csv"
    without = tmp / f"no-releases-{n}.csv"
    wl.to_csv(with_rel, index=False)
    wl.drop(columns="release_s").to_csv(without, index=False)
    scale = max(1, round(n / 1000)) if fleet_scale is None else fleet_scale
    return with_rel, without, _fleet(tmp, scale, spread_s, batch_1)


def trace_batches(trace: Path, tmp: Path, fleet_scale: int, batch_1: bool) -> tuple[Path, Path, Path, float]:
    """A workload file as it is, the same queries with every release at 0, the scaled fleet and the
    spread of the releases [s]."""
    from energyopt.io import read_workload

    wl = read_workload(trace)  # one-line errors for a bad file, as energyopt solve gives them
    spread_s = float(wl["release_s"].max())
    without = tmp / "no-releases-trace.csv"
    cols = [c for c in ("query_id", "input_tokens", "output_tokens", "min_accuracy", "deadline_s") if c in wl.columns]
    wl[cols].to_csv(without, index=False)
    return trace, without, _fleet(tmp, fleet_scale, spread_s, batch_1), spread_s


def _fleet(tmp: Path, scale: int, spread_s: float, batch_1: bool) -> Path:
    """The default fleet, its device counts times ``scale``, its horizon the spread plus 900 s."""
    text = (ROOT / "examples" / "fleet.toml").read_text()
    text = re.sub(r"^count = (\d+)", lambda m: f"count = {int(m.group(1)) * scale}", text, flags=re.M)
    text = re.sub(r"^horizon_s = .*$", f"horizon_s = {spread_s + 900:g}", text, flags=re.M)
    if batch_1:  # every instance serving one query at a time: capacity binds
        text = re.sub(r"^batch_sizes = .*$", "", text, flags=re.M)
    fleet = tmp / f"fleet-x{scale}.toml"
    fleet.write_text(text)
    return fleet


def solve(wl: Path, fleet: Path, out: Path, acc: float) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _ENERGYOPT, "solve", str(wl), "--fleet", str(fleet), "--models",
                           str(ROOT / "models"), "--min-mean-accuracy", str(acc), "--out", str(out), "--quiet"],
                          capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"energyopt solve failed on {wl}: {proc.stderr.strip() or proc.stdout.strip()}")
    stats = json.loads(proc.stdout.strip().splitlines()[-1])
    s = json.loads((out / "summary.json").read_text())
    return {"total_s": wall, "peak_mb": stats["peak_mb"], "summary": s}


def recheck(wl_path: Path, plan_dir: Path) -> tuple[int, int, int]:
    """Queries starting before their release, queries ending after their deadline, and queries
    with a deadline, from assignment.csv and the workload file."""
    from energyopt.io import read_workload

    wl = read_workload(wl_path).set_index("query_id")
    a = pd.read_csv(plan_dir / "assignment.csv", dtype={"query_id": str}).set_index("query_id").loc[wl.index]
    release = wl["release_s"].to_numpy(dtype=float)
    early = int(np.sum(a["start_s"].to_numpy() < release - 1e-6))
    dl = wl["deadline_s"].to_numpy(dtype=float)
    late = int(np.sum(~np.isnan(dl) & (a["end_s"].to_numpy() > dl + 1e-6)))
    return early, late, int(np.sum(~np.isnan(dl)))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--spread-s", type=float, default=3600.0, help="releases are uniform over [0, SPREAD_S)")
    ap.add_argument("--window", type=float, nargs=2, default=(60.0, 600.0), metavar=("MIN_S", "MAX_S"),
                    help="a fifth of the queries are due this long after their release")
    ap.add_argument("--min-mean-accuracy", type=float, default=0.55)
    ap.add_argument("--fleet-scale", type=int, default=None,
                    help="devices of the default fleet times this (default: one fleet per 1,000 queries)")
    ap.add_argument("--batch-1", action="store_true", help="the fleet with every instance at batch size 1")
    ap.add_argument("--trace", type=Path, default=None,
                    help="plan this workload file as it is (e.g. an Azure LLM inference trace) instead of a drawn one")
    a = ap.parse_args()
    if a.trace is not None:
        a.queries = len(pd.read_csv(a.trace, usecols=[0]))
    scale = max(1, round(a.queries / 1000)) if a.fleet_scale is None else a.fleet_scale
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        if a.trace is not None:
            with_rel, without, fleet, a.spread_s = trace_batches(a.trace, tmp, scale, a.batch_1)
        else:
            with_rel, without, fleet = make_batches(a.queries, a.seed, a.spread_s, tuple(a.window), tmp, scale,
                                                    a.batch_1)
        batches = {"with releases": with_rel, "without": without}
        runs: dict[str, list[dict]] = {k: [] for k in batches}
        for r in range(a.repeats):  # alternate, so that both see the machine alike
            for name, wl in batches.items():
                out = tmp / f"plan-{name.replace(' ', '-')}"
                got = solve(wl, fleet, out, a.min_mean_accuracy)
                has_plan = got["summary"]["status"] in ("optimal", "feasible")
                got["early"], got["late"], got["with_deadline"] = recheck(wl, out) if has_plan else (0, 0, 0)
                runs[name].append(got)
                print(f"{name} run {r + 1}/{a.repeats}: {got['total_s']:.2f} s, status {got['summary']['status']}, "
                      f"gap {got['summary']['gap'] if got['summary']['gap'] is not None else math.inf:.2e}",
                      file=sys.stderr, flush=True)
    what = (f"{a.trace.name}: {a.queries:,} queries as the file gives them, releases over {a.spread_s:g} s"
            if a.trace is not None else
            f"{a.queries:,} queries, releases over {a.spread_s:g} s, deadlines on a fifth {a.window[0]:g}-{a.window[1]:g} s "
            "after release")
    print(f"{what}; default fleet{' at batch size 1' if a.batch_1 else ''} x{scale}, horizon {a.spread_s + 900:g} s; "
          f"{os.cpu_count()} CPUs ({cpu_model()}), Python {platform.python_version()}, medians of {a.repeats}")
    head = (f"{'batch':<14} {'status':<8} {'kWh':>8} {'makespan s':>10} {'gap':>9} {'total s':>8} {'solve s':>8} "
            f"{'peak MB':>8} {'released':>9} {'early':>6} {'deadlines met':>14} {'check':>6}")
    print(head)
    print("-" * len(head))
    med = {}
    for name, rs in runs.items():
        last = rs[-1]
        s = last["summary"]
        med[name] = statistics.median(x["total_s"] for x in rs)
        solve_s = statistics.median(x["summary"]["timings_s"].get("solver_s", 0.0) for x in rs)
        peak = statistics.median(x["peak_mb"] for x in rs)
        if s["total_energy_kwh"] is None:  # no plan: the status and why
            print(f"{name:<14} {s['status']:<8} {med[name]:>8.2f} s  {s['message'][:150]}")
            continue
        checked = all(x["summary"]["check"]["ok"] and x["early"] == 0 and x["late"] == 0 for x in rs)
        print(f"{name:<14} {s['status']:<8} {s['total_energy_kwh']:>8.4f} {s['makespan_s']:>10.1f} {s['gap']:>9.2e} "
              f"{med[name]:>8.2f} {solve_s:>8.2f} {peak:>8.0f} {s['queries_with_release']:>9,} {last['early']:>6} "
              f"{last['with_deadline'] - last['late']:>6,}/{last['with_deadline']:<7,} {'ok' if checked else 'FAILED':>6}")
    print(f"time with releases / without: {med['with releases'] / med['without']:.2f}x")


if __name__ == "__main__":
    main()
