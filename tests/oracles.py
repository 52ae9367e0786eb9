"""Reference computations the tests compare the code against, in one place.

Each oracle is written the slow, obvious way (enumeration, loops over plain Python values) and
uses nothing of the package but the problem's public tables, so a bug in the formulation, the
packing, the accounting or the decomposition cannot hide in the oracle too.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "TIME_TOL_S",
    "edf_feasible_by_permutations",
    "lane_feasible_by_permutations",
    "BruteForce",
    "brute_force",
    "brute_force_optimum",
    "knapsack_by_enumeration",
    "priced_costs",
    "timeline_cost",
    "slotted_brute_force",
]

#: a query may end this many seconds after its due time (the code's EDF test allows ~1e-9 s)
TIME_TOL_S = 1e-9


def edf_feasible_by_permutations(runtime_s, due_s, tol_s: float = TIME_TOL_S, rel_tol: float = 0.0) -> bool:
    """Whether *some* order of the queries, run one after another from t = 0 on one lane, ends
    each by its due time (``due·(1 + rel_tol) + tol_s``): every permutation is tried (keep it to
    7 queries or fewer)."""
    runs = [float(r) for r in runtime_s]
    dues = [float(d) for d in due_s]
    for order in itertools.permutations(range(len(runs))):
        t, ok = 0.0, True
        for i in order:
            t += runs[i]
            if t > dues[i] * (1 + rel_tol) + tol_s:
                ok = False
                break
        if ok:
            return True
    return False


def lane_feasible_by_permutations(runtime_s, due_s, release_s, tol_s: float = TIME_TOL_S) -> bool:
    """Whether *some* order of the queries on one lane, each started at max(its release, the
    previous one's end), ends each by its due time (+ ``tol_s``): every permutation is tried, so
    this is exact with release times too, where EDF is not (keep it to 7 queries or fewer). In a
    given order starting each query as early as it may is best, so no schedule with idle time
    inserted needs to be tried."""
    runs = [float(r) for r in runtime_s]
    dues = [float(d) for d in due_s]
    rels = [float(r) for r in release_s]
    for order in itertools.permutations(range(len(runs))):
        t, ok = 0.0, True
        for i in order:
            t = max(t, rels[i]) + runs[i]
            if t > dues[i] + tol_s:
                ok = False
                break
        if ok:
            return True
    return False


def _one_lane_feasible(jobs: list[tuple[float, float, float]], tol_s: float) -> bool:
    """(due, runtime, release) triples on one lane: all released at t = 0, in earliest-due-first
    order they all end in time (optimal); with release times, some order does (every order tried)."""
    if any(rel > 0 for _, _, rel in jobs):
        return lane_feasible_by_permutations([r for _, r, _ in jobs], [d for d, _, _ in jobs],
                                             [rel for _, _, rel in jobs], tol_s)
    t = 0.0
    for due, run, _ in sorted(jobs):
        t += run
        if t > due + tol_s:
            return False
    return True


@dataclass
class BruteForce:
    """The least objective over every assignment, and one assignment reaching it."""

    value: float  # inf: no assignment meets every requirement
    dep_of_q: np.ndarray | None  # deployment per query of an optimal assignment
    inst_of_q: np.ndarray | None  # instance per query of an optimal assignment
    assignments: int  # assignments that meet every requirement


def brute_force(problem) -> BruteForce:
    """Every (deployment, instance) for every query, each instance running its queries in
    earliest-deadline-first order from t = 0 (with release times, in the best of every order, each
    query from its release): the least objective (option costs plus the cost of every instance with
    work) over the assignments that meet the pools' devices, the deadlines and the horizon (each
    option's ``deadline_eff_s``) and the batch's mean-accuracy floor.

    Exponential: for a handful of queries only. A query without any option makes it inf."""
    deps = problem.deployments
    max_inst = [int(m) for m in deps["max_instances"]]
    devices = [int(k) for k in deps["devices_per_instance"]]
    pool_of = list(deps["device"])
    count = {str(p): int(c) for p, c in zip(problem.pools["pool"], problem.pools["count"])}
    acc = [float(a) for a in deps["accuracy"]]
    inst_cost = [float(c) for c in problem.instance_cost]
    w = [float(x) for x in problem.queries["weight"]]
    due = [float(x) for x in problem.queries["deadline_eff_s"]]
    rel = ([float(x) for x in problem.queries["release_s"]] if "release_s" in problem.queries.columns
           else [0.0] * problem.n_queries)
    n_q = problem.n_queries
    floor = problem.min_mean_accuracy
    places = []
    for q in range(n_q):
        opts = [(d, i) for d in range(problem.n_deployments) if problem.ok[q, d] for i in range(max_inst[d])]
        if not opts:
            return BruteForce(math.inf, None, None, 0)
        places.append(opts)
    best, best_combo, n_ok = math.inf, None, 0
    for combo in itertools.product(*places):
        on = set(combo)
        used = dict.fromkeys(count, 0)
        for d, _ in on:
            used[pool_of[d]] += devices[d]
        if any(used[p] > count[p] for p in count):
            continue
        if floor is not None and sum(w[q] * acc[d] for q, (d, _) in enumerate(combo)) < floor * sum(w) - 1e-9:
            continue
        lanes: dict[tuple[int, int], list[tuple[float, float, float]]] = {}
        for q, place in enumerate(combo):
            lanes.setdefault(place, []).append((due[q], float(problem.runtime_s[q, place[0]]), rel[q]))
        if not all(_one_lane_feasible(jobs, TIME_TOL_S) for jobs in lanes.values()):
            continue
        n_ok += 1
        cost = sum(float(problem.cost[q, d]) for q, (d, _) in enumerate(combo)) + sum(inst_cost[d] for d, _ in on)
        if cost < best:
            best, best_combo = cost, combo
    if best_combo is None:
        return BruteForce(math.inf, None, None, 0)
    return BruteForce(best, np.array([d for d, _ in best_combo]), np.array([i for _, i in best_combo]), n_ok)


def brute_force_optimum(problem) -> float:
    """The least objective of any plan (inf where no plan exists); see :func:`brute_force`."""
    return brute_force(problem).value


def knapsack_by_enumeration(values, sizes, upper, capacity: int) -> float:
    """max Σ v·n subject to Σ s·n ≤ capacity, 0 ≤ n ≤ upper, n integer: every n tried."""
    best = 0.0
    for n in itertools.product(*[range(int(u) + 1) for u in upper]):
        if sum(int(s) * k for s, k in zip(sizes, n)) <= capacity:
            best = max(best, sum(float(v) * k for v, k in zip(values, n)))
    return best


def priced_costs(problem, lam: np.ndarray, mu: float, level_of_q: np.ndarray) -> np.ndarray:
    """The Lagrangian's priced cost of every (query, deployment) written out over the whole
    array: ``cost + run·Σ_{levels ≥ the query's level} λ[d] − μ·w·acc`` (+inf off the options)."""
    n_q, n_d = problem.cost.shape
    w = problem.queries["weight"].to_numpy(dtype=float)
    acc = problem.deployments["accuracy"].to_numpy(dtype=float)
    out = np.empty((n_q, n_d))
    for q in range(n_q):
        for d in range(n_d):
            price_per_s = float(lam[d, level_of_q[q]:].sum())
            out[q, d] = problem.cost[q, d] + problem.runtime_s[q, d] * price_per_s - mu * w[q] * acc[d]
    return out


def timeline_cost(problem, dep_of_q, inst_of_q) -> float:
    """A placed plan's objective by a loop: each placed query's option cost, plus each distinct
    (deployment, instance) with work at its deployment's instance cost."""
    total, on = 0.0, set()
    for q, (d, i) in enumerate(zip(dep_of_q, inst_of_q)):
        if d >= 0 and i >= 0:
            total += float(problem.cost[q, d])
            on.add((int(d), int(i)))
    return total + sum(float(problem.instance_cost[d]) for d, _ in on)


def _lanes_needed(runs: list[float], length: float) -> int:
    """The fewest lanes of ``length`` [s] that hold jobs of ``runs`` [s] (every split tried; 0: none)."""
    for n in range(1, len(runs) + 1):
        for split in itertools.product(range(n), repeat=len(runs)):
            if all(sum(r for r, s in zip(runs, split) if s == i) <= length + 1e-9 for i in range(n)):
                return n
    return 0


def _caps_hold(problem, pick, n_inst, cap_w, dt) -> bool:
    """Whether each capped pool's energy per slot (charged energy, idle of instances with idle) fits;
    a key that is a tuple of pools is a site: the sum over its pools."""
    pool = list(problem.deployments["device"])
    idle_w = [float(x) for x in problem.deployments["idle_power_w"]]
    for key, cap in cap_w.items():
        ps = (key,) if isinstance(key, str) else tuple(key)
        idle_on = sum(n_inst[d] * idle_w[d] for d in range(len(pool)) if pool[d] in ps) if problem.idle else 0.0
        for k in range(len(dt)):
            e = sum(float(problem.cost[q, d]) for q, (d, kk) in enumerate(pick) if kk == k and pool[d] in ps)
            if (e + idle_on * dt[k]) / dt[k] > cap * (1 + 1e-9):
                return False
    return True


def slotted_brute_force(problem, price_per_j: np.ndarray, bounds_s: np.ndarray, cap_w: dict[str, float],
                        min_mean_accuracy: float | None = None) -> float:
    """The least objective of a plan whose queries each lie inside one slot (released at 0, no
    deadline inside the horizon), by enumeration: every (deployment, slot) per query among its
    options, the fewest instances whose lanes hold each (deployment, slot)'s queries inside the
    slot (every split tried), the pools' devices, and the caps ``cap_w`` [W] per pool or per site (a
    tuple of pools: their sum) (charged energy plus, with idle, the instances' idle draw, per second
    of the slot). ``price_per_j`` is per (deployment, slot); ``min_mean_accuracy``: the
    token-weighted mean accuracy's floor. Keep it to 4 queries, 3 deployments and 3 slots (inf: no
    plan)."""
    deps = problem.deployments
    n_q, n_d = problem.n_queries, problem.n_deployments
    S = len(bounds_s) - 1
    dt = [float(bounds_s[k + 1] - bounds_s[k]) for k in range(S)]
    lanes = [int(x) for x in deps["lanes"]]
    pool = list(deps["device"])
    counts = dict(zip(problem.pools["pool"], problem.pools["count"]))
    k_dev = [int(x) for x in deps["devices_per_instance"]]
    idle_w = [float(x) for x in deps["idle_power_w"]]
    H = float(bounds_s[-1])
    energy = problem.cost  # charged energy [J] of each option
    options = [[(d, k) for d in range(n_d) if problem.ok[q, d] for k in range(S) if problem.runtime_s[q, d] <= dt[k]]
               for q in range(n_q)]

    weight = problem.queries["weight"].to_numpy(dtype=float)
    acc = deps["accuracy"].to_numpy(dtype=float)
    best = math.inf
    for pick in itertools.product(*options):
        if min_mean_accuracy is not None and (sum(weight[q] * acc[d] for q, (d, _) in enumerate(pick))
                                              < min_mean_accuracy * weight.sum() - 1e-9):
            continue
        cells: dict[tuple[int, int], list[int]] = {}
        for q, (d, k) in enumerate(pick):
            cells.setdefault((d, k), []).append(q)
        n_inst = [0] * n_d
        for (d, k), qs in cells.items():
            need = _lanes_needed([float(problem.runtime_s[q, d]) for q in qs], dt[k])
            n_inst[d] = max(n_inst[d], -(-need // lanes[d]))
        used: dict[str, int] = {}
        for d in range(n_d):
            used[pool[d]] = used.get(pool[d], 0) + n_inst[d] * k_dev[d]
        if any(used[p] > counts[p] for p in used):
            continue
        groups = deps["group"].tolist()
        if any(sum(n_inst[d] for d in range(n_d) if groups[d] == g) > int(deps["max_instances"].iloc[d0])
               for d0, g in enumerate(groups)):
            continue
        if not _caps_hold(problem, pick, n_inst, cap_w, dt):
            continue
        cost = sum(float(energy[q, d]) * float(price_per_j[d, k]) for q, (d, k) in enumerate(pick))
        if problem.idle:
            cost += sum(n_inst[d] * idle_w[d] * sum(float(price_per_j[d, k]) * dt[k] for k in range(S))
                        for d in range(n_d))
            assert H > 0
        best = min(best, cost)
    return best


def engine_timeline_by_steps(lane, slots: int, prefill_s, step_s, steps):
    """The engine's timeline one step at a time, through the engine's own scheduling
    (:func:`energyopt.characterize.engine.run_lanes`) on a virtual clock: (start, end, makespan,
    decode steps, empty slot-seconds), the reference for :func:`energyopt.enginesim.simulate_engine`."""
    from energyopt.characterize.engine import run_lanes

    lane = np.asarray(lane)
    rows = [[i for i in range(lane.size) if lane[i] == s] for s in range(slots)]
    lanes = [[(1, int(steps[i]) + 1) for i in r] for r in rows]
    start, end = np.zeros(lane.size), np.zeros(lane.size)
    t = {"clock": 0.0, "empty": 0.0, "step_end": 0.0, "steps": 0}
    taken = [0] * slots
    current: dict[int, int] = {}

    def leave(slot: int) -> None:  # the slot's query ended with the last decode step
        if slot in current:
            end[current.pop(slot)] = t["step_end"]

    def prefill(slot: int, _tin: int) -> None:
        leave(slot)
        i = rows[slot][taken[slot]]
        taken[slot] += 1
        start[i] = t["clock"]
        t["clock"] += float(prefill_s[i])
        if steps[i] <= 0:
            end[i] = t["clock"]
        else:
            current[slot] = i

    def decode() -> None:
        dt = float(np.mean([step_s[i] for i in current.values()]))
        t["clock"] += dt
        t["empty"] += (slots - len(current)) * dt
        t["step_end"] = t["clock"]
        t["steps"] += 1

    run_lanes(lanes, slots, prefill, decode, leave, lambda: None)
    return start, end, t["clock"], t["steps"], t["empty"]
