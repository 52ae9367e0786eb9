"""Do the deadlines bind? Solve a batch with completion deadlines and the same batch without them.

The workload is examples/make_workload.py's (seeded) with a fraction of the queries given a
deadline drawn uniformly from a range; the fleet is the default one scaled per 1,000 queries
(as in scale.py), with a token-weighted mean-accuracy floor of 0.55. The deadlines provably
bind when the bound of the plan with deadlines exceeds the energy of the plan without them:
then the optimum with deadlines is higher than the optimum without. The script also counts the
deadline queries whose (LLM, device) differs between the two plans and those that end within
5 s of their deadline.

    python benchmarks/deadlines.py --n 10000 --fraction 0.25 --range 10 60
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import ROOT, make_instance  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--fraction", type=float, default=0.25)
    ap.add_argument("--range", type=float, nargs=2, default=(10.0, 60.0), metavar=("MIN_S", "MAX_S"))
    ap.add_argument("--min-mean-accuracy", type=float, default=0.55)
    ap.add_argument("--solver", default="auto")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    from energyopt import FittedModels, plan, read_fleet, read_workload

    with tempfile.TemporaryDirectory() as tmpd:
        wl_path, fleet_path = make_instance(a.n, a.seed, a.fraction, Path(tmpd), deadline_range=tuple(a.range))
        wl, fleet = read_workload(wl_path), read_fleet(fleet_path)
    models = FittedModels.load(ROOT / "models")
    t0 = time.perf_counter()
    with_dl = plan(wl, fleet, models, solver=a.solver, min_mean_accuracy=a.min_mean_accuracy)
    t1 = time.perf_counter()
    without = plan(wl.assign(deadline_s=float("nan")), fleet, models, solver=a.solver, min_mean_accuracy=a.min_mean_accuracy)
    has = wl["deadline_s"].notna().to_numpy()
    x = with_dl.assignment.set_index("query_id").loc[wl["query_id"]]
    y = without.assignment.set_index("query_id").loc[wl["query_id"]]
    moved = has & ((x["llm"].to_numpy() != y["llm"].to_numpy()) | (x["device"].to_numpy() != y["device"].to_numpy()))
    tight = has & (x["end_s"].to_numpy() >= wl["deadline_s"].to_numpy() - 5.0)
    s = with_dl.summary()
    rows = [
        ("queries", f"{a.n}"),
        ("with a deadline", f"{int(has.sum())} ({has.mean():.1%}), {a.range[0]:g}-{a.range[1]:g} s"),
        ("plan with deadlines", f"{with_dl.objective:.6g} J, bound {with_dl.bound:.6g} J, gap {with_dl.gap:.4%}, "
                                f"{with_dl.status.value}, {s.deadlines_met}/{s.queries_with_deadline} deadlines met, "
                                f"check {'ok' if s.check['ok'] else 'FAILED'}, {t1 - t0:.2f} s"),
        ("plan without deadlines", f"{without.objective:.6g} J, gap {without.gap:.4%}"),
        ("deadlines provably bind", f"{with_dl.bound > without.objective} (bound with {with_dl.bound:.6g} J > "
                                    f"plan without {without.objective:.6g} J: "
                                    f"+{with_dl.bound - without.objective:.6g} J at least)"),
        ("deadline queries moved", f"{int(moved.sum())} to another (LLM, device)"),
        ("deadline queries ending within 5 s of it", f"{int(tight.sum())}"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


if __name__ == "__main__":
    main()
