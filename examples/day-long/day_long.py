"""A day-long batch priced on a real carbon-intensity series: kWh, kgCO2e and cost of the plan.

A batch of chat-like queries (lognormal input and output lengths, as examples/make_workload.py
draws them; seeded) must finish within a 24-hour window on the default fleet kept for the day
(examples/day-long/fleet.toml: examples/fleet.toml with horizon_s = 86400). A fifth of the
queries carry a completion deadline between 1 and 24 hours. energyopt plans the batch at least
energy (the queries' own energy; with --idle also the idle power every switched-on instance draws
all day, which then dominates) and prices the plan
per half hour on the shipped NESO series of Great Britain's grid carbon intensity
(data/signals/neso_gb_national_intensity_2023-01-01_07.csv, 1-7 January 2023), from a chosen
batch start.

The plan is carbon-blind. Its objective is energy: every query starts as early as its instance
allows from t = 0, whatever the grid's intensity, and the signals only price the plan they are
given. Moving work to cleaner hours is carbon-aware planning (issue 14's --objective carbon),
which energyopt does not do yet. What the script can show honestly is what the timing is worth:
it prices the same plan at every whole-hour batch start the series covers and prints the
cleanest and the dirtiest. The shipped series has no price, so the cost is "-" unless a
signals file with a price_per_kwh column is given (--signals).

Run: python examples/day-long/day_long.py [--out DIR] [--n 20000] [--seed 0]
                                          [--start 2023-01-02T17:00:00Z] [--idle]
                                          [--signals FILE.csv]
DIR [default ./day-long] gets workload.csv, plan/ (assignment.csv, summary.json, slots.csv, as
`energyopt solve --signals` writes them) and starts.csv (the same plan priced at each start).
The same from the shell:

    python examples/make_workload.py 20000 day.csv --deadline-range 3600 86400
    energyopt solve day.csv --fleet examples/day-long/fleet.toml \\
        --signals data/signals/neso_gb_national_intensity_2023-01-01_07.csv \\
        --signals-start 2023-01-02T17:00:00Z --out day-plan
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd

import energyopt
from energyopt.signals import read_signals
from energyopt.slots import slot_totals

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
FLEET = HERE / "fleet.toml"
MODELS = ROOT / "models"
SERIES = ROOT / "data" / "signals" / "neso_gb_national_intensity_2023-01-01_07.csv"
#: deadlines of the fifth of the queries that have one: 1 to 24 hours after the batch start [s]
DEADLINE_RANGE_S = (3600.0, 86400.0)


def make_workload(n: int, seed: int) -> pd.DataFrame:
    """``n`` chat-like queries drawn by examples/make_workload.py, deadlines within the day."""
    spec = importlib.util.spec_from_file_location("make_workload", HERE.parent / "make_workload.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.make(n, seed, deadline_fraction=0.2, deadline_range=DEADLINE_RANGE_S)


def hourly_starts(signals_path: Path, horizon_s: float) -> list[str]:
    """The whole-hour batch starts (ISO 8601) whose next ``horizon_s`` seconds the series covers."""
    s = read_signals(signals_path)
    assert s.batch_start is not None, "the series needs timestamps to move its batch start"
    t0 = pd.Timestamp(s.batch_start)
    first, last = t0 + pd.Timedelta(seconds=float(s.start_s.min())), t0 + pd.Timedelta(seconds=float(s.end_s.max()))
    hours = pd.date_range(first.ceil("h"), last - pd.Timedelta(seconds=horizon_s), freq="h")
    return [h.isoformat().replace("+00:00", "Z") for h in hours]


def price_at_starts(sched: energyopt.Schedule, signals_path: Path, starts: list[str]) -> pd.DataFrame:
    """The same plan priced per slot (energyopt.slots, as solve prices it) at each batch start."""
    rows = []
    for start in starts:
        priced = dataclasses.replace(sched, signals=read_signals(signals_path, batch_start=start))
        t = slot_totals(priced.slot_table())
        rows.append({"batch_start": start, "energy_kwh": t["total_energy_kwh"], "kg_co2e": t["total_kg_co2e"],
                     "mean_carbon_g_per_kwh": t["mean_carbon_g_per_kwh"], "cost": t["total_cost"]})
    return pd.DataFrame(rows)


def _fmt(x: float | None, spec: str = ".4g") -> str:
    return "-" if x is None or (isinstance(x, float) and np.isnan(x)) else format(x, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("day-long"), help="output directory [./day-long]")
    ap.add_argument("--n", type=int, default=20000, help="queries in the batch [20000]")
    ap.add_argument("--seed", type=int, default=0, help="seed of the workload [0]")
    ap.add_argument("--start", default="2023-01-02T17:00:00Z",
                    help="batch start (t = 0) in the series, ISO 8601 [2023-01-02T17:00:00Z, the dirtiest evening]")
    ap.add_argument("--idle", action=argparse.BooleanOptionalAction, default=False,
                    help="count the idle power of switched-on instances over the whole day [off]")
    ap.add_argument("--signals", type=Path, default=SERIES, help="signals CSV with timestamps [the shipped NESO week]")
    ap.add_argument("--time-limit", type=float, default=300.0, help="seconds the plan may take [300]")
    a = ap.parse_args()

    a.out.mkdir(parents=True, exist_ok=True)
    wl = make_workload(a.n, a.seed)
    wl.to_csv(a.out / "workload.csv", index=False)
    print(f"workload: {len(wl)} queries ({int(wl['deadline_s'].notna().sum())} with a deadline of 1-24 h), "
          f"written to {a.out / 'workload.csv'}")
    sched = energyopt.plan(a.out / "workload.csv", FLEET, MODELS, idle=a.idle, signals=a.signals,
                           signals_start=a.start, time_limit_s=a.time_limit)
    s = sched.summary()
    if not s.status.has_plan:
        raise SystemExit(f"no plan: {s.status}: {sched.message}")
    paths = sched.write(a.out / "plan", s)
    sig = s.signals
    assert sig is not None
    print(f"plan: {s.status}, gap {s.gap:.4%}, {s.assigned} queries, makespan {s.makespan_s / 3600:.2f} h of the "
          f"24 h window, check {'ok' if s.check['ok'] else 'FAILED'}"
          f"{', idle counted' if s.idle_counted else ''}")
    print(f"batch start {sig['batch_start']}: {sig['total_energy_kwh']:.4f} kWh, "
          f"{_fmt(sig['total_kg_co2e'])} kgCO2e (mean {_fmt(sig['mean_carbon_g_per_kwh'], '.1f')} gCO2e/kWh), "
          f"cost {_fmt(sig['total_cost'])}{'' if sig['total_cost'] is not None else ' (the series has no price)'}")
    starts = hourly_starts(a.signals, float(sched.problem.horizon_s))
    if sig["total_kg_co2e"] is not None and starts:
        t = price_at_starts(sched, a.signals, starts)
        t.to_csv(a.out / "starts.csv", index=False, float_format="%.9g")
        lo, hi = t.loc[t["kg_co2e"].idxmin()], t.loc[t["kg_co2e"].idxmax()]
        print(f"the same plan at each of {len(t)} whole-hour starts the series covers: {lo['kg_co2e']:.4g} kgCO2e "
              f"from {lo['batch_start']} to {hi['kg_co2e']:.4g} from {hi['batch_start']} "
              f"({hi['kg_co2e'] / lo['kg_co2e']:.2f}x)")
    print("the plan is carbon-blind: planned for least energy, every query as early as its instance allows; the "
          "signals price it, they do not move it (carbon-aware planning is not in energyopt yet)")
    print(f"wrote {', '.join(str(p) for p in paths)}" + (f" and {a.out / 'starts.csv'}" if starts else ""))


if __name__ == "__main__":
    main()
