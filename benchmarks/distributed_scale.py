"""Distributed planning against the single-process decomposition, side by side.

For each N it generates the seeded workload and fleet of benchmarks/scale.py (the default fleet
scaled to N, a token-weighted mean-accuracy floor of 0.55), then plans it

* ``single``: ``energyopt solve --formulation decompose`` in a fresh process;
* ``ray xP``: ``energyopt.distributed.plan_distributed`` on a local Ray of ``--cpus`` CPUs with
  P partitions (one long-lived actor each), in a fresh process.

Wall s is the whole process (reading, building, solving, writing, checking; for Ray also its
start and stop). Peak MB is the peak resident memory of the largest process: the single
process's, or, for Ray, the largest of the driver, every actor and Ray's own processes (each
process's ``VmHWM`` from /proc, read before Ray stops); ``workers`` lists the actors' peaks.
Objective, bound and gap come from each run's summary.json.

With ``--project N`` it also projects a run of N queries from the largest distributed run
measured: the actors' and the driver's memory per query above a fixed part, fitted from the
smallest and largest sizes run (two at least), said as a projection, not a measurement.

    python benchmarks/distributed_scale.py --sizes 1000000 --partitions 4
    python benchmarks/distributed_scale.py --sizes 1000000 10000000 --partitions 4 --project 100000000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from scale import _ENERGYOPT as _SINGLE  # noqa: E402 - one process's run and peak, as scale.py's
from scale import make_instance  # noqa: E402 - the same workloads and fleets as scale.py

_DISTRIBUTED = r"""
import json, os, resource, sys, tempfile, time
t0 = time.perf_counter()
import ray
from energyopt.distributed import plan_distributed
wl, fleet, models, out, parts, cpus, acc = sys.argv[1:8]

def descendants(root):
    kids = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                ppid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            kids.setdefault(ppid, []).append(int(pid))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out

def hwm_mb(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0

def name(pid):
    try:
        return open(f"/proc/{pid}/cmdline").read().replace("\0", " ")[:60]
    except OSError:
        return "?"

temp_dir = tempfile.mkdtemp(prefix="energyopt-ray-")
ray.init(num_cpus=int(cpus), include_dashboard=False, log_to_driver=False, _temp_dir=temp_dir)
r = plan_distributed(wl, fleet, models, out, partitions=int(parts), executor="ray", min_mean_accuracy=float(acc))
procs = {p: hwm_mb(p) for p in descendants(os.getpid())}
biggest = max(procs, key=procs.get)
who = "driver" if biggest == os.getpid() else name(biggest)
ray.shutdown()
import shutil
shutil.rmtree(temp_dir, ignore_errors=True)
# the largest of every process's VmHWM and the actors' own peaks (getrusage, which counts a little more)
peak = max([procs[biggest], *r.worker_peak_rss_mb])
print(json.dumps({"wall_s": time.perf_counter() - t0, "driver_mb": hwm_mb(os.getpid()), "peak_mb": peak,
                  "biggest": who if peak == procs[biggest] else "an actor (its getrusage)",
                  "workers_mb": r.worker_peak_rss_mb, "timings_s": r.timings_s}))
"""


def _run(code: str, args: list[str], env: dict[str, str]) -> dict:
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {(proc.stderr.strip() or proc.stdout.strip())[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_single(wl: Path, fleet: Path, out: Path, acc: float, env: dict[str, str]) -> dict:
    stats = _run(_SINGLE, ["solve", str(wl), "--fleet", str(fleet), "--models", str(ROOT / "models"),
                           "--min-mean-accuracy", str(acc), "--formulation", "decompose", "--out", str(out), "--quiet"],
                 env)
    s = json.loads((out / "summary.json").read_text())
    return {**stats, "objective": s["objective_value"], "bound": s["bound"], "gap": s["gap"], "status": s["status"],
            "check": s["check"]["ok"], "timings_s": s["timings_s"]}


def run_distributed(wl: Path, fleet: Path, out: Path, acc: float, parts: int, cpus: int, env: dict[str, str]) -> dict:
    stats = _run(_DISTRIBUTED, [str(wl), str(fleet), str(ROOT / "models"), str(out), str(parts), str(cpus), str(acc)],
                 env)
    s = json.loads((out / "summary.json").read_text())
    return {**stats, "objective": s["objective"], "bound": s["bound"], "gap": s["gap"], "status": s["status"],
            "check": s["check"]["ok"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray")
    ap.add_argument("--min-mean-accuracy", type=float, default=0.55)
    ap.add_argument("--deadline-fraction", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-single", action="store_true", help="only the distributed runs (the single one does not fit)")
    ap.add_argument("--project", type=int, default=None, help="project a distributed run of this many queries")
    a = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    rows, dist_runs = [], []
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        for n in a.sizes:
            t = time.perf_counter()
            wl, fleet = make_instance(n, a.seed, a.deadline_fraction, tmp)
            print(f"N={n}: workload written in {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
            single = None
            if not a.no_single:
                single = run_single(wl, fleet, tmp / f"single-{n}", a.min_mean_accuracy, env)
                print(f"N={n} single: {single['wall_s']:.1f} s, {single['peak_mb']:.0f} MB; steps "
                      f"{json.dumps({k: round(v, 1) for k, v in single['timings_s'].items()})}", file=sys.stderr, flush=True)
                rows.append({"N": n, "path": "single", **single, "note": ""})
            dist = run_distributed(wl, fleet, tmp / f"dist-{n}", a.min_mean_accuracy, a.partitions, a.cpus, env)
            print(f"N={n} ray: {dist['wall_s']:.1f} s, {dist['peak_mb']:.0f} MB ({dist['biggest']}); "
                  f"steps {json.dumps({k: round(v, 1) for k, v in dist['timings_s'].items()})}", file=sys.stderr, flush=True)
            dist_runs.append((n, dist))
            note = (f"workers {'/'.join(f'{w:.0f}' for w in dist['workers_mb'])} MB, driver {dist['driver_mb']:.0f} MB; "
                    f"biggest: {dist['biggest'].strip()[:40]}")
            if single is not None:
                same = dist["objective"] == single["objective"] and dist["gap"] == single["gap"]
                note += (f"; {dist['wall_s'] / single['wall_s']:.2f}x the time, {dist['peak_mb'] / single['peak_mb']:.2f}x "
                         f"the peak; objective and gap {'identical' if same else 'DIFFER'}")
            rows.append({"N": n, "path": f"ray x{a.partitions}", **dist, "note": note})
            shutil_rm(tmp)
    head = f"{'N':>11}  {'path':<8} {'wall s':>8} {'peak MB':>8} {'objective':>16} {'bound':>16} {'gap':>9}  check  note"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['N']:>11}  {r['path']:<8} {r['wall_s']:>8.1f} {r['peak_mb']:>8.0f} {r['objective']:>16.10g} "
              f"{r['bound']:>16.10g} {r['gap']:>9.2e}  {'ok' if r['check'] else 'FAIL':<5}  {r['note']}")
    if a.project:
        project(dist_runs, a.project, a.partitions)


def shutil_rm(tmp: Path) -> None:
    """The plans' folders go after each size (a 10M plan's files are gigabytes)."""
    import shutil

    for d in tmp.glob("*-*"):
        if d.is_dir():
            shutil.rmtree(d, ignore_errors=True)


def project(runs: list[tuple[int, dict]], n: int, parts: int) -> None:
    """Memory and time of a distributed run of ``n`` queries, projected linearly from the runs
    measured (a fixed part and a part per query where two sizes were run, else per query only)."""
    runs = sorted(runs, key=lambda r: r[0])
    (n1, r1), (n2, r2) = runs[0], runs[-1]
    if n1 == n2:  # one size: no telling the fixed part from the part per query
        print("\n--project needs distributed runs at two sizes (--sizes A B)")
        return

    def fit(f1: float, f2: float) -> tuple[float, float]:
        per = (f2 - f1) / (n2 - n1)
        return f2 - per * n2, per

    w0, wq = fit(max(r1["workers_mb"]), max(r2["workers_mb"]))
    d0, dq = fit(r1["driver_mb"], r2["driver_mb"])
    t0, tq = fit(r1["wall_s"], r2["wall_s"])
    per_part = wq * parts  # an actor's memory per query of its own partition
    print(f"\nPROJECTED (not measured) from the distributed runs at {n1:,} and {n2:,} queries, {parts} partitions:")
    print(f"  an actor: {w0:,.0f} MB + {per_part * 1e6:,.0f} MB per million queries of its partition; the driver: "
          f"{d0:,.0f} MB + {dq * 1e6:,.0f} MB per million queries of the batch")
    for p in (parts, 40):
        print(f"  {n:,} queries in {p} partitions: each actor {w0 + per_part * n / p:,.0f} MB, the driver "
              f"{d0 + dq * n:,.0f} MB" + (f", wall {t0 + tq * n:,.0f} s on this machine" if p == parts else
                                             " (the actors on as many machines as their memory needs)"))


if __name__ == "__main__":
    main()
