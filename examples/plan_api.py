"""Plan the example workload from Python, compare with one baseline, and export the plan.

Run: python examples/plan_api.py [OUT_DIR]   (OUT_DIR: a new temporary folder, printed at the end;
the script writes nothing into the repository)
"""

import sys
import tempfile
from pathlib import Path

import energyopt

ROOT = Path(__file__).resolve().parent.parent

workload = energyopt.read_workload(ROOT / "examples" / "workload.csv")
fleet = energyopt.read_fleet(ROOT / "examples" / "fleet.toml")
models = energyopt.FittedModels.load(ROOT / "models")

# one query's predicted cost on each deployment
for d in fleet.deployments:
    p = models.predict(d.llm, d.pool, [1000], [130]).iloc[0]
    print(f"{d.name:<24} 1000 in / 130 out: {p.runtime_s:8.2f} s {p.energy_j:10.1f} J")

schedule = energyopt.plan(workload, fleet, models, solver="highs", min_mean_accuracy=0.52)
s = schedule.summary()
print(f"\nstatus {s.status}, {s.total_energy_kwh:.3f} kWh, gap {s.gap:.3%}, "
      f"token-weighted accuracy {s.token_weighted_mean_accuracy:.3f}, deadlines met {s.deadlines_met}/{s.queries_with_deadline}")

violations = energyopt.check_schedule(schedule.problem, schedule)
print("independent check:", violations if violations else "ok")

out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="energyopt-plan-api-"))
schedule.write(out)
print(f"wrote {out / 'assignment.csv'} and {out / 'summary.json'}")
