"""The default method on heavier batches: idle power, capacity-bound fleets, deadlines, accuracy
floors near the maximum and the trade-off objective, each end to end in a fresh process.

Workloads are examples/make_workload.py's (seeded). Fleets are examples/fleet.toml scaled:

* ``idle``: the shipped (batched) fleet scaled per 1,000 queries, ``--idle``, floor 0.55;
* ``capacity``: the fleet at batch size 1 with 2 H100 and 2 H200 per 5,000 queries and 8 CPU
  slices per 1,000 (40 H100, 40 H200, 800 slices for 100,000), floor 0.55: most queries cannot take
  their cheapest option;
* ``deadlines``: the batched fleet per 1,000 queries, a fifth of the queries due within 5-60 s,
  floor 0.55;
* ``floor``: the batched fleet per 1,000 queries, floor 0.65 (the fleet's most accurate LLM
  reaches 0.706);
* ``tradeoff``: the batched fleet per 1,000 queries, ``--objective tradeoff --zeta 0.5``.

Each row: wall and CPU seconds of the whole command, status, objective, bound, gap and the
independent checker's verdict (summary.json). Run from the repository root:

    python benchmarks/hard_cases.py                         # every case at 20,000 queries
    python benchmarks/hard_cases.py --cases capacity --sizes 10000 100000
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from limits_and_bounds import cli, machine  # noqa: E402
from scale import ROOT  # noqa: E402

CASES = ("idle", "capacity", "deadlines", "floor", "tradeoff")


def instance(case: str, n: int, tmp: Path) -> tuple[Path, Path, list[str]]:
    """Workload, fleet and extra options of one case at ``n`` queries."""
    sys.path.insert(0, str(ROOT / "examples"))
    from make_workload import make

    dl = case == "deadlines"
    wl = tmp / f"workload-{n}{'-dl' if dl else ''}.csv"
    if not wl.exists():
        make(n, seed=1, deadline_fraction=0.2 if dl else 0.0, deadline_range=(5.0, 60.0)).to_csv(wl, index=False)
    text = (ROOT / "examples" / "fleet.toml").read_text()
    per_k = max(1, round(n / 1000))
    if case == "capacity":
        gpus = max(1, 2 * round(n / 5000))  # 2 H100 and 2 H200 per 5,000 queries
        counts = iter([gpus, gpus, 8 * per_k])  # the pools in the file's order: h100, h200, cpu-8c
        text = re.sub(r"^count = (\d+)", lambda m: f"count = {next(counts)}", text, flags=re.M)
        text = re.sub(r"^batch_sizes = .*$", "", text, flags=re.M)
    else:
        text = re.sub(r"^count = (\d+)", lambda m: f"count = {int(m.group(1)) * per_k}", text, flags=re.M)
    fleet = tmp / f"fleet-{case}-{n}.toml"
    fleet.write_text(text)
    extra = {"idle": ["--idle", "--min-mean-accuracy", "0.55"], "capacity": ["--min-mean-accuracy", "0.55"],
             "deadlines": ["--min-mean-accuracy", "0.55"], "floor": ["--min-mean-accuracy", "0.65"],
             "tradeoff": ["--objective", "tradeoff", "--zeta", "0.5"]}[case]
    return wl, fleet, extra


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    ap.add_argument("--sizes", type=int, nargs="+", default=[20_000])
    ap.add_argument("--time-limit", type=float, default=None, help="passed to each solve (default: none)")
    a = ap.parse_args()
    print("machine:", machine())
    head = (f"{'case':<10} {'N':>8} {'wall s':>8} {'cpu s':>8} {'status':<12} {'objective':>14} {'bound':>14} "
            f"{'gap':>9} {'check':>6}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="energyopt-hard-") as d:
        tmp = Path(d)
        for n in a.sizes:
            for case in a.cases:
                wl, fleet, extra = instance(case, n, tmp)
                out = tmp / f"out-{case}-{n}"
                args = ["solve", str(wl), "--fleet", str(fleet), *extra, "-o", str(out), "--quiet"]
                if a.time_limit is not None:
                    args += ["--time-limit", str(a.time_limit)]
                r = cli(args)
                try:
                    s = json.loads((out / "summary.json").read_text())
                except (OSError, json.JSONDecodeError):
                    s = {"status": f"exit {r['rc']}"}
                gap = s.get("gap")
                row = (f"{case:<10} {n:>8} {r['wall_s']:8.2f} {r['cpu_s']:8.2f} {s.get('status', '?'):<12} "
                       f"{s.get('objective_value') or float('nan'):14.8g} {s.get('bound') or float('nan'):14.8g} "
                       f"{'-' if gap is None else format(gap, '.4%'):>9} "
                       f"{'ok' if s.get('check', {}).get('ok') else 'FAIL':>6}")
                rows.append(row)
                print(row, file=sys.stderr, flush=True)
    print(head)
    print("-" * len(head))
    for row in rows:
        print(row)
    print("machine after:", machine())


if __name__ == "__main__":
    main()
