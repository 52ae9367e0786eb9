"""From a deployment per query to a timeline: which lane of which instance runs each query.

An instance at batch size b is b lanes. On each lane queries run one after another in
:func:`~energyopt.accounting.lane_order`, each starting at max(its release, the previous one's end)
(:func:`~energyopt.accounting.lane_times_s`). Released all at t = 0, that order is
earliest-deadline-first, which meets every deadline whenever any order does, so packing and the
exact model's lanes are exact. **With release times it is a heuristic**: EDF on one lane is no
longer optimal in general (a long query released first can block an urgent one released just
after), and the lane order, release order with EDF among queries released together, is one
order that is cheap to compute and never makes a query later when another leaves its lane; a
plan then keeps its proven bound and gap, and the checker verifies start ≥ release.

The exact model names the lane of every query; with release times its lanes are re-timed and any
query that would end late is repaired (:func:`retime`). The aggregate model and the decomposition
give only how many instances each deployment switches on: queries are then *packed*, in lane
order (release, then deadline, longest first among ties), each onto the lane of its deployment that
is free first (with 16 or more lanes, a round of one query per lane at a time: the round's i-th
query onto the i-th least loaded lane), starting at max(that lane's free time, its release); a
query that would finish late is *repaired*: moved to the cheapest lane that still meets every
deadline in lane order, among its options' four least-loaded lanes of instances already on and a
lane of one more instance switched on where the pool has devices left. A lane is named by its
index within its deployment, ``instance × lanes + lane``. :func:`plan_objective` prices the
result again.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .accounting import ends_in_time, lane_feasible, lane_order, lane_schedule_s, latest_end_s, query_energy_cost_j
from .problem import Problem
from .progress import Phase, phase

__all__ = ["Timeline", "pack", "place_lanes", "PlaceJob", "retime", "move_off", "plan_objective", "timeline_times_s",
           "ROUND_MIN_INSTANCES", "REPAIR_TRIES"]

#: deployments with at least this many lanes are packed a round at a time (vectorised)
ROUND_MIN_INSTANCES = 16
#: lanes of one deployment tried per late query, least loaded first
REPAIR_TRIES = 4
#: with release times, rounds of switching on more instances for a deployment's late queries before repair
WIDEN_ROUNDS = 4
#: repair reports its progress after this many late queries
REPAIR_REPORT_EVERY = 256


@dataclass
class Timeline:
    """Deployment and lane of each query (-1: not placed)."""

    dep: np.ndarray  # deployment index per query
    lane: np.ndarray  # lane index within its deployment per query: instance × lanes + lane of the instance
    unplaced: list[int] = field(default_factory=list)  # queries the packing could not place
    # each query's start [s] where the method timed it (slotted plans); None: each lane in lane order
    start_s: np.ndarray | None = None

    def instance(self, lanes: np.ndarray) -> np.ndarray:
        """Each query's instance within its deployment (-1: not placed), given lanes per deployment."""
        return np.where(self.lane >= 0, self.lane // lanes[np.maximum(self.dep, 0)], -1)


def _place(runs: np.ndarray, dues: np.ndarray, k: int, releases: np.ndarray | None = None) -> np.ndarray:
    """Lanes (0..k-1) for queries taken in the given order, each onto the lane free first,
    starting at max(its free time, the query's release); -1 where the query would end after its due
    time. With many lanes the queries go a round of k at a time: the round's i-th query to the
    i-th least loaded lane."""
    got = np.full(len(runs), -1, dtype=np.int64)
    rel = np.zeros(len(runs)) if releases is None else releases
    if k < ROUND_MIN_INSTANCES:
        heap = [(0.0, i) for i in range(k)]  # (finish time, lane): the one free first on top
        for j, (r, due, at) in enumerate(zip(runs.tolist(), dues.tolist(), rel.tolist())):
            f, i = heap[0]
            end = (f if f >= at else at) + r
            if end <= due:
                heapq.heapreplace(heap, (end, i))
                got[j] = i
        return got
    loads = np.zeros(k)
    for s in range(0, len(runs), k):
        rr, du = runs[s:s + k], dues[s:s + k]
        slots = np.argsort(loads, kind="stable")[: len(rr)]
        f = (loads[slots] if releases is None else np.maximum(loads[slots], rel[s:s + k])) + rr
        fit = f <= du
        loads[slots[fit]] = f[fit]
        got[s:s + k] = np.where(fit, slots, -1)
    return got


#: one deployment's placement as :func:`place_lanes` takes it: runtimes, due times, lanes, releases (or None)
PlaceJob = tuple[np.ndarray, np.ndarray, int, "np.ndarray | None"]


def place_lanes(jobs: list[PlaceJob]) -> list[np.ndarray]:
    """Each deployment's lanes for its queries in lane order (:func:`_place`): the work of
    :func:`pack` that is independent per deployment, to be spread over workers."""
    return [_place(runs, dues, k, rel) for runs, dues, k, rel in jobs]


def pack(problem: Problem, dep_of_q: np.ndarray, n_inst: np.ndarray, *, repair: bool = True,
         enforce_due: bool = True, placer: Callable[[list[PlaceJob]], list[np.ndarray]] | None = None) -> Timeline:
    """Place each query on an instance of its deployment (see the module docstring).

    ``dep_of_q[q]`` is the chosen deployment or -1; ``n_inst[d]`` the instances deployment d
    may use before repair opens more. With ``enforce_due=False`` (routing rules, which ignore
    deadlines) every query is placed on the instance free first, however late it ends. ``placer``
    places the deployments' queries on their lanes (:func:`place_lanes` on its jobs, e.g. spread
    over workers, each deployment apart); the default places them here, one after another.
    """
    n_q, n_d = problem.n_queries, problem.n_deployments
    lane = np.full(n_q, -1, dtype=np.int64)
    chosen = np.asarray(dep_of_q, dtype=np.int64).copy()
    m_d = problem.deployments["max_instances"].to_numpy()
    lanes = problem.deployments["lanes"].to_numpy().astype(np.int64)
    n_inst = np.minimum(np.asarray(n_inst, dtype=np.int64), m_d)
    due_all = problem.queries["deadline_eff_s"].to_numpy(dtype=float)
    placed = np.flatnonzero(chosen >= 0)
    run_all = np.zeros(n_q)
    run_all[placed] = problem.runtime_s.reshape(-1)[placed * n_d + chosen[placed]]
    rel_all = problem.release_s
    releases = problem.has_releases
    # per deployment in lane order (release, then deadline: EDF without releases), longest first among ties
    order = placed[lane_order(chosen[placed], rel_all[placed], due_all[placed], -run_all[placed])]
    bounds = np.searchsorted(chosen[order], np.arange(n_d + 1))
    used = np.where(np.bincount(chosen[placed], minlength=n_d) > 0, np.maximum(n_inst, 1), 0)
    late_of: dict[int, np.ndarray] = {}

    def job(d: int) -> PlaceJob:
        qs = order[bounds[d]:bounds[d + 1]]
        dues = latest_end_s(due_all[qs]) if enforce_due else np.full(len(qs), np.inf)
        return run_all[qs], dues, int(used[d]) * int(lanes[d]), rel_all[qs] if releases else None

    def placed_as(d: int, got: np.ndarray) -> None:
        qs = order[bounds[d]:bounds[d + 1]]
        lane[qs] = got
        late_of[d] = qs[got < 0]

    def place(d: int) -> None:
        placed_as(d, place_lanes([job(d)])[0])

    with phase(f"packing: {len(placed):,} queries in lane order", total=len(placed)) as ph:
        on = np.flatnonzero(used).tolist()
        if placer is None:
            for d in on:
                place(d)
                ph.advance(int(bounds[d + 1] - bounds[d]))
        else:
            for d, got in zip(on, placer([job(d) for d in on]), strict=True):
                placed_as(d, got)
            ph.advance(len(placed))
    if releases and repair:
        with phase("packing: more instances for late work"):
            _widen(problem, used, late_of, run_all, place)
    late = [int(q) for d in sorted(late_of) for q in late_of[d]]
    unplaced = _repair(problem, chosen, lane, run_all, late) if late and repair else late
    return Timeline(chosen, lane, unplaced)


def _widen(problem: Problem, used: np.ndarray, late_of: dict[int, np.ndarray], run_all: np.ndarray,
           place: Callable[[int], None]) -> None:
    """With release times, instance counts chosen for the work due by each deadline can leave
    queries late (work that arrives late in the horizon queues behind itself). Before repair moves
    late queries one at a time, a deployment whose pool has devices left gets more instances and
    is packed again (largest late work first; up to :data:`WIDEN_ROUNDS` rounds): about twice what its late work needs where
    instances cost nothing to switch on (energy objective without idle), else the fewest that
    could hold that work (repair would switch at least as many on, one late query at a time)."""
    deps = problem.deployments
    k = deps["devices_per_instance"].to_numpy().astype(np.int64)
    lanes = deps["lanes"].to_numpy().astype(np.int64)
    m_d = deps["max_instances"].to_numpy().astype(np.int64)
    group = deps["group"].to_numpy()
    pool_of = deps["device"].to_numpy()
    count = dict(zip(problem.pools["pool"], problem.pools["count"]))
    for _round in range(WIDEN_ROUNDS):
        late_work = {d: float(run_all[qs].sum()) for d, qs in late_of.items() if len(qs)}
        widened = False
        for d in sorted(late_work, key=lambda j: -late_work[j]):
            free_dev = int(count[pool_of[d]]) - int(np.sum(used[pool_of == pool_of[d]] * k[pool_of == pool_of[d]]))
            free_group = int(m_d[d]) - int(used[group == group[d]].sum())
            # free instances: twice what the late work needs; priced ones (idle counted): what it needs at least
            need = int(np.ceil(late_work[d] / (lanes[d] * problem.horizon_s)))
            extra = min(max((1 if problem.instance_cost[d] > 0 else 2) * need, 1), free_dev // int(k[d]), free_group)
            if extra <= 0:
                continue
            used[d] += extra
            place(d)
            widened = True
        if not widened:
            break


class _Load:
    """The queries on each (deployment, lane) of a packed plan, their busy seconds, the instances
    on per deployment and per fleet deployment (group), and the devices on per pool: what
    repair needs to try a move."""

    def __init__(self, problem: Problem, chosen: np.ndarray, lane: np.ndarray, run_all: np.ndarray):
        deps = problem.deployments
        self.devices_per_inst = deps["devices_per_instance"].to_numpy()
        self.pool_of = deps["device"].to_numpy()
        self.lanes = deps["lanes"].to_numpy().astype(np.int64)
        self.group_of = deps["group"].to_numpy()
        on = np.flatnonzero(lane >= 0)
        M = int((deps["max_instances"].to_numpy() * self.lanes).max()) + 1
        key = chosen[on] * M + lane[on]
        srt = np.argsort(key, kind="stable")
        keys, starts = np.unique(key[srt], return_index=True)
        ends = np.append(starts[1:], len(srt))
        self.members = {(int(k) // M, int(k) % M): on[srt[a:b]] for k, a, b in zip(keys, starts, ends)}
        self.busy_s = {dk: float(run_all[qs].sum()) for dk, qs in self.members.items()}
        self.used_inst: dict[int, set[int]] = {d: set() for d in range(problem.n_deployments)}
        for d, ln in self.members:
            self.used_inst[d].add(ln // int(self.lanes[d]))
        self.used_dev = {p: 0 for p in problem.pools["pool"]}
        self.group_inst: dict[int, int] = {}
        for d, s in self.used_inst.items():
            self.used_dev[self.pool_of[d]] += len(s) * self.devices_per_inst[d]
            self.group_inst[self.group_of[d]] = self.group_inst.get(self.group_of[d], 0) + len(s)

    def queries_on(self, d: int, ln: int) -> np.ndarray:
        return self.members.get((d, ln), np.zeros(0, dtype=np.int64))

    def lanes_on(self, d: int) -> list[int]:
        """Every lane of the instances of ``d`` that are on."""
        b = int(self.lanes[d])
        return [i * b + k for i in sorted(self.used_inst[d]) for k in range(b)]

    def add(self, q: int, d: int, ln: int, run_s: float) -> None:
        self.members[(d, ln)] = np.append(self.queries_on(d, ln), q)
        self.busy_s[(d, ln)] = self.busy_s.get((d, ln), 0.0) + run_s
        i = ln // int(self.lanes[d])
        if i not in self.used_inst[d]:
            self.used_inst[d].add(i)
            self.used_dev[self.pool_of[d]] += self.devices_per_inst[d]
            self.group_inst[self.group_of[d]] = self.group_inst.get(self.group_of[d], 0) + 1


def retime(problem: Problem, dep_of_q: np.ndarray, lane_of_q: np.ndarray) -> Timeline:
    """A method's lanes (the exact model's, whose rows are exact only without release times) timed
    from each query's release (:func:`~energyopt.accounting.lane_schedule_s`): on a lane that neither
    of its orders serves in time, the queries that end late in release order are taken off it
    (which makes no other query on it later) and repaired like the late queries of :func:`pack`."""
    chosen = np.asarray(dep_of_q, dtype=np.int64).copy()
    lane = np.asarray(lane_of_q, dtype=np.int64).copy()
    due_all = problem.queries["deadline_eff_s"].to_numpy(dtype=float)
    rel_all = problem.release_s
    placed = np.flatnonzero((chosen >= 0) & (lane >= 0))
    run_all = np.zeros(problem.n_queries)
    run_all[placed] = problem.runtime_s.reshape(-1)[placed * problem.n_deployments + chosen[placed]]
    M = int(lane.max(initial=0)) + 1
    key = chosen[placed] * M + lane[placed]
    _, end = lane_schedule_s(key, run_all[placed], rel_all[placed], due_all[placed])
    bad = np.isin(key, np.unique(key[~ends_in_time(end, due_all[placed])]))
    late: list[int] = []
    if bad.any():
        on_bad = placed[bad]
        order = on_bad[lane_order(key[bad], rel_all[on_bad], due_all[on_bad], run_all[on_bad])]
        free_at, last = 0.0, -1
        for q, k in zip(order.tolist(), (chosen[order] * M + lane[order]).tolist()):
            if k != last:
                free_at, last = 0.0, k
            finish = max(free_at, float(rel_all[q])) + float(run_all[q])
            if ends_in_time(finish, due_all[q]):
                free_at = finish
            else:
                late.append(q)
    lane[late] = -1
    unplaced = _repair(problem, chosen, lane, run_all, late) if late else []
    return Timeline(chosen, lane, unplaced)


def _repair(problem: Problem, chosen: np.ndarray, lane: np.ndarray, run_all: np.ndarray, late: list[int],
            avoid: dict[int, set[int]] | None = None, avoid_place: dict[int, tuple[int, int]] | None = None) -> list[int]:
    """Move each late query (earliest deadline first) to the cheapest lane that still meets every
    due time with it in lane order, on none of the deployments ``avoid`` names for it and not on
    the (deployment, lane) ``avoid_place`` names for it; returns the queries no lane can take."""
    with phase(f"repair: {len(late):,} late queries", total=len(late)) as ph:
        return _repair_each(problem, chosen, lane, run_all, late, ph, avoid or {}, avoid_place or {})


def move_off(problem: Problem, tl: Timeline, queries: np.ndarray, avoid: dict[int, set[int]], *,
             other_lane: bool = False) -> Timeline:
    """``tl`` with ``queries`` taken off their lanes (which makes no query left on them later) and
    repaired onto lanes of deployments ``avoid`` does not name for them (:func:`_repair`), with
    ``other_lane`` never back onto the lane it left; the queries no lane takes are unplaced."""
    chosen = tl.dep.copy()
    lane = tl.lane.copy()
    lane[queries] = -1
    placed = np.flatnonzero((chosen >= 0) & (lane >= 0))
    run_all = np.zeros(problem.n_queries)
    run_all[placed] = problem.runtime_s.reshape(-1)[placed * problem.n_deployments + chosen[placed]]
    left = {int(q): (int(tl.dep[q]), int(tl.lane[q])) for q in queries} if other_lane else None
    unplaced = _repair(problem, chosen, lane, run_all, [int(q) for q in queries], avoid=avoid, avoid_place=left)
    return Timeline(chosen, lane, sorted(set(tl.unplaced) | set(unplaced)))


def _repair_each(problem: Problem, chosen: np.ndarray, lane: np.ndarray, run_all: np.ndarray, late: list[int],
                 ph: Phase, avoid: dict[int, set[int]], avoid_place: dict[int, tuple[int, int]]) -> list[int]:
    R = problem.runtime_s
    due_all = problem.queries["deadline_eff_s"].to_numpy(dtype=float)
    rel_all = problem.release_s if problem.has_releases else None
    deps = problem.deployments
    m_d = deps["max_instances"].to_numpy()
    acc = deps["accuracy"].to_numpy(dtype=float)
    count = dict(zip(problem.pools["pool"], problem.pools["count"]))
    load = _Load(problem, chosen, lane, run_all)
    unplaced = []
    for i, q in enumerate(sorted(late, key=lambda q: due_all[q]), 1):
        if i % REPAIR_REPORT_EVERY == 0:
            ph.advance(REPAIR_REPORT_EVERY)
        best = None
        for d in np.flatnonzero(problem.ok[q]).tolist():
            if d in avoid.get(q, ()):
                continue
            if problem.min_mean_accuracy is not None and chosen[q] >= 0 and acc[d] < acc[chosen[q]] - 1e-12:
                continue  # a less accurate option could break the batch's mean-accuracy floor
            # the least-loaded lanes are the likeliest to take it: try a few of them
            used = sorted(load.lanes_on(d), key=lambda ln: load.busy_s.get((d, ln), 0.0))[:REPAIR_TRIES]
            tries = [(ln, 0.0) for ln in used]
            free = sorted(set(range(m_d[d])) - load.used_inst[d])
            pool = load.pool_of[d]
            if (free and load.used_dev[pool] + load.devices_per_inst[d] <= count[pool]
                    and load.group_inst.get(load.group_of[d], 0) < m_d[d]):
                tries.append((free[0] * int(load.lanes[d]), float(problem.instance_cost[d])))
            for ln, extra in tries:
                if avoid_place.get(q) == (d, ln):
                    continue
                qs = load.queries_on(d, ln)
                if lane_feasible(np.append(run_all[qs], R[q, d]), np.append(due_all[qs], due_all[q]),
                                 None if rel_all is None else np.append(rel_all[qs], rel_all[q])):
                    delta = float(problem.cost[q, d]) + extra
                    if best is None or delta < best[0]:
                        best = (delta, d, ln)
                    break  # lanes of one deployment are alike: the first that fits will do
        if best is None:
            unplaced.append(q)
            continue
        _, d, ln = best
        chosen[q] = d
        lane[q] = ln
        run_all[q] = R[q, d]
        load.add(q, d, ln, float(R[q, d]))
    return unplaced


def timeline_times_s(problem: Problem, tl: Timeline, qs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end [s] of placed queries ``qs``: as the method timed them (``tl.start_s``), else
    each lane in lane order from each query's release (:func:`~energyopt.accounting.lane_schedule_s`)."""
    d = tl.dep[qs]
    run = problem.runtime_s.reshape(-1)[qs * problem.n_deployments + d]
    if tl.start_s is not None:
        start = tl.start_s[qs]
        return start, start + run
    lane_id = tl.lane[qs]
    machine = d * (int(lane_id.max(initial=0)) + 1) + lane_id  # orders queries by (deployment, lane)
    dl_eff = problem.queries["deadline_eff_s"].to_numpy(dtype=float)[qs]
    return lane_schedule_s(machine, run, problem.release_s[qs], dl_eff)


def _slotted_objective(problem: Problem, tl: Timeline) -> float:
    """A plan priced per time slot (:meth:`~energyopt.timeslots.SlotPrices.plan_value`)."""
    sp = problem.slots
    assert sp is not None
    qs = np.flatnonzero((tl.dep >= 0) & (tl.lane >= 0))
    d = tl.dep[qs]
    start, end = timeline_times_s(problem, tl, qs)
    deps = problem.deployments
    pool_of = np.array([sp.pools.index(p) for p in deps["device"]], dtype=np.int64)
    idle_w = deps["idle_power_w"].to_numpy(dtype=float)
    charged = query_energy_cost_j(problem.energy_j.reshape(-1)[qs * problem.n_deployments + d],
                                  problem.runtime_s.reshape(-1)[qs * problem.n_deployments + d], idle_w[d],
                                  idle=problem.idle, lanes=deps["lanes"].to_numpy(dtype=float)[d])
    idle_pool = idle_on = None
    if problem.idle:
        inst = tl.instance(deps["lanes"].to_numpy().astype(np.int64))[qs]
        M = int(inst.max(initial=0)) + 1
        d_on = np.unique(d * M + inst) // M
        idle_pool, idle_on = pool_of[d_on], idle_w[d_on]
    end = np.minimum(end, sp.bounds_s[-1])  # a plan past the horizon (a routing rule's) is priced within it
    return sp.plan_value(pool_of[d], np.minimum(start, end), end, charged, idle_pool=idle_pool, idle_w=idle_on)


def plan_objective(problem: Problem, tl: Timeline) -> float:
    """Objective of a placed plan: its queries' costs plus the cost of each instance with work
    (planned per time slot: the energy in each slot at its price)."""
    if problem.slots is not None:
        return _slotted_objective(problem, tl)
    qs = np.flatnonzero((tl.dep >= 0) & (tl.lane >= 0))
    d = tl.dep[qs]
    inst = tl.instance(problem.deployments["lanes"].to_numpy().astype(np.int64))[qs]
    return _placed_objective(problem, qs, d, inst)


def assignment_objective(problem: Problem, assignment) -> float:
    """The objective under ``problem`` (not planned per time slot) of an exported plan of the same
    queries: one row per placed query with ``query_id``, ``llm``, ``device``, ``batch_size`` and
    ``instance`` (as :func:`~energyopt.schedule.assignment_table` writes them). A plan of the same
    workload and fleet made for another objective (another ζ) is priced so. Raises ``ValueError``
    for a row whose query or deployment ``problem`` does not have."""
    import pandas as pd

    if problem.slots is not None:
        raise ValueError("a plan priced per time slot needs its timeline, not only its assignment")
    deps = problem.deployments
    key = pd.MultiIndex.from_arrays([deps["llm"], deps["device"], deps["batch_size"].astype(np.int64)])
    d = key.get_indexer(pd.MultiIndex.from_arrays([assignment["llm"], assignment["device"],
                                                   assignment["batch_size"].astype(np.int64)]))
    qs = pd.Index(problem.queries["query_id"]).get_indexer(assignment["query_id"])
    if (d < 0).any() or (qs < 0).any():
        raise ValueError("the plan has a query or deployment the problem does not have")
    return _placed_objective(problem, qs, d, assignment["instance"].to_numpy(dtype=np.int64))


def _placed_objective(problem: Problem, qs: np.ndarray, d: np.ndarray, inst: np.ndarray) -> float:
    """The queries' costs on their deployments plus the cost of each distinct (deployment, instance)."""
    M = int(inst.max(initial=0)) + 1
    d_of_on = np.unique(d * M + inst) // M  # one entry per distinct (d, instance)
    cost = problem.cost.reshape(-1)[qs * problem.n_deployments + d]
    off = ~np.isfinite(cost)  # a pair that is not an option (a routing rule's): priced all the same
    if off.any():
        cost = cost.copy()
        cost[off] = problem.pair_cost(qs[off], d[off])
    return float(cost.sum() + problem.instance_cost[d_of_on].sum())
