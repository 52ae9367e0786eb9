"""The optimal plan next to the baselines, with the energy saved at equal or better accuracy."""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from .baselines import baseline_choice, baseline_names, evaluate_choice
from .plan import plan

__all__ = ["compare"]


def compare(workload: pd.DataFrame, fleet, models, *, seed: int = 0, equal_accuracy: bool = True,
            progress: Callable[[str], None] | None = None, **plan_kw) -> pd.DataFrame:
    """One row per method: energy [kWh], token-weighted accuracy, floors and deadlines met, makespan.

    For each baseline, ``optimal_same_acc_kwh`` is the least energy of a plan whose token-weighted
    mean accuracy is at least the baseline's, meeting every floor and deadline, and ``saved`` the
    fraction of the baseline's energy it saves.
    """
    say = progress or (lambda s: None)
    opt = plan(workload, fleet, models, **plan_kw)
    s = opt.summary()
    rows = [{
        "method": "optimal", "energy_kwh": s["total_energy_kwh"], "accuracy": s["token_weighted_mean_accuracy"],
        "floors_met": f"{s['assigned']}/{s['queries']}" if s["status"] in ("optimal", "feasible") else "-",
        "deadlines_met": f"{s['deadlines_met']}/{s['queries_with_deadline']}", "makespan_s": s["makespan_s"],
        "optimal_same_acc_kwh": np.nan, "saved": np.nan, "gap": s["gap"], "status": s["status"],
    }]
    problem = opt.problem  # the baselines are priced on the same problem
    base_floor = plan_kw.get("min_mean_accuracy")
    for name in baseline_names(problem):
        r = evaluate_choice(problem, name, baseline_choice(problem, name, seed=seed))
        row = {
            "method": name, "energy_kwh": r.total_energy_j / 3.6e6, "accuracy": r.token_weighted_mean_accuracy,
            "floors_met": f"{r.accuracy_floors_met}/{problem.n_queries - r.unrouted}",
            "deadlines_met": f"{r.deadlines_met}/{r.queries_with_deadline}", "makespan_s": r.makespan_s,
            "optimal_same_acc_kwh": np.nan, "saved": np.nan, "gap": np.nan, "status": "",
        }
        if equal_accuracy and np.isfinite(r.token_weighted_mean_accuracy):
            floor = max(r.token_weighted_mean_accuracy - 1e-9, base_floor or 0.0)
            say(f"optimal at accuracy >= {floor:.4f} (as {name}) ...")
            kw = {**plan_kw, "min_mean_accuracy": min(floor, 1.0)}
            o = plan(workload, fleet, models, **kw)
            os_ = o.summary()
            if os_["status"] in ("optimal", "feasible"):
                row["optimal_same_acc_kwh"] = os_["total_energy_kwh"]
                row["saved"] = 1 - os_["total_energy_kwh"] / row["energy_kwh"] if row["energy_kwh"] > 0 else np.nan
                row["gap"] = os_["gap"]
            row["status"] = os_["status"]
        rows.append(row)
    return pd.DataFrame(rows)
