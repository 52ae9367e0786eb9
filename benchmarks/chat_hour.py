"""An hour of chat traffic on the default fleet, batched against batch size 1.

The workload has the shape of the public Azure LLM inference conversation trace (19,366 requests
in one hour; input and output lengths lognormal with medians of about 1,000 and 130 tokens, as
``examples/make_workload.py`` draws them, with its accuracy floors and a fifth of the queries
due 60-1800 s after the batch start). The trace itself is not shipped (another project's data;
``benchmarks/releases.py --trace FILE`` plans it as published, its arrivals included); here arrival
times are not modelled (every query is released at t = 0, within the fleet's 900 s horizon).

It is planned twice, in fresh processes, on ``examples/fleet.toml``: as shipped (five LLMs on
the H200s run at batch size 8 or 64) and with every instance at batch size 1. Run from the
repository root:

    python benchmarks/chat_hour.py [--queries 19366] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _solve(workload: Path, fleet: Path, out: Path) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "energyopt.cli", "solve", str(workload), "--fleet", str(fleet),
                           "--models", str(ROOT / "models"), "--out", str(out), "--quiet"],
                          capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        raise SystemExit(f"energyopt solve failed: {proc.stderr.strip() or proc.stdout.strip()}")
    s = json.loads((out / "summary.json").read_text())
    return {"wall_s": wall, "exit": proc.returncode, **s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=19_366)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT / "examples"))
    from make_workload import make

    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        wl = tmp / "chat-hour.csv"
        make(a.queries, seed=a.seed).to_csv(wl, index=False)
        shipped = (ROOT / "examples" / "fleet.toml").read_text()
        fleets = {"batched (8 or 64)": tmp / "batched.toml", "batch size 1": tmp / "b1.toml"}
        fleets["batched (8 or 64)"].write_text(shipped)
        fleets["batch size 1"].write_text(re.sub(r"^batch_sizes = .*$", "", shipped, flags=re.M))
        print(f"{a.queries} queries (seed {a.seed}) on examples/fleet.toml, horizon 900 s")
        head = (f"{'fleet':<18} {'status':<11} {'energy kWh':>10} {'J/query':>8} {'gap':>9} {'makespan s':>10} "
                f"{'wall s':>7}  reason")
        print(head)
        print("-" * len(head))
        for name, fleet in fleets.items():
            r = _solve(wl, fleet, tmp / f"plan-{len(name)}")
            planned = r["status"] in ("optimal", "feasible")
            energy = f"{r['total_energy_kwh']:10.4f}" if planned else f"{'-':>10}"
            per_q = f"{r['total_energy_j'] / r['queries']:8.1f}" if planned else f"{'-':>8}"
            gap = f"{r['gap']:9.2e}" if planned and isinstance(r["gap"], float) else f"{'-':>9}"
            span = f"{r['makespan_s']:10.1f}" if planned else f"{'-':>10}"
            reason = "" if planned else r["message"][:110]
            print(f"{name:<18} {r['status']:<11} {energy} {per_q} {gap} {span} {r['wall_s']:7.1f}  {reason}")


if __name__ == "__main__":
    main()
