"""Lanes for the aggregate model's choice, and the cuts that make its deadline rows exact where
they are not.

The aggregate model pools a deployment's lanes: with ``u`` instances of ``b`` lanes, the work due
by each deadline T must fit in ``T·b·u`` lane-seconds. That is necessary, not sufficient: a query
cannot be split between lanes, so five queries of 1.8, 0.9, 1.6, 0.5 and 3.3 s due by 2.0, 2.3,
2.9, 3.3 and 4.9 s pass every pooled row on two lanes, yet no assignment to two lanes meets
all five deadlines (the shipped example at ζ = 0.5 has exactly this). Packing then leaves a query
without a lane, and the batch got no plan although it has one.

Here each deployment's queries are placed on its ``k = u·b`` lanes; where the greedy placement
(:func:`~energyopt.packing.place_lanes`) leaves one late, a search over assignments decides:

* it finds lanes for all of them: those lanes are the plan's;
* it proves that no assignment works: a *minimal* set S of the deployment's queries that no
  ``k`` lanes can run in time is found (queries are dropped while the rest stays infeasible).
  Where S's work due by one of its deadlines T alone exceeds ``T·k`` (the model merges nearby
  deadlines into one level, so it did not see T), the cut is the pooled row at T over all the
  deployment's options due by T, valid for every plan, and the same row at every other deadline
  of the deployment's options (the next plan would otherwise find the next merged one).
  Otherwise (the queries fit the pooled seconds but not whole on lanes) it is the row

      Σ_{q∈S} x_{q,d} ≤ |S| − 1 + |S|·w,   u_d ≥ (u + 1)·w,   w ∈ {0, 1}

  valid for every plan: with ``u_d ≤ u`` instances (``w = 0``; fewer lanes cannot do better) not
  all of S may run on d; with more, the row is slack. The model with these rows is still a
  relaxation of the batch, so its bound stays valid, and it is solved again.

Released all at t = 0, a lane runs its queries earliest-deadline-first (optimal on one lane), so
an assignment of queries to lanes is all there is to search: queries are taken in EDF order and
each is tried on every lane of a distinct free time (lanes free at the same time are alike), the
fullest lane it fits first (best fit: the first try keeps empty lanes for long urgent queries,
where the packer's lane-free-first placement spends them), with the states that failed
remembered. The search stops after :data:`NODE_LIMIT` nodes without an answer; then the
deployment gets no cut and packing's repair decides, as before.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..accounting import lane_order, latest_end_s
from ..formulation import MatrixModel
from ..packing import PlaceJob, place_lanes
from ..problem import Problem

__all__ = ["LaneCut", "lanes_or_cuts", "assign_lanes", "deployment_lanes", "with_lane_cuts", "NODE_LIMIT"]

#: nodes one search may visit before it gives up (no answer: no cut)
NODE_LIMIT = 100_000


@dataclass(frozen=True)
class LaneCut:
    """Queries ``queries`` (indices) that deployment ``dep`` cannot run in time on ``n_inst``
    instances. Where ``level_s`` is set, their work due by ``level_s`` alone exceeds the lanes'
    seconds by then: the cut is the pooled row at that deadline (which the model's merged deadline
    levels left out), over every option of ``dep`` due by then."""

    dep: int
    n_inst: int
    queries: tuple[int, ...]
    level_s: float | None = None


def _level_over(runtime_s: np.ndarray, latest_s: np.ndarray, k: int) -> float | None:
    """The first deadline T of queries (EDF order) whose work due by T exceeds ``k·T`` (None: none)."""
    work = np.cumsum(runtime_s)
    last = np.r_[latest_s[1:] != latest_s[:-1], True]  # the last query of each deadline
    over = np.flatnonzero(last & (work > k * latest_s * (1 + 1e-12)))
    return float(latest_s[over[0]]) if over.size else None


def assign_lanes(runtime_s: np.ndarray, latest_s: np.ndarray, k: int, *, node_limit: int = NODE_LIMIT
                 ) -> tuple[bool | None, np.ndarray | None]:
    """Lanes 0..k-1 for queries given in EDF order (``latest_s``: the latest each may end) such that
    every query ends in time when each lane runs its queries in that order: ``(True, lanes)``;
    ``(False, None)`` where no assignment exists; ``(None, None)`` where ``node_limit`` nodes did
    not decide."""
    n = len(runtime_s)
    run = [float(r) for r in runtime_s]
    late = [float(t) for t in latest_s]
    if n == 0:
        return True, np.zeros(0, dtype=np.int64)
    if k <= 0:
        return False, None
    failed: set[tuple[int, tuple[float, ...]]] = set()
    free = [0.0] * k  # free time of each lane
    lane = np.full(n, -1, dtype=np.int64)
    # per depth: the lanes still to try (one per distinct free time)
    tries: list[list[int]] = []
    visited = 0
    j = 0

    def options(j: int) -> list[int]:
        seen: set[float] = set()
        out = []
        for i in sorted(range(k), key=lambda i: -free[i]):  # the fullest lane that fits first (best fit)
            f = free[i]
            if f in seen:
                continue
            seen.add(f)
            if f + run[j] <= late[j]:
                out.append(i)
        key = (j, tuple(sorted(round(f, 9) for f in free)))
        return [] if key in failed else out

    tries.append(options(0))
    while True:
        if visited > node_limit:
            return None, None
        if j == n:
            return True, lane
        if tries[j]:
            i = tries[j].pop(0)
            visited += 1
            if lane[j] >= 0:  # undo the last try at this depth
                free[lane[j]] -= run[j]
            lane[j] = i
            free[i] += run[j]
            j += 1
            if j < n:
                tries.append(options(j))
            continue
        # every try at depth j failed: remember the state, back up one level
        if lane[j] >= 0:
            free[lane[j]] -= run[j]
            lane[j] = -1
        failed.add((j, tuple(sorted(round(f, 9) for f in free))))
        tries.pop()
        if j == 0:
            return False, None
        j -= 1


def _minimal_infeasible(runtime_s: np.ndarray, latest_s: np.ndarray, k: int) -> np.ndarray | None:
    """Positions (into the EDF-ordered queries given, which ``k`` lanes cannot run in time) of a
    minimal set that ``k`` lanes cannot run in time: the shortest infeasible EDF prefix, then each
    query dropped (shortest first) while the rest stays infeasible. None where a search did not
    decide."""
    levels = np.unique(latest_s)
    # the shortest infeasible prefix by deadline level (feasibility only falls as queries are added;
    # the whole set is known infeasible)
    lo, hi = 0, len(levels) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        m = int(np.searchsorted(latest_s, levels[mid], side="right"))
        ok, _ = assign_lanes(runtime_s[:m], latest_s[:m], k)
        if ok is None:
            return None
        if ok:
            lo = mid + 1
        else:
            hi = mid
    keep = np.arange(int(np.searchsorted(latest_s, levels[lo], side="right")))
    for p in sorted(keep.tolist(), key=lambda p: runtime_s[p]):
        rest = keep[keep != p]
        ok, _ = assign_lanes(runtime_s[rest], latest_s[rest], k)
        if ok is False:
            keep = rest
    return keep


def _greedy_from(free_s: np.ndarray, runtime_s: np.ndarray, latest_s: np.ndarray) -> np.ndarray:
    """Lanes for queries in EDF order, each onto the lane free first (lanes free at ``free_s``);
    -1 where it would end late (the packer's placement, from a given start)."""
    heap = [(float(f), i) for i, f in enumerate(free_s)]
    heapq.heapify(heap)
    got = np.full(len(runtime_s), -1, dtype=np.int64)
    for j, (r, t) in enumerate(zip(runtime_s.tolist(), latest_s.tolist())):
        f, i = heap[0]
        if f + r <= t:
            heapq.heapreplace(heap, (f + r, i))
            got[j] = i
    return got


def _prefix_end(latest_s: np.ndarray, j: int) -> int:
    """The end of the EDF prefix holding every query due no later than query ``j``."""
    return int(np.searchsorted(latest_s, latest_s[j], side="right"))


def deployment_lanes(runtime_s: np.ndarray, latest_s: np.ndarray, k: int, greedy: np.ndarray
                     ) -> tuple[bool | None, np.ndarray]:
    """Lanes for one deployment's queries in EDF order on ``k`` lanes, from the packer's placement
    ``greedy`` (-1: late): where it leaves a query late, the EDF prefix up to that query's deadline
    is searched (:func:`assign_lanes`) and the rest placed lane-free-first after it, until every
    query has a lane ``(True, lanes)``, a prefix is proven infeasible ``(False, prefix positions)``
    or a search does not decide ``(None, greedy)``. Only the urgent prefix is rearranged, so the
    queries without a tight deadline stay spread over the lanes as packing spreads them."""
    lanes = greedy
    while True:
        late = np.flatnonzero(lanes < 0)
        if not late.size:
            return True, lanes
        end = _prefix_end(latest_s, int(late[0]))
        ok, head = assign_lanes(runtime_s[:end], latest_s[:end], k)
        if ok is None:
            return None, greedy
        if not ok:
            return False, np.arange(end)
        assert head is not None
        free = np.bincount(head, weights=runtime_s[:end], minlength=k)
        lanes = np.concatenate([head, _greedy_from(free, runtime_s[end:], latest_s[end:])])


def lanes_or_cuts(problem: Problem, dep_of_q: np.ndarray, n_inst: np.ndarray
                  ) -> tuple[np.ndarray, list[LaneCut], list[int]]:
    """Each chosen query's lane within its deployment (``instance × lanes + lane``, -1: none), the
    cuts proven where a deployment's queries do not fit its instances' lanes, and the deployments
    whose search did not decide (their queries without lanes are left to packing's repair).
    Queries are released at t = 0 (no release times)."""
    n_d = problem.n_deployments
    lanes_per = problem.deployments["lanes"].to_numpy().astype(np.int64)
    due = latest_end_s(problem.queries["deadline_eff_s"].to_numpy(dtype=float))
    chosen = np.asarray(dep_of_q, dtype=np.int64)
    placed = np.flatnonzero(chosen >= 0)
    run = problem.runtime_s[placed, chosen[placed]]
    # per deployment in lane order (EDF: no releases), longest first among ties, as packing orders them
    order = placed[lane_order(chosen[placed], np.zeros(len(placed)), due[placed], -run)]
    run_of = np.zeros(problem.n_queries)
    run_of[placed] = run
    bounds = np.searchsorted(chosen[order], np.arange(n_d + 1))
    k_of = np.maximum(np.asarray(n_inst, dtype=np.int64), 1) * lanes_per
    deps = [d for d in range(n_d) if bounds[d + 1] > bounds[d]]
    jobs: list[PlaceJob] = [(run_of[order[bounds[d]:bounds[d + 1]]], due[order[bounds[d]:bounds[d + 1]]],
                             int(k_of[d]), None) for d in deps]
    lane = np.full(problem.n_queries, -1, dtype=np.int64)
    cuts: list[LaneCut] = []
    undecided: list[int] = []
    for d, got, (r, t, k, _) in zip(deps, place_lanes(jobs), jobs, strict=True):
        qs = order[bounds[d]:bounds[d + 1]]
        ok, found = deployment_lanes(r, t, k, got)
        if ok:
            lane[qs] = found
            continue
        pos = None if ok is None else _minimal_infeasible(r[found], t[found], k)
        if pos is None:
            lane[qs] = got  # the packer's lanes; the late ones stay without
            undecided.append(d)
            continue
        sel = found[pos]
        cuts.append(LaneCut(d, int(max(int(n_inst[d]), 1)), tuple(int(q) for q in qs[sel]),
                            _level_over(r[sel], t[sel], k)))
    return lane, cuts, undecided


def with_lane_cuts(model: MatrixModel, problem: Problem, cuts: list[LaneCut]) -> MatrixModel:
    """``model`` (aggregate) with each cut's rows (see the module docstring): a pooled row at a
    deadline (a cut with ``level_s``: Σ runtime·x over the deployment's options due by then ≤
    ``level_s``·lanes·u), else the set's row and its binary column ``w``, which comes after the u
    columns."""
    if not cuts:
        return model
    n0 = model.n_vars
    q_of_x = problem.cand["q"].to_numpy()[model.x_cand]
    d_of_x = problem.cand["d"].to_numpy()[model.x_cand]
    latest = latest_end_s(problem.queries["deadline_eff_s"].to_numpy(dtype=float))
    lanes_per = problem.deployments["lanes"].to_numpy().astype(float)
    col_of = {(int(q), int(d)): i for i, (q, d) in enumerate(zip(q_of_x, d_of_x))}
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    lo: list[float] = []
    hi: list[float] = []
    n_new = 0
    pooled: set[tuple[int, float]] = set()  # (deployment, deadline) of the pooled rows added
    for cut in cuts:
        us = (np.flatnonzero(model.u_dep == cut.dep) + model.u_start).tolist()
        r = len(lo)
        if cut.level_s is not None:
            # the pooled row at every deadline of the deployment's options, not only at the cut's:
            # where the model's merged levels hid one, the next plan would meet the next (measured on
            # the example at ζ = 0: a round, a whole solve, per deadline otherwise)
            mine = np.flatnonzero(d_of_x == cut.dep)
            due = latest[q_of_x[mine]]
            for level_s in np.unique(due):
                if (cut.dep, float(level_s)) in pooled:
                    continue
                pooled.add((cut.dep, float(level_s)))
                xs = mine[due <= level_s]
                r = len(lo)
                rows += [r] * (len(xs) + len(us))
                cols += [*xs.tolist(), *us]
                vals += [*problem.runtime_s[q_of_x[xs], cut.dep].tolist(), *([-level_s * lanes_per[cut.dep]] * len(us))]
                lo.append(-np.inf)
                hi.append(0.0)
            continue
        w = n0 + n_new
        n_new += 1
        s = len(cut.queries)
        rows += [r] * (s + 1)
        cols += [*(col_of[(q, cut.dep)] for q in cut.queries), w]
        vals += [1.0] * s + [-float(s)]
        lo.append(-np.inf)
        hi.append(float(s - 1))
        rows += [r + 1] * (len(us) + 1)
        cols += [*us, w]
        vals += [1.0] * len(us) + [-float(cut.n_inst + 1)]
        lo.append(0.0)
        hi.append(np.inf)
    extra = sp.csr_matrix((vals, (rows, cols)), shape=(len(lo), n0 + n_new))
    A = sp.vstack([sp.hstack([model.A, sp.csr_matrix((model.A.shape[0], n_new))]), extra]).tocsr()
    return MatrixModel(
        kind=model.kind, c=np.concatenate([model.c, np.zeros(n_new)]), A=A,
        row_lo=np.concatenate([model.row_lo, lo]), row_hi=np.concatenate([model.row_hi, hi]),
        var_lo=np.concatenate([model.var_lo, np.zeros(n_new)]), var_hi=np.concatenate([model.var_hi, np.ones(n_new)]),
        integrality=np.concatenate([model.integrality, np.ones(n_new, dtype=model.integrality.dtype)]),
        n_x=model.n_x, x_cand=model.x_cand, x_inst=model.x_inst, x_lane=model.x_lane, u_dep=model.u_dep,
        u_inst=model.u_inst, u_start=model.u_start,
        row_kind=np.concatenate([model.row_kind, np.array(["lane"] * len(lo), dtype=model.row_kind.dtype)]))
