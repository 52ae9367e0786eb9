"""A cheap proof that a batch cannot fit its fleet: device-seconds needed against device-seconds
there are, by every deadline and the horizon, for every set of pools.

An option of query q on deployment d runs ``runtime_s[q, d]`` seconds on one lane of an instance
that holds ``devices_per_instance`` devices for its ``lanes`` lanes, so it uses at least
``runtime × devices / lanes`` device-seconds of d's pool. A pool of ``count`` devices offers
``count × T`` device-seconds by time T. For any set S of pools, the queries whose every option is
in S and whose (effective) deadline is ≤ T need at least the sum of their least use within S by T:

    Σ_{q: options ⊆ S, due ≤ T} min_{d ∈ S} use[q, d]  ≤  T × Σ_{p ∈ S} count_p.

Every plan meets these (instances limits, memory, releases and the accuracy floor only add
requirements), so one violated inequality proves that no plan exists, and names the pools, the
time (a deadline or the horizon) and the shortfall.

Which one is reported: the horizon's, wherever it is violated for some S (then no relaxing of
deadlines can help: the work does not fit the horizon at all); only where every horizon
inequality holds, the deadline level with the largest shortfall (then the deadlines alone bind).
The sets S checked are the sets of pools some query is confined to and their unions (all of them
up to :data:`MAX_POOL_SETS`, else the sets themselves and the whole fleet): a set no query is
confined to adds nothing its largest confined subset does not. Cost: one pass over the
(queries × deployments) arrays per pool, a sum per set, and one sort of the queries whose
deadline is before the horizon (a fraction of a second for a million queries).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..problem import Problem

__all__ = ["CapacityShortfall", "capacity_shortfall"]

#: the relative slack below which a shortfall is not called one (rounding of runtimes)
REL_TOL = 1e-9
#: the most sets of pools checked one by one (unions of the sets queries are confined to)
MAX_POOL_SETS = 256
#: queries per block of the least-use pass (a block of runtimes and their mask stays in cache)
BLOCK_ROWS = 16_384


@dataclass(frozen=True)
class CapacityShortfall:
    """The violated inequality reported: the pools, the time, the work and the capacity."""

    pools: tuple[str, ...]
    time_s: float
    at_horizon: bool
    queries: int  # queries due by then that can only run on these pools
    needed_device_s: float
    available_device_s: float
    devices: tuple[int, ...] = ()  # each pool's device count, in the order of ``pools``
    devices_per_instance: tuple[int, ...] = ()  # the distinct instance sizes of the deployments on ``pools``
    all_pools: bool = False  # ``pools`` is the whole fleet

    @property
    def shortfall_device_s(self) -> float:
        return self.needed_device_s - self.available_device_s

    def _instance_seconds(self) -> str:
        """The shortfall in instance-seconds, where the instances on these pools have one size."""
        if len(self.devices_per_instance) != 1:
            return "instance-seconds: an instance of k devices uses k device-seconds a second"
        k = self.devices_per_instance[0]
        return f"= {self.shortfall_device_s / k:,.0f} instance-seconds of {k}-device instances"

    def message(self) -> str:
        pools = " + ".join(self.pools)
        have = (" + ".join(f"{n} {p}" for p, n in zip(self.pools, self.devices)) + " devices") if self.devices else pools
        only = f"{pools}, the only pool{'s' if len(self.pools) > 1 else ''} they can run on"
        where = f"the fleet's pools ({pools})" if self.all_pools else only
        if self.at_horizon:
            when, fix = f"the horizon ({self.time_s:g} s)", "add devices or lengthen the horizon"
        else:
            when = f"the deadline {self.time_s:g} s"
            fix = (f"the horizon has room for them, the deadlines do not: relax the deadlines due by {self.time_s:g} s "
                   "or add devices")
        return (f"capacity: by {when} the {self.queries:,} queries due then need at least {self.needed_device_s:,.0f} "
                f"device-seconds on {where}, and {have} offer {self.available_device_s:,.0f}: short by "
                f"{self.shortfall_device_s:,.0f} device-seconds ({self._instance_seconds()}); {fix}")


def _pool_sets(masks: np.ndarray, n_pools: int) -> list[int]:
    """Bit sets of pools to check: the distinct sets queries are confined to, closed under union
    while there are at most :data:`MAX_POOL_SETS`, else those sets and the whole fleet."""
    base = sorted(int(m) for m in np.unique(masks) if m)
    sets = set(base)
    frontier = set(base)
    while frontier and len(sets) <= MAX_POOL_SETS:
        new = {a | b for a in frontier for b in base} - sets
        sets |= new
        frontier = new
    if len(sets) > MAX_POOL_SETS:
        sets = set(base) | {(1 << n_pools) - 1}
    return sorted(sets, key=lambda s: (bin(s).count("1"), s))


def _least_use(problem: Problem, pool_idx: np.ndarray, per_lane: np.ndarray, n_pools: int) -> np.ndarray:
    """Each query's least use [device-s] of each pool over its options there, as a [pools × queries]
    array (inf where it has none), in blocks of :data:`BLOCK_ROWS` queries that stay in cache."""
    n = problem.n_queries
    order = np.argsort(pool_idx, kind="stable")  # the deployments grouped by pool
    grouped = pool_idx[order]
    starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
    present = grouped[starts]
    same = bool(np.all(order == np.arange(len(order))))
    w = per_lane[order]
    least = np.full((n_pools, n), np.inf)
    for a in range(0, n, BLOCK_ROWS):
        b = min(n, a + BLOCK_ROWS)
        r, ok = problem.runtime_s[a:b], problem.ok[a:b]
        if not same:
            r, ok = r[:, order], ok[:, order]
        use = r * w
        use[~ok] = np.inf
        least[present, a:b] = np.minimum.reduceat(use, starts, axis=1).T
    return least


def capacity_shortfall(problem: Problem) -> CapacityShortfall | None:
    """The violated capacity inequality to report (see the module docstring), or None if all hold."""
    if problem.n_queries == 0 or problem.n_deployments == 0:
        return None
    deps = problem.deployments
    per_lane = deps["devices_per_instance"].to_numpy(dtype=float) / deps["lanes"].to_numpy(dtype=float)
    k_dep = deps["devices_per_instance"].to_numpy(dtype=int)
    names = [str(p) for p in problem.pools["pool"]]
    counts = problem.pools["count"].to_numpy(dtype=float)
    pool_idx = np.array([names.index(str(p)) for p in deps["device"]], dtype=np.int64)
    n, n_pools = problem.n_queries, len(names)
    least = _least_use(problem, pool_idx, per_lane, n_pools)  # [pools × queries]; inf: no option there
    masks = np.zeros(n, dtype=np.int64)  # the pools a query can run on, as bits
    for j in range(n_pools):
        masks |= np.isfinite(least[j]).astype(np.int64) << j
    horizon = float(problem.horizon_s)
    due = problem.queries["deadline_eff_s"].to_numpy(dtype=float)
    early = np.flatnonzero(due < horizon - 1e-9)  # the queries a deadline level can count
    early = early[np.argsort(due[early], kind="stable")]
    t_early = due[early]
    last = np.flatnonzero(np.r_[t_early[1:] != t_early[:-1], True]) if early.size else early
    full = (1 << n_pools) - 1
    at_h: CapacityShortfall | None = None
    at_dl: CapacityShortfall | None = None
    for pset in _pool_sets(masks, n_pools):
        inside = [j for j in range(n_pools) if pset >> j & 1]
        confined = (masks != 0) & (masks & ~pset == 0)
        need = np.where(confined, np.min(least[inside], axis=0), 0.0)
        devices = float(counts[inside].sum())
        pools = tuple(names[j] for j in inside)
        sizes = tuple(sorted({int(k) for k in k_dep[np.isin(pool_idx, inside)]}))
        have = tuple(int(counts[j]) for j in inside)
        total, cap = float(need.sum()), devices * horizon
        if total - cap > REL_TOL * max(cap, 1.0):
            cand = CapacityShortfall(pools, horizon, True, int(np.count_nonzero(confined)), total, cap, have, sizes, pset == full)
            if at_h is None or cand.shortfall_device_s > at_h.shortfall_device_s:
                at_h = cand
        if at_h is not None or not last.size:
            continue  # a horizon shortfall is reported before any deadline's
        cum = np.cumsum(need[early])[last]
        caps = devices * t_early[last]
        excess = cum - caps
        k = int(np.argmax(excess))
        if excess[k] > REL_TOL * max(caps[k], 1.0):
            cand = CapacityShortfall(pools, float(t_early[last[k]]), False,
                                     int(np.count_nonzero(confined[early[: last[k] + 1]])), float(cum[k]),
                                     float(caps[k]), have, sizes, pset == full)
            if at_dl is None or cand.shortfall_device_s > at_dl.shortfall_device_s:
                at_dl = cand
    return at_h if at_h is not None else at_dl
