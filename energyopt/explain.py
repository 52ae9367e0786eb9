"""Why one query went where it did: its options, what ruled each out, and what moving it costs.

``explain`` rebuilds the planning problem from the inputs a plan was made from (recorded in its
``summary.json``) and the exported ``assignment.csv``, then, for every deployment of the fleet:

* the query's predicted energy [J] and runtime [s] there;
* what rules it out on its own: an invalid prediction, the LLM's context window, the query's
  accuracy floor, its deadline or the horizon (the fastest it could finish is after it);
* otherwise, whether the plan could take it there as it stands: an instance of that deployment
  whose queries, with this one added in earliest-deadline-first order (optimal on one instance
  when all are released at t = 0), all still end by their deadlines and the horizon, or a free
  instance; and whether the batch's token-weighted mean accuracy stays above its floor;
* the energy the plan would gain (+) or lose (−) by moving the query there, other queries kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import DataError
from .io import read_json_object
from .inputs import load_inputs
from .problem import Problem, build_problem
from .schema import ASSIGNMENT_COLUMNS

__all__ = ["Explanation", "explain", "explain_plan_dir"]

_TOL = 1e-9


@dataclass
class Explanation:
    query: dict[str, Any]  # query_id, tokens, floor, deadline, and where the plan put it
    options: pd.DataFrame  # one row per deployment: energy, runtime, verdict, reasons, delta_energy_j
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        opts = self.options.replace({np.nan: None}).to_dict("records")
        return {"query": self.query, "options": opts, "notes": self.notes}


def _edf_fits(runtimes: np.ndarray, dues: np.ndarray) -> tuple[bool, float]:
    """Whether jobs released at t = 0 all end by their due times in EDF order; and the last end."""
    order = np.argsort(dues, kind="stable")
    ends = np.cumsum(runtimes[order])
    return bool(np.all(ends <= dues[order] * (1 + 1e-12) + 1e-6)), float(ends[-1]) if len(ends) else 0.0


def explain(problem: Problem, assignment: pd.DataFrame, query_id: str) -> Explanation:
    """Explain one query of a plan (``assignment`` as exported) made on ``problem``."""
    q = problem.queries
    ids = q["query_id"].astype(str).to_numpy()
    hit = np.flatnonzero(ids == str(query_id))
    if not len(hit):
        raise DataError(f"query {query_id!r} is not in the plan's workload")
    i = int(hit[0])
    a = assignment.copy()
    a["query_id"] = a["query_id"].astype(str)
    mine = a[a["query_id"] == str(query_id)]
    if mine.empty:
        raise DataError(f"query {query_id!r} is in the workload but not in assignment.csv (an incomplete plan)")
    row = mine.iloc[0]
    deps = problem.deployments
    dep_key = {(llm, dev): j for j, (llm, dev) in enumerate(zip(deps["llm"], deps["device"]))}
    c = dep_key.get((str(row["llm"]), str(row["device"])))
    if c is None:
        raise DataError(f"assignment.csv: query {query_id!r} is on {row['llm']}/{row['device']}, which the fleet does not deploy")
    E, R = problem.energy_j[i], problem.runtime_s[i]
    if not np.isclose(float(row["energy_j"]), E[c], rtol=1e-5, atol=1e-6):
        raise DataError(
            f"assignment.csv: query {query_id!r} has energy_j {float(row['energy_j']):.6g} but the models predict "
            f"{E[c]:.6g} J on {row['llm']}/{row['device']}: the plan was made from other inputs"
        )
    H = problem.horizon_s
    tin, tout = int(q["input_tokens"].iloc[i]), int(q["output_tokens"].iloc[i])
    floor = float(q["min_accuracy"].iloc[i])
    dl = float(q["deadline_s"].iloc[i])
    due_i = float(q["deadline_eff_s"].iloc[i])
    acc = deps["accuracy"].to_numpy(dtype=float)
    ctx = deps["context_tokens"].to_numpy()
    idle_w = deps["idle_power_w"].to_numpy(dtype=float)
    # per-deployment queues of the plan, without this query
    others = a[a["query_id"] != str(query_id)]
    a_dl = others["deadline_s"].astype(float).to_numpy()
    others = others.assign(_due=np.where(np.isnan(a_dl), H, np.minimum(a_dl, H)))
    queues = {key: g for key, g in others.groupby(["llm", "device", "instance"], sort=False)}
    insts_of = {}
    for (llm, dev, k) in queues:
        insts_of.setdefault((llm, dev), []).append(k)
    used_devices = {}
    for (llm, dev), ks in insts_of.items():
        j = dep_key[(llm, dev)]
        used_devices[dev] = used_devices.get(dev, 0) + len(ks) * int(deps["devices_per_instance"].iloc[j])
    pool_count = dict(zip(problem.pools["pool"], problem.pools["count"]))
    # the batch's token-weighted accuracy now
    w_all = q["weight"].to_numpy(dtype=float)
    w_a = w_all[pd.Index(ids).get_indexer(a["query_id"])]
    acc_a = pd.Series(acc, index=pd.MultiIndex.from_arrays([deps["llm"], deps["device"]])).reindex(
        pd.MultiIndex.from_arrays([a["llm"].astype(str), a["device"].astype(str)])).to_numpy()
    wa, W = float(np.sum(w_a * acc_a)), float(np.sum(w_a))
    w_i = float(w_all[i])
    # the query's own instance: alone on it, moving it away switches the instance off
    own = a[(a["llm"] == row["llm"]) & (a["device"] == row["device"]) & (a["instance"] == row["instance"])]
    alone = len(own) == 1

    def energy_cost(j: int) -> float:
        return max(E[j] - idle_w[j] * R[j], 0.0) if problem.idle else float(E[j])

    rows = []
    for j in range(problem.n_deployments):
        llm, dev = str(deps["llm"].iloc[j]), str(deps["device"].iloc[j])
        reasons: list[str] = []
        if not problem.runnable[i, j]:
            if (tin + tout) > ctx[j]:
                reasons.append(f"context: {tin + tout} tokens exceed {llm}'s {int(ctx[j])}")
            else:
                reasons.append("model: the prediction is <= 0 here (outside the model's valid domain)")
        if acc[j] < floor - 1e-12:
            reasons.append(f"accuracy: {llm} scores {acc[j]:.4g}, below the query's floor {floor:.4g}")
        if problem.runnable[i, j] and R[j] > due_i + _TOL:
            what = "deadline" if not np.isnan(dl) and dl <= H else "horizon"
            reasons.append(f"{what}: it takes {R[j]:.4g} s alone, after its {what} of {due_i:.4g} s")
        verdict = "chosen" if j == c else ("ruled out" if reasons else "")
        where = ""
        new_inst = False
        if j != c and not reasons:
            # can an instance of this deployment take it, the plan otherwise unchanged?
            best_end = np.inf
            for k in sorted(insts_of.get((llm, dev), []), key=lambda k: float(queues[(llm, dev, k)]["runtime_s"].sum())):
                g = queues[(llm, dev, k)]
                ok, end = _edf_fits(np.append(g["runtime_s"].to_numpy(dtype=float), R[j]),
                                    np.append(g["_due"].to_numpy(dtype=float), due_i))
                if ok:
                    where = f"instance {k}"
                    break
                best_end = min(best_end, end)
            if not where:
                n_used = len(insts_of.get((llm, dev), []))
                k_dev = int(deps["devices_per_instance"].iloc[j])
                free = pool_count.get(dev, 0) - used_devices.get(dev, 0) + (
                    int(deps["devices_per_instance"].iloc[c]) if alone and str(row["device"]) == dev else 0)
                if n_used < int(deps["max_instances"].iloc[j]) and free >= k_dev:
                    where, new_inst = "a new instance", True
                elif n_used:
                    reasons.append(f"capacity: each of its {n_used} instance(s) would then miss a deadline or the "
                                   f"horizon (the least late would end at {best_end:.4g} s), and no more can be switched on")
                else:
                    reasons.append(f"capacity: no instance can be switched on ({free} free device(s) in pool {dev}, "
                                   f"{k_dev} needed)")
            if problem.min_mean_accuracy is not None:
                new = (wa - w_i * acc[c] + w_i * acc[j]) / W
                if new < problem.min_mean_accuracy - 1e-12:
                    reasons.append(f"mean accuracy: the batch's token-weighted accuracy would drop to {new:.4f}, "
                                   f"below its floor {problem.min_mean_accuracy:.4f}")
            verdict = "ruled out" if reasons else "could move"
        delta = np.nan
        if j != c and problem.runnable[i, j]:
            delta = energy_cost(j) - energy_cost(c)
            if problem.idle:
                delta += (idle_w[j] * H if new_inst else 0.0) - (idle_w[c] * H if alone else 0.0)
        rows.append({
            "llm": llm, "device": dev, "accuracy": float(acc[j]),
            "energy_j": float(E[j]) if problem.runnable[i, j] else np.nan,
            "runtime_s": float(R[j]) if problem.runnable[i, j] else np.nan,
            "verdict": verdict, "where": where if verdict == "could move" else "",
            "delta_energy_j": delta, "reasons": "; ".join(reasons),
        })
    options = pd.DataFrame(rows)
    info = {
        "query_id": str(query_id), "input_tokens": tin, "output_tokens": tout, "min_accuracy": floor,
        "deadline_s": None if np.isnan(dl) else dl, "llm": str(row["llm"]), "device": str(row["device"]),
        "instance": int(row["instance"]), "start_s": float(row["start_s"]), "end_s": float(row["end_s"]),
        "energy_j": float(row["energy_j"]), "runtime_s": float(row["runtime_s"]),
        "queries_on_its_instance": int(len(own)),
    }
    notes = []
    movable = options[options["verdict"] == "could move"]
    if movable.empty:
        notes.append("no other option can take it without breaking a constraint: the plan must keep it where it is")
    else:
        b = movable.loc[movable["delta_energy_j"].idxmin()]
        if b["delta_energy_j"] >= 0:
            notes.append(f"its cheapest alternative is {b['llm']}/{b['device']} ({b['where']}): moving it there "
                         f"would cost {b['delta_energy_j']:.6g} J more")
        else:
            notes.append(f"moving it to {b['llm']}/{b['device']} ({b['where']}) would save {-b['delta_energy_j']:.6g} J: "
                         f"the plan is optimal only within its proven gap, or other queries' moves made room")
    if problem.objective == "tradeoff":
        notes.append(f"the plan minimised the trade-off objective (zeta = {problem.zeta:g}), not energy alone: "
                     f"a more accurate option may be chosen at an energy cost")
    return Explanation(info, options, notes)


def explain_plan_dir(plan_dir: str | Path, query_id: str, *, workload=None, fleet=None, models=None) -> Explanation:
    """Explain a query of the plan in ``plan_dir`` (``assignment.csv`` + ``summary.json``).

    The plan's inputs are those its summary records, unless given here.
    """
    d = Path(plan_dir)
    summ_p, asg_p = d / "summary.json", d / "assignment.csv"
    if not summ_p.is_file():
        raise DataError(f"{summ_p}: not found; PLAN_DIR must be the --out directory of `energyopt solve`")
    summary = read_json_object(summ_p)
    if not asg_p.is_file():
        raise DataError(f"{asg_p}: not found; the plan has no assignment (status {summary.get('status')!r})")
    rec = summary.get("inputs") or {}
    given = {"workload": workload, "fleet": fleet, "models": models}
    for key in given:
        if given[key] is None:
            if not rec.get(key):
                raise DataError(f"{summ_p}: key inputs.{key} is missing; give --{key}")
            given[key] = rec[key]
    wl, fl, fm = load_inputs(given["workload"], given["fleet"], given["models"])
    for key in ("objective", "idle_counted", "min_mean_accuracy"):
        if key not in summary:
            raise DataError(f"{summ_p}: key {key} is missing")
    objective = summary["objective"]
    zeta = summary.get("zeta")
    problem = build_problem(wl, fl, fm, objective=objective, zeta=0.5 if zeta is None else float(zeta),
                            idle=bool(summary["idle_counted"]), min_mean_accuracy=summary["min_mean_accuracy"])
    try:
        asg = pd.read_csv(asg_p, dtype={"query_id": str})
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{asg_p}: not a readable CSV ({exc})") from None
    missing = [col for col in ASSIGNMENT_COLUMNS if col not in asg.columns]
    if missing:
        raise DataError(f"{asg_p}: column(s) {', '.join(missing)} missing")
    return explain(problem, asg, query_id)
