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
time (a deadline or the horizon) and the shortfall. Cost: a few passes over the (queries ×
deployments) arrays and one sort per set of pools (about a second for a million queries).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

from ..problem import Problem

__all__ = ["CapacityShortfall", "capacity_shortfall"]

#: the relative slack below which a shortfall is not called one (rounding of runtimes)
REL_TOL = 1e-9


@dataclass(frozen=True)
class CapacityShortfall:
    """The worst violated inequality: the pools, the time, the work and the capacity."""

    pools: tuple[str, ...]
    time_s: float
    at_horizon: bool
    queries: int  # queries due by then that can only run on these pools
    needed_device_s: float
    available_device_s: float

    @property
    def shortfall_device_s(self) -> float:
        return self.needed_device_s - self.available_device_s

    def message(self) -> str:
        when = f"the horizon ({self.time_s:g} s)" if self.at_horizon else f"the deadline {self.time_s:g} s"
        pools = " + ".join(self.pools)
        return (f"capacity: the {self.queries} queries due by {when} that can only run on {pools} need at least "
                f"{self.needed_device_s:,.0f} device-seconds there, and {pools} offer{'s' if len(self.pools) == 1 else ''} "
                f"{self.available_device_s:,.0f} by then: short by {self.shortfall_device_s:,.0f} device-seconds "
                f"(instance-seconds of one-device instances); add devices, relax deadlines or lengthen the horizon")


def capacity_shortfall(problem: Problem) -> CapacityShortfall | None:
    """The worst violated capacity inequality (see the module docstring), or None if all hold."""
    if problem.n_queries == 0 or problem.n_deployments == 0:
        return None
    deps = problem.deployments
    per_lane = deps["devices_per_instance"].to_numpy(dtype=float) / deps["lanes"].to_numpy(dtype=float)
    pool_of_dep = deps["device"].to_numpy()
    names = [str(p) for p in problem.pools["pool"]]
    counts = problem.pools["count"].to_numpy(dtype=float)
    due = problem.queries["deadline_eff_s"].to_numpy(dtype=float)
    served = np.asarray(problem.ok.any(axis=1), dtype=bool)
    # least use per query within each pool (inf: no option there)
    least = np.full((len(names), problem.n_queries), np.inf)  # a row per pool: contiguous minima
    col = np.empty(problem.n_queries)
    for d in range(problem.n_deployments):
        j = names.index(str(pool_of_dep[d]))
        np.multiply(problem.runtime_s[:, d], per_lane[d], out=col)
        col[~problem.ok[:, d]] = np.inf
        np.minimum(least[j], col, out=least[j])
    least = least.T
    has: np.ndarray = np.isfinite(least)
    horizon = float(problem.horizon_s)
    # one sort by deadline for every set of pools; the work due by each distinct deadline is a
    # running sum read at the last query of that deadline
    order = np.argsort(due, kind="stable")
    due, least, has, served = due[order], least[order], has[order], served[order]
    last = np.flatnonzero(np.r_[due[1:] != due[:-1], True])
    t = due[last]
    worst: CapacityShortfall | None = None
    for size in range(1, len(names) + 1):
        for S in combinations(range(len(names)), size):
            inside = np.zeros(len(names), dtype=bool)
            inside[list(S)] = True
            confined = served & ~has[:, ~inside].any(axis=1)
            if not confined.any():
                continue
            need = np.where(confined, least[:, inside].min(axis=1), 0.0)
            cum = np.cumsum(need)[last]
            cap = float(counts[inside].sum()) * t
            excess = cum - cap
            k = int(np.argmax(excess / np.maximum(cap, 1e-12)))
            if excess[k] > REL_TOL * max(cap[k], 1.0):
                cand = CapacityShortfall(tuple(names[i] for i in S), float(t[k]), bool(t[k] >= horizon - 1e-9),
                                         int(np.count_nonzero(confined[: last[k] + 1])), float(cum[k]), float(cap[k]))
                if worst is None or cand.shortfall_device_s > worst.shortfall_device_s:
                    worst = cand
    return worst
