"""One home per formula: energy above idle, idle energy, objective, gap, deadlines, accuracy, units.

Pure functions on numbers and numpy arrays; every module that prices, packs, checks or reports a
plan calls these, so a formula is written once. Units are in the names: ``*_j`` joules, ``*_s``
seconds, ``*_w`` watts.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

__all__ = [
    "J_PER_KWH",
    "EDF_REL_TOL",
    "EDF_ABS_TOL_S",
    "j_to_kwh",
    "above_idle_energy_j",
    "query_energy_cost_j",
    "idle_energy_j",
    "padding_energy_j",
    "relative_gap",
    "effective_deadline_s",
    "token_weight",
    "planned_output_tokens",
    "weighted_mean_accuracy",
    "edf_end_s",
    "edf_feasible",
    "LANE_ORDERS",
    "lane_order",
    "lane_times_s",
    "lane_schedule_s",
    "lane_feasible",
    "ends_in_time",
    "latest_end_s",
    "slot_energy_j",
    "kg_co2e",
]

#: joules in one kilowatt-hour
J_PER_KWH = 3.6e6
#: tolerance of the earliest-deadline-first test: a query may end ``due·(1 + EDF_REL_TOL) + EDF_ABS_TOL_S``
EDF_REL_TOL = 1e-12
EDF_ABS_TOL_S = 1e-9


def j_to_kwh(energy_j: float) -> float:
    """Joules to kilowatt-hours."""
    return float(energy_j) / J_PER_KWH


def above_idle_energy_j(energy_j, runtime_s, idle_power_w, lanes=1):
    """A query's energy above its share of its instance's idle draw, ``max(E − P_idle·t / lanes, 0)``
    [J] (arrays broadcast). ``E`` is the query's share of its batch's energy, so the idle draw
    it holds is its instance's over the instance's ``lanes`` (the batch size)."""
    share_w = np.asarray(idle_power_w, dtype=float) / np.asarray(lanes, dtype=float)
    return np.maximum(np.asarray(energy_j, dtype=float) - share_w * runtime_s, 0.0)


def query_energy_cost_j(energy_j, runtime_s, idle_power_w, *, idle: bool, lanes=1):
    """The energy a query is charged [J]: all of its predicted energy, or with ``idle`` (idle power
    counted per switched-on instance over the horizon) only its energy above its share of idle."""
    if idle:
        return above_idle_energy_j(energy_j, runtime_s, idle_power_w, lanes)
    return np.asarray(energy_j, dtype=float)


def padding_energy_j(slot_power_w: float, lanes: int, makespan_s: float, busy_s: float) -> float:
    """Predicted energy of an instance's empty lane-time [J]: a batched instance runs all its
    ``lanes`` slots until its last query ends, and a slot with no query still costs its share of
    every decode step (the step reads the weights for the whole batch; only attention shrinks). That
    share, ``slot_power_w`` [W], times the lane-time ``lanes × makespan − busy`` that no query fills."""
    return float(slot_power_w) * max(int(lanes) * float(makespan_s) - float(busy_s), 0.0)


def idle_energy_j(idle_power_w, horizon_s: float):
    """Idle energy of one switched-on instance over the horizon, ``P_idle × H`` [J] (arrays broadcast).
    An instance that is on costs it whether busy or not; one with no work is off."""
    return np.asarray(idle_power_w, dtype=float) * float(horizon_s)


def relative_gap(objective: float, bound: float) -> float:
    """``max(objective − bound, 0) / |objective|``: how far a plan is proven to be from the optimum
    (inf where either is not finite)."""
    if not math.isfinite(objective) or not math.isfinite(bound):
        return math.inf
    return max(objective - bound, 0.0) / max(abs(objective), 1e-12)


def within_gap(objective: float, bound: float, gap: float) -> bool:
    """Whether a plan of ``objective`` is proven within the relative ``gap`` of ``bound`` (at least
    1e-9, with a hair of slack for a backend that stops exactly at its gap): what "optimal" means."""
    return relative_gap(objective, bound) <= max(gap, 1e-9) * 1.0001


def effective_deadline_s(deadline_s, horizon_s: float) -> np.ndarray:
    """The time a query must end by: its deadline, or the horizon where it has none or a later one."""
    dl = np.asarray(deadline_s, dtype=float)
    return np.where(np.isnan(dl), horizon_s, np.minimum(dl, horizon_s))


def token_weight(input_tokens, output_tokens) -> np.ndarray:
    """A query's weight in the token-weighted mean accuracy: input + output tokens."""
    return np.asarray(input_tokens, dtype=float) + np.asarray(output_tokens, dtype=float)


def planned_output_tokens(output_tokens) -> np.ndarray:
    """The output tokens a query is planned (predicted) with: its own, or 1 for a prefill-only
    request (0 output tokens). The models predict for one output token or more, and a prefill
    yields the first output token, so such a query costs what a one-token answer does."""
    return np.maximum(np.asarray(output_tokens), 1)


def weighted_mean_accuracy(weights, accuracy) -> float:
    """Σ w·acc / Σ w (NaN for no queries)."""
    w = np.asarray(weights, dtype=float)
    if not len(w) or w.sum() <= 0:
        return math.nan
    return float(np.dot(w, np.asarray(accuracy, dtype=float)) / w.sum())


def edf_end_s(runtime_s, due_s) -> tuple[np.ndarray, np.ndarray]:
    """Queries released at t = 0 run one after another in earliest-deadline-first order (shorter
    first among equal deadlines): the order and each one's end time in that order."""
    r = np.asarray(runtime_s, dtype=float)
    order = np.lexsort((r, np.asarray(due_s, dtype=float)))
    return order, np.cumsum(r[order])


def latest_end_s(due_s) -> np.ndarray:
    """The latest time a query due at ``due_s`` may end, within the planner's floating-point
    tolerance: ``due·(1 + EDF_REL_TOL) + EDF_ABS_TOL_S``."""
    return np.asarray(due_s, dtype=float) * (1 + EDF_REL_TOL) + EDF_ABS_TOL_S


def ends_in_time(end_s, due_s) -> np.ndarray:
    """Whether each query ends by its due time, within :func:`latest_end_s` (False where the due
    time is NaN: none)."""
    with np.errstate(invalid="ignore"):
        return np.asarray(end_s, dtype=float) <= latest_end_s(due_s)


def edf_feasible(runtime_s, due_s) -> bool:
    """Whether queries released at t = 0 can all end by their due times on one lane. EDF order is
    optimal for that, so this is exact: every prefix of the EDF order ends in time."""
    due = np.asarray(due_s, dtype=float)
    order, end = edf_end_s(runtime_s, due)
    return bool(np.all(ends_in_time(end, due[order])))


def kg_co2e(energy_j, carbon_g_per_kwh):
    """Emissions [kgCO2e] of ``energy_j`` [J] at a carbon intensity [gCO2e/kWh] (arrays broadcast)."""
    return np.asarray(energy_j, dtype=float) / J_PER_KWH * np.asarray(carbon_g_per_kwh, dtype=float) / 1000.0


def slot_energy_j(bounds_s, start_s, end_s, energy_j, group=None, n_groups: int = 1) -> np.ndarray:
    """Energy [J] per (group, slot) of intervals that each draw ``energy_j`` uniformly over
    ``[start_s, end_s)`` [s]: an interval spanning slots is split by its overlap with each. The
    slots are ``[bounds_s[k], bounds_s[k+1])`` (S + 1 increasing boundaries); ``group`` (ints in
    ``[0, n_groups)``, default all 0) says whose each interval is. An interval of no length puts
    its energy in the slot holding its start. Returns an ``(n_groups, S)`` array whose total is
    ``energy_j``'s; vectorised (``searchsorted``, ``bincount`` and one cumulative sum over the
    slots), no loop over intervals. Raises ValueError for an interval outside the slots or one
    that ends before it starts."""
    b = np.asarray(bounds_s, dtype=float)
    n_slots = len(b) - 1
    s, e = np.asarray(start_s, dtype=float), np.asarray(end_s, dtype=float)
    energy = np.asarray(energy_j, dtype=float)
    g = np.zeros(len(s), dtype=np.int64) if group is None else np.asarray(group, dtype=np.int64)
    out = np.zeros(n_groups * n_slots)
    if not len(s):
        return out.reshape(n_groups, n_slots)
    if n_slots < 1 or not (s.min() >= b[0] and e.max() <= b[-1]) or np.any(e < s):
        raise ValueError("an interval lies outside the slots or ends before it starts")
    k0 = np.clip(np.searchsorted(b, s, side="right") - 1, 0, n_slots - 1)  # the slot holding the start
    k1 = np.maximum(np.clip(np.searchsorted(b, e, side="left") - 1, 0, n_slots - 1), k0)  # ... the end
    one = k1 == k0
    out += np.bincount(g[one] * n_slots + k0[one], weights=energy[one], minlength=out.size)
    m = ~one
    if m.any():  # spans slots: the first and last partly, the ones between fully
        gm, a, z = g[m], k0[m], k1[m]
        power_w = energy[m] / (e[m] - s[m])
        out += np.bincount(gm * n_slots + a, weights=power_w * (b[a + 1] - s[m]), minlength=out.size)
        out += np.bincount(gm * n_slots + z, weights=power_w * (e[m] - b[z]), minlength=out.size)
        step = np.zeros(n_groups * (n_slots + 1))
        step += np.bincount(gm * (n_slots + 1) + a + 1, weights=power_w, minlength=step.size)
        step -= np.bincount(gm * (n_slots + 1) + z, weights=power_w, minlength=step.size)
        full_w = np.cumsum(step.reshape(n_groups, n_slots + 1), axis=1)[:, :n_slots]
        out += (full_w * np.diff(b)).reshape(-1)
    return out.reshape(n_groups, n_slots)

#: the two orders a lane may run its queries in with release times: release order (EDF among queries
#: released together), and deadline order (each query still waits for its release)
LANE_ORDERS = ("release", "deadline")


def lane_order(lane_key, release_s, due_s, runtime_s, by: str = "release") -> np.ndarray:
    """An order of queries on their lanes (``lane_key`` names each one's lane): by lane, then by
    release then deadline (``by="release"``) or by deadline then release (``by="deadline"``), then
    shorter first (then as given). Released all at t = 0 both are earliest-deadline-first, optimal
    on one lane; with release times neither is optimal in general. Both are fixed orders: a query
    taken off a lane never makes another on it end later, so repair can move queries one at a time."""
    rel, due = np.asarray(release_s, dtype=float), np.asarray(due_s, dtype=float)
    first, second = (rel, due) if by == "release" else (due, rel)
    return np.lexsort((np.asarray(runtime_s, dtype=float), second, first, np.asarray(lane_key)))


def lane_times_s(lane_key, runtime_s, release_s, due_s, by: str = "release") -> tuple[np.ndarray, np.ndarray]:
    """Start and end [s] of each query (in the order given) on its lane: the lane runs its queries
    one after another in :func:`lane_order` (``by``), each starting at max(its release, the previous
    one's end). Vectorised over all lanes: with S the running sum of runtimes on the lane, a query
    ends at ``S_k + max_{j ≤ k} (release_j − S_{j−1})`` (released all at t = 0: ``S_k``, EDF's ends)."""
    key = np.asarray(lane_key)
    run = np.asarray(runtime_s, dtype=float)
    rel = np.asarray(release_s, dtype=float)
    order = lane_order(key, rel, due_s, run, by)
    k, r, p = key[order], rel[order], run[order]
    first = np.ones(len(k), dtype=bool)
    first[1:] = k[1:] != k[:-1]
    group = np.cumsum(first) - 1
    s_k = pd.Series(p).groupby(group, sort=False).cumsum().to_numpy()  # S_k within the lane
    slack = r - (s_k - p)  # release_j − S_{j−1}
    # every release at 0: EDF's running sums as they are
    end_sorted = s_k + pd.Series(slack).groupby(group, sort=False).cummax().to_numpy() if np.any(slack > 0) else s_k
    end = np.empty(len(k))
    end[order] = end_sorted
    return end - run, end


def lane_schedule_s(lane_key, runtime_s, release_s, due_s) -> tuple[np.ndarray, np.ndarray]:
    """The timeline of queries on lanes [s] (start, end; in the order given): each lane in release
    order (:func:`lane_times_s`), except a lane on which a query would then end after its due time
    and which deadline order serves in time: that lane runs in deadline order. Released all at
    t = 0 both are EDF. The choice is per lane and depends on its queries only, and a lane that
    meets its due times in one of the orders still does with a query taken off it."""
    start, end = lane_times_s(lane_key, runtime_s, release_s, due_s, "release")
    late = ~ends_in_time(end, due_s)
    if not late.any() or not np.any(np.asarray(release_s, dtype=float) > 0):
        return start, end
    key = np.asarray(lane_key)
    redo = np.isin(key, np.unique(key[late]))
    s2, e2 = lane_times_s(key[redo], np.asarray(runtime_s, dtype=float)[redo], np.asarray(release_s, dtype=float)[redo],
                          np.asarray(due_s, dtype=float)[redo], "deadline")
    k2 = key[redo]
    late2 = ~ends_in_time(e2, np.asarray(due_s, dtype=float)[redo])
    better = ~np.isin(k2, np.unique(k2[late2]))  # lanes deadline order serves in time
    idx = np.flatnonzero(redo)[better]
    start, end = start.copy(), end.copy()
    start[idx], end[idx] = s2[better], e2[better]
    return start, end


def lane_feasible(runtime_s, due_s, release_s=None) -> bool:
    """Whether queries on one lane, timed by :func:`lane_schedule_s` (each from its release), all end
    by their due times (:func:`ends_in_time`). Released all at t = 0 (``release_s`` None or 0) this
    is :func:`edf_feasible`, exact; with release times it tests the lane's two orders only."""
    run = np.asarray(runtime_s, dtype=float)
    if release_s is None or not np.any(np.asarray(release_s, dtype=float) > 0):
        return edf_feasible(run, due_s)
    # lane_schedule_s on one lane, without its grouping (repair asks this once per lane tried)
    rel, due = np.asarray(release_s, dtype=float), np.asarray(due_s, dtype=float)
    latest = latest_end_s(due)
    for first, second in ((rel, due), (due, rel)):  # release order, then deadline order
        order = np.lexsort((run, second, first))
        p = run[order]
        s_k = np.cumsum(p)
        end = s_k + np.maximum.accumulate(rel[order] - (s_k - p))
        if np.all(end <= latest[order]):
            return True
    return False
