"""Routing rules planners use today, priced with the same models as the optimiser.

Each rule picks a deployment per query from those that can run it at all (a valid model, and a
context window that holds the query); it ignores accuracy floors, deadlines and the energy. The
pool's devices are split evenly among the deployments a rule uses, queries run in EDF order on the
instance of their deployment that is free first, and whatever the rule misses (accuracy floors,
deadlines, the horizon) is counted, not hidden.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .problem import Problem

__all__ = ["BASELINES", "baseline_names", "baseline_choice", "evaluate_choice", "BaselineResult", "results_table"]

BASELINES = ("round-robin", "random", "most-accurate-fastest", "fastest")


def baseline_names(problem: Problem) -> list[str]:
    return list(BASELINES) + [f"only:{llm}" for llm in sorted(problem.deployments["llm"].unique())]


def baseline_choice(problem: Problem, name: str, seed: int = 0) -> np.ndarray:
    """Deployment index per query (-1 where the rule finds nothing that can run it)."""
    ok = problem.runnable
    n_q, n_d = ok.shape
    out = np.full(n_q, -1, dtype=np.int64)
    deps = problem.deployments
    R = np.where(ok, problem.runtime_s, np.inf)
    if name == "round-robin":
        k = 0
        for i in range(n_q):
            for step in range(n_d):
                d = (k + step) % n_d
                if ok[i, d]:
                    out[i] = d
                    k = d + 1
                    break
    elif name == "random":
        rng = np.random.default_rng(seed)
        for i in range(n_q):
            opts = np.flatnonzero(ok[i])
            if len(opts):
                out[i] = rng.choice(opts)
    elif name == "fastest":
        has = ok.any(axis=1)
        out[has] = np.argmin(R[has], axis=1)
    elif name == "most-accurate-fastest":
        # the most accurate LLM on its fastest device (median runtime over the batch); a query it
        # cannot run goes to the next most accurate LLM
        acc = deps["accuracy"].to_numpy()
        med = np.nanmedian(np.where(ok, problem.runtime_s, np.nan), axis=0)
        order = sorted(range(n_d), key=lambda d: (-acc[d], np.nan_to_num(med[d], nan=np.inf)))
        for d in order:
            free = (out < 0) & ok[:, d]
            out[free] = d
    elif name.startswith("only:"):
        llm = name.split(":", 1)[1]
        ds = np.flatnonzero(deps["llm"].to_numpy() == llm)
        if not len(ds):
            raise ValueError(f"no deployment of {llm}")
        k = 0
        for i in range(n_q):  # spread over that LLM's deployments in turn
            for step in range(len(ds)):
                d = ds[(k + step) % len(ds)]
                if ok[i, d]:
                    out[i] = d
                    k += 1
                    break
    else:
        raise ValueError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}, only:<llm>")
    return out


@dataclass
class BaselineResult:
    name: str
    total_energy_j: float
    token_weighted_mean_accuracy: float
    accuracy_floors_met: int
    deadlines_met: int
    queries_with_deadline: int
    makespan_s: float
    unrouted: int
    within_horizon: bool


def evaluate_choice(problem: Problem, name: str, dep_of_q: np.ndarray) -> BaselineResult:
    """Price a routing: energy, accuracy, deadlines met and makespan, as the plan is priced."""
    q = problem.queries
    deps = problem.deployments
    routed = dep_of_q >= 0
    qi = np.flatnonzero(routed)
    d = dep_of_q[qi]
    E = problem.energy_j[qi, d]
    R = problem.runtime_s[qi, d]
    dl = q["deadline_eff_s"].to_numpy()[qi]
    # instances: each pool's devices split evenly among the deployments the rule uses there
    used = np.unique(d)
    n_inst = {}
    for pool, cnt in zip(problem.pools["pool"], problem.pools["count"]):
        in_pool = [j for j in used if deps["device"].iloc[j] == pool]
        for j in in_pool:
            share = cnt // len(in_pool)
            n_inst[j] = max(1, min(int(deps["max_instances"].iloc[j]), share // int(deps["devices_per_instance"].iloc[j])))
    end = np.zeros(len(qi))
    inst = np.zeros(len(qi), dtype=np.int64)
    for j in used:
        sel = np.flatnonzero(d == j)
        order = sel[np.lexsort((-R[sel], dl[sel]))]
        finish = np.zeros(n_inst[j])
        for s in order:
            i = int(np.argmin(finish))
            finish[i] += R[s]
            end[s] = finish[i]
            inst[s] = i
    idle_w = deps["idle_power_w"].to_numpy()[d]
    if problem.idle:  # instances with work stay on over the horizon
        idle_e = float(sum(deps["idle_power_w"].iloc[j] * len(np.unique(inst[d == j])) for j in used)) * problem.horizon_s
        energy = float(np.maximum(E - idle_w * R, 0).sum()) + idle_e
    else:
        energy = float(E.sum())
    acc = deps["accuracy"].to_numpy()[d]
    w = q["weight"].to_numpy()[qi]
    has_dl = ~np.isnan(q["deadline_s"].to_numpy()[qi])
    real_dl = q["deadline_s"].to_numpy()[qi]
    return BaselineResult(
        name=name,
        total_energy_j=energy,
        token_weighted_mean_accuracy=float(np.sum(w * acc) / w.sum()) if len(w) else float("nan"),
        accuracy_floors_met=int(np.sum(acc >= q["min_accuracy"].to_numpy()[qi] - 1e-12)),
        deadlines_met=int(np.sum(has_dl & (end <= real_dl + 1e-9))),
        queries_with_deadline=int(np.sum(~np.isnan(q["deadline_s"].to_numpy()))),
        makespan_s=float(end.max()) if len(end) else 0.0,
        unrouted=int((~routed).sum()),
        within_horizon=bool(end.max() <= problem.horizon_s + 1e-9) if len(end) else True,
    )


def results_table(results: list[BaselineResult]) -> pd.DataFrame:
    return pd.DataFrame([r.__dict__ for r in results])
