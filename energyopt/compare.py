"""The optimal plan next to the baselines, with the energy saved at equal or better accuracy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from .methods.baselines import baseline_choice, baseline_names
from .plan import plan, schedule_choice

__all__ = ["compare"]


def compare(workload: Any, fleet: Any, models: Any, *, seed: int = 0, equal_accuracy: bool = True,
            progress: Callable[[str], None] | None = None, **plan_kw: Any) -> pd.DataFrame:
    """One row per method: energy [kWh], token-weighted accuracy, floors and deadlines met, makespan.

    Each baseline is a routing rule planned like every plan (packed, priced, checked). For each,
    ``optimal_same_acc_kwh`` is the least energy of a plan whose token-weighted mean accuracy is at
    least the baseline's, meeting every floor and deadline, and ``saved`` the fraction of the
    baseline's energy it saves. A time limit in ``plan_kw`` holds per plan.
    """
    say = progress or (lambda s: None)
    opt = plan(workload, fleet, models, **plan_kw)
    s = opt.summary()
    rows = [{
        "method": "optimal", "energy_kwh": s.total_energy_kwh, "accuracy": s.token_weighted_mean_accuracy,
        "floors_met": f"{s.assigned}/{s.queries}" if s.status.has_plan else "-",
        "deadlines_met": f"{s.deadlines_met}/{s.queries_with_deadline}", "makespan_s": s.makespan_s,
        "optimal_same_acc_kwh": np.nan, "saved": np.nan, "gap": s.gap, "status": str(s.status),
    }]
    problem = opt.problem  # the baselines are planned on the same problem
    n_with_deadline = int(problem.queries["deadline_s"].notna().sum())
    base_floor = plan_kw.get("min_mean_accuracy")
    for name in baseline_names(problem):
        choice = baseline_choice(problem, name, seed=seed)
        b = schedule_choice(problem, choice).summary()
        accuracy = b.token_weighted_mean_accuracy if b.token_weighted_mean_accuracy is not None else np.nan
        row = {
            "method": name, "energy_kwh": b.total_energy_kwh, "accuracy": accuracy,
            "floors_met": f"{b.accuracy_floors_met}/{b.assigned}",
            "deadlines_met": f"{b.deadlines_met}/{n_with_deadline}", "makespan_s": b.makespan_s,
            "optimal_same_acc_kwh": np.nan, "saved": np.nan, "gap": np.nan, "status": "",
        }
        if equal_accuracy and np.isfinite(accuracy):
            floor = max(accuracy - 1e-9, base_floor or 0.0)
            say(f"optimal at accuracy >= {floor:.4f} (as {name}) ...")
            o = plan(workload, fleet, models, **{**plan_kw, "min_mean_accuracy": min(floor, 1.0)}).summary()
            if o.status.has_plan and o.total_energy_kwh is not None:
                row["optimal_same_acc_kwh"] = o.total_energy_kwh
                b_kwh = b.total_energy_kwh
                row["saved"] = 1 - o.total_energy_kwh / b_kwh if b_kwh is not None and b_kwh > 0 else np.nan
                row["gap"] = o.gap
            row["status"] = str(o.status)
        rows.append(row)
    return pd.DataFrame(rows)
