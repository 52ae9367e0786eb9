"""A day-long batch planned for carbon, against the same batch planned for energy without slots.

The batch is ``examples/day-long/day_long.py``'s (chat-like lognormal queries, a fifth with a
deadline 1-24 h after the start) on ``examples/day-long/fleet.toml`` (24-hour horizon), priced on
the shipped NESO GB carbon-intensity series from ``--start``. Three plans, each in a fresh process:

* ``energy``: carbon-blind (``--objective energy``, no slots), priced per half hour afterwards;
* ``carbon``: ``--objective carbon`` (work moved to clean half hours);
* ``carbon+cap``: the same with a ``power_cap_w`` on the H200 pool at ``--cap-share`` of the
  H200 pool's peak half-hour power in the ``carbon`` plan (so the cap binds in its clean hours);
* ``carbon+site``: the same with the two GPU pools in one site (``[sites.gpus]``) capped at
  ``--cap-share`` of their summed peak half-hour power in the ``carbon`` plan.

The table: wall time of the plan (``plan()``, inputs read and the independent check included) and
its ratio to the energy plan's, peak resident memory of the process, the proven gap, kWh, kgCO2e,
kgCO2e saved against the carbon-blind plan, the token-weighted mean accuracy, and the checker's
verdict. Run from the repository root:

    python benchmarks/carbon_day.py [--queries 100000] [--start 2023-01-02T17:00:00Z]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERIES = ROOT / "data" / "signals" / "neso_gb_national_intensity_2023-01-01_07.csv"
FLEET = ROOT / "examples" / "day-long" / "fleet.toml"

CHILD = r"""
import json, resource, sys, time
import numpy as np
from energyopt.plan import plan
from energyopt.slots import slot_totals
wl, fleet, models, objective, series, start = sys.argv[1:7]
t0 = time.perf_counter()
s = plan(wl, fleet, models, objective=objective, signals=series, signals_start=start)
wall = time.perf_counter() - t0
tab = s.slot_table()
tot = slot_totals(tab)
slot_s = (tab["slot_end_s"] - tab["slot_start_s"]).iloc[0]
h200 = tab[tab["device"] == "h200"].groupby("slot")["energy_j"].sum() / slot_s
gpus = tab[tab["device"].isin(["h100", "h200"])].groupby("slot")["energy_j"].sum() / slot_s
a = s.assignment
w = (a["query_id"].map(dict(zip(s.problem.queries["query_id"], s.problem.queries["weight"])))).to_numpy(float)
print(json.dumps({"wall_s": wall, "rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
                  "status": str(s.status), "gap": s.gap, "kwh": tot["total_energy_kwh"], "kg": tot["total_kg_co2e"],
                  "acc": float(np.dot(w, a["accuracy"]) / w.sum()), "check": not s.check_violations,
                  "h200_peak_w": float(h200.max()) if len(h200) else 0.0,
                  "gpu_peak_w": float(gpus.max()) if len(gpus) else 0.0, "method": s.formulation}))
"""


def run(wl: Path, fleet: Path, objective: str, start: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", CHILD, str(wl), str(fleet), str(ROOT / "models"), objective,
                          str(SERIES), start], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--start", default="2023-01-02T17:00:00Z")
    ap.add_argument("--cap-share", type=float, default=0.6)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "examples" / "day-long"))
    sys.path.insert(0, str(ROOT))
    from day_long import make_workload  # type: ignore[import-not-found]

    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        wl = tmp / "workload.csv"
        make_workload(args.queries, args.seed).to_csv(wl, index=False)
        rows = {"energy": run(wl, FLEET, "energy", args.start), "carbon": run(wl, FLEET, "carbon", args.start)}
        cap_w = args.cap_share * rows["carbon"]["h200_peak_w"]
        capped = tmp / "fleet-capped.toml"
        text = FLEET.read_text().replace("idle_power_w = 126 ", f"power_cap_w = {cap_w:.1f}\nidle_power_w = 126 ", 1)
        capped.write_text(text)
        rows["carbon+cap"] = run(wl, capped, "carbon", args.start)
        site_w = args.cap_share * rows["carbon"]["gpu_peak_w"]
        sited = tmp / "fleet-site.toml"
        sited.write_text(FLEET.read_text() + f'\n[sites.gpus]\npools = ["h100", "h200"]\npower_cap_w = {site_w:.1f}\n')
        rows["carbon+site"] = run(wl, sited, "carbon", args.start)
    base = rows["energy"]
    print(f"{args.queries:,} queries, 24-hour window from {args.start}, NESO GB carbon intensity; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; H200 cap {cap_w:,.1f} W, "
          f"GPU site cap {site_w:,.1f} W")
    print(f"{'plan':<11} {'time s':>8} {'x energy':>8} {'peak GB':>8} {'gap':>9} {'kWh':>9} {'kgCO2e':>9} "
          f"{'saved kg':>9} {'saved':>7} {'accuracy':>8} {'H200 peak W':>11} {'GPU peak W':>10} check")
    for name, r in rows.items():
        saved = base["kg"] - r["kg"]
        print(f"{name:<11} {r['wall_s']:>8.1f} {r['wall_s'] / base['wall_s']:>8.2f} {r['rss_gb']:>8.2f} "
              f"{r['gap']:>9.4%} {r['kwh']:>9.3f} {r['kg']:>9.4f} {saved:>9.4f} {saved / base['kg']:>7.1%} "
              f"{r['acc']:>8.4f} {r['h200_peak_w']:>11.1f} {r['gpu_peak_w']:>10.1f} {'ok' if r['check'] else 'FAILED'}  "
              f"({r['method']}, {r['status']})")


if __name__ == "__main__":
    main()
