"""Time one study of 50 plans three ways: one by one in this process, on the local process pool,
and on a local Ray cluster; check that the three tables agree row for row.

The plans: the first ``--queries`` queries of the example workload, accuracy floors 0.55-0.7 and
0.99 (out of reach: infeasible rows) x deadline scales 0.25-4 x objective energy/tradeoff, the
aggregate formulation, one solver thread per plan.

    python benchmarks/study_timing.py --queries 100 --workers 2
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from energyopt.defaults import example_workload_path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from releases import cpu_model  # noqa: E402

from energyopt.study import STUDY_COLUMNS, VOLATILE_COLUMNS, read_study, run_plan, run_study


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        study_toml = d / "study.toml"
        study_toml.write_text(
            f'[base]\nworkload = "{example_workload_path()}"\nqueries = {args.queries}\nformulation = "aggregate"\n'
            "threads = 1\n[axes]\nmin_mean_accuracy = [0.55, 0.6, 0.65, 0.7, 0.99]\n"
            'deadline_scale = [0.25, 0.5, 1.0, 2.0, 4.0]\nobjective = ["energy", "tradeoff"]\n')
        study = read_study(study_toml)
        times = {}
        t = time.perf_counter()
        single = pd.DataFrame([run_plan(s, str(d / "single")) for s in study.plans], columns=list(STUDY_COLUMNS))
        times["one by one (this process)"] = time.perf_counter() - t
        single.to_csv(d / "single.csv", index=False)
        for executor in ("local", "ray"):
            t = time.perf_counter()
            run_study(study, d / executor, executor=executor, workers=args.workers)
            times[f"{executor} ({args.workers} workers)"] = time.perf_counter() - t
        ref = pd.read_csv(d / "single.csv").drop(columns=list(VOLATILE_COLUMNS))
        for executor in ("local", "ray"):
            got = pd.read_csv(d / executor / "study.csv").drop(columns=list(VOLATILE_COLUMNS))
            pd.testing.assert_frame_equal(got, ref)
    print(f"{len(study.plans)} plans of {args.queries} queries; {os.cpu_count()} CPUs ({cpu_model()})")
    print(f"statuses: {single['status'].value_counts().to_dict()}; the three tables agree row for row")
    for k, v in times.items():
        print(f"  {k:<28} {v:7.1f} s")


if __name__ == "__main__":
    main()
