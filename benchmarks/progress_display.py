"""What the live progress display costs a plan: plan() on one batch in one process, alternating
without a listener (a pipe, -q, CI) and with the rich display drawing (into a buffer, as it would
on a terminal); medians of wall and CPU seconds, and the time cProfile finds inside energyopt.progress,
energyopt.display and rich in the thread doing the work.

The batch: examples/make_workload.py's generator (deadlines 60-1800 s on a fifth of the queries)
on the default fleet with its device counts scaled by N / 1,000 (as benchmarks/scale.py does).
Run from the repository root:

    python benchmarks/progress_display.py                 # 100,000 queries, 6 rounds
    python benchmarks/progress_display.py --queries 1000000 --rounds 2
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import platform
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from scale import make_instance  # noqa: E402

from energyopt.display import RichListener  # noqa: E402
from energyopt.inputs import load_inputs  # noqa: E402
from energyopt.plan import plan  # noqa: E402
from energyopt.progress import listening  # noqa: E402


def run(inputs, display: bool):
    if not display:
        return plan(*inputs)
    listener = RichListener(force=True)
    listener.console.file = io.StringIO()
    with listener, listening(listener):
        return plan(*inputs)


def inside_progress_s(inputs, display: bool) -> float:
    prof = cProfile.Profile()
    prof.enable()
    run(inputs, display)
    prof.disable()
    stats = pstats.Stats(prof).stats
    return sum(v[2] for k, v in stats.items() if any(m in k[0] for m in ("energyopt/progress.py", "energyopt/display.py",
                                                                          "/rich/")))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="energyopt-progress-") as tmp:
        wl, fleet = make_instance(a.queries, a.seed, 0.2, Path(tmp), deadline_range=(60.0, 1800.0))
        inputs = load_inputs(wl, fleet, ROOT / "models")
    times: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    status = None
    for _ in range(a.rounds):
        for display in (False, True):
            t0, c0 = time.perf_counter(), time.process_time()
            status = run(inputs, display).status
            times[display].append((time.perf_counter() - t0, time.process_time() - c0))
    print(f"{a.queries:,} queries, plan {status}; {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}; medians of {a.rounds}, alternating")
    print(f"{'display':<10} {'wall s':>8} {'CPU s':>8} {'in progress code ms':>20}")
    for display in (False, True):
        v = times[display]
        print(f"{'rich' if display else 'none':<10} {statistics.median(w for w, _ in v):>8.3f} "
              f"{statistics.median(c for _, c in v):>8.3f} {inside_progress_s(inputs, display) * 1000:>20.1f}")


if __name__ == "__main__":
    main()
