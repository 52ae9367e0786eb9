"""Large batches: price the few coupling rows (Lagrangian relaxation), then fix and solve the rest.

The aggregate model (``formulation.py``) has one "exactly one option" row per query and few rows
that couple queries: per deployment and deadline level, the work due by T ≤ T × instances; per
pool, the devices; optionally the batch's mean accuracy. Its LP relaxation is almost integral.

**Bound.** Moving the coupling rows into the objective with prices λ ≥ 0 (per deployment and
deadline level, J per instance-second) and μ ≥ 0 (per unit of token-weighted accuracy) leaves a
problem that splits: each query takes the option of least *priced* cost
``cost + r·Σ_{levels ≥ its deadline} λ − μ·w·acc``, and each pool switches on the instances worth
most at those prices (a small knapsack). For any prices its value L(λ, μ) is a lower bound on the
aggregate model's optimum, hence on the exact one's. L is concave and piecewise linear in a
handful of prices; it is maximised by a proximal bundle method (cutting planes with a trust
region, each master a small LP). The work per evaluation is a few passes over an
(queries × deployments) array.

**Plan.** At the best prices, a query whose cheapest priced option beats its second cheapest by a
clear margin takes it; the queries that the smallest relative change of the prices would move to
their second option (the ones the prices leave nearly tied) are solved exactly by the MILP
backend on the aggregate model, with the fixed queries' work and accuracy as constants. The plan
is then packed onto instances (EDF) like any aggregate plan. Without deadlines, if the packed
plan is further than the gap from the bound, four times as many queries are freed once more;
the best packed plan is kept.

**Capacity-bound pools.** Where the pools cannot hold every query's least priced option in whole
instances (most of the GPUs' work has to go elsewhere), fixing queries at that choice leaves no
feasible completion however many are freed. The fixed queries then come from a *fill*: whole
instances in proportion to the priced choices' needs, within the pools, and the queries, in the
greedy order of a knapsack (regret per second of the tight pools), each on its least priced
option with room; the accuracy's price is raised until the fill meets the floor, then accuracy
above it is spent on cheaper options. Queries that packing could not place leave lane-seconds
free in a second fill.

**Whole instances.** The Lagrangian prices fractions of instances; with ``--idle`` an instance's
idle draw over the horizon is lumpy, and in capacity-bound fleets so is each GPU. The instance
search (:func:`instance_search`, :mod:`.instances`) takes every evaluation of L on the whole batch
as a cut on the bound of each instance vector, minimises over the vectors the fleet allows (a small
MILP) and maximises L with the instances fixed at the vector it names, until the bound stops
rising; then it tries plans that fill exactly the instances of the master's last vector (and of
the best plan's, and of the visited vectors of least bound), until the bound and the best plan
meet or its time is up.

The gap reported is between that plan's objective and the best bound found (L, or the master's
value), so it is proven.

**Release times.** The Lagrangian prices the deadline-level rows only; the release-window rows of
the matrix model (``formulation.py``) are left out of it, and a relaxation with rows dropped is
still a relaxation, so L stays a valid bound. The MILP on the free queries has them (the fixed
queries' releases enter as constants), and packing starts each query at its release.

**Limits.** The bound gets at most half of the call's time limit, each MILP at most 60 s and
what is left; the relative gap and the threads of :class:`~energyopt.methods.Limits` reach
every MILP.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..accounting import relative_gap
from ..formulation import build_matrix, deadline_levels, level_of
from ..packing import Timeline, pack, plan_objective
from ..problem import Problem
from ..progress import current_phase, phase
from ..schema import BoundSource, Status, Termination
from ..solvers import Solver
from . import Choice, Limits, Method, Progress
from .instances import instance_master, option_patterns
from .strong import backend_solve, solve_strong

__all__ = ["DecomposeMethod", "DualBound", "lagrangian_bound", "FixPlan", "fix_and_solve", "knapsack_max", "instances_at_prices",
           "sub_problem", "instance_search"]


def knapsack_max(values: np.ndarray, sizes: np.ndarray, upper: np.ndarray, capacity: int) -> tuple[float, np.ndarray]:
    """max Σ v·n subject to Σ s·n ≤ capacity, 0 ≤ n ≤ upper, n integer (bounded knapsack).

    Items of value ≤ 0 are never taken. Dynamic programming over the capacity with binary
    splitting of each item's multiplicity: O(capacity × Σ log upper)."""
    n_items = len(values)
    best_n = np.zeros(n_items, dtype=np.int64)
    take = [i for i in range(n_items) if values[i] > 0 and upper[i] > 0 and sizes[i] <= capacity]
    if not take or capacity <= 0:
        return 0.0, best_n
    # 0/1 pieces: (item, count)
    pieces: list[tuple[int, int]] = []
    for i in take:
        left = int(min(upper[i], capacity // sizes[i]))
        c = 1
        while left > 0:
            k = min(c, left)
            pieces.append((i, k))
            left -= k
            c *= 2
    cap = int(capacity)
    dp = np.zeros(cap + 1)
    choice = np.zeros((len(pieces), cap + 1), dtype=bool)
    for p, (i, k) in enumerate(pieces):
        w = int(sizes[i]) * k
        v = float(values[i]) * k
        if w > cap:
            continue
        cand = dp[:-w] + v if w > 0 else dp + v
        better = cand > dp[w:] + 1e-12
        choice[p, w:] = better
        dp[w:] = np.where(better, cand, dp[w:])
    c = int(np.argmax(dp))
    val = float(dp[c])
    for p in range(len(pieces) - 1, -1, -1):
        if choice[p, c]:
            i, k = pieces[p]
            best_n[i] += k
            c -= int(sizes[i]) * k
    return val, best_n


@dataclass
class DualBound:
    """The best Lagrangian bound found and what the plan step needs from it."""

    bound: float
    lam: np.ndarray  # [n_d, n_levels] prices of the deadline-level capacity rows
    mu: float  # price of the mean-accuracy row
    levels: np.ndarray  # deadline levels [s]
    best: np.ndarray  # each query's option of least priced cost (deployment index)
    margin: np.ndarray  # second least priced cost minus the least, per query
    flip: np.ndarray  # relative change of the prices that would make the second least the least
    iterations: int
    time_s: float
    converged: bool
    infeasible: bool = False  # the bound exceeds the cost of every assignment: no plan exists
    # what the instance search (:func:`instance_search`) starts from: the prices as one vector, their
    # scales, and the last sample they were found on (None: every query)
    theta: np.ndarray | None = None
    scale: np.ndarray | None = None
    sample: _Dense | None = None


class _Dense:
    """The served queries as dense (query × deployment) arrays, +inf cost where a pair is not an
    option (views of the problem's arrays when every query is served). Row s is query
    ``rows[s]``; ``wt`` weighs each row (a sample stands for the batch)."""

    def __init__(self, problem: Problem, max_levels: int):
        served = problem.ok.any(axis=1)
        if served.all():
            self.rows = np.arange(problem.n_queries)
            self.cost, self.run, self.ok = problem.cost, problem.runtime_s, problem.ok
        else:
            self.rows = np.flatnonzero(served)
            self.cost, self.run, self.ok = problem.cost[self.rows], problem.runtime_s[self.rows], problem.ok[self.rows]
        dl = problem.queries["deadline_eff_s"].to_numpy(dtype=float)[self.rows]
        self.levels = deadline_levels(dl, max_levels)
        # the smallest kept level >= the deadline: the row "work due by T" includes the query
        self.lev = level_of(self.levels, dl).clip(0, len(self.levels) - 1)
        w = problem.queries["weight"].to_numpy(dtype=float)[self.rows]
        self.acc = problem.deployments["accuracy"].to_numpy(dtype=float)
        self.w = w if problem.min_mean_accuracy is not None else None  # the accuracy row's weights
        self.acc_rhs = (problem.min_mean_accuracy or 0.0) * float(w.sum())
        deps = problem.deployments
        self.k = deps["devices_per_instance"].to_numpy().astype(np.int64)
        self.max_inst = deps["max_instances"].to_numpy().astype(np.int64)
        self.lanes = deps["lanes"].to_numpy().astype(np.int64)
        # the batch sizes of one fleet deployment: its instances, of one size each, are shared
        group = deps["group"].to_numpy()
        self.groups = [np.flatnonzero(group == g) for g in np.unique(group)]
        self.single_variant = all(len(m) == 1 for m in self.groups)
        self.inst_cost = np.asarray(problem.instance_cost, dtype=float)
        pool_of = deps["device"].to_numpy()
        self.pools = [(int(cnt), np.flatnonzero(pool_of == p)) for p, cnt in zip(problem.pools["pool"], problem.pools["count"])]
        self.wt = 1.0
        # every evaluation on every row is a cut on the bound of each instance vector (see .instances)
        self.cuts: list[tuple[float, np.ndarray]] | None = []

    def sample(self, idx: np.ndarray) -> _Dense:
        """Rows ``idx`` standing for all the rows (costs and work scaled up)."""
        out = object.__new__(_Dense)
        out.__dict__.update(self.__dict__)
        out.rows = self.rows[idx]
        out.cost, out.run, out.ok, out.lev = self.cost[idx], self.run[idx], self.ok[idx], self.lev[idx]
        out.w = None if self.w is None else self.w[idx]
        out.wt = len(self.rows) / len(idx)
        out.cuts = None  # a sample's L is not a bound
        return out


def _suffix(lam: np.ndarray) -> np.ndarray:
    """S[d, l] = Σ_{l' ≥ l} λ[d, l']: the price per second of work of a query due by level l."""
    return np.cumsum(lam[:, ::-1], axis=1)[:, ::-1]


#: batches of at most this many queries go to the MILP whole in the fix step
SOLVE_WHOLE_UP_TO = 2_000

#: where the pools cannot hold the prices' choices, the fill's accuracy price is raised by a quarter
#: at most this many times until the fill meets the mean-accuracy floor
FILL_ACCURACY_STEPS = 12
#: and then bisected this many times
FILL_BISECTIONS = 5
#: fills again at most this many times, each keeping more lane-seconds free, where a fill's plan
#: left queries that packing could not place
FILL_RESERVE_ROUNDS = 3

#: the fill's greedy reads each row's first this many options from lists made at once
FILL_FIRST_OPTIONS = 3

#: rows priced at a time: the block's work arrays stay in the processor's cache, and no
#: (queries × deployments) temporary is ever allocated
BLOCK_ROWS = 32_768


@dataclass
class Partial:
    """What pricing some rows at (λ, μ) adds to L and its subgradient, per block of
    :data:`BLOCK_ROWS` rows (in row order): the least priced costs' sum, the work due by each
    level per deployment, and Σ w·acc of the chosen options. Rows split into parts at block
    boundaries (partitions of the batch priced apart) give the same blocks, and :func:`_fold`
    adds them up in the same order: the same L and subgradient to the last bit."""

    x: np.ndarray  # [blocks] Σ of each row's least priced cost
    load: np.ndarray  # [blocks, n_d, n_l] runtime [s] of the chosen options, per deployment and level
    acc: np.ndarray  # [blocks] Σ w·acc of the chosen options (zeros without the accuracy row)

    @staticmethod
    def join(parts: list[Partial]) -> Partial:
        """The blocks of ``parts`` in order (the parts of a batch split at block boundaries)."""
        return Partial(np.concatenate([p.x for p in parts]), np.concatenate([p.load for p in parts]),
                       np.concatenate([p.acc for p in parts]))


def _price_rows(D: _Dense, lam: np.ndarray, mu: float, margin: bool = False, block_rows: int | None = None):
    """Each row's option of least priced cost ``cost + run·Σ_{levels ≥ its deadline} λ − μ·w·acc``
    and the :class:`Partial` sums of these rows (blocks of ``block_rows``, default
    :data:`BLOCK_ROWS`); with ``margin``, also each row's second least priced cost minus the least
    (inf with one option) and that second option."""
    n_s, n_d = D.cost.shape
    n_l = lam.shape[1]
    S_lev = np.ascontiguousarray(_suffix(lam).T)  # [level, deployment]
    # the accuracy row's weights and μ·accuracy per deployment, where the row has a price
    acc_price = (D.w, mu * D.acc) if D.w is not None and mu > 0 else None
    best = np.empty(n_s, dtype=np.int64)
    gap = np.empty(n_s) if margin else None
    second = np.full(n_s, -1, dtype=np.int64) if margin else None
    blk = block_rows or BLOCK_ROWS
    n_blocks = -(-n_s // blk)
    x_blocks = np.zeros(n_blocks)
    load_blocks = np.zeros((n_blocks, n_d, n_l))
    acc_blocks = np.zeros(n_blocks)
    rc_buf = np.empty((min(blk, max(n_s, 1)), n_d))
    base = np.arange(len(rc_buf)) * n_d
    for k, a in enumerate(range(0, n_s, blk)):
        b = min(a + blk, n_s)
        rc = rc_buf[: b - a]
        if n_l == 1:
            np.multiply(D.run[a:b], S_lev[0], out=rc)
        else:
            np.multiply(D.run[a:b], S_lev[D.lev[a:b]], out=rc)
        rc += D.cost[a:b]
        if acc_price is not None:
            w, macc = acc_price
            rc -= np.multiply.outer(w[a:b], macc)
        bb = rc.argmin(axis=1)
        at = base[: b - a] + bb
        flat = rc.reshape(-1)
        v = flat[at]
        x_blocks[k] = float(v.sum())
        best[a:b] = bb
        run_best = D.run[a:b].reshape(-1)[at]
        # the work due by each level: the rows' chosen runtimes, per deployment and level
        load_blocks[k] = np.bincount(bb * n_l + D.lev[a:b], weights=run_best, minlength=n_d * n_l).reshape(n_d, n_l)
        if D.w is not None:  # numpy's sum, not BLAS's dot: the same bits whatever threads BLAS has
            acc_blocks[k] = float((D.w[a:b] * D.acc[bb]).sum())
        if gap is not None:
            assert second is not None  # gap and second are both made with margin
            flat[at] = np.inf
            b2 = rc.argmin(axis=1)
            gap[a:b] = flat[base[: b - a] + b2] - v
            second[a:b] = np.where(np.isfinite(gap[a:b]), b2, -1)  # -1: the row has one option
    return Partial(x_blocks, load_blocks, acc_blocks), best, (gap, second)


def _fold(D: _Dense, part: Partial, lam: np.ndarray, mu: float,
          fixed_n: np.ndarray | None = None) -> tuple[float, np.ndarray, float]:
    """L(λ, μ) and a subgradient from the rows' :class:`Partial` sums (``D`` for its deployments,
    levels, pools, accuracy row and the weight of its rows), the blocks added in order. With
    ``fixed_n`` the instances are those (L is then a bound only for the plans with them). Where
    ``D`` keeps cuts (every row, not a sample), the evaluation is recorded as one in ``D.cuts``."""
    x_part = 0.0
    for v in part.x.tolist():
        x_part += v
    x_part *= D.wt
    load = np.zeros(part.load.shape[1:])
    for blk in part.load:
        load += blk
    T = D.levels
    gain = D.lanes * (lam @ T) - D.inst_cost
    if fixed_n is None:
        n_part, n = _instances_at_prices(D, gain)
    else:
        n_part, n = float(gain @ fixed_n), fixed_n
    L = x_part - n_part + mu * D.acc_rhs
    if D.cuts is not None:  # V(n) ≥ (x_part + μ·rhs) − gain·n for every instance vector n
        D.cuts.append((x_part + mu * D.acc_rhs, gain))
    # subgradient: load due by each level minus capacity; accuracy floor minus accuracy
    g_lam = D.wt * np.cumsum(load, axis=1) - (n * D.lanes)[:, None] * T[None, :]
    acc_sum = 0.0
    for v in part.acc.tolist():
        acc_sum += v
    g_mu = D.acc_rhs - D.wt * acc_sum if D.w is not None else 0.0
    return L, g_lam, g_mu


def _evaluate(D: _Dense, lam: np.ndarray, mu: float, margin: bool = False, fixed_n: np.ndarray | None = None):
    """L(λ, μ), a subgradient, and each row's option of least priced cost
    ``cost + run·Σ_{levels ≥ its deadline} λ − μ·w·acc``; with ``margin``, also each row's second
    least priced cost minus the least (inf with one option) and that second option. With
    ``fixed_n`` the instances are those (see :func:`_fold`)."""
    part, best, gs = _price_rows(D, lam, mu, margin)
    L, g_lam, g_mu = _fold(D, part, lam, mu, fixed_n)
    return L, g_lam, g_mu, best, gs


def _instances_at_prices(D: _Dense, gain: np.ndarray) -> tuple[float, np.ndarray]:
    """Each pool switches on the instances worth most at these prices (``gain`` per instance of
    each deployment: the capacity it brings, priced, less its own cost); see :func:`instances_at_prices`."""
    return instances_at_prices(gain, None if D.single_variant else D.groups, D.pools, D.k, D.max_inst)


def instances_at_prices(gain: np.ndarray, groups: list[np.ndarray] | None, pools: list[tuple[int, np.ndarray]],
                        devices: np.ndarray, max_inst: np.ndarray) -> tuple[float, np.ndarray]:
    """A bounded knapsack per pool over its devices (``pools``: count and deployments): the
    instances worth most at ``gain`` per instance, ``devices`` each, at most ``max_inst``. The batch
    sizes of one fleet deployment (a group; ``None``: every deployment its own) share its instances
    and need the same devices each, so its best batch size takes them all. Returns the value and
    the instances per deployment."""
    n = np.zeros(len(gain), dtype=np.int64)
    if groups is None:
        item_gain = gain
    else:
        best_of = np.array([m[int(np.argmax(gain[m]))] for m in groups])
        item_gain = np.full(len(gain), -np.inf)
        item_gain[best_of] = gain[best_of]
    total = 0.0
    for cnt, ds in pools:
        ds = ds[np.isfinite(item_gain[ds])]
        if len(ds):
            v, nn = knapsack_max(item_gain[ds], devices[ds], max_inst[ds], cnt)
            total += v
            n[ds] = nn
    return total, n


def _flip(D: _Dense, lam: np.ndarray, mu: float, best: np.ndarray, second: np.ndarray, margin: np.ndarray) -> np.ndarray:
    """Per row, the relative change of all prices that would close the margin between its best
    and second best option: margin / |priced part of the second − priced part of the best|, where
    the priced part is run·Σλ − μ·w·acc. Small: the row is nearly tied under these prices (the
    rows an LP solution splits are exactly tied); inf where no price tells the two apart."""
    S = _suffix(lam)
    has2 = second >= 0
    rows = np.flatnonzero(has2)
    d1, d2 = best[rows], second[rows]
    lev = D.lev[rows]
    n_d = len(D.k)
    run1 = D.run.reshape(-1)[rows * n_d + d1]
    run2 = D.run.reshape(-1)[rows * n_d + d2]
    sens = np.abs(run2 * S[d2, lev] - run1 * S[d1, lev])
    if D.w is not None:
        sens += mu * D.w[rows] * np.abs(D.acc[d2] - D.acc[d1])
    out = np.full(len(best), np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        out[rows] = np.where(sens > 0, margin[rows] / sens, np.inf)
    return out


#: L and its subgradient at prices θ (λ row-major, then μ where the accuracy row has a price)
Oracle = Callable[[np.ndarray], tuple[float, np.ndarray]]


def dense_oracle(D: _Dense, price: Callable[[np.ndarray, float], Partial] | None = None,
                 fixed_n: np.ndarray | None = None) -> Oracle:
    """L and a subgradient at θ for the rows of ``D``, priced by ``price(λ, μ)`` (default: here,
    :func:`_price_rows` on ``D``; a distributed plan prices its partitions on workers) and
    folded by :func:`_fold` with ``D``'s deployments, levels and weights (with ``fixed_n``: those
    instances)."""
    n_d, n_l = len(D.k), len(D.levels)
    has_mu = D.w is not None

    def ev(theta: np.ndarray) -> tuple[float, np.ndarray]:
        lam = theta[: n_d * n_l].reshape(n_d, n_l)
        mu = float(theta[-1]) if has_mu else 0.0
        part = _price_rows(D, lam, mu)[0] if price is None else price(lam, mu)
        L, g_lam, g_mu = _fold(D, part, lam, mu, fixed_n)
        g = g_lam.ravel()
        return L, (np.concatenate([g, [g_mu]]) if has_mu else g)

    return ev


def _bundle(ev: Oracle, theta0: np.ndarray, delta: float, scale: np.ndarray, *, rel_tol: float, max_iter: int,
            cap: float, deadline: float | None, say: Callable[[str], None]):
    """Maximise L (``ev``) over θ ≥ 0 from ``theta0``: a proximal bundle method with a box trust
    region (``delta`` in units of ``scale``). Stops at convergence, ``max_iter``, the deadline, or
    when L exceeds ``cap``."""
    from scipy.optimize import linprog

    m = len(theta0)

    shown = current_phase()  # the stage's row (lagrangian_bound): the bound as it rises
    center = theta0.copy()
    Lc, gc = ev(center)
    cuts_g, cuts_b = [gc], [Lc - gc @ center]
    converged = over_cap = False
    it = 0
    last_say = time.perf_counter()
    for it in range(1, max_iter + 1):
        G = np.array(cuts_g)
        lo = np.maximum(center - delta * scale, 0.0)
        hi = center + delta * scale
        c = np.zeros(m + 1)
        c[-1] = -1.0
        # master: max v s.t. v <= b_k + g_k·θ, θ in the box around the center
        res = linprog(c, A_ub=np.hstack([-G, np.ones((len(G), 1))]), b_ub=np.array(cuts_b),
                      bounds=list(zip(lo, hi)) + [(None, None)], method="highs")
        if res.status != 0:  # pragma: no cover - the master is always feasible and bounded
            break
        theta = res.x[:m]
        pred = res.x[-1] - Lc
        if pred <= rel_tol * max(abs(Lc), 1.0):
            if np.all((theta - lo > 1e-12 * scale) | (lo <= 0)) and np.all(hi - theta > 1e-12 * scale):
                converged = True  # the model's maximum lies inside the box: L is at its maximum
                break
            delta *= 2.0
            continue
        L, g = ev(theta)
        cuts_g.append(g)
        cuts_b.append(L - g @ theta)
        if Lc + 0.1 * pred <= L:  # serious step; widen the box if the step reached its edge
            boxed = np.any(np.isclose(theta, hi)) or np.any(np.isclose(theta, lo) & (lo > 0))
            center, Lc = theta, L
            if boxed:
                delta *= 2.0
        else:
            delta *= 0.5
        if Lc > cap + 1e-9 * abs(cap):
            over_cap = True
            break
        if len(cuts_g) > 4 * m + 50:  # keep the newest cuts
            cuts_g, cuts_b = cuts_g[-(2 * m + 25):], cuts_b[-(2 * m + 25):]
        shown.show(f"iteration {it}, bound {Lc:.8g}")
        now = time.perf_counter()
        if now - last_say > 1.0:
            say(f"lagrangian: iteration {it}, bound {Lc:.8g}")
            last_say = now
        if deadline is not None and now > deadline:
            break
    return center, it, converged, over_cap


def sample_rows(n_rows: int, samples: tuple[int, ...]) -> list[np.ndarray]:
    """The seeded random samples (sorted row indices) the prices are first found on: one of each
    size in ``samples`` that is less than half of ``n_rows``, smallest first."""
    rng = np.random.default_rng(0)
    return [np.sort(rng.choice(n_rows, n, replace=False)) for n in sorted(samples) if n_rows > 2 * n]


def price_scales(Ds: _Dense, weight_median: float) -> np.ndarray:
    """The units of the prices' trust region, from the rows of ``Ds`` (a sample suffices): J per
    instance-second for λ (the 90th percentile of any option's cost per second), and J per unit
    of w·acc for μ (``weight_median``: the median token weight of the batch)."""
    n_l = len(Ds.levels)
    has_mu = Ds.w is not None
    m = len(Ds.k) * n_l + (1 if has_mu else 0)
    finite = np.isfinite(Ds.cost) & (Ds.run > 0)
    per_s = np.abs(Ds.cost[finite]) / Ds.run[finite]
    s_lam = float(np.quantile(per_s, 0.9)) if len(per_s) else 1.0
    scale = np.full(m, s_lam / max(n_l, 1))
    if has_mu:
        w_spread = weight_median * max(float(np.ptp(Ds.acc)), 1e-3)
        med_cost = float(np.median(np.abs(Ds.cost[np.isfinite(Ds.cost)]))) or 1.0
        scale[-1] = med_cost / w_spread
    return scale


def maximise_bound(stages: list[_Dense], full: Oracle, n_rows: int, scale: np.ndarray, cap: float, *, rel_tol: float,
                   max_iter: int, deadline: float | None, refine_delta: float, sample_rel_tol: float,
                   say: Callable[[str], None]) -> tuple[np.ndarray, int, int, bool, bool]:
    """Prices on each sample in turn (each from the last one's, in a trust region of
    ``refine_delta`` after the first), then on all ``n_rows`` rows (``full``). Returns the best
    prices θ, the iterations in all, those on all rows, whether the last converged, and whether L
    exceeded ``cap``."""
    theta, delta, iters = np.zeros(len(scale)), 1.0, 0
    for St in stages:
        with phase(f"lagrangian: prices on a sample of {len(St.rows):,} queries"):
            theta, it_s, _, _ = _bundle(dense_oracle(St), theta, delta, scale, rel_tol=sample_rel_tol, max_iter=max_iter,
                                        cap=math.inf, deadline=deadline, say=say)
        say(f"lagrangian: prices from a sample of {len(St.rows)} queries after {it_s} iterations")
        delta, iters = refine_delta, iters + it_s
    with phase(f"lagrangian: bound on all {n_rows:,} queries"):
        theta, it, converged, over_cap = _bundle(full, theta, delta, scale, rel_tol=rel_tol, max_iter=max_iter, cap=cap,
                                                 deadline=deadline, say=say)
    return theta, iters + it, it, converged, over_cap


def lagrangian_bound(
    problem: Problem,
    *,
    rel_tol: float = 1e-7,
    max_iter: int = 300,
    time_limit_s: float | None = None,
    max_levels: int = 24,
    samples: tuple[int, ...] = (30_000, 100_000, 300_000),
    refine_delta: float = 0.002,
    sample_rel_tol: float = 1e-6,
    progress: Callable[[str], None] | None = None,
) -> tuple[DualBound, _Dense]:
    """Maximise the Lagrangian bound (see the module docstring). A batch more than twice as large
    as a size in ``samples`` first finds prices on seeded random samples of those sizes, each
    standing for the batch and starting from the last one's prices (with a trust region of
    ``refine_delta`` price units), then refines them on the whole batch; the bound returned is L
    evaluated on the whole batch at the best prices."""
    say = progress or (lambda s: None)
    t0 = time.perf_counter()
    deadline = None if time_limit_s is None else t0 + time_limit_s
    with phase(f"lagrangian: options of {problem.n_queries:,} queries as dense arrays"):
        D = _Dense(problem, max_levels)
    n_d, n_l = problem.n_deployments, len(D.levels)
    has_mu = D.w is not None
    with phase("lagrangian: samples of the batch, price scales"):
        stages = [D.sample(idx) for idx in sample_rows(len(D.rows), samples)]
        scale = price_scales(stages[0] if stages else D, float(np.median(problem.queries["weight"])))
        # no feasible plan costs more than every query on its dearest option and every instance on
        cap = float(np.max(D.cost, axis=1, where=D.ok, initial=-np.inf).sum())
        cap += float((np.maximum(D.inst_cost, 0) * D.max_inst).sum())
    theta, iters, it, converged, over_cap = maximise_bound(stages, dense_oracle(D), len(D.rows), scale, cap,
                                                           rel_tol=rel_tol, max_iter=max_iter, deadline=deadline,
                                                           refine_delta=refine_delta, sample_rel_tol=sample_rel_tol,
                                                           say=say)
    lam = theta[: n_d * n_l].reshape(n_d, n_l)
    mu = float(theta[-1]) if has_mu else 0.0
    with phase(f"lagrangian: margins of {len(D.rows):,} queries at the best prices"):
        L, best_full, margin_full, flip_full = _choices_at(problem.n_queries, D, lam, mu)
    return (
        DualBound(bound=L, lam=lam, mu=mu, levels=D.levels, best=best_full, margin=margin_full, flip=flip_full,
                  iterations=iters, time_s=time.perf_counter() - t0, converged=converged,
                  infeasible=over_cap or cap + 1e-9 * abs(cap) < L, theta=theta, scale=scale,
                  sample=stages[-1] if stages else None),
        D,
    )


def _choices_at(n_q: int, D: _Dense, lam: np.ndarray, mu: float,
                fixed_n: np.ndarray | None = None) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """L at (λ, μ) (with ``fixed_n``: with those instances), and per query (of ``n_q``) its option
    of least priced cost, the margin to its second and the relative price change that flips them."""
    L, _, _, best, (margin, second) = _evaluate(D, lam, mu, margin=True, fixed_n=fixed_n)
    margin_full = np.full(n_q, np.inf)
    margin_full[D.rows] = margin
    best_full = np.full(n_q, -1, dtype=np.int64)
    best_full[D.rows] = best
    flip_full = np.full(n_q, np.inf)
    flip_full[D.rows] = _flip(D, lam, mu, best, second, margin)
    return L, best_full, margin_full, flip_full


#: rounds of the instance master at most (each a bundle with the instances fixed at its choice)
MASTER_ROUNDS = 30
#: bundle iterations per master round on the sample, and on every query where the sample's stalled
MASTER_ITERATIONS = 15
MASTER_FULL_ITERATIONS = 30
#: rounds in a row that move neither the bound nor the plan before the search stops (a round that
#: rules out an instance vector moves neither while others of as low a bound are left)
MASTER_STALL = 15
#: rounds in a row that do not move the bound after which new vectors are priced on every query
MASTER_SAMPLE_STALL = 3
#: visits of one instance vector at most (the first on the sample, the others on every query)
MASTER_VISITS = 4
#: the instance search stops after this share of the bound's time plus MASTER_MIN_S [s] (or half
#: of what the time limit leaves, if less)
MASTER_TIME_SHARE = 3.0
MASTER_MIN_S = 30.0
#: the share of the instance search's time the bound may take before plans are tried
MASTER_BOUND_SHARE = 0.6
#: plans tried at the master's instance vectors at most
MASTER_PLANS = 3
#: the time cap of each MILP of a plan tried at the master's instances [s]
TRY_PLAN_MILP_S = 8.0


def instance_search(problem: Problem, D: _Dense, dual: DualBound, upper: float, limits: Limits,
                    try_plan: Callable[[DualBound, np.ndarray], float] | None = None,
                    progress: Callable[[str], None] | None = None, plan_n: np.ndarray | None = None) -> float:
    """The bound raised by whole instances (Benders over the instance vector, :mod:`.instances`),
    then plans at the vectors it leaves.

    *Bound.* The master names the instance vector n of least bound; L maximised with the instances
    fixed at n (on the bound's last sample, or on every query if n comes back, from the prices of
    its last visit), then evaluated on every query there, adds cuts (each evaluation on every query
    is a cut valid for every n). Until the master's value is within the gap of the best plan
    (``upper``), ``MASTER_STALL`` rounds do not move it, n comes back after ``MASTER_VISITS``, or
    :data:`MASTER_BOUND_SHARE` of the search's time is up. A round costs a bundle on the sample
    and a pass over every query, a plan a fill and MILPs: plans wait for the bound (tried at
    every vector the master named, at 100,000 queries ``--idle`` each plan took about 28 s and
    the search's time ran out at a gap of 6%; the bound alone took 30 rounds).

    *Plans.* ``try_plan`` is handed the choices at the prices of the master's last vector and that
    vector, then of the other vectors visited whose L is below the best plan's objective, least L
    first (at most :data:`MASTER_PLANS` in all), and returns the best plan's objective after each;
    until the gap is met or the time is up. Returns the better of the master's value and
    ``dual.bound``."""
    say = progress or (lambda s: None)
    bound = dual.bound
    if D.cuts is None or not D.cuts or dual.theta is None or dual.scale is None:
        return bound
    t0 = time.perf_counter()
    stop = t0 + MASTER_TIME_SHARE * dual.time_s + MASTER_MIN_S
    left = limits.remaining_s()
    if left is not None:
        stop = min(stop, t0 + left / 2)
    bound_stop = t0 + (MASTER_BOUND_SHARE if try_plan is not None else 1.0) * (stop - t0)
    patterns = option_patterns(D.ok)
    sample = dual.sample if dual.sample is not None else D
    n_d, n_l = len(D.k), len(D.levels)
    tried: dict[tuple[int, ...], int] = {}
    thetas: dict[tuple[int, ...], np.ndarray] = {}
    at_l: dict[tuple[int, ...], float] = {}  # L on every query at each visited vector's last prices
    stalled, last = 0, -math.inf
    rnd, n_last = 0, None
    theta0, scale = dual.theta, dual.scale

    def visit(n: np.ndarray, seen: int, deadline: float) -> tuple[float, np.ndarray]:
        """Prices for the instances n (see above) and L at them on every query (a cut)."""
        key = tuple(n.tolist())
        V = sample if seen == 0 else D
        # each visit of n continues from the prices its last one reached
        theta, _, _, _ = _bundle(dense_oracle(V, fixed_n=n), thetas.get(key, theta0), 0.05, scale,
                                 rel_tol=1e-7, max_iter=MASTER_ITERATIONS if V is not D else MASTER_FULL_ITERATIONS,
                                 cap=upper, deadline=deadline, say=say)
        thetas[key] = theta
        L_n = _evaluate(D, *_split(theta, n_d, n_l), fixed_n=n)[0]
        at_l[key] = L_n
        return L_n, theta

    with phase("decompose: whole instances (a master over the instance vector)") as shown:
        for rnd in range(MASTER_ROUNDS):
            alpha = np.array([c[0] for c in D.cuts])
            gains = np.array([c[1] for c in D.cuts])
            lb, n = instance_master(alpha, gains, D.pools, D.groups, D.k, D.max_inst, patterns)
            bound = max(bound, lb)
            n_last = n
            shown.show(f"round {rnd}, bound {bound:.8g}, plan {upper:.8g}, gap {relative_gap(upper, bound):.4%}")
            say(f"lagrangian: instance master round {rnd}: bound {bound:.8g}, plan {upper:.8g}, "
                f"gap {relative_gap(upper, bound):.4%}")
            if n is None or relative_gap(upper, bound) <= limits.mip_rel_gap or time.perf_counter() > bound_stop:
                break
            moved = bound > last + 1e-9 * abs(last)
            stalled = 0 if moved else stalled + 1
            if stalled >= MASTER_STALL:
                break
            last = bound
            key = tuple(n.tolist())
            seen = tried.get(key, 0)
            tried[key] = seen + 1
            if seen >= MASTER_VISITS:  # L at n has had its iterations on every query: the master cannot move
                break
            # a vector new to the master is priced on the sample, unless the sample's cuts have stopped
            # moving the bound (its prices are then too far from every query's: capacity-bound pools)
            visit(n, seen if stalled < MASTER_SAMPLE_STALL else max(seen, 1), bound_stop)
        say(f"lagrangian: whole instances: bound {bound:.8g} after {rnd + 1} master rounds "
            f"in {time.perf_counter() - t0:.2f} s")
        if try_plan is None or n_last is None or relative_gap(upper, bound) <= limits.mip_rel_gap or limits.expired():
            return bound
        # plans: the master's last vector first, then the best plan's (``plan_n``), then the others
        # visited, least L first
        first = tuple(n_last.tolist())
        if first not in at_l and time.perf_counter() < stop:
            visit(n_last, 0, stop)
        second = None if plan_n is None else tuple(np.asarray(plan_n).tolist())
        if second is not None and second not in at_l and time.perf_counter() < stop:
            visit(np.asarray(plan_n, dtype=np.int64), 1, stop)
        order = sorted(at_l, key=lambda k: (k != first, k != second, at_l[k]))
        plans = 0
        for key in order:
            if (plans >= MASTER_PLANS or relative_gap(upper, bound) <= limits.mip_rel_gap
                    or time.perf_counter() > stop or limits.expired()):
                break
            if at_l[key] >= upper * (1 - limits.mip_rel_gap):
                continue
            n = np.array(key, dtype=np.int64)
            if tried.get(key, 0) < 2:  # prices from the sample only: refined on every query (cuts too)
                tried[key] = 2
                visit(n, 1, stop)
            lam, mu = _split(thetas[key], n_d, n_l)
            L_n, best, margin, flip = _choices_at(problem.n_queries, D, lam, mu, fixed_n=n)
            at_n = dataclasses.replace(dual, bound=L_n, lam=lam, mu=mu, best=best, margin=margin, flip=flip)
            upper = min(upper, try_plan(at_n, n))
            plans += 1
            shown.show(f"plan {plans} at the master's vectors: bound {bound:.8g}, plan {upper:.8g}, "
                       f"gap {relative_gap(upper, bound):.4%}")
            say(f"lagrangian: plan {plans} at instances {list(key)}: L there {L_n:.8g}, best plan {upper:.8g}, "
                f"gap {relative_gap(upper, bound):.4%}")
    return bound


def _split(theta: np.ndarray, n_d: int, n_l: int) -> tuple[np.ndarray, float]:
    """(λ, μ) from the prices as one vector (λ row-major, then μ where the accuracy row has a price)."""
    return theta[: n_d * n_l].reshape(n_d, n_l), float(theta[-1]) if len(theta) > n_d * n_l else 0.0


@dataclass
class FixPlan:
    dep_of_q: np.ndarray  # chosen deployment per query (-1: none)
    n_inst: np.ndarray  # instances per deployment
    objective: float  # aggregate-model objective of the choice (before packing)
    free_queries: int  # queries solved by the MILP
    message: str = ""
    # with every query free, the MILP's own bound on the aggregate model (else -inf)
    bound: float = -math.inf
    filled: bool = False  # the fixed queries came from a fill of the pools (they could not hold the prices' choices)


def sub_problem(problem: Problem, free: np.ndarray) -> Problem:
    """The problem restricted to the queries ``free`` (indices), renumbered from 0."""
    return dataclasses.replace(
        problem,
        queries=problem.queries.iloc[free].reset_index(drop=True),
        ok=problem.ok[free],
        cost=problem.cost[free],
        energy_j=problem.energy_j[free],
        runtime_s=problem.runtime_s[free],
        runnable=problem.runnable[free],
        extrapolated=problem.extrapolated[free],
        unservable=pd.DataFrame(columns=["query_id", "reason"]),
    )


def _instances_needed(D: _Dense, best: np.ndarray, run_best: np.ndarray | None = None) -> np.ndarray:
    """Per deployment, the whole instances its rows (``best``; ``run_best``: their runtimes there,
    looked up where not given) need: for every deadline level, the work due by it over the
    lane-seconds one instance offers by then, rounded up."""
    n_d, n_l = len(D.k), len(D.levels)
    run = D.run.reshape(-1)[np.arange(len(best)) * n_d + best] if run_best is None else run_best
    load = np.bincount(best * n_l + D.lev, weights=run * D.wt, minlength=n_d * n_l).reshape(n_d, n_l)
    per_instance = D.lanes[:, None] * D.levels[None, :]
    return np.ceil(np.max(np.cumsum(load, axis=1) / per_instance, axis=1) - 1e-9).astype(np.int64)


def _over_full(D: _Dense, need: np.ndarray) -> np.ndarray | None:
    """The deployments that need a single instance in the first pool (or fleet deployment's batch
    sizes) whose needs exceed its devices (or its max_instances); None if everything fits. Only
    these slivers of work are candidates to move: where a deployment needs many instances, the
    prices already weigh its capacity, and the MILP on the free queries evens out the rest."""
    for cnt, ds in D.pools:
        if len(ds) and int((D.k[ds] * need[ds]).sum()) > cnt:
            return ds[need[ds] == 1]
    for members in D.groups:
        if int(need[members].sum()) > int(D.max_inst[members[0]]):
            return members[need[members] == 1]
    return None


def _move_loss(D: _Dense, best: np.ndarray, d: int, dropped: np.ndarray) -> float:
    """What moving the rows on deployment ``d`` (``best``) to their cheapest option on a deployment
    not ``dropped`` (nor ``d``) costs them (1e30 for a row with no such option)."""
    rows = np.flatnonzero(best == d)
    allowed = D.ok[rows] & ~dropped[None, :]
    allowed[:, d] = False
    alt = np.where(allowed, D.cost[rows], np.inf).min(axis=1)
    here = D.cost[rows, d]
    return float(np.sum(np.where(np.isfinite(alt), alt - here, 1e30)))


def _move_off(D: _Dense, best: np.ndarray, d: int, dropped: np.ndarray) -> np.ndarray:
    """Move the rows on the dropped deployment ``d`` to their cheapest option on a deployment not
    ``dropped`` (in ``best``); returns the rows that have none."""
    rows = np.flatnonzero(best == d)
    cost_else = np.where(D.ok[rows] & ~dropped[None, :], D.cost[rows], np.inf)
    alt = cost_else.argmin(axis=1)
    has = np.isfinite(cost_else[np.arange(len(rows)), alt])
    best[rows[has]] = alt[has]
    return rows[~has]


def fix_within_capacity(D: _Dense, need_of: Callable[[], np.ndarray], loss_of: Callable[[int, np.ndarray], float],
                        move_off: Callable[[int, np.ndarray], None]) -> np.ndarray:
    """The loop of :func:`_fix_within_capacity` over its steps: ``need_of()`` the instances the rows
    need per deployment, ``loss_of(d, dropped)`` and ``move_off(d, dropped)`` (see :func:`_move_loss`
    and :func:`_move_off`). Returns the deployments dropped."""
    dropped = np.zeros(len(D.k), dtype=bool)
    for _ in range(len(D.k)):
        candidates = _over_full(D, need_of())
        if candidates is None or not len(candidates):
            break
        losses = [loss_of(int(d), dropped) for d in candidates]
        d = int(candidates[int(np.argmin(losses))])
        dropped[d] = True
        move_off(d, dropped)
    return dropped


def _fix_within_capacity(D: _Dense, dual: DualBound) -> tuple[np.ndarray, np.ndarray]:
    """Each row's option to fix it to, such that the whole instances the fixed rows need fit the
    pools: the least priced option, except on deployments dropped because their pool could not
    hold every deployment the prices chose (the Lagrangian sees capacity as divisible; a
    deployment with any work needs a whole instance). While a pool is over-full, the deployment
    there whose rows lose least by moving is dropped and its rows take their cheapest option on a
    deployment not dropped. Rows with no such option are returned to be freed. Without this,
    a fixed set that cannot fit makes every completion infeasible and the freeing loop balloon."""
    best = dual.best[D.rows].copy()
    must_free: list[np.ndarray] = []
    fix_within_capacity(D, lambda: _instances_needed(D, best), lambda d, dropped: _move_loss(D, best, d, dropped),
                        lambda d, dropped: must_free.append(_move_off(D, best, d, dropped)))
    free = np.unique(np.concatenate(must_free)) if must_free else np.zeros(0, dtype=np.int64)
    return best, free


def _pools_over(D: _Dense, need: np.ndarray) -> bool:
    """Whether the whole instances ``need`` exceed a pool's devices or a fleet deployment's instances."""
    return (any(len(ds) and int((D.k[ds] * need[ds]).sum()) > cnt for cnt, ds in D.pools)
            or any(int(need[m].sum()) > int(D.max_inst[m[0]]) for m in D.groups))


def _instances_within_pools(D: _Dense, best: np.ndarray) -> np.ndarray:
    """An integer instance vector that fits the pools, in proportion to the fractional instances
    the rows' choices ``best`` need: a pool whose deployments need more devices than it has
    shares them out in proportion (largest remainders); a pool with devices to spare gives each
    deployment what it needs and the spare in proportion too (work moved off a full pool lands
    there)."""
    n_d, n_l = len(D.k), len(D.levels)
    run = D.run.reshape(-1)[np.arange(len(best)) * n_d + best]
    load = np.bincount(best * n_l + D.lev, weights=run * D.wt, minlength=n_d * n_l).reshape(n_d, n_l)
    frac = np.max(np.cumsum(load, axis=1) / (D.lanes[:, None] * D.levels[None, :]), axis=1)
    n = np.zeros(n_d, dtype=np.int64)
    for cnt, ds in D.pools:
        if not len(ds):
            continue
        k = D.k[ds].astype(float)
        want = np.minimum(frac[ds], D.max_inst[ds])
        used = float((k * want).sum())
        share = want * (cnt / used) if used > 0 else np.zeros(len(ds))
        share = np.minimum(share, D.max_inst[ds])
        take = np.floor(share + 1e-9).astype(np.int64)
        left = cnt - int((D.k[ds] * take).sum())
        for i in np.argsort(-(share - take)):
            if share[i] > take[i] and D.k[ds[i]] <= left and take[i] < D.max_inst[ds[i]]:
                take[i] += 1
                left -= int(D.k[ds[i]])
        n[ds] = take
    for m in D.groups:  # the batch sizes of a fleet deployment share its instances
        while int(n[m].sum()) > int(D.max_inst[m[0]]):
            n[m[int(np.argmax(n[m]))]] -= 1
    return n


def fill_start(D: _Dense, lam: np.ndarray, mu: float, reserve: np.ndarray | None = None,
               n_fixed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What :func:`_fill_within`'s greedy starts from: each row's priced costs (inf: not an
    option), its options from the least priced, its regret per second (the greedy's order, largest
    first) and the room (lane-seconds per deployment by each deadline level, ``reserve`` kept free
    by the last)."""
    n_s, n_d = D.cost.shape
    S = _suffix(lam)
    rc = D.cost + D.run * S[:, D.lev].T
    if D.w is not None and mu > 0:
        rc = rc - np.multiply.outer(D.w, mu * D.acc)
    rc = np.where(D.ok, rc, np.inf)
    order_opt = np.argsort(rc, axis=1)
    first = order_opt[:, 0]
    need = _instances_needed(D, first)
    tight = np.zeros(n_d, dtype=bool)
    if n_fixed is None:
        for cnt, ds in D.pools:
            tight[ds] = int((D.k[ds] * need[ds]).sum()) > cnt
        n = _instances_within_pools(D, first)
    else:
        n = n_fixed
        tight = need > n
    least = rc[np.arange(n_s), first]
    # per second of the scarce capacity it takes: the greedy order of a knapsack
    regret = (np.min(np.where(tight[None, :], np.inf, rc), axis=1) - least) / np.maximum(D.run[np.arange(n_s), first], 1e-9)
    room = (n * D.lanes)[:, None] * D.levels[None, :].astype(float)  # lane-seconds by each level
    if reserve is not None:
        room[:, -1] = np.maximum(room[:, -1] - reserve, 0.0)
    return rc, order_opt, regret, room


def _fill_within(D: _Dense, lam: np.ndarray, mu: float, reserve: np.ndarray | None = None,
                 n_fixed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's option within the lane-seconds of whole instances that fit the pools (by every
    deadline level). The instances: in proportion to what the rows' least priced options need
    (:func:`_instances_within_pools`), or ``n_fixed``. The rows, in order of regret per second (the least priced
    cost off the *tight* deployments, those of the pools that cannot hold every row's least
    priced choice, less the least, over the runtime of the least; largest first, as a knapsack's
    greedy: a row that only the tight pools serve comes first), take their least priced option
    with room. ``reserve``: lane-seconds per deployment kept free by the last level (the horizon),
    where a fill to the brim left whole queries that packing could not place on a lane. Returns
    each row's choice, the rows no option had room for (their choice is then the least priced
    one, and they are to be freed), and the room left (lane-seconds per deployment and level)."""
    rc, order_opt, regret, room = fill_start(D, lam, mu, reserve, n_fixed)
    n_s, n_d = rc.shape
    # room[d, l] is what work due by T_l may still use; a row due at level l uses it at l and above
    choice = order_opt[:, 0].copy()
    placed = np.zeros(n_s, dtype=bool)
    order = np.argsort(-np.where(np.isfinite(regret), regret, np.inf), kind="stable")
    # the greedy is sequential (each row sees the room the rows before it left): Python floats and
    # lists, not numpy scalars (100,000 rows: 0.3 s, was 3 s), the same arithmetic in the same order
    # most rows take one of their first few options: only those go to lists (a row that gets past
    # them reads its own row's arrays)
    n_opt = np.isfinite(rc).sum(axis=1)[order].tolist()
    k_first = min(n_d, FILL_FIRST_OPTIONS)
    opt_rows = order_opt[order]
    opts = opt_rows[:, :k_first].tolist()
    runs = np.take_along_axis(D.run[order], opt_rows[:, :k_first], axis=1).tolist()
    levs = D.lev[order].tolist()
    rooms = room.tolist()
    chosen = choice[order]
    ok_r = placed[order]
    n_l = room.shape[1]
    for i in range(n_s):
        lr = levs[i]
        run_i, opt_i = runs[i], opts[i]
        for j in range(n_opt[i]):
            if j == k_first and len(opt_i) == k_first:  # past the first options: the row's own arrays
                opt_i = opt_rows[i].tolist()
                run_i = D.run[order[i]][opt_rows[i]].tolist()
            d, t = opt_i[j], run_i[j]
            room_d = rooms[d]
            if (room_d[lr] if lr == n_l - 1 else min(room_d[lr:])) >= t:
                for lv in range(lr, n_l):
                    room_d[lv] -= t
                chosen[i] = d
                ok_r[i] = True
                break
    choice[order] = chosen
    placed[order] = ok_r
    return choice, np.flatnonzero(~placed), np.array(rooms, dtype=float).reshape(room.shape)


def _fill_meeting_floor(D: _Dense, lam: np.ndarray, mu: float, reserve: np.ndarray | None = None,
                        n_fixed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_fill_within` at the prices, with the accuracy's price raised (by a quarter at a time,
    then bisected between the last that fell short and the first that met it) until the fill
    meets the mean-accuracy floor; of the fills that meet it, the one of least cost (the last
    tried where none does)."""
    def acc_ok(choice: np.ndarray) -> bool:
        return D.w is None or float(np.dot(D.w, D.acc[choice])) >= D.acc_rhs

    def cost(choice: np.ndarray) -> float:
        return float(D.cost.reshape(-1)[np.arange(len(choice)) * len(D.k) + choice].sum())

    filled, unplaced, room = _fill_within(D, lam, mu, reserve, n_fixed)
    if acc_ok(filled) or D.w is None:
        return filled, unplaced
    lo, hi = mu, None
    if mu <= 0:
        mu = float(np.median(np.abs(D.cost[np.isfinite(D.cost)]))) / max(float(np.median(D.w)), 1e-12) / 100
    for _ in range(FILL_ACCURACY_STEPS):
        mu *= 1.25
        filled, unplaced, room = _fill_within(D, lam, mu, reserve, n_fixed)
        if acc_ok(filled):
            hi = mu
            break
        lo = mu
    if hi is None:
        return filled, unplaced
    _downgrade(D, filled, room)
    best = (cost(filled), filled, unplaced)
    for _ in range(FILL_BISECTIONS):
        mid = (lo + hi) / 2
        f, u, rm = _fill_within(D, lam, mid, reserve, n_fixed)
        if acc_ok(f):
            hi = mid
            _downgrade(D, f, rm)
            if cost(f) < best[0]:
                best = (cost(f), f, u)
        else:
            lo = mid
    return best[1], best[2]


def _downgrade(D: _Dense, choice: np.ndarray, room: np.ndarray) -> None:
    """Spend a fill's accuracy above the floor (in place): rows move to a cheaper option with room
    that is less accurate (or as accurate), those saving most per unit of accuracy first, while
    the batch's accuracy stays at or above the floor."""
    n_s, n_d = D.cost.shape
    idx = np.arange(n_s)
    here = D.cost[idx, choice]
    acc_here = D.acc[choice]
    w = D.w if D.w is not None else np.zeros(n_s)
    surplus = float(np.dot(w, acc_here)) - D.acc_rhs if D.w is not None else math.inf
    has_room = room[:, -1] > 0
    cand = D.ok & (D.cost < here[:, None]) & (D.acc[None, :] <= acc_here[:, None] + 1e-12) & has_room[None, :]
    if not cand.any() or surplus < 0:
        return
    loss = w[:, None] * (acc_here[:, None] - D.acc[None, :])
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(cand, (here[:, None] - D.cost) / np.maximum(loss, 1e-300), -np.inf)
    to = ratio.argmax(axis=1)
    rows = np.flatnonzero(np.isfinite(ratio[idx, to]))
    rows = rows[np.argsort(-ratio[rows, to[rows]], kind="stable")]
    # sequential, in Python floats and lists as in :func:`_fill_within` (the same arithmetic)
    n_l = room.shape[1]
    rooms = room.tolist()
    d_to, d_at = to[rows], choice[rows]
    moved = np.zeros(len(rows), dtype=bool)
    for i, (d, d0, lr, lost, t, back) in enumerate(zip(d_to.tolist(), d_at.tolist(), D.lev[rows].tolist(),
                                                         loss[rows, d_to].tolist(), D.run[rows, d_to].tolist(),
                                                         D.run[rows, d_at].tolist())):
        room_d = rooms[d]
        if lost > surplus or (room_d[lr] if lr == n_l - 1 else min(room_d[lr:])) < t:
            continue
        room_d0 = rooms[d0]
        for lv in range(lr, n_l):
            room_d[lv] -= t
            room_d0[lv] += back
        moved[i] = True
        surplus -= lost
    choice[rows[moved]] = d_to[moved]
    room[:] = rooms


def _free_for_accuracy(D: _Dense, best: np.ndarray, is_fixed: np.ndarray) -> np.ndarray:
    """The fixed rows to free besides, so that the free rows can reach the accuracy floor: where
    the fixed rows' accuracy plus the most the free rows can reach falls short, the fixed rows
    whose upgrade to a more accurate option costs least per unit of accuracy, until their upgrades
    cover twice the shortfall. Empty without a floor or a shortfall."""
    if D.w is None:
        return np.zeros(0, dtype=np.int64)
    acc_now = D.acc[best]
    best_acc = np.full(len(best), -np.inf)
    for d in range(len(D.acc)):  # a column at a time: no (rows × deployments) temporary
        np.maximum(best_acc, np.where(D.ok[:, d], D.acc[d], -np.inf), out=best_acc)
    reach = float(np.sum(D.w * np.where(is_fixed, acc_now, best_acc)))
    short = D.acc_rhs - reach
    if short <= 1e-9 * max(D.acc_rhs, 1.0):
        return np.zeros(0, dtype=np.int64)
    rows = np.flatnonzero(is_fixed & (best_acc > acc_now + 1e-12))
    n_d = len(D.acc)
    here = D.cost.reshape(-1)[rows * n_d + best[rows]]
    up = D.ok[rows] & (D.acc[None, :] > acc_now[rows, None] + 1e-12)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_acc = np.where(up, (D.cost[rows] - here[:, None]) / (D.w[rows, None] * (D.acc[None, :] - acc_now[rows, None])),
                           np.inf)
    pick = per_acc.argmin(axis=1)
    gain = D.w[rows] * (D.acc[pick] - acc_now[rows])
    order = np.argsort(per_acc[np.arange(len(rows)), pick], kind="stable")
    k = int(np.searchsorted(np.cumsum(gain[order]), 2 * short)) + 1
    return rows[order[:k]]


def fix_and_solve(
    problem: Problem,
    dual: DualBound,
    D: _Dense,
    backend: Solver,
    limits: Limits,
    *,
    free_size: int | None = None,
    sub_time_limit_s: float = 60.0,
    max_tries: int | None = None,
    pack_reserve: np.ndarray | None = None,
    fill_n: np.ndarray | None = None,
    progress: Callable[[str], None] | None = None,
) -> FixPlan | None:
    """Fix the clearly decided queries at the prices' choice; solve the nearly tied ones exactly.

    Queries are freed in order of the relative price change that would flip their choice
    (:attr:`DualBound.flip`): ``free_size`` of them (default: all of a batch of up to 2,000, else one
    per thousand queries, 300 to 2,000), and those the pools' whole instances leave no option; if
    the MILP finds no feasible completion, four times as many. Each MILP gets at most
    ``sub_time_limit_s`` (and what is left of the call's limits, whose gap and threads it gets);
    its best completion is kept. With ``max_tries``, None after that many MILPs without one.
    Where the pools cannot hold the prices' choices, the fixed queries are those of a fill of
    whole instances that fit (:func:`_fill_meeting_floor`, keeping ``pack_reserve`` lane-seconds
    per deployment free; they enter the MILP as work of its own); with ``fill_n``, always, into
    those instances."""
    say = progress or (lambda s: None)
    n_s = len(D.rows)
    filled, kept_free, reserve = False, np.zeros(0, dtype=np.int64), np.zeros(0)
    with phase(f"decompose: fixing {n_s:,} queries at the prices' choice within the pools"):
        best, must_free = _fix_within_capacity(D, dual)
        if fill_n is not None or _pools_over(D, _instances_needed(D, best)):  # capacity binds: fill whole instances
            best, unplaced = _fill_meeting_floor(D, dual.lam, dual.mu, pack_reserve, fill_n)
            must_free = np.union1d(must_free, unplaced)
            filled = True
            if pack_reserve is not None:
                kept_free, reserve = np.flatnonzero(pack_reserve > 0), pack_reserve
    run_flat = D.run.reshape(-1)
    base = np.arange(n_s) * problem.n_deployments  # flat index of each row's first entry
    flip = dual.flip[D.rows]
    usual_size = int(np.clip(n_s // 1000, 300, 2000))
    whole_first = free_size is None and n_s <= SOLVE_WHOLE_UP_TO
    if free_size is None:
        # a batch of at most 2,000 queries is solved whole first (its MILP is small, and its own bound
        # is the aggregate model's, tighter than the Lagrangian's where instances are few and lumpy)
        free_size = n_s if whole_first else usual_size
    size = min(n_s, free_size)
    w = problem.queries["weight"].to_numpy(dtype=float)[D.rows]
    acc = problem.deployments["accuracy"].to_numpy(dtype=float)
    dl = problem.queries["deadline_eff_s"].to_numpy()[D.rows]
    rel = problem.release_s[D.rows]
    tries = 0
    while True:
        tries += 1
        free = np.sort(np.argpartition(flip, size - 1)[:size]) if size < n_s else np.arange(n_s)
        if len(must_free) and size < n_s:
            free = np.union1d(free, must_free)
        is_fixed = np.ones(n_s, dtype=bool)
        is_fixed[free] = False
        if size < n_s:
            more = _free_for_accuracy(D, best, is_fixed)
            if len(more):
                free = np.union1d(free, more)
                is_fixed[more] = False
        fixed = np.flatnonzero(is_fixed)
        fd = best[fixed]
        fixed_work = (fd, dl[fixed], run_flat[base[fixed] + fd], rel[fixed])
        if len(kept_free):  # the fill's free lane-seconds: work due by the horizon that no query does
            fixed_work = (np.r_[fd, kept_free], np.r_[dl[fixed], np.full(len(kept_free), problem.horizon_s)],
                          np.r_[fixed_work[2], reserve[kept_free]], np.r_[rel[fixed], np.zeros(len(kept_free))])
        fixed_acc = float((w[fixed] * acc[fd]).sum())
        with phase(f"decompose: model of {len(free):,} free queries beside {len(fixed):,} fixed"):
            sub = sub_problem(problem, D.rows[free])
            model = build_matrix(sub, "aggregate", fixed_work=fixed_work, fixed_accuracy=fixed_acc,
                                 weight_total=float(w.sum()))
        # the time limit is enforced from outside too, as for every backend call; the whole batch gets
        # a quarter of the cap, so that a slow one leaves time for fix-and-solve
        cap_s = sub_time_limit_s / 4 if whole_first and size >= n_s else sub_time_limit_s
        with phase("decompose: the whole batch, exactly" if size >= n_s
                   else f"decompose: sub-MILP on the {len(free):,} nearly tied queries"):
            if size >= n_s:  # the whole batch: valid cuts and the LP first (methods/strong.py)
                res = solve_strong(model, sub, backend, limits, progress, cap_s=cap_s)
            else:
                res = backend_solve(backend, model, limits, cap_s)
        if res.x is not None:
            break
        if limits.expired():
            return None
        if whole_first:  # the whole batch's MILP gave nothing (its time cap, a backend's failure): fix and solve
            whole_first = False
            size = min(n_s, usual_size)
            say(f"lagrangian: the whole batch's MILP gave no plan ({res.status}); fixing the clearly decided queries")
            continue
        if size >= n_s or (max_tries is not None and tries >= max_tries):
            return None
        say(f"lagrangian: {size} free queries left no feasible plan ({res.status}); freeing more")
        size = min(n_s, size * 4)
    dep_of_q = np.full(problem.n_queries, -1, dtype=np.int64)
    dep_of_q[D.rows[fixed]] = fd
    pick = np.flatnonzero(res.x[: model.n_x] > 0.5)
    sub_c = model.x_cand[pick]
    dep_of_q[D.rows[free[sub.cand["q"].to_numpy()[sub_c]]]] = sub.cand["d"].to_numpy()[sub_c]
    n_inst = np.zeros(problem.n_deployments, dtype=np.int64)
    np.add.at(n_inst, model.u_dep, np.round(model.u_values(res.x)).astype(np.int64))
    obj = float(D.cost.reshape(-1)[base[fixed] + fd].sum()) + float(res.objective)
    # with every query free the MILP is the whole aggregate model: its bound bounds the problem too
    # (not where lane-seconds were kept free: that model is a restriction)
    whole_bound = float(res.bound) if len(free) == n_s and not len(kept_free) and math.isfinite(res.bound) else -math.inf
    return FixPlan(dep_of_q, n_inst, obj, len(free), message=f"{len(free)} queries solved by {backend.name} ({res.status})",
                   bound=whole_bound, filled=filled)


class DecomposeMethod(Method):
    """The Lagrangian bound, then fix-and-solve on the nearly tied queries, freeing more while
    the packed plan is further than the gap from the bound (see the module docstring)."""

    name = "decompose"

    def solve(self, problem: Problem, backend: Solver, limits: Limits, progress: Progress) -> Choice:
        progress(f"model: decomposition (priced coupling rows, then {backend.name} on the nearly tied queries)")
        shown = current_phase()  # plan()'s row for the method: the bound, then the best plan and its gap
        t0 = time.perf_counter()
        left = limits.remaining_s()
        dual, dense = lagrangian_bound(problem, time_limit_s=None if left is None else left / 2, progress=progress)
        if dual.infeasible:
            return Choice.none(self.name, backend.name, Status.INFEASIBLE, Termination.INFEASIBLE, dual.bound,
                               BoundSource.LAGRANGIAN, solver_s=time.perf_counter() - t0)
        progress(f"lagrangian: bound {dual.bound:.8g} after {dual.iterations} iterations in {dual.time_s:.2f} s")
        shown.show(f"bound {dual.bound:.8g}", force=True)
        best = self._fix_and_pack(problem, backend, limits, dual, dense, progress)
        solver_s = time.perf_counter() - t0
        if best is None:
            stop = Termination.TIME_LIMIT if limits.expired() else Termination.NO_SOLUTION
            return Choice.none(self.name, backend.name, Status.NO_SOLUTION, stop, dual.bound, BoundSource.LAGRANGIAN,
                               solver_s=solver_s,
                               message="no plan found: the nearly tied queries left no feasible completion")
        fp, tl = best
        progress(f"{backend.name}: {fp.message}")
        lagr = dual.bound
        # whole instances matter where they cost their idle draw or the pools cannot hold the prices' choices
        if (np.any(dense.inst_cost > 0) or fp.filled) and not tl.unplaced:
            kept = [(plan_objective(problem, tl), fp, tl)]

            def try_plan(at_n: DualBound, n: np.ndarray) -> float:
                """Fix-and-solve from the choices at the prices of the instance vector n; the best plan kept."""
                # its MILPs get a few seconds: with instances that cost their idle draw, branch and bound
                # spends minutes proving what its first plans already are (measured: 32 s each at 100,000 queries)
                got = fix_and_solve(problem, at_n, dense, backend, limits, max_tries=2, fill_n=n,
                                    sub_time_limit_s=TRY_PLAN_MILP_S, progress=progress)
                if got is not None:
                    with phase(f"decompose: packing {problem.n_queries:,} queries onto {int(got.n_inst.sum()):,} instances"):
                        tl_n = pack(problem, got.dep_of_q, got.n_inst)
                    if not tl_n.unplaced and plan_objective(problem, tl_n) < kept[0][0]:
                        kept[0] = (plan_objective(problem, tl_n), got, tl_n)
                return kept[0][0]

            if relative_gap(kept[0][0], max(lagr, fp.bound)) > limits.mip_rel_gap:
                lagr = instance_search(problem, dense, dual, kept[0][0], limits, try_plan, progress,
                                       plan_n=fp.n_inst)
            _, fp, tl = kept[0]
        # the better of the Lagrangian bound and, where the MILP held every query, its own bound
        bound, source = (fp.bound, BoundSource.MIP) if fp.bound > lagr else (lagr, BoundSource.LAGRANGIAN)
        return Choice(self.name, backend.name, Status.FEASIBLE, Termination.FEASIBLE, bound,
                      source, dep_of_q=tl.dep, n_inst=fp.n_inst, lane_of_q=tl.lane,
                      objective=fp.objective, solver_s=solver_s, message=fp.message, unplaced=tl.unplaced)

    @staticmethod
    def _fix_and_pack(problem: Problem, backend: Solver, limits: Limits, dual: DualBound, dense: _Dense,
                      progress: Progress) -> tuple[FixPlan, Timeline] | None:
        """Fix-and-solve, packed; without deadlines, once more with four times the free queries if
        the packed plan is further than the gap from the bound (with deadlines the gap left is
        mostly the aggregate relaxation's, which that cannot close). The best packed plan."""
        best: tuple[tuple[int, float], FixPlan, Timeline] | None = None
        size = None
        shown = current_phase()
        reserve, attempts, reserve_rounds = np.zeros(problem.n_deployments), 2 if len(dual.levels) == 1 else 1, 0
        while attempts > 0:
            attempts -= 1
            t_fix = time.perf_counter()
            got = fix_and_solve(problem, dual, dense, backend, limits, free_size=size,
                                pack_reserve=reserve if reserve.any() else None, progress=progress)
            slow = time.perf_counter() - t_fix > 5.0  # a slow MILP: a four times larger one would be slower
            if got is not None:
                # plans are compared once packed: a better aggregate objective can pack worse (repair
                # moves late queries, and with idle power counted every instance has its price)
                with phase(f"decompose: packing {problem.n_queries:,} queries onto {int(got.n_inst.sum()):,} instances"):
                    tl = pack(problem, got.dep_of_q, got.n_inst)
                    key = (len(tl.unplaced), plan_objective(problem, tl) if not tl.unplaced else math.inf)
                if best is None or key < best[0]:
                    best = (key, got, tl)
                if shown.heard:
                    plan_s = (f"best plan {best[0][1]:.8g}, gap {relative_gap(best[0][1], dual.bound):.4%}"
                              if not best[0][0] else f"best plan leaves {best[0][0]:,} queries unplaced")
                    shown.show(f"bound {dual.bound:.8g}, {plan_s}", force=True)
                if tl.unplaced and got.filled and reserve_rounds < FILL_RESERVE_ROUNDS and not limits.expired():
                    # a fill to the brim of capacity-bound pools left whole queries out: once more, keeping
                    # twice their runtime free on their deployments
                    lost = np.asarray(tl.unplaced)
                    lost = lost[got.dep_of_q[lost] >= 0]
                    d_lost = got.dep_of_q[lost]
                    reserve += 2 * np.bincount(d_lost, weights=problem.runtime_s[lost, d_lost], minlength=len(reserve))
                    progress(f"decompose: {len(lost)} queries found no lane; filling the pools again with "
                             f"{reserve.sum():,.0f} lane-seconds kept free")
                    reserve_rounds, attempts = reserve_rounds + 1, attempts + 1
                    continue
            if (got is None or slow or relative_gap(got.objective, dual.bound) <= limits.mip_rel_gap
                    or got.free_queries >= len(dense.rows) or limits.expired()):
                break
            progress(f"{backend.name}: {got.message}, gap {relative_gap(got.objective, dual.bound):.2e}; "
                     "freeing more queries")
            size = 4 * got.free_queries
        return None if best is None else (best[1], best[2])
