"""The optimal plan next to the baselines, with the energy saved at equal or better accuracy."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import DataError
from .methods.baselines import baseline_choice, baseline_names
from .methods.strong import remembered_cuts
from .plan import plan, schedule_choice
from .schedule import Schedule
from .signals import Signals
from .slots import slot_totals

__all__ = ["compare", "plan_prices"]


def compare(workload: Any, fleet: Any, models: Any, *, seed: int = 0, equal_accuracy: bool = True,
            progress: Callable[[str], None] | None = None, signals: Signals | str | Path | None = None,
            signals_start: str | None = None, **plan_kw: Any) -> pd.DataFrame:
    """One row per method: energy [kWh], token-weighted accuracy, floors and deadlines met, makespan.

    Each baseline is a routing rule planned like every plan (packed, priced, checked). For each,
    ``optimal_same_acc_kwh`` is the least energy of a plan whose token-weighted mean accuracy is at
    least the baseline's, meeting every floor and deadline, and ``saved`` the fraction of the
    baseline's energy it saves. A time limit in ``plan_kw`` holds per plan.

    With ``signals`` (a signals CSV or a :class:`~energyopt.signals.Signals`; ``signals_start``
    the ISO 8601 time of t = 0 in a file with timestamps) every row is also priced per time slot
    by :func:`energyopt.slots.slot_table`, as ``solve`` prices its plan: ``kg_co2e`` [kgCO2e]
    where the signals have carbon, ``cost`` where they have price, and the same for the plan at
    the baseline's accuracy (``optimal_same_acc_kg_co2e``, ``optimal_same_acc_cost``). A row whose
    queries run past the end of the series is not priced (NaN; ``progress`` says so). With the
    energy or trade-off objective the plans are still planned for it: the signals price them, they
    do not change them. With ``objective`` ``carbon`` (``cost``) in ``plan_kw`` (signals needed)
    the optimal row and each plan at a baseline's accuracy are planned for the least kgCO2e (cost)
    per slot (:mod:`energyopt.methods.slotted`), a column ``minimised`` names the priced column
    minimised (``kg_co2e`` or ``cost``), and ``saved`` is the fraction of the baseline's kgCO2e
    (cost) saved at equal or better accuracy; the baselines stay the routing rules, priced per slot.
    """
    if signals_start is not None and signals is None:
        raise DataError("signals_start: give signals too")
    # the plans at the baselines' accuracies share their model's layout: each starts from the cuts of the last
    with remembered_cuts():
        return _compare(workload, fleet, models, seed=seed, equal_accuracy=equal_accuracy, progress=progress,
                        signals=signals, signals_start=signals_start, **plan_kw)


def _compare(workload: Any, fleet: Any, models: Any, *, seed: int, equal_accuracy: bool,
             progress: Callable[[str], None] | None, signals: Signals | str | Path | None, signals_start: str | None,
             **plan_kw: Any) -> pd.DataFrame:
    say = progress or (lambda s: None)
    # plan() reads the signals and checks them against the fleet before it solves anything
    opt = plan(workload, fleet, models, signals=signals, signals_start=signals_start, **plan_kw)
    sig = opt.signals
    priced = [c for c, has in (("kg_co2e", sig is not None and sig.carbon_g_per_kwh is not None),
                               ("cost", sig is not None and sig.price_per_kwh is not None)) if has]
    objective = plan_kw.get("objective", "energy")
    # carbon, cost: the plans minimise this priced column, and saved is the share of it saved
    minimised = {"carbon": "kg_co2e", "cost": "cost"}.get(objective)
    tag = {} if minimised is None else {"minimised": minimised}
    s = opt.summary()
    rows = [{
        "method": "optimal", "energy_kwh": s.total_energy_kwh, **plan_prices(opt, priced, say),
        "accuracy": s.token_weighted_mean_accuracy,
        "floors_met": f"{s.assigned}/{s.queries}" if s.status.has_plan else "-",
        "deadlines_met": f"{s.deadlines_met}/{s.queries_with_deadline}", "makespan_s": s.makespan_s,
        "optimal_same_acc_kwh": np.nan, **{f"optimal_same_acc_{c}": np.nan for c in priced},
        **tag, "saved": np.nan, "gap": s.gap, "status": str(s.status),
    }]
    problem = opt.problem  # the baselines are planned on the same problem
    n_with_deadline = int(problem.queries["deadline_s"].notna().sum())
    base_floor = plan_kw.get("min_mean_accuracy")
    for name in baseline_names(problem):
        choice = baseline_choice(problem, name, seed=seed)
        b_sched = schedule_choice(problem, choice)
        b = b_sched.summary()
        accuracy = b.token_weighted_mean_accuracy if b.token_weighted_mean_accuracy is not None else np.nan
        row: dict[str, Any] = {
            "method": name, "energy_kwh": b.total_energy_kwh,
            **plan_prices(dataclasses.replace(b_sched, signals=sig), priced, say, name), "accuracy": accuracy,
            "floors_met": f"{b.accuracy_floors_met}/{b.assigned}",
            "deadlines_met": f"{b.deadlines_met}/{n_with_deadline}", "makespan_s": b.makespan_s,
            "optimal_same_acc_kwh": np.nan, **{f"optimal_same_acc_{c}": np.nan for c in priced},
            **tag, "saved": np.nan, "gap": np.nan, "status": "",
        }
        if equal_accuracy and np.isfinite(accuracy):
            floor = max(accuracy - 1e-9, base_floor or 0.0)
            say(f"optimal at accuracy >= {floor:.4f} (as {name}) ...")
            o_sched = plan(workload, fleet, models, signals=sig, **{**plan_kw, "min_mean_accuracy": min(floor, 1.0)})
            o = o_sched.summary()
            if o.status.has_plan and o.total_energy_kwh is not None:
                row["optimal_same_acc_kwh"] = o.total_energy_kwh
                row.update({f"optimal_same_acc_{c}": v for c, v in plan_prices(o_sched, priced, say).items()})
                if minimised is None:
                    b_val, o_val = b.total_energy_kwh, float(o.total_energy_kwh)
                else:  # the baseline's and the plan's kgCO2e (cost), each priced per slot
                    b_val, o_val = float(row[minimised]), float(row[f"optimal_same_acc_{minimised}"])
                row["saved"] = (1 - o_val / b_val if b_val is not None and np.isfinite(b_val) and b_val > 0
                                and np.isfinite(o_val) else np.nan)
                row["gap"] = o.gap
            row["status"] = str(o.status)
        rows.append(row)
    return pd.DataFrame(rows)


def plan_prices(schedule: Schedule, priced: list[str], say: Callable[[str], None],
                name: str = "the plan") -> dict[str, float]:
    """A plan's ``kg_co2e`` and ``cost`` (those in ``priced``) under its signals, from the slots
    module's per-slot table; NaN without a plan or where its queries run past the series."""
    if not priced:
        return {}
    nan = {c: np.nan for c in priced}
    if schedule.signals is None or schedule.assignment.empty:
        return nan
    try:
        totals = slot_totals(schedule.slot_table())
    except DataError as e:  # a routing rule packed without deadlines may run past the series' end
        say(f"{name}: not priced per slot: {e}")
        return nan
    key = {"kg_co2e": "total_kg_co2e", "cost": "total_cost"}
    return {c: float(v) if (v := totals[key[c]]) is not None else np.nan for c in priced}
