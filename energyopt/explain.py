"""Why one query went where it did: its options, what ruled each out, and what moving it costs.

``explain`` rebuilds the planning problem from the inputs a plan was made from (recorded in its
``summary.json``) and the exported ``assignment.csv``, then, for every deployment of the fleet:

* the query's predicted energy [J] and runtime [s] there;
* what rules it out on its own: an invalid prediction, the LLM's context window, the query's
  accuracy floor, its deadline or the horizon (the fastest it could finish is after it), and under
  ``--strict-range`` a prediction outside the token ranges the models were measured on;
* whether the prediction there is extrapolated (outside those ranges; :func:`outside_measured_ranges`),
  for the plan's own choice too;
* otherwise, whether the plan could take it there as it stands: a lane of an instance of that
  deployment whose queries, with this one added in lane order (earliest-deadline-first, optimal on
  one lane when all are released at t = 0; with release times release order first, each from its
  release), all still end by their deadlines and the horizon, or a free instance; and whether the
  batch's token-weighted mean accuracy stays above its floor. Where the query's release is what
  binds (it would end in time from t = 0, but not from its release) the reason names the release;
* the energy the plan would gain (+) or lose (−) by moving the query there, other queries kept.

The steps, in order: :func:`locate_query` (the query and its row of the plan),
:func:`queues_without` (the plan's queues per instance without it), and per deployment
:func:`rules_on_its_own`, :func:`where_it_could_go`, :func:`batch_accuracy_floor` and
:func:`move_energy_delta_j`; then :func:`notes_on`. :func:`explain_plan_dir` first refuses a damaged
plan (:func:`refuse_damaged_plan`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from .accounting import J_PER_KWH, effective_deadline_s, idle_energy_j, lane_feasible, lane_schedule_s, query_energy_cost_j
from .errors import DataError
from .inputs import load_inputs
from .io import read_assignment_csv, read_json_object
from .problem import Problem, build_problem, with_slots
from .schema import ASSIGNMENT_REQUIRED
from .signals import load_signals
from .timeslots import SLOT_OBJECTIVES, slot_prices

__all__ = [
    "Explanation",
    "PlannedQuery",
    "OtherQueues",
    "explain",
    "explain_plan_dir",
    "load_plan_dir",
    "refuse_damaged_plan",
    "locate_query",
    "queues_without",
    "rules_on_its_own",
    "where_it_could_go",
    "batch_accuracy_floor",
    "move_energy_delta_j",
    "notes_on",
    "outside_measured_ranges",
    "slot_notes",
]

#: tolerance on times [s] and accuracies in the verdicts
_TOL = 1e-9
#: relative and absolute tolerance when a plan's energy is compared with the models' [J]
_ENERGY_RTOL, _ENERGY_ATOL_J = 1e-5, 1e-6

Instance = tuple[str, str, Any]  # (llm, device, instance number)
Lane = tuple[str, str, Any, Any]  # (llm, device, instance number, lane)


@dataclass
class Explanation:
    query: dict[str, Any]  # query_id, tokens, floor, deadline, and where the plan put it
    options: pd.DataFrame  # one row per deployment: energy, runtime, verdict, reasons, delta_energy_j
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        opts = self.options.replace({np.nan: None}).to_dict("records")
        return {"query": self.query, "options": opts, "notes": self.notes}


@dataclass(frozen=True)
class PlannedQuery:
    """The query explained: its row in the problem, its row of the plan, where it runs."""

    query_id: str
    index: int  # row of problem.queries (and of the problem's [queries × deployments] arrays)
    row: pd.Series  # its row of the assignment
    deployment: int  # the deployment it runs on, an index into problem.deployments
    queries_on_its_instance: int  # itself included

    @property
    def alone(self) -> bool:
        """Nothing else runs on its instance: moving it away switches the instance off."""
        return self.queries_on_its_instance == 1


@dataclass(frozen=True)
class OtherQueues:
    """The plan without the query explained: the queue of every switched-on instance, and what the
    instances occupy."""

    runtime_s: dict[Lane, np.ndarray]  # per lane of an instance, its queries' runtimes
    due_s: dict[Lane, np.ndarray]  # per lane, the time each of its queries must end by
    release_s: dict[Lane, np.ndarray]  # per lane, each of its queries' release (0: at the batch start)
    instances_of: dict[tuple[str, str], list[Any]]  # per (llm, device), its switched-on instances
    devices_on: dict[str, int]  # per pool, the devices its switched-on instances take
    batch_size_of: dict[Instance, int]  # the batch size each switched-on instance runs at


# --- the steps ---------------------------------------------------------------------------------


def locate_query(problem: Problem, assignment: pd.DataFrame, query_id: str) -> PlannedQuery:
    """The query in the problem and its row of the plan; a :class:`DataError` if it is not in the
    workload or the plan, or the plan's row does not match the problem (other inputs)."""
    ids = problem.queries["query_id"].astype(str).to_numpy()
    hit = np.flatnonzero(ids == str(query_id))
    if not len(hit) and str(query_id).strip() != str(query_id):  # as the workload reader strips an id's blanks
        query_id = str(query_id).strip()
        hit = np.flatnonzero(ids == query_id)
    if not len(hit):
        raise DataError(f"query {query_id!r} is not in the plan's workload")
    index = int(hit[0])
    assigned_ids = assignment["query_id"].astype(str)
    mine = assignment[(assigned_ids == str(query_id)).to_numpy()]
    if mine.empty:
        raise DataError(f"query {query_id!r} is in the workload but not in assignment.csv (an incomplete plan)")
    row = mine.iloc[0]
    code = _deployment_codes(problem, mine.iloc[:1])[0]
    if np.isnan(code):
        raise DataError(f"assignment.csv: query {query_id!r} is on {row['llm']}/{row['device']} at batch size "
                        f"{int(row['batch_size'])}, which the fleet does not deploy")
    deployment = int(code)
    predicted_j = problem.energy_j[index, deployment]
    if not np.isclose(float(row["energy_j"]), predicted_j, rtol=_ENERGY_RTOL, atol=_ENERGY_ATOL_J):
        raise DataError(
            f"assignment.csv: query {query_id!r} has energy_j {float(row['energy_j']):.6g} but the models predict "
            f"{predicted_j:.6g} J on {row['llm']}/{row['device']}: the plan was made from other inputs"
        )
    same_instance = ((assignment["llm"] == row["llm"]) & (assignment["device"] == row["device"])
                     & (assignment["instance"] == row["instance"]))
    return PlannedQuery(str(query_id), index, row, deployment, int(same_instance.sum()))


def queues_without(problem: Problem, assignment: pd.DataFrame, query_id: str) -> OtherQueues:
    """The plan's queue on every instance, the query explained taken out (an instance it ran on
    alone is then off)."""
    others = assignment[(assignment["query_id"].astype(str) != str(query_id)).to_numpy()]
    due_s = effective_deadline_s(others["deadline_s"].astype(float).to_numpy(), problem.horizon_s)
    # the workload's releases (the problem's), not the plan's column: a plan made before release times has none
    ids = pd.Index(problem.queries["query_id"].astype(str))
    release_s = problem.release_s[ids.get_indexer(pd.Index(others["query_id"].astype(str)))] if len(others) else np.zeros(0)
    runtime_of: dict[Lane, np.ndarray] = {}
    due_of: dict[Lane, np.ndarray] = {}
    release_of: dict[Lane, np.ndarray] = {}
    instances_of: dict[tuple[str, str], list[Any]] = {}
    batch_size_of: dict[Instance, int] = {}
    batch_sizes = others["batch_size"].to_numpy()
    for group, positions in others.groupby(["llm", "device", "instance", "lane"], sort=False).indices.items():
        key = cast(Lane, group)
        llm, device, instance, _lane = key
        runtime_of[key] = others["runtime_s"].to_numpy(dtype=float)[positions]
        due_of[key] = due_s[positions]
        release_of[key] = release_s[positions]
        if (llm, device, instance) not in batch_size_of:
            batch_size_of[(llm, device, instance)] = int(batch_sizes[positions[0]])
            instances_of.setdefault((llm, device), []).append(instance)
    deps = problem.deployments
    devices_per_instance = dict(zip(zip(deps["llm"], deps["device"], strict=True), deps["devices_per_instance"],
                                    strict=True))
    devices_on: dict[str, int] = {}
    for (llm, device), instances in instances_of.items():
        devices_on[device] = devices_on.get(device, 0) + len(instances) * int(devices_per_instance[(llm, device)])
    return OtherQueues(runtime_of, due_of, release_of, instances_of, devices_on, batch_size_of)


def outside_measured_ranges(problem: Problem, query: PlannedQuery, j: int) -> str:
    """What lies outside the ranges the models of deployment ``j`` were measured on, for the query
    (``""`` where its prediction there is not extrapolated): e.g. ``"5000 input tokens are outside
    the 8-4096 measured for mistral-7b on h200"``."""
    if not bool(problem.extrapolated[query.index, j]) or problem.inputs is None:
        return ""
    deps = problem.deployments
    llm, device, batch_size = str(deps["llm"].iloc[j]), str(deps["device"].iloc[j]), int(deps["batch_size"].iloc[j])
    q = problem.queries.iloc[query.index]
    tokens_in, tokens_out, sizes = problem.inputs.models.measured_ranges(llm, device)
    parts = [f"{int(q[col])} {what} tokens are outside the {lo}-{hi}" for col, what, (lo, hi) in
             (("input_tokens", "input", tokens_in), ("output_tokens", "output", tokens_out))
             if not lo <= int(q[col]) <= hi]
    if not sizes[0] <= batch_size <= sizes[1]:
        parts.append(f"batch size {batch_size} is outside the {sizes[0]}-{sizes[1]}")
    return f"{' and '.join(parts)} measured for {llm} on {device}"


def rules_on_its_own(problem: Problem, query: PlannedQuery, j: int) -> list[str]:
    """What rules deployment ``j`` out for the query whatever the rest of the plan: an invalid
    prediction or the LLM's context window, the query's accuracy floor, its deadline or the horizon."""
    q = problem.queries.iloc[query.index]
    llm = str(problem.deployments["llm"].iloc[j])
    accuracy = float(problem.deployments["accuracy"].iloc[j])
    tokens = int(q["input_tokens"]) + int(q["output_tokens"])
    floor = float(q["min_accuracy"])
    reasons = []
    runnable = bool(problem.runnable[query.index, j])
    if not runnable:
        context = problem.deployments["context_tokens"].iloc[j]
        kv_room = problem.deployments["kv_context_tokens"].iloc[j]
        lanes = int(problem.deployments["lanes"].iloc[j])
        if tokens > context:
            reasons.append(f"context: {tokens} tokens exceed {llm}'s {int(context)}")
        elif tokens > kv_room:
            reasons.append(f"memory: the KV cache of {lanes} lanes holds {int(kv_room)} tokens of context each, "
                           f"beside the weights; the query needs {tokens}")
        elif problem.strict_range and bool(problem.extrapolated[query.index, j]):
            reasons.append(f"range: {outside_measured_ranges(problem, query, j)} (--strict-range refuses "
                           "extrapolated predictions)")
        else:
            reasons.append("model: the prediction is <= 0 here (outside the model's valid domain)")
    if accuracy < floor - 1e-12:
        reasons.append(f"accuracy: {llm} scores {accuracy:.4g}, below the query's floor {floor:.4g}")
    runtime_s, due_s, deadline_s = problem.runtime_s[query.index, j], float(q["deadline_eff_s"]), float(q["deadline_s"])
    release_s = float(problem.release_s[query.index])
    what = "deadline" if not np.isnan(deadline_s) and deadline_s <= problem.horizon_s else "horizon"
    if runnable and runtime_s > due_s + _TOL:
        reasons.append(f"{what}: it takes {runtime_s:.4g} s alone, after its {what} of {due_s:.4g} s")
    elif runnable and release_s + runtime_s > due_s + _TOL:  # in time from t = 0, not from its release
        reasons.append(f"release: released at {release_s:.6g} s and taking {runtime_s:.4g} s, it ends at "
                       f"{release_s + runtime_s:.6g} s at the earliest, after its {what} of {due_s:.6g} s")
    return reasons


def where_it_could_go(problem: Problem, query: PlannedQuery, queues: OtherQueues, j: int) -> tuple[str, list[str]]:
    """Where on deployment ``j`` (an LLM on a pool at one batch size) the plan as it stands could
    take the query: the least loaded lane, of an instance at that batch size, whose queue, the
    query added, still meets every due time in EDF order (``"instance K"``, or ``"instance K lane
    L"`` where instances have several lanes), else ``"a new instance"`` on free devices, else
    ``""`` and the capacity reason."""
    deps = problem.deployments
    llm, device = str(deps["llm"].iloc[j]), str(deps["device"].iloc[j])
    batch_size = int(deps["batch_size"].iloc[j])
    runtime_s = problem.runtime_s[query.index, j]
    due_s = float(problem.queries["deadline_eff_s"].iloc[query.index])
    instances = queues.instances_of.get((llm, device), [])
    empty = np.zeros(0)
    lanes = [(k, lane) for k in instances if queues.batch_size_of[(llm, device, k)] == batch_size
             for lane in range(batch_size)]
    release_s = float(problem.release_s[query.index])
    least_late_end_s = np.inf
    fits_from_zero = ""  # a lane that would take it were it released at t = 0
    for k, lane in sorted(lanes, key=lambda kl: float(queues.runtime_s.get((llm, device, *kl), empty).sum())):
        at = (llm, device, k, lane)
        runtimes = np.append(queues.runtime_s.get(at, empty), runtime_s)
        dues = np.append(queues.due_s.get(at, empty), due_s)
        releases = np.append(queues.release_s.get(at, empty), release_s)
        if lane_feasible(runtimes, dues, releases):
            return (f"instance {k}" if batch_size == 1 else f"instance {k} lane {lane}"), []
        # when its last query ends (in any order without releases; in lane order with them)
        _, ends = lane_schedule_s(np.zeros(len(runtimes), dtype=np.int64), runtimes, releases, dues)
        least_late_end_s = min(least_late_end_s, float(ends.max()))
        if release_s > 0 and not fits_from_zero and lane_feasible(runtimes, dues, np.append(releases[:-1], 0.0)):
            fits_from_zero = f"instance {k}" if batch_size == 1 else f"instance {k} lane {lane}"
    devices_needed = int(deps["devices_per_instance"].iloc[j])
    pool_count = dict(zip(problem.pools["pool"], problem.pools["count"], strict=True))
    free = int(pool_count.get(device, 0)) - queues.devices_on.get(device, 0)
    if len(instances) < int(deps["max_instances"].iloc[j]) and free >= devices_needed:
        return "a new instance", []
    if lanes and fits_from_zero:
        return "", [f"release: released at {release_s:.6g} s, it would make each of its {len(instances)} instance(s) "
                    f"miss a deadline or the horizon (the least late would end at {least_late_end_s:.4g} s), where "
                    f"from t = 0 {fits_from_zero} could take it; no more instances can be switched on"]
    if lanes:
        return "", [f"capacity: each of its {len(instances)} instance(s) would then miss a deadline or the horizon "
                    f"(the least late would end at {least_late_end_s:.4g} s), and no more can be switched on"]
    if instances:
        sizes = sorted({queues.batch_size_of[(llm, device, k)] for k in instances})
        return "", [f"capacity: its {len(instances)} instance(s) run at batch size {'/'.join(map(str, sizes))}, not "
                    f"{batch_size}, and no more can be switched on ({free} free device(s) in pool {device}, "
                    f"{devices_needed} needed)"]
    return "", [f"capacity: no instance can be switched on ({free} free device(s) in pool {device}, "
                f"{devices_needed} needed)"]


def batch_accuracy_floor(problem: Problem, assignment: pd.DataFrame, query: PlannedQuery, j: int) -> list[str]:
    """Whether moving the query to deployment ``j`` keeps the batch's token-weighted mean accuracy
    at its floor (if the plan has one)."""
    floor = problem.min_mean_accuracy
    if floor is None:
        return []
    deps = problem.deployments
    weights = problem.queries["weight"].to_numpy(dtype=float)
    ids = pd.Index(problem.queries["query_id"].astype(str))
    assigned_weights = weights[ids.get_indexer(pd.Index(assignment["query_id"].astype(str)))]
    # an LLM's accuracy is the same at every batch size: one entry per (llm, device)
    per_pair = deps.drop_duplicates(["llm", "device"])
    accuracy_of = pd.Series(per_pair["accuracy"].to_numpy(dtype=float),
                            index=pd.MultiIndex.from_arrays([per_pair["llm"], per_pair["device"]]))
    assigned_accuracy = accuracy_of.reindex(pd.MultiIndex.from_arrays(
        [assignment["llm"].astype(str), assignment["device"].astype(str)])).to_numpy()
    accuracy = deps["accuracy"].to_numpy(dtype=float)
    w = float(weights[query.index])
    moved = (float(np.sum(assigned_weights * assigned_accuracy)) - w * accuracy[query.deployment]
             + w * accuracy[j]) / float(np.sum(assigned_weights))
    if moved < floor - 1e-12:
        return [f"mean accuracy: the batch's token-weighted accuracy would drop to {moved:.4f}, "
                f"below its floor {floor:.4f}"]
    return []


def move_energy_delta_j(problem: Problem, query: PlannedQuery, j: int, *, new_instance: bool) -> float:
    """The energy [J] the plan gains (+) or saves (−) by moving the query to deployment ``j``, other
    queries kept: its own cost there less its cost now, and with idle power counted the idle energy
    of an instance switched on for it (``new_instance``) less that of its instance if it ran there alone."""
    idle_w = problem.deployments["idle_power_w"].to_numpy(dtype=float)
    i, c = query.index, query.deployment

    lanes = problem.deployments["lanes"].to_numpy(dtype=float)

    def cost_j(d: int) -> float:
        return float(query_energy_cost_j(problem.energy_j[i, d], problem.runtime_s[i, d], idle_w[d], idle=problem.idle,
                                         lanes=lanes[d]))

    delta = cost_j(j) - cost_j(c)
    if problem.idle:
        delta += (float(idle_energy_j(idle_w[j], problem.horizon_s)) if new_instance else 0.0) - (
            float(idle_energy_j(idle_w[c], problem.horizon_s)) if query.alone else 0.0)
    return delta


def notes_on(problem: Problem, options: pd.DataFrame, query: PlannedQuery | None = None) -> list[str]:
    """Whether the plan's choice rests on an extrapolated prediction (given the ``query``), the
    cheapest move the plan allows (or that none is allowed), and the objective if not energy."""
    notes = []
    outside = "" if query is None else outside_measured_ranges(problem, query, query.deployment)
    if outside:
        notes.append(f"its planned option is extrapolated: {outside}, so its energy and runtime there are the "
                     "model's extrapolation (--strict-range refuses such options)")
    movable = options[options["verdict"] == "could move"]
    if movable.empty:
        notes.append("no other option can take it without breaking a constraint: the plan must keep it where it is")
    else:
        b = movable.iloc[int(np.argmin(movable["delta_energy_j"].to_numpy(dtype=float)))]
        if b["delta_energy_j"] >= 0:
            notes.append(f"its cheapest alternative is {b['llm']}/{b['device']} ({b['where']}): moving it there "
                         f"would cost {b['delta_energy_j']:.6g} J more")
        else:
            notes.append(f"moving it to {b['llm']}/{b['device']} ({b['where']}) would save "
                         f"{-b['delta_energy_j']:.6g} J: the plan is optimal only within its proven gap, "
                         f"or other queries' moves made room")
    if problem.objective == "tradeoff":
        notes.append(f"the plan minimised the trade-off objective (zeta = {problem.zeta:g}), not energy alone: "
                     f"a more accurate option may be chosen at an energy cost")
    return notes


# --- explain ---------------------------------------------------------------------------------------


def _option(problem: Problem, assignment: pd.DataFrame, query: PlannedQuery, queues: OtherQueues,
            j: int) -> dict[str, Any]:
    """One row of the options table: deployment ``j`` for the query, its verdict and the reasons."""
    deps = problem.deployments
    i = query.index
    runnable = bool(problem.runnable[i, j])
    reasons = rules_on_its_own(problem, query, j)
    where, verdict = "", "chosen" if j == query.deployment else ("ruled out" if reasons else "")
    if j != query.deployment and not reasons:
        where, capacity = where_it_could_go(problem, query, queues, j)
        reasons = capacity + batch_accuracy_floor(problem, assignment, query, j)
        verdict = "ruled out" if reasons else "could move"
    delta = np.nan
    if j != query.deployment and runnable:
        delta = move_energy_delta_j(problem, query, j, new_instance=where == "a new instance")
    return {
        "llm": str(deps["llm"].iloc[j]), "device": str(deps["device"].iloc[j]),
        "batch_size": int(deps["batch_size"].iloc[j]), "accuracy": float(deps["accuracy"].iloc[j]),
        "energy_j": float(problem.energy_j[i, j]) if runnable else np.nan,
        "runtime_s": float(problem.runtime_s[i, j]) if runnable else np.nan,
        "verdict": verdict, "where": where if verdict == "could move" else "",
        "delta_energy_j": delta, "extrapolated": bool(problem.extrapolated[i, j]), "reasons": "; ".join(reasons),
    }


def _query_info(problem: Problem, query: PlannedQuery) -> dict[str, Any]:
    q = problem.queries.iloc[query.index]
    row = query.row
    deadline_s = float(q["deadline_s"])
    return {
        "query_id": query.query_id, "input_tokens": int(q["input_tokens"]), "output_tokens": int(q["output_tokens"]),
        "min_accuracy": float(q["min_accuracy"]), "deadline_s": None if np.isnan(deadline_s) else deadline_s,
        "release_s": float(problem.release_s[query.index]),
        "llm": str(row["llm"]), "device": str(row["device"]), "instance": int(row["instance"]),
        "lane": int(row["lane"]), "batch_size": int(row["batch_size"]),
        "start_s": float(row["start_s"]), "end_s": float(row["end_s"]), "energy_j": float(row["energy_j"]),
        "runtime_s": float(row["runtime_s"]), "queries_on_its_instance": query.queries_on_its_instance,
        "extrapolated": bool(problem.extrapolated[query.index, query.deployment]),
        "outside_measured_ranges": outside_measured_ranges(problem, query, query.deployment),
    }


def explain(problem: Problem, assignment: pd.DataFrame, query_id: str) -> Explanation:
    """Explain one query of a plan (``assignment`` as exported) made on ``problem``."""
    query = locate_query(problem, assignment, query_id)
    queues = queues_without(problem, assignment, query_id)
    options = pd.DataFrame([_option(problem, assignment, query, queues, j) for j in range(problem.n_deployments)])
    notes = notes_on(problem, options, query) + slot_notes(problem, assignment, query)
    return Explanation(_query_info(problem, query), options, notes)


def _per_kwh(problem: Problem, price_per_j: float) -> str:
    """A slot's price as the signals state it: gCO2e/kWh, currency/kWh, or J per J for energy."""
    assert problem.slots is not None
    if problem.slots.objective == "carbon":
        return f"{price_per_j * J_PER_KWH * 1000:.4g} gCO2e/kWh"
    if problem.slots.objective == "cost":
        return f"{price_per_j * J_PER_KWH:.4g}/kWh"
    return "the same energy price"


def slot_notes(problem: Problem, assignment: pd.DataFrame, query: PlannedQuery) -> list[str]:
    """For a plan per time slot: the slot the query runs in and its price, and, where a cleaner or
    cheaper slot its window allows on its deployment exists, what holds it out of it: the
    deployment's lanes there are full (lane-seconds used of those its instances offer), its
    pool's power cap or its site's (the pools sharing a cap) is reached there (W drawn of the cap)."""
    sp = problem.slots
    if sp is None:
        return []
    b, d, i = sp.bounds_s, query.deployment, query.index
    pool = str(problem.deployments["device"].iloc[d])
    p = sp.pools.index(pool)
    start = float(query.row["start_s"])
    k = int(np.clip(np.searchsorted(b, start, side="right") - 1, 0, sp.n_slots - 1))
    notes = [f"it runs in slot {k} (t = {b[k]:,.0f}-{b[k + 1]:,.0f} s) at {_per_kwh(problem, sp.price_per_j[p, k])}"]
    rel = float(problem.release_s[i])
    due = float(problem.queries["deadline_eff_s"].iloc[i])
    run = float(problem.runtime_s[i, d])
    fits = np.maximum(rel, b[:-1]) + run <= np.minimum(due, b[1:]) + _TOL
    better = np.flatnonzero(fits & (sp.price_per_j[p] < sp.price_per_j[p, k] * (1 - 1e-12)))
    if not len(better):
        notes.append(f"no slot its window allows on {pool} is {'cleaner' if sp.objective == 'carbon' else 'cheaper'}")
        return notes
    c = int(better[np.argmin(sp.price_per_j[p, better])])
    a = assignment
    llm = str(problem.deployments["llm"].iloc[d])
    in_c = (a["start_s"].to_numpy(dtype=float) >= b[c]) & (a["start_s"].to_numpy(dtype=float) < b[c + 1])
    mine = in_c & (a["llm"].astype(str).to_numpy() == llm) & (a["device"].astype(str).to_numpy() == pool)
    on = a[(a["llm"].astype(str) == llm) & (a["device"].astype(str) == pool)][["instance", "batch_size"]]
    lane_s = float(on.drop_duplicates("instance")["batch_size"].sum()) * float(b[c + 1] - b[c])
    busy = float(a["runtime_s"].to_numpy(dtype=float)[mine].sum())
    why = [f"slot: {llm} on {pool} is busy {busy:,.0f} of the {lane_s:,.0f} lane-seconds its instances offer there"]
    cap = sp.cap_w[p]
    if np.isfinite(cap):
        on_pool = in_c & (a["device"].astype(str).to_numpy() == pool)
        power = float(a["energy_j"].to_numpy(dtype=float)[on_pool].sum()) / float(b[c + 1] - b[c])
        why.append(f"cap: pool {pool} draws about {power:,.1f} W there (queries' energy) of its power_cap_w "
                   f"{cap:,.6g} W; this query would add {float(problem.cost[i, d]) / float(b[c + 1] - b[c]):,.3g} W")
    for j in np.flatnonzero(sp.site_pools[:, p] > 0).tolist() if len(sp.sites) else []:
        members = [sp.pools[m] for m in np.flatnonzero(sp.site_pools[j] > 0).tolist()]
        on_site = in_c & np.isin(a["device"].astype(str).to_numpy(), members)
        power = float(a["energy_j"].to_numpy(dtype=float)[on_site].sum()) / float(b[c + 1] - b[c])
        why.append(f"cap: site {sp.sites[j]} ({', '.join(members)}) draws about {power:,.1f} W there (queries' "
                   f"energy) of its power_cap_w {sp.site_cap_w[j]:,.6g} W; this query would add "
                   f"{float(problem.cost[i, d]) / float(b[c + 1] - b[c]):,.3g} W")
    notes.append(f"the {'cleanest' if sp.objective == 'carbon' else 'cheapest'} slot its window allows on {pool} is "
                 f"slot {c} (t = {b[c]:,.0f}-{b[c + 1]:,.0f} s) at {_per_kwh(problem, sp.price_per_j[p, c])}; "
                 + "; ".join(why))
    return notes


def refuse_damaged_plan(problem: Problem, assignment: pd.DataFrame, source: str | Path) -> None:
    """A :class:`DataError` naming ``source`` and the first offending query unless the assignment
    lists every query of the problem's workload exactly once, on a deployment of the fleet, with
    numbers in every column that needs one, and with the energy and deadline its inputs give it
    (a deleted row, a truncated file, a workload edited after planning)."""
    ids = assignment["query_id"].astype(str).reset_index(drop=True)
    index = _each_query_listed_once(problem, ids, source)
    _numbers_present(assignment, ids, source)
    _rows_match_inputs(problem, assignment, ids, index, source)


def _each_query_listed_once(problem: Problem, ids: pd.Series, source: str | Path) -> np.ndarray:
    """Each row's query in the problem's workload (its row there), every query listed exactly once."""
    workload_ids = pd.Index(problem.queries["query_id"].astype(str))
    if not workload_ids.is_unique:
        raise DataError(f"the workload lists query {workload_ids[workload_ids.duplicated()][0]!r} more than once")
    index = workload_ids.get_indexer(pd.Index(ids))
    if (index < 0).any():
        qid = ids.iloc[int(np.flatnonzero(index < 0)[0])]
        raise DataError(f"{source}: query {qid!r} is not in the workload: the plan was made from other inputs")
    twice = ids.duplicated()
    if twice.any():
        raise DataError(f"{source}: query {ids[twice].iloc[0]!r} is listed more than once: the plan is damaged")
    listed = np.zeros(len(workload_ids), dtype=bool)
    listed[index] = True
    if not listed.all():
        raise DataError(f"{source}: query {workload_ids[int(np.flatnonzero(~listed)[0])]!r} of the workload is "
                        f"missing: the plan is damaged or was made from other inputs")
    return index


def _numbers_present(assignment: pd.DataFrame, ids: pd.Series, source: str | Path) -> None:
    """A finite number in every numeric column but deadline_s (empty: no deadline)."""
    for col in ("instance", "lane", "batch_size", "start_s", "end_s", "runtime_s", "energy_j", "accuracy"):
        value = pd.to_numeric(assignment[col], errors="coerce").to_numpy(dtype=float)
        if not np.isfinite(value).all():
            raise DataError(f"{source}: query {ids.iloc[int(np.flatnonzero(~np.isfinite(value))[0])]!r} has no "
                            f"number in column {col}: the plan is damaged")


def _rows_match_inputs(problem: Problem, assignment: pd.DataFrame, ids: pd.Series, index: np.ndarray,
                       source: str | Path) -> None:
    """Every row on a deployment of the fleet, with the energy the models predict for its query there
    and its query's deadline."""
    deps = problem.deployments
    code = _deployment_codes(problem, assignment)
    batch_size = pd.to_numeric(assignment["batch_size"], errors="coerce").fillna(-1).astype(np.int64)
    if np.isnan(code).any():
        first = int(np.flatnonzero(np.isnan(code))[0])
        raise DataError(f"{source}: query {ids.iloc[first]!r} is on {assignment['llm'].iloc[first]}/"
                        f"{assignment['device'].iloc[first]} at batch size {batch_size.iloc[first]}, which the fleet "
                        f"does not deploy: the plan was made from other inputs")
    code = code.astype(np.int64)
    stated_j = assignment["energy_j"].to_numpy(dtype=float)
    predicted_j = problem.energy_j[index, code]
    wrong = ~np.isclose(stated_j, predicted_j, rtol=_ENERGY_RTOL, atol=_ENERGY_ATOL_J)
    if wrong.any():
        first = int(np.flatnonzero(wrong)[0])
        raise DataError(f"{source}: query {ids.iloc[first]!r} has energy_j {stated_j[first]:.6g} but the models "
                        f"predict {predicted_j[first]:.6g} J on {deps['llm'].iloc[code[first]]}/"
                        f"{deps['device'].iloc[code[first]]}: the plan was made from other inputs")
    stated_s = pd.to_numeric(assignment["deadline_s"], errors="coerce").to_numpy(dtype=float)
    workload_s = problem.queries["deadline_s"].to_numpy(dtype=float)[index]
    differs = np.isnan(stated_s) != np.isnan(workload_s)
    differs |= ~np.isnan(stated_s) & ~np.isnan(workload_s) & ~np.isclose(stated_s, workload_s, rtol=1e-9, atol=1e-9)
    if differs.any():
        first = int(np.flatnonzero(differs)[0])
        raise DataError(f"{source}: query {ids.iloc[first]!r} has deadline_s {_deadline_text(stated_s[first])} but "
                        f"the workload says {_deadline_text(workload_s[first])}: the plan was made from other inputs")


def _deployment_codes(problem: Problem, rows: pd.DataFrame) -> np.ndarray:
    """Each assignment row's problem deployment, an (LLM, device, batch size); NaN where the fleet has none."""
    deps = problem.deployments
    code_of = pd.Series(np.arange(len(deps)), index=pd.MultiIndex.from_arrays(
        [deps["llm"], deps["device"], deps["batch_size"].astype(np.int64)]))
    batch_size = pd.to_numeric(rows["batch_size"], errors="coerce").fillna(-1).astype(np.int64)
    return code_of.reindex(pd.MultiIndex.from_arrays([rows["llm"].astype(str), rows["device"].astype(str),
                                                      batch_size])).to_numpy(dtype=float)


def _deadline_text(deadline_s: float) -> str:
    return "none" if np.isnan(deadline_s) else f"{deadline_s:g} s"


def load_plan_dir(plan_dir: str | Path, *, workload=None, fleet=None, models=None) -> tuple[Problem, pd.DataFrame, dict]:
    """The plan in ``plan_dir`` (``assignment.csv`` + ``summary.json``) with the problem it was made
    from: the inputs its summary records, unless given here. A plan whose assignment does not match
    its inputs is refused (:func:`refuse_damaged_plan`). Returns (problem, assignment, summary)."""
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
                raise DataError(f"{summ_p}: key inputs.{key} is missing; give --{key}"
                                + (" (a file, or - for standard input)" if key == "workload" else ""))
            given[key] = rec[key]
    _refuse_other_workload_bytes(given["workload"], summary, summ_p)
    wl, fl, fm = load_inputs(given["workload"], given["fleet"], given["models"])
    for key in ("objective", "idle_counted", "min_mean_accuracy"):
        if key not in summary:
            raise DataError(f"{summ_p}: key {key} is missing")
    objective = summary["objective"]
    zeta = summary.get("zeta")
    settings = summary.get("settings") or {}  # a plan made before --strict-range existed has none
    slotted = objective in SLOT_OBJECTIVES or fl.has_power_caps
    problem = build_problem(wl, fl, fm, objective="energy" if objective in SLOT_OBJECTIVES else objective,
                            zeta=0.5 if zeta is None else float(zeta),
                            idle=bool(summary["idle_counted"]), min_mean_accuracy=summary["min_mean_accuracy"],
                            strict_range=bool(settings.get("strict_range", False)))
    if slotted:  # planned per time slot: the slots and prices of the signals the summary records
        sig_rec = summary.get("signals") or {}
        sig = None
        if sig_rec.get("file"):
            sig = load_signals(sig_rec["file"], fleet=fl, batch_start=sig_rec.get("batch_start"))
        elif objective in SLOT_OBJECTIVES:
            raise DataError(f"{summ_p}: key signals.file is missing; a plan for {objective} needs its signals")
        problem = with_slots(problem, slot_prices(fl, sig, objective))
    asg = read_assignment_csv(asg_p)
    missing = [col for col in ASSIGNMENT_REQUIRED if col not in asg.columns]
    if missing:
        raise DataError(f"{asg_p}: column(s) {', '.join(missing)} missing")
    refuse_damaged_plan(problem, asg, asg_p)
    _refuse_edited_input_files(given, summary, summ_p)
    return problem, asg, summary


def _refuse_edited_input_files(given: dict[str, Any], summary: dict, summ_p: Path) -> None:
    """After the row-by-row checks (which name the query that differs): an input file whose bytes
    differ from those the summary records (``input_sha256``) was edited after planning, or is another
    file. Its explanation would rest on inputs the plan was not made from (a changed accuracy floor
    or fleet shows in no row). The models are compared file by file, as recorded, where the folder
    given has the file."""
    from .schedule import _file_sha256

    recorded = summary.get("input_sha256") or {}
    for key in ("workload", "fleet"):
        path, want = given[key], recorded.get(key)
        if isinstance(path, str | Path) and str(path) != "-" and isinstance(want, str):
            got = _file_sha256(Path(path))
            if got is not None and got != want:
                raise DataError(f"{path}: SHA-256 {got[:12]}… differs from the {key} the plan was made from "
                                f"({summ_p}: input_sha256.{key} {want[:12]}…): edited after planning, or another file")
    want_models = recorded.get("models")
    if isinstance(given["models"], str | Path) and isinstance(want_models, dict) and Path(given["models"]).is_dir():
        for name, want in want_models.items():  # (a folder of the models the plan uses, fewer files, will do)
            got = _file_sha256(Path(given["models"]) / name)
            if isinstance(want, str) and got is not None and got != want:
                raise DataError(f"{Path(given['models']) / name}: SHA-256 {got[:12]}… differs from the model file "
                                f"the plan was made from ({summ_p}: input_sha256.models); edited after planning, "
                                "or another file")


def _refuse_other_workload_bytes(workload: Any, summary: dict, summ_p: Path) -> None:
    """A workload read from a stream (its table's ``attrs["sha256"]``, as
    :func:`~energyopt.io.read_workload_stream` sets it) must be the bytes the plan was made from,
    where the summary records their SHA-256 (``input_sha256.workload``)."""
    got = getattr(workload, "attrs", {}).get("sha256") if isinstance(workload, pd.DataFrame) else None
    recorded = (summary.get("input_sha256") or {}).get("workload")
    if got is None or not isinstance(recorded, str) or got == recorded:
        return
    name = workload.attrs.get("source", "the workload")
    raise DataError(f"{name}: SHA-256 {got[:12]}… differs from the workload the plan was made from "
                    f"({summ_p}: input_sha256.workload {recorded[:12]}…); give the same bytes")


def explain_plan_dir(plan_dir: str | Path, query_id: str, *, workload=None, fleet=None, models=None) -> Explanation:
    """Explain a query of the plan in ``plan_dir`` (see :func:`load_plan_dir`)."""
    problem, asg, _ = load_plan_dir(plan_dir, workload=workload, fleet=fleet, models=models)
    return explain(problem, asg, query_id)
