"""Scale benchmark: energyopt's default solver against a naive per-query PuLP model solved by CBC.

For each N it generates a seeded workload (examples/make_workload.py: lognormal tokens, 30% of
queries with an accuracy floor of 0.5 and 10% of 0.6) and the default fleet
(examples/fleet.toml: 2 H100s, 2 H200s (five LLMs batched there) and eight 8-core CPU slices per 1,000 queries, seven
LLMs in 15 deployments, 900 s horizon), with a token-weighted mean-accuracy floor of 0.55, so
capacity and accuracy bind. With --deadline-fraction F, a fraction F of the queries also get a
completion deadline (--deadline-range, default 10-60 s).

* ``energyopt``: the command ``energyopt solve`` end to end in a fresh process (read, build,
  solve, check, write the CSV and summary), ``--repeats`` times; the table shows medians. build
  s = reading and building the problem, solve s = the solver, total s = the whole process.
* ``naive``: one PuLP binary per (query, option), one integer instance count per deployment,
  the same rows (aggregate formulation without deadlines), CBC with a relative gap of 1e-4 and a
  time limit; run once, in its own process, killed past the limit.

Peak MB is the process's peak resident memory. Run from the repository root:

    python benchmarks/scale.py                      # 10k, 100k and 1M queries
    python benchmarks/scale.py --sizes 1000000 --fleets batched batch-1 --naive-up-to 0   # batching's cost
    python benchmarks/scale.py --sizes 10000 100000 --naive-up-to 100000
    python benchmarks/scale.py --sizes 100000 --deadline-fraction 0.2 --naive-up-to 0
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_ENERGYOPT = r"""
import json, resource, sys, time
t0 = time.perf_counter()
from energyopt.cli import main
try:
    main(sys.argv[1:], standalone_mode=False)
except SystemExit:
    pass
print(json.dumps({"wall_s": time.perf_counter() - t0, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

_NAIVE = r"""
import json, resource, sys, time, warnings
warnings.filterwarnings("ignore")
import numpy as np
import pulp
from energyopt.inputs import load_inputs
from energyopt.problem import build_problem
wl_path, fleet_path, models, acc, limit = sys.argv[1:6]
t0 = time.perf_counter()
wl, fl, fm = load_inputs(wl_path, fleet_path, models)
p = build_problem(wl, fl, fm, min_mean_accuracy=float(acc))
t1 = time.perf_counter()
cand, deps = p.cand, p.deployments
q, d = cand["q"].to_numpy(), cand["d"].to_numpy()
cost, run, a = cand["cost"].to_numpy(), cand["runtime_s"].to_numpy(), cand["accuracy"].to_numpy()
w = p.queries["weight"].to_numpy()
prob = pulp.LpProblem("naive", pulp.LpMinimize)
x = [pulp.LpVariable(f"x{i}", cat="Binary") for i in range(len(cand))]
n = [pulp.LpVariable(f"n{j}", 0, int(deps["max_instances"].iloc[j]), cat="Integer") for j in range(len(deps))]
prob += (pulp.lpSum(cost[i] * x[i] for i in range(len(cand)))
         + pulp.lpSum(float(p.instance_cost[j]) * n[j] for j in range(len(deps))))
by_q, by_d = {}, {}
for i in range(len(cand)):
    by_q.setdefault(int(q[i]), []).append(i)
    by_d.setdefault(int(d[i]), []).append(i)
for qq, idx in by_q.items():
    prob += pulp.lpSum(x[i] for i in idx) == 1
for j, idx in by_d.items():  # an instance at batch size b is b lanes
    prob += pulp.lpSum(run[i] * x[i] for i in idx) <= p.horizon_s * int(deps["lanes"].iloc[j]) * n[j]
for pool, cnt in zip(p.pools["pool"], p.pools["count"]):
    js = [j for j in range(len(deps)) if deps["device"].iloc[j] == pool]
    prob += pulp.lpSum(int(deps["devices_per_instance"].iloc[j]) * n[j] for j in js) <= int(cnt)
for g, members in deps.groupby("group").groups.items():  # the batch sizes of one deployment share its instances
    if len(members) > 1:
        prob += pulp.lpSum(n[int(j)] for j in members) <= int(deps["max_instances"].iloc[members[0]])
prob += pulp.lpSum(w[q[i]] * a[i] * x[i] for i in range(len(cand))) >= float(acc) * float(w[np.unique(q)].sum())
t2 = time.perf_counter()
prob.solve(pulp.PULP_CBC_CMD(msg=False, timeLimit=float(limit), gapRel=1e-4, threads=1))
t3 = time.perf_counter()
print(json.dumps({"build_s": t2 - t0, "solve_s": t3 - t2, "total_s": t3 - t0, "status": pulp.LpStatus[prob.status],
                  "objective": pulp.value(prob.objective), "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def make_instance(n: int, seed: int, deadline_fraction: float, tmp: Path,
                  deadline_range: tuple[float, float] = (30.0, 300.0), batch_1: bool = False) -> tuple[Path, Path]:
    sys.path.insert(0, str(ROOT / "examples"))
    from make_workload import make

    wl = tmp / f"workload-{n}.csv"
    make(n, seed=seed, deadline_fraction=deadline_fraction, deadline_range=deadline_range).to_csv(wl, index=False)
    scale = max(1, round(n / 1000))
    text = (ROOT / "examples" / "fleet.toml").read_text()
    text = re.sub(r"^count = (\d+)", lambda m: f"count = {int(m.group(1)) * scale}", text, flags=re.M)
    if batch_1:  # the same fleet with every instance serving one query at a time
        text = re.sub(r"^batch_sizes = .*$", "", text, flags=re.M)
    fleet = tmp / f"fleet-{n}{'-b1' if batch_1 else ''}.toml"
    fleet.write_text(text)
    return wl, fleet


def run_energyopt(wl: Path, fleet: Path, out: Path, acc: float) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _ENERGYOPT, "solve", str(wl), "--fleet", str(fleet), "--models",
                           str(ROOT / "models"), "--min-mean-accuracy", str(acc), "--out", str(out), "--quiet"],
                          capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"energyopt solve failed on {wl}: {proc.stderr.strip() or proc.stdout.strip()}")
    stats = json.loads(proc.stdout.strip().splitlines()[-1])
    summ = json.loads((out / "summary.json").read_text())
    t = summ["timings_s"]
    return {"build_s": t.get("build_s", 0.0), "solve_s": t.get("solver_s", 0.0), "total_s": wall,
            "peak_mb": stats["peak_mb"], "objective": summ["objective_value"], "bound": summ["bound"], "gap": summ["gap"],
            "status": summ["status"], "check": summ["check"]["ok"]}


def run_naive(wl: Path, fleet: Path, acc: float, limit_s: float) -> dict:
    try:
        proc = subprocess.run([sys.executable, "-c", _NAIVE, str(wl), str(fleet), str(ROOT / "models"), str(acc), str(limit_s)],
                              capture_output=True, text=True, cwd=ROOT, timeout=limit_s * 2 + 600)
    except subprocess.TimeoutExpired:
        return {"status": f"killed after {limit_s * 2 + 600:.0f} s"}
    if proc.returncode != 0:
        return {"status": f"failed: {(proc.stderr.strip().splitlines() or ['?'])[-1][:80]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fmt(v, f: str) -> str:
    return format(v, f) if v is not None else "-".rjust(int(re.match(r'\d*', f).group() or 0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--naive-up-to", type=int, default=100_000, help="run the naive model up to this N (0: never)")
    ap.add_argument("--naive-time-limit", type=float, default=600.0)
    ap.add_argument("--deadline-fraction", type=float, default=0.0)
    ap.add_argument("--deadline-range", type=float, nargs=2, default=(10.0, 60.0), metavar=("MIN_S", "MAX_S"))
    ap.add_argument("--min-mean-accuracy", type=float, default=0.55)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--fleets", nargs="+", choices=("batched", "batch-1"), default=["batched"],
                    help="the default fleet as shipped (batched H200 deployments) and/or with every instance at "
                         "batch size 1; with both, their runs alternate and the table gives the ratios")
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        for n in a.sizes:
            fleets = {}
            for kind in a.fleets:
                wl, fleets[kind] = make_instance(n, a.seed, a.deadline_fraction, tmp, tuple(a.deadline_range),
                                                 batch_1=kind == "batch-1")
            runs: dict[str, list[dict]] = {k: [] for k in a.fleets}
            for r in range(a.repeats):  # alternate the fleets, so that both see the machine alike
                for kind, fleet in fleets.items():
                    runs[kind].append(run_energyopt(wl, fleet, tmp / f"plan-{n}-{kind}", a.min_mean_accuracy))
                    print(f"N={n} energyopt ({kind}) run {r + 1}/{a.repeats}: {runs[kind][-1]['total_s']:.2f} s, "
                          f"gap {runs[kind][-1]['gap']:.2e}", file=sys.stderr, flush=True)
            meds = {kind: {k: statistics.median(x[k] for x in runs[kind]) for k in ("build_s", "solve_s", "total_s", "peak_mb")}
                    for kind in a.fleets}
            for kind in a.fleets:
                med, last = meds[kind], runs[kind][-1]
                label = "energyopt" if a.fleets == ["batched"] else f"energyopt {kind}"
                note = f"{last['status']}, check {'ok' if last['check'] else 'FAILED'}"
                if kind == "batched" and "batch-1" in meds:
                    b1 = meds["batch-1"]
                    note += (f"; {med['total_s'] / b1['total_s']:.2f}x the time, {med['peak_mb'] / b1['peak_mb']:.2f}x "
                             "the memory of batch 1")
                rows.append({"N": n, "method": label, **med, "objective": last["objective"], "bound": last["bound"],
                             "gap": last["gap"], "note": note})
            med, last = meds[a.fleets[0]], runs[a.fleets[0]][-1]
            if n <= a.naive_up_to and a.deadline_fraction == 0:
                print(f"N={n} naive PuLP/CBC ...", file=sys.stderr, flush=True)
                nv = run_naive(wl, fleet, a.min_mean_accuracy, a.naive_time_limit)
                obj = nv.get("objective")
                rows.append({"N": n, "method": "naive PuLP+CBC", "build_s": nv.get("build_s"), "solve_s": nv.get("solve_s"),
                             "total_s": nv.get("total_s"), "peak_mb": nv.get("peak_mb"), "objective": obj, "bound": None,
                             "gap": None, "note": nv.get("status", "")})
                if obj is not None and nv.get("total_s"):
                    rows[-1]["note"] += (f"; energyopt {nv['total_s'] / med['total_s']:.0f}x faster, objective "
                                         f"{(obj - last['objective']) / last['objective']:+.2e} relative")
    head = (f"{'N':>9}  {'method':<17} {'build s':>8} {'solve s':>8} {'total s':>8} {'peak MB':>8} "
            f"{'objective':>14} {'bound':>14} {'gap':>9}  note")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['N']:>9}  {r['method']:<17} {fmt(r['build_s'], '8.2f')} {fmt(r['solve_s'], '8.2f')} "
              f"{fmt(r['total_s'], '8.2f')} {fmt(r['peak_mb'], '8.0f')} {fmt(r['objective'], '14.6g')} "
              f"{fmt(r['bound'], '14.6g')} {fmt(r['gap'], '9.2e')}  {r['note']}")


if __name__ == "__main__":
    main()
