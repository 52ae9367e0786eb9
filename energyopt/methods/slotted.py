"""Plans that move work in time: time slots with prices (carbon, cost) and power caps per pool.

The problem (:class:`~energyopt.problem.Problem` with :class:`~energyopt.timeslots.SlotPrices`)
has, besides each query's options (deployments), S slots ``[b_k, b_{k+1})``: a joule charged to a
query of pool p in slot k costs ``a[p, k]`` (kgCO2e, currency, or 1 per J); instances are on for
the whole horizon (their idle draw, with ``--idle``, priced in every slot); a pool with a power
cap may draw at most ``cap_w × (b_{k+1} − b_k)`` joules in each slot (its queries' charged energy
and, with ``--idle``, its instances' idle draw), and so may a site's pools together: each cap is a
*cap row* over the pools (:func:`~energyopt.caps.cap_rows`), a pool's own cap the row of that pool
alone, a site's the row of its pools; the price π of a row is paid by every joule of its pools.

**Relaxation and bound.** One variable per (query, deployment, slot): the share of the query's
run that falls in the slot. Rows: each query once; per (deployment, slot) the work in the slot is at
most instances × lanes × slot length; per capped (cap row, slot) the energy is at most the cap's.
A query may use every slot that meets ``[release, deadline]`` — any plan, even one whose queries
span a slot edge, is a point of it (a spanning query is the mix of its slots in proportion to
its overlap with each, at the same cost: energy is drawn uniformly over ``[start, end)``), so its
optimum bounds every plan. Moving the capacity and cap rows into the objective with prices
``λ[d, k]`` (per second) and ``π[c, k]`` (per J, per cap row c) leaves: each query takes the (deployment, slot)
of least priced cost ``e·(a[p, k] + Σ_{c ∋ p} π[c, k]) + r·λ[d, k]``, and each pool switches on the
instances worth most at those prices (a bounded knapsack, as in :mod:`.decompose`). Its value
L(λ, π) is a lower bound for any prices; a proximal bundle method maximises it over the prices
of the rows that ever run over (the others stay 0, which keeps L a bound). For a (query,
deployment) pair the least priced slot is the lower envelope of S lines in the ratio r/e:
queries are grouped once per deployment by slot window, and each evaluation builds the
envelopes of every window of a deployment at once (:func:`window_envelopes`) and looks the ratios
up in them — no (queries × deployments × slots) array is made; the deployments the prices leave
alone are looked up once (:func:`_choose_least`).

**Whole instances.** The knapsack in L is integer, but maximising L over the prices gives the
relaxation in which the instance vector is a mix of integer ones (1.3 instances of one LLM and
0.7 of another on two H200s): that left gaps of 2–8 %. Every evaluation of L on every query at
(λ, π) is also a cut ``V(n) ≥ α − gain·n`` on the bound V(n) of the plans with instance vector n
(α: L's query part less the priced caps; gain: what an instance of each deployment is worth at
those prices). The *instance master* (:func:`_instance_master`, a MILP with one integer per
deployment: pools' devices, fleet deployments' instances, an instance for each query's options)
finds the n of least ``max`` over the cuts; its value bounds every plan. The bundle with n fixed
(on the sample, the last time on every query; it stops once L at n rules n out) adds cuts at n,
and a plan with n is tried where L at n is below the best plan, until the master's value is
within the gap of the best plan (Benders over n; :func:`_instance_search`). With n fixed, the
deployments n leaves without an instance are priced out (:func:`_close_prices`: their λ raised until
no row takes them, L at n is then L without their options; as an ordinary evaluation of L it is
still a cut for every n): on the 1,000,000-query carbon day, L at the best vector left 4,600
lane-seconds on deployments with no instance, and pricing them out raised it by 0.04%.

**Plan.** At the prices (a little lowered, so that queries the prices leave tied between a
priced cell and an unpriced one take the priced one) every query takes its least priced (deployment, slot); each
(deployment, slot) keeps the queries whose second choice is dearest (largest regret) up to its
lane-seconds, each capped (cap row, slot) up to its joules; the others are priced again among the
slots not full, until every query has a place. In a pool without a cap, each deployment's queries
free to take any slot are then dealt out again over the cells they fill, most joules per second
of run into the cleanest (:func:`_sort_by_intensity`): at the prices whole bands of them are tied,
and the regret kept the wrong ones in the clean cells (0.06% of the 1,000,000-query carbon day).
A query is placed *inside one slot*: it starts at
or after the slot's start (and its release) and ends by the slot's end (and its deadline), so a
plan never spans a slot edge and a query longer than the slots has no slotted option. Each
(deployment, slot) is packed onto its lanes (release, then deadline, longest first; each query
on the lane free first); a query that does not fit is moved to the cheapest slot and deployment
with room on a lane, within its window and the caps.

**Accuracy floor.** With ``min_mean_accuracy`` the row Σ w·acc ≥ floor·Σ w (token weights, over
the served queries) is priced like the others, as :mod:`.decompose` prices it: μ ≥ 0 adds
``−μ·w·acc[d]`` to each query's priced cost (the same in every slot, so the envelopes stay; the
deployments the prices leave alone are kept folded per accuracy) and ``μ·floor·Σ w`` to L, and is
one more price of the bundle (and of the cuts on the instances). The plan at μ falls short of the
floor or overshoots it (whole groups of queries flip at once); μ is raised until the packed plan
meets it (one more instance of a deployment where no μ does), bisected back, and the accuracy
above the floor is spent by local moves to cheaper cells with a free lane end (:func:`_improve`).

The gap is between the best plan's objective (:meth:`~energyopt.timeslots.SlotPrices.plan_value`)
and the larger of the best L and the master's value, so it is proven.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..accounting import latest_end_s, relative_gap
from ..caps import slot_name
from ..problem import Problem
from ..schema import BoundSource, Status, Termination
from ..solvers import Solver
from . import Choice, Limits, Method, Progress
from .decompose import instances_at_prices
from .instances import instance_master, option_patterns

__all__ = ["SlottedMethod", "SlotBound", "slot_bound", "lower_envelope", "window_envelopes"]

#: queries priced at a time when slots are priced directly (the plan's re-pricing): a block's
#: (queries × deployments × slots) array stays small
DIRECT_BLOCK = 4096
#: rows of the sample the prices are first found on, per stage (a batch more than twice as large)
SAMPLES = (20_000, 100_000)
#: bundle iterations at most per sample stage (its prices are a start for the next stage)
SAMPLE_ITERATIONS = 60
#: lanes of one (deployment, slot) from which queries are packed a round at a time
ROUND_MIN_LANES = 16
#: rounds of the instance master (each a bundle with the instances fixed, and maybe a plan)
MASTER_ROUNDS = 20
#: bundle iterations at most per master round on the sample (it stops once L at n rules n out)
MASTER_ITERATIONS = 60
#: the master names one instance vector at most this many times (each a bundle from its last prices:
#: on the sample, the last time on every query)
MASTER_VISITS = 3
#: bundle iterations at most on every query at an instance vector (each a pass over every option;
#: from a trust region of 0.005 of the price scales: the sample's prices are near), and how many
#: in a row that do not raise L stop it (with the deployments without instances priced out, the
#: 1,000,000-query carbon day's bundle at its best vector raised L in none of 11: 4 are enough)
FULL_ITERATIONS = 20
FULL_STALL = 4
#: the sample's L at n must exceed the value that rules n out by this much (relative) before its
#: bundle stops (the sample's L is an estimate of every query's)
SAMPLE_MARGIN = 2e-3
#: bundle iterations on every query in the bound, after the samples (the instance search follows)
BOUND_FULL_ITERATIONS = 10
#: ... and they stop after this many in a row that do not raise it (the instance search's cuts do)
BOUND_FULL_STALL = 3
#: the instance search stops after this share of the time spent before it (the bound and the first
#: plans), plus MASTER_MIN_S [s] (or half of what the time limit leaves, if less)
MASTER_TIME_SHARE = 2.5
MASTER_MIN_S = 2.0
#: the plan fills at this share of the prices (:func:`SlottedMethod.solve`'s ``try_plan``)
FILL_PRICE_SHARE = 0.999
#: the rows the fill leaves without a cell go to the repair (each priced over every cell with
#: room) where there are at most this many; else they stay unplaced (a plan without them fails)
REPAIR_LEFT_MAX = 20_000
#: rounds of local moves on a packed plan (:func:`_improve`), each over the cells with room
IMPROVE_ROUNDS = 3
#: with an accuracy floor, the plan's accuracy price is doubled at most this many times until the
#: packed plan meets the floor, then one more instance is added at most this many times, then the
#: price is bisected this many times (the cheapest plan kept)
FLOOR_STEPS = 24
FLOOR_ADD = 4
FLOOR_BISECTIONS = 8
#: the bundle's trust region shrinks by this factor at a null step on the samples of the bound
#: where a pool has a power cap (0.5 elsewhere). Measured on the day-long batch, 1,000,000
#: queries: with the H200 cap, halved it stalled far below the optimum (bound 0.437 kgCO2e, and
#: 0.426 against the LP's 0.4455 on a 3,000-query sample), kept it reached 0.469 (and the LP's
#: value); without a cap, kept it ended lower (0.4315 against 0.4369)
CAPPED_SAMPLE_SHRINK = 1.0


def lower_envelope(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The lower envelope over ρ ≥ 0 of the lines ``a[i] + ρ·b[i]`` (``a`` may hold inf: no line):
    ``(breaks, lines)`` such that line ``lines[j]`` is least on ``[breaks[j-1], breaks[j])`` (the
    first from 0, the last to infinity); None where every ``a`` is inf."""
    first, multi = window_envelopes(a, b, np.zeros(1, dtype=np.int64), np.array([len(a) - 1]))
    if multi:
        return multi[0][1], multi[0][2]
    return None if first[0] < 0 else (np.zeros(0), first[:1])


def window_envelopes(a: np.ndarray, b: np.ndarray, lo: np.ndarray,
                     hi: np.ndarray) -> tuple[np.ndarray, list[tuple[int, np.ndarray, np.ndarray]]]:
    """:func:`lower_envelope` of the lines ``k`` in each window ``lo[w] ≤ k ≤ hi[w]``, all windows
    at once: the lines are sorted once by (slope, intercept); in each window a line is kept only if
    its intercept is below every flatter line's (a running minimum over the sorted lines, one array
    operation for all windows); the few kept form the envelope (a stack, flattest last). Returns
    per window the line least at ρ = 0 (-1: no line) and, for the windows whose envelope has more
    than one line, ``(w, breaks, lines)``."""
    S = len(a)
    order = np.lexsort((a, b))
    ao, bo = a[order], b[order]
    pos = np.arange(S)[order]
    inside = (pos[None, :] >= np.asarray(lo)[:, None]) & (pos[None, :] <= np.asarray(hi)[:, None])
    icpt = np.where(inside, ao[None, :], np.inf)
    prev = np.minimum.accumulate(np.concatenate([np.full((len(icpt), 1), np.inf), icpt[:, :-1]], axis=1), axis=1)
    keep = icpt < prev  # finite, and below every flatter (or equally steep, earlier) line of the window
    count = keep.sum(axis=1)
    last = S - 1 - np.argmax(keep[:, ::-1], axis=1)  # the steepest kept: least at ρ = 0
    first = np.where(count > 0, order[last], -1)
    multi = []
    for w in np.flatnonzero(count > 1).tolist():
        kept = np.flatnonzero(keep[w])
        ka, kb = ao[kept].tolist(), bo[kept].tolist()
        # from the steepest (least at ρ = 0) to the flattest: each next line overtakes at ρ = x
        st_l, st_x = [len(kept) - 1], [0.0]
        for j in range(len(kept) - 2, -1, -1):
            while True:
                t = st_l[-1]
                x = (ka[j] - ka[t]) / (kb[t] - kb[j])
                if x <= st_x[-1] and len(st_l) > 1:
                    st_l.pop()
                    st_x.pop()
                    continue
                break
            st_l.append(j)
            st_x.append(x)
        multi.append((w, np.asarray(st_x[1:]), order[kept[np.asarray(st_l)]]))
    return first, multi


class _Slots:
    """The arrays the bound and the plan read, from a problem with slots."""

    def __init__(self, problem: Problem):
        sp = problem.slots
        assert sp is not None
        self.problem = problem
        self.sp = sp
        self.b = sp.bounds_s
        self.S = sp.n_slots
        self.dt = sp.slot_s
        deps = problem.deployments
        self.n_d = problem.n_deployments
        self.pool_of = np.array([sp.pools.index(p) for p in deps["device"]], dtype=np.int64)
        self.n_p = len(sp.pools)
        self.a0 = sp.price_per_j[self.pool_of]  # [n_d, S] objective per J charged
        self.E = problem.cost  # [n_q, n_d] charged energy [J], inf where not an option
        self.R = problem.runtime_s
        self.ok = problem.ok
        self.rel = problem.release_s
        self.due = problem.queries["deadline_eff_s"].to_numpy(dtype=float)
        self.lanes = deps["lanes"].to_numpy().astype(np.int64)
        self.k = deps["devices_per_instance"].to_numpy().astype(np.int64)
        self.max_inst = deps["max_instances"].to_numpy().astype(np.int64)
        group = deps["group"].to_numpy()
        self.groups = [np.flatnonzero(group == g) for g in np.unique(group)]
        self.groups_of = {int(d): m for m in self.groups for d in m}
        counts = dict(zip(problem.pools["pool"], problem.pools["count"]))
        self.pools = [(int(counts[p]), np.flatnonzero(self.pool_of == j)) for j, p in enumerate(sp.pools)]
        self.idle = problem.idle
        self.idle_w = deps["idle_power_w"].to_numpy(dtype=float)
        self.inst_cost = np.asarray(problem.instance_cost, dtype=float)
        # the cap rows (each pool alone, then each site: caps.cap_rows); π has one row per cap row
        self.cap_label, self.cap_rows, self.cap_w = sp.cap_rows()
        self.n_c = len(self.cap_w)
        self.capped = np.flatnonzero(np.isfinite(self.cap_w))  # cap rows with a cap
        self.cap_j = self.cap_w[self.capped, None] * self.dt[None, :]  # [n_capped, S]
        #: per pool, the capped rows it is in
        self.rows_of_pool = [self.capped[self.cap_rows[self.capped, p] > 0] for p in range(self.n_p)]
        # the slots meeting each query's [release, deadline]: the bound's windows
        self.lo_b = np.clip(np.searchsorted(self.b, self.rel, side="right") - 1, 0, self.S - 1)
        #: (α, gain) of each evaluation on every query: V(n) ≥ α − gain·n for every instance vector n
        self.cuts: list[tuple[float, np.ndarray]] = []
        self.hi_b = np.clip(np.searchsorted(self.b, self.due, side="left") - 1, self.lo_b, self.S - 1)
        # the batch's token-weighted accuracy floor (a row Σ w·acc ≥ floor·Σ w over the served queries)
        self.acc = deps["accuracy"].to_numpy(dtype=float)
        self.has_acc = problem.min_mean_accuracy is not None
        self.w = problem.queries["weight"].to_numpy(dtype=float)
        served = problem.ok.any(axis=1)
        self.acc_rhs = (problem.min_mean_accuracy or 0.0) * float(self.w[served].sum())

    def prices(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """(λ, π, μ) from the bundle's vector θ: λ per (deployment, slot), π per capped (cap row,
        slot), then μ (the accuracy row's price) where the batch has an accuracy floor."""
        n_lam = self.n_d * self.S
        lam = theta[:n_lam].reshape(self.n_d, self.S)
        pi = np.zeros((self.n_c, self.S))
        pi[self.capped] = theta[n_lam:n_lam + len(self.capped) * self.S].reshape(len(self.capped), self.S)
        return lam, pi, float(theta[-1]) if self.has_acc else 0.0

    def accuracy_surplus(self, dep: np.ndarray) -> float:
        """Σ w·acc of the placed queries less the floor's (inf without a floor)."""
        if not self.has_acc:
            return math.inf
        q = np.flatnonzero(dep >= 0)
        return float(np.dot(self.w[q], self.acc[dep[q]])) - self.acc_rhs

    def pool_pi(self, pi: np.ndarray) -> np.ndarray:
        """``[n_p, S]``: the price per J of each pool's energy, the sum of its cap rows' ``pi``."""
        return self.cap_rows.T @ pi

    def fits(self, rows: np.ndarray, d: np.ndarray, k: np.ndarray) -> np.ndarray:
        """Whether each row fits inside slot ``k`` on deployment ``d`` (see :meth:`cell_allowed`)."""
        start = np.maximum(self.rel[rows], self.b[k])
        stop = np.minimum(self.due[rows], self.b[k + 1])
        return (start + self.R[rows, d] <= latest_end_s(stop)) & self.ok[rows, d]

    def cell_allowed(self, rows: np.ndarray) -> np.ndarray:
        """``[len(rows), n_d, S]``: the query fits inside the slot on the deployment, from its
        release (or the slot's start) to its deadline (or the slot's end), and the pair is an option."""
        rel = self.rel[rows][:, None]
        start = np.maximum(rel, self.b[None, :-1])  # [m, S]
        stop = np.minimum(self.due[rows][:, None], self.b[None, 1:])
        end = start[:, None, :] + self.R[rows][:, :, None]
        return (end <= latest_end_s(stop)[:, None, :]) & self.ok[rows][:, :, None]


class _View:
    """Rows (queries) standing for the batch with weight ``wt``, grouped per deployment by bound
    window for the envelope look-ups (within a window in the rows' order: a look-up needs no order)."""

    def __init__(self, T: _Slots, rows: np.ndarray, wt: float = 1.0, exact: bool = False):
        self.rows = rows
        self.wt = wt
        #: the rows are every served query (weight 1): each evaluation is a cut on the instances
        self.exact = exact
        self.per_d = []
        key_all = T.lo_b[rows] * (T.S + 1) + T.hi_b[rows]
        order = np.argsort(key_all, kind="stable")  # one sort by window for every deployment
        key_o = key_all[order]
        ok_o = T.ok[rows[order]]
        for d in range(T.n_d):
            sel = np.flatnonzero(ok_o[:, d])
            qi, key = order[sel], key_o[sel]
            e = T.E[rows[qi], d]
            r = T.R[rows[qi], d]
            with np.errstate(divide="ignore"):
                rho = np.where(e > 0, r / np.where(e > 0, e, 1.0), np.inf)
            starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else np.zeros(0, dtype=np.int64)
            ends = np.r_[starts[1:], len(key)].astype(np.int64)
            self.per_d.append((qi, e, r, rho, key[starts] // (T.S + 1), key[starts] % (T.S + 1), starts, ends))
        #: the least two over the deployments the prices leave as they are (see _choose_least)
        self.static: tuple | None = None
        #: the rows' token weights (the accuracy row's coefficients per unit of accuracy)
        self.w = T.w[rows]


@dataclass
class SlotBound:
    """The best Lagrangian bound found and the choices at its prices."""

    bound: float
    lam: np.ndarray  # [n_d, S] price of a second of work per (deployment, slot)
    pi: np.ndarray  # [n_c, S] price of a joule per (cap row, slot) (0 for rows without a cap)
    iterations: int
    time_s: float
    converged: bool
    mu: float = 0.0  # price of the accuracy row (0 without a floor)


def _choose(T: _Slots, V: _View, a: np.ndarray, lam: np.ndarray, d: int, pos: np.ndarray | None,
            inv: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """For deployment ``d`` and the rows of ``V`` that have it as an option (of those at the
    sorted positions ``pos``, or all): their places (in ``pos``, or in ``V``; ``inv`` maps a row of
    ``V`` to its place in ``pos``), the least priced slot and its priced cost
    ``e·a[d, k] + r·λ[d, k]`` (inf where every slot of the row's window has ``a`` = inf, a closed
    cell), through the lower envelopes. None where no row has an option on ``d`` or every cell is
    closed."""
    qi, e, r, rho, lo, hi, starts, ends = V.per_d[d]
    if not len(qi) or not np.isfinite(a[d]).any():
        return None
    first, multi = window_envelopes(a[d], lam[d], lo, hi)
    # a window whose envelope is one line gives all its rows that slot (-1: no line)
    ks = np.repeat(first, ends - starts)
    if pos is None:
        for w, br, ln in multi:
            s0, s1 = int(starts[w]), int(ends[w])
            ks[s0:s1] = ln[np.searchsorted(br, rho[s0:s1], side="right")]
        out = qi
    else:  # only the rows asked for (their places in the deployment's sorted order)
        assert inv is not None
        at = np.flatnonzero(inv[qi] >= 0)
        ks = ks[at]
        for w, br, ln in multi:
            i0, i1 = np.searchsorted(at, [int(starts[w]), int(ends[w])])
            if i1 > i0:
                ks[i0:i1] = ln[np.searchsorted(br, rho[at[i0:i1]], side="right")]
        out = inv[qi[at]]
        e, r = e[at], r[at]
    none = ks < 0
    ks[none] = 0
    with np.errstate(invalid="ignore"):
        v = e * a[d, ks] + r * lam[d, ks]
    v[none] = np.inf
    return out, ks, v


def _fold(T: _Slots, V: _View, a: np.ndarray, lam: np.ndarray, deps: list[int], pos: np.ndarray | None,
          state: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], mu: float = 0.0) -> None:
    """Fold the deployments ``deps`` (in increasing order) into ``state`` = (least deployment,
    its cost, the second least cost, its slot) per row, in place; ties go to the first deployment.
    ``mu``: the accuracy row's price, ``−μ·w·acc[d]`` added to each cost (the same in every slot)."""
    best, best_v, second, kk = state
    m = len(best)
    inv = None
    if pos is not None:
        inv = np.full(len(V.rows), -1, dtype=np.int64)
        inv[pos] = np.arange(m)
    buf = np.empty(m)
    kbuf = np.zeros(m, dtype=np.int64)
    for d in deps:
        got = _choose(T, V, a, lam, d, pos, inv)
        if got is None:
            continue
        out, ks, v = got
        buf.fill(np.inf)
        buf[out] = v
        if mu:
            wr = V.w if pos is None else V.w[pos]
            buf[out] -= mu * T.acc[d] * wr[out]
        kbuf[out] = ks
        lower = (buf < best_v) | ((buf == best_v) & (d < best))
        np.minimum(second, np.where(lower, best_v, buf), out=second)
        best[lower] = d
        kk[lower] = kbuf[lower]
        np.minimum(best_v, buf, out=best_v)


def _merge(state: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
           other: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], shift: np.ndarray | float) -> None:
    """Fold ``other`` (a state of :func:`_fold` over other deployments), its costs plus ``shift``,
    into ``state`` in place; ties go to the first deployment."""
    best, best_v, second, kk = state
    ob, ov, os_, ok_ = other
    ov = ov + shift
    lower = (ov < best_v) | ((ov == best_v) & (ob < best))
    np.minimum(second, np.where(lower, best_v, ov), out=second)
    np.minimum(second, os_ + shift, out=second)
    best[lower] = ob[lower]
    kk[lower] = ok_[lower]
    np.minimum(best_v, ov, out=best_v)


def _choose_least(T: _Slots, V: _View, a: np.ndarray, lam: np.ndarray, pos: np.ndarray | None = None,
                  mu: float = 0.0):
    """Per row of ``V`` (at the sorted positions ``pos``, or all): the deployment of least priced
    cost (ties: the first; 0 where none is an option), that cost, the second least over
    deployments, and the slot of the least; ``mu`` prices the accuracy row (``−μ·w·acc[d]``). The
    deployments the prices leave as they are (λ = 0, ``a`` = the objective's price: most of them,
    most of the time) are looked up once per view and kept (``V.static``), folded per accuracy
    (one group without a floor: μ shifts a group's costs alike); only the others are priced again
    at each call."""
    static = tuple(d for d in range(T.n_d) if not lam[d].any() and np.array_equal(a[d], T.a0[d]))
    if V.static is None or V.static[0] != static:
        n = len(V.rows)
        accs = sorted({float(T.acc[d]) for d in static}) if T.has_acc else [0.0]
        groups = []
        for acc in accs:
            st = (np.full(n, T.n_d, dtype=np.int64), np.full(n, np.inf), np.full(n, np.inf), np.zeros(n, dtype=np.int64))
            _fold(T, V, a, lam, [d for d in static if not T.has_acc or T.acc[d] == acc], None, st)
            groups.append((acc, st))
        V.static = (static, groups)
    m = len(V.rows) if pos is None else len(pos)
    state = (np.full(m, T.n_d, dtype=np.int64), np.full(m, np.inf), np.full(m, np.inf), np.zeros(m, dtype=np.int64))
    for acc, st in V.static[1]:
        sub = st if pos is None else tuple(x[pos] for x in st)
        shift = -mu * acc * (V.w if pos is None else V.w[pos]) if mu and acc else 0.0
        _merge(state, sub, shift)
    _fold(T, V, a, lam, [d for d in range(T.n_d) if d not in static], pos, state, mu)
    best, best_v, second, kk = state
    best[best >= T.n_d] = 0  # no option at all (cost inf)
    return best, best_v, second, kk


def _price_view(T: _Slots, V: _View, a: np.ndarray, lam: np.ndarray, pos: np.ndarray, mu: float = 0.0):
    """:func:`_price_direct` for the rows at positions ``pos`` of ``V`` through the envelopes over
    the bound's (wider) windows; a row whose choice does not fit inside its slot on its deployment
    (an edge of its window) is priced directly."""
    best, v, second, k = _choose_least(T, V, a, lam, pos, mu)
    has = np.isfinite(v)
    d = np.where(has, best, -1)
    k = np.where(has, k, -1)
    rows = V.rows[pos]
    hv = np.flatnonzero(has)
    bad = hv[~T.fits(rows[hv], d[hv], k[hv])]
    if len(bad):
        closed = ~np.isfinite(a)
        d[bad], k[bad], v[bad], second[bad] = _price_direct(T, rows[bad], np.where(closed, 0.0, a), lam, closed, mu)
    return d, k, v, second


def _evaluate(T: _Slots, V: _View, lam: np.ndarray, pi: np.ndarray, mu: float = 0.0, *, choices: bool = False,
              fixed_n: np.ndarray | None = None, close: bool = True):
    """L(λ, π, μ), its subgradient (work per (deployment, slot) over capacity; energy per capped
    (cap row, slot) over the cap; the accuracy floor over the chosen accuracy, μ being the price of
    the row Σ w·acc ≥ floor·Σ w, as in :mod:`.decompose`), the instances at these prices; with
    ``choices`` also each row's least priced (deployment, slot), its priced cost and the second
    least over deployments. With ``fixed_n`` the instances are those (the value is then a bound
    only for plans with them); with ``close`` too, the deployments with no instance in it are
    priced out (:func:`_close_prices`: their work has no lane-second, so L at n is largest with
    their λ high enough that no row takes them)."""
    a = T.a0 + T.pool_pi(pi)[T.pool_of]
    shut = fixed_n is not None and close and bool(np.any(fixed_n == 0))
    if shut:
        assert fixed_n is not None
        lam, state = _close_prices(T, V, a, lam, mu, fixed_n == 0)
    if not shut or state is None:
        state = _choose_least(T, V, a, lam, mu=mu)
    best, v, second, kk = state
    x_part = V.wt * float(v.sum()) + mu * T.acc_rhs
    gain = T.lanes * (lam @ T.dt) - T.inst_cost
    if T.idle:
        gain = gain - T.idle_w * ((T.pool_pi(pi) @ T.dt)[T.pool_of])
    if fixed_n is None:
        n_part, n_inst = _instances_at_prices(T, gain)
    else:
        n_inst = fixed_n
        n_part = float(gain @ fixed_n)
    capped = T.capped
    L = x_part - n_part - float(np.sum(pi[capped] * T.cap_j))
    rows = V.rows
    run = T.R[rows, best]
    ener = T.E[rows, best]
    load = V.wt * np.bincount(best * T.S + kk, weights=run, minlength=T.n_d * T.S).reshape(T.n_d, T.S)
    g_lam = load - (n_inst * T.lanes)[:, None] * T.dt[None, :]
    pe = V.wt * np.bincount(T.pool_of[best] * T.S + kk, weights=ener, minlength=T.n_p * T.S).reshape(T.n_p, T.S)
    if T.idle:
        pe += np.bincount(T.pool_of, weights=n_inst * T.idle_w, minlength=T.n_p)[:, None] * T.dt[None, :]
    g_pi = (T.cap_rows[capped] @ pe) - T.cap_j
    g_mu = T.acc_rhs - V.wt * float(np.dot(V.w, T.acc[best])) if T.has_acc else 0.0
    if V.exact:  # L(λ, π) with the instances left free: a cut V(n) ≥ α − gain·n (see _instance_master)
        T.cuts.append((x_part - float(np.sum(pi[capped] * T.cap_j)), gain.copy()))
    out = (L, g_lam, g_pi, g_mu, n_inst)
    if choices:
        return (*out, best, kk, v, second, load)
    return out


def _close_prices(T: _Slots, V: _View, a: np.ndarray, lam: np.ndarray, mu: float, shut: np.ndarray):
    """λ with the deployments ``shut`` (no instance in the vector the bound is fixed at) priced out:
    each such deployment's λ raised, in every slot, to at least the most any row of ``V`` would
    save per second of it over its least priced cost among the other deployments (its cost there
    less its cheapest cell on the shut deployment, over its run time there). L at these prices is
    L with the shut deployments' options removed (a row ties at most), and it is an ordinary
    evaluation of L, so it is a bound for every plan with those instances and, as a cut, for every
    instance vector. A row with no option left keeps the prices as they are (L counts it on a shut
    deployment: the vector cannot serve it). Returns the prices and the choices at them
    (:func:`_choose_least`'s), None where a row has no option left."""
    a_open = np.where(shut[:, None], np.inf, a)
    state = _choose_least(T, V, a_open, lam, mu=mu)
    v_open = state[1]
    lam = lam.copy()
    # the least price of each deployment over each window [lo, hi]: a running minimum from each lo
    upper = np.arange(T.S)[None, :] >= np.arange(T.S)[:, None]
    for d in np.flatnonzero(shut).tolist():
        qi, e, r, _rho, lo, hi, starts, ends = V.per_d[d]
        if not len(qi):
            continue
        a_min = np.minimum.accumulate(np.where(upper, a[d][None, :], np.inf), axis=1)[lo, hi]
        cheapest = e * np.repeat(a_min, ends - starts)  # its least energy cost on d in its window
        if mu:
            cheapest = cheapest - mu * T.acc[d] * V.w[qi]
        save = v_open[qi] - cheapest
        ok = np.isfinite(save) & (r > 0)
        if not ok.any():
            continue
        need = float(np.max(save[ok] / r[ok]))
        if need > 0:
            # a hair above what every row needs, so that the open option wins the tie
            lam[d] = np.maximum(lam[d], need * (1 + 1e-9) + 1e-300)
    # the choices at the raised prices are those without the shut deployments, unless a row has no other
    return lam, (state if bool(np.all(np.isfinite(v_open))) else None)


def _instances_at_prices(T: _Slots, gain: np.ndarray) -> tuple[float, np.ndarray]:
    """Each pool switches on the instances worth most at these prices (:func:`.decompose.instances_at_prices`)."""
    return instances_at_prices(gain, T.groups, T.pools, T.k, T.max_inst)


def _bundle(T: _Slots, V: _View, theta0: np.ndarray, active0: np.ndarray, scale: np.ndarray, delta: float, *,
            rel_tol: float, max_iter: int, deadline: float | None, say: Callable[[str], None],
            fixed_n: np.ndarray | None = None, target: float = math.inf, stall: int = 0, shrink: float = 0.5):
    """Maximise L over prices θ = (λ, π on capped cap rows) ≥ 0: a proximal bundle method with a box
    trust region (``delta`` in units of ``scale``) over the prices of rows that ran over at some
    evaluation (the others stay 0). Stops early once L reaches ``target``, or (``stall`` > 0) after
    that many iterations in a row that did not raise L by more than ``rel_tol``."""
    from scipy.optimize import linprog

    m = len(theta0)

    def ev(theta: np.ndarray):
        L, g_lam, g_pi, g_mu, _ = _evaluate(T, V, *T.prices(theta), fixed_n=fixed_n)
        return L, np.concatenate([g_lam.ravel(), g_pi.ravel(), [g_mu] if T.has_acc else []])

    center = theta0.copy()
    active = active0.copy()
    Lc, gc = ev(center)
    active |= gc > 0
    cuts_g, cuts_b = [gc], [Lc - gc @ center]
    converged = False
    it = 0
    last_say = time.perf_counter()
    moved_at, L_moved = 0, Lc
    for it in range(1, max_iter + 1):
        if Lc >= target:
            break
        if Lc > L_moved + rel_tol * max(abs(L_moved), 1e-12):
            moved_at, L_moved = it, Lc
        elif stall and it - moved_at > stall:
            break
        act = np.flatnonzero(active)
        if not len(act):
            converged = True  # nothing runs over at zero prices: L(0) is the relaxation's optimum
            break
        G = np.array(cuts_g)
        Ga = G[:, act]
        # the cuts at θ with the inactive prices at 0 (they are 0 in every point the method visits)
        lo = np.maximum(center[act] - delta * scale[act], 0.0)
        hi = center[act] + delta * scale[act]
        c = np.zeros(len(act) + 1)
        c[-1] = -1.0
        res = linprog(c, A_ub=np.hstack([-Ga, np.ones((len(Ga), 1))]), b_ub=np.array(cuts_b),
                      bounds=list(zip(lo, hi)) + [(None, None)], method="highs")
        if res.status != 0:  # pragma: no cover - the master is always feasible and bounded
            break
        theta = np.zeros(m)
        theta[act] = res.x[:-1]
        pred = res.x[-1] - Lc
        if pred <= rel_tol * max(abs(Lc), 1e-12):
            inside = np.all((res.x[:-1] - lo > 1e-12 * scale[act]) | (lo <= 0)) and np.all(
                hi - res.x[:-1] > 1e-12 * scale[act])
            if inside:
                converged = True
                break
            delta *= 2.0
            continue
        L, g = ev(theta)
        cuts_g.append(g)
        cuts_b.append(L - g @ theta)
        grew = (g > 0) & ~active
        active |= grew
        if Lc + 0.1 * pred <= L:
            boxed = np.any(np.isclose(res.x[:-1], hi)) or np.any(np.isclose(res.x[:-1], lo) & (lo > 0))
            center, Lc = theta, L
            if boxed:
                delta *= 2.0
        else:
            delta *= shrink
        keep = 4 * len(act) + 50
        if len(cuts_g) > keep:
            cuts_g, cuts_b = cuts_g[-keep:], cuts_b[-keep:]
        now = time.perf_counter()
        if now - last_say > 1.0:
            say(f"slots: iteration {it}, bound {Lc:.8g}, {len(act)} priced rows")
            last_say = now
        if deadline is not None and now > deadline:
            break
    return center, active, it, converged, Lc


def slot_bound(problem: Problem, *, rel_tol: float = 1e-7, max_iter: int = 200, time_limit_s: float | None = None,
               samples: tuple[int, ...] = SAMPLES, progress: Callable[[str], None] | None = None):
    """Maximise the Lagrangian bound (module docstring): on seeded samples first (each standing for
    the batch), then on every query. Returns the :class:`SlotBound`, the arrays and the full view."""
    say = progress or (lambda s: None)
    t0 = time.perf_counter()
    deadline = None if time_limit_s is None else t0 + time_limit_s
    T = _Slots(problem)
    served = np.flatnonzero(problem.ok.any(axis=1))
    n_lam = T.n_d * T.S
    m = n_lam + len(T.capped) * T.S + (1 if T.has_acc else 0)
    rng = np.random.default_rng(0)
    stages = [_View(T, np.sort(rng.choice(served, n, replace=False)), len(served) / n)
              for n in sorted(samples) if len(served) > 2 * n]
    full = _View(T, served, exact=True)
    Vs = stages[0] if stages else full
    # price scales: objective per second of work (λ), objective per J (π)
    fin = np.isfinite(T.E[Vs.rows]) & (T.R[Vs.rows] > 0)
    per_s = (T.E[Vs.rows] * T.a0.max(axis=1)[None, :])[fin] / T.R[Vs.rows][fin]
    s_lam = float(np.quantile(per_s, 0.9)) if len(per_s) else 1.0
    scale = np.concatenate([np.full(n_lam, s_lam or 1.0),
                            np.full(len(T.capped) * T.S, float(np.median(T.a0)) or 1.0)])
    if T.has_acc:  # μ: objective per unit of w·accuracy, a query's cost over its weight and the accuracies' spread
        e_min = np.where(np.isfinite(T.E[Vs.rows]), T.E[Vs.rows], np.inf).min(axis=1) * float(np.median(T.a0))
        spread = max(float(np.ptp(T.acc)), 1e-2)
        s_mu = float(np.median(e_min / np.maximum(T.w[Vs.rows], 1e-12))) / spread if len(Vs.rows) else 1.0
        scale = np.concatenate([scale, [s_mu if np.isfinite(s_mu) and s_mu > 0 else 1.0]])
    theta, active = np.zeros(m), np.zeros(m, dtype=bool)
    delta, iters = 1.0, 0
    samples_converged = True
    for St in stages:
        theta, active, it_s, conv_s, _ = _bundle(T, St, theta, active, scale, delta, rel_tol=1e-6,
                                            max_iter=min(max_iter, SAMPLE_ITERATIONS),
                                            deadline=deadline, say=say,
                                            shrink=CAPPED_SAMPLE_SHRINK if len(T.capped) else 0.5)
        say(f"slots: prices from a sample of {len(St.rows)} queries after {it_s} iterations")
        samples_converged = samples_converged and conv_s
        delta, iters = 0.05, iters + it_s
    # on every query: from the samples' prices, a few iterations (each a pass over every option)
    theta, active, it, converged, _ = _bundle(T, full, theta, active, scale, delta, rel_tol=rel_tol,
                                           max_iter=max_iter if not stages else BOUND_FULL_ITERATIONS, deadline=deadline, say=say,
                                           stall=BOUND_FULL_STALL if stages else 0)
    lam, pi, mu = T.prices(theta)
    L = _evaluate(T, full, lam, pi, mu)[0]
    sb_extra = (theta, active, scale)
    if T.idle:  # every plan switches on an instance that serves its dearest-to-serve query: L at zero prices plus that
        zero = _evaluate(T, full, np.zeros_like(lam), np.zeros_like(pi))[0]
        cheapest_inst = np.where(T.ok[full.rows], T.inst_cost[None, :], np.inf).min(axis=1)
        L = max(L, zero + float(cheapest_inst.max(initial=0.0)))
    sb = SlotBound(L, lam, pi, iters + it, time.perf_counter() - t0, converged, mu)
    sb.state = sb_extra  # type: ignore[attr-defined]
    sb.sample = stages[-1] if stages else full  # type: ignore[attr-defined]
    sb.samples_converged = samples_converged  # type: ignore[attr-defined]
    return sb, T, full


def _instance_master(T: _Slots, patterns: np.ndarray, near: np.ndarray | None = None) -> tuple[float, np.ndarray | None]:
    """The least, over integer instance vectors n the fleet allows (each pool's devices, each
    fleet deployment's instances, an instance for each option pattern), of max over the cuts
    ``α − gain·n`` in ``T.cuts`` (:func:`~energyopt.methods.instances.instance_master`, with its
    tie-break towards ``near``). Each cut is L(λ, π) with the instances fixed at n, a lower bound
    on every plan with n, so the value bounds every plan; it is tighter than L, whose knapsack
    mixes instance sets (the relaxation of lumpy instances)."""
    if not T.cuts:
        return -math.inf, None
    alpha = np.array([c[0] for c in T.cuts])
    G = np.array([c[1] for c in T.cuts])
    return instance_master(alpha, G, T.pools, T.groups, T.k, T.max_inst, patterns, near=near)


# --- the plan --------------------------------------------------------------------------------


def _price_direct(T: _Slots, rows: np.ndarray, a: np.ndarray, lam: np.ndarray, closed: np.ndarray, mu: float = 0.0):
    """Each row's least priced (deployment, slot) among the cells it fits in that are not
    ``closed``, by blocks: deployment, slot (-1: none), priced cost and the second least's."""
    m = len(rows)
    d_out = np.full(m, -1, dtype=np.int64)
    k_out = np.full(m, -1, dtype=np.int64)
    v_out = np.full(m, np.inf)
    s_out = np.full(m, np.inf)
    for s0 in range(0, m, DIRECT_BLOCK):
        rr = rows[s0:s0 + DIRECT_BLOCK]
        allowed = T.cell_allowed(rr) & ~closed[None, :, :]
        with np.errstate(invalid="ignore"):
            c = T.E[rr][:, :, None] * a[None, :, :] + T.R[rr][:, :, None] * lam[None, :, :]
            if mu:
                c = c - (mu * T.w[rr][:, None] * T.acc[None, :])[:, :, None]
        c = np.where(allowed, c, np.inf).reshape(len(rr), -1)
        j = c.argmin(axis=1)
        v = c[np.arange(len(rr)), j]
        has = np.isfinite(v)
        d_out[s0:s0 + len(rr)] = np.where(has, j // T.S, -1)
        k_out[s0:s0 + len(rr)] = np.where(has, j % T.S, -1)
        v_out[s0:s0 + len(rr)] = v
        if c.shape[1] > 1:
            s_out[s0:s0 + len(rr)] = np.partition(c, 1, axis=1)[:, 1]
    return d_out, k_out, v_out, s_out


def _instances_for_plan(T: _Slots, n_inst: np.ndarray, load: np.ndarray, one_each: bool = False) -> np.ndarray:
    """The instances the plan may switch on: ``n_inst`` (the prices' choice), with ``one_each``
    first one for every deployment with chosen work (most work first) while devices last, then,
    while a pool has devices (and a fleet deployment instances) left, one more for the
    deployment whose chosen work runs furthest over its lane-seconds in some slot."""
    n = n_inst.copy()
    for cnt, ds in T.pools:
        if one_each:
            for d in ds[np.argsort(-load[ds].sum(axis=1))].tolist():
                if (load[d].sum() > 0 and n[d] == 0 and int((T.k[ds] * n[ds]).sum()) + T.k[d] <= cnt
                        and n[T.groups_of[d]].sum() < T.max_inst[d]):
                    n[d] = 1
        while True:
            used = int((T.k[ds] * n[ds]).sum())
            over = np.array([float(np.max(load[d] - n[d] * T.lanes[d] * T.dt)) for d in ds.tolist()])
            room = np.array([used + T.k[d] <= cnt and n[T.groups_of[d]].sum() < T.max_inst[d] for d in ds.tolist()], dtype=bool)
            cand = np.flatnonzero((over > 0) & room)
            if not len(cand):
                break
            n[ds[cand[np.argmax(over[cand])]]] += 1
    return n


def _fewest_instances(T: _Slots, load: np.ndarray) -> np.ndarray:
    """Per deployment with chosen work, the fewest instances whose lane-seconds over the horizon
    hold it (with 5 % to spare), within its pool's devices and its fleet deployment's instances."""
    need = np.ceil(load.sum(axis=1) * 1.05 / (T.lanes * T.dt.sum()) - 1e-9).astype(np.int64)
    n = np.zeros(T.n_d, dtype=np.int64)
    for cnt, ds in T.pools:
        for d in ds[np.argsort(-load[ds].sum(axis=1))].tolist():
            room = min((cnt - int((T.k[ds] * n[ds]).sum())) // int(T.k[d]),
                       int(T.max_inst[d]) - int(n[T.groups_of[d]].sum()))
            n[d] = max(min(int(need[d]), room), 0)
    return n


def _covering_instances(T: _Slots, rows: np.ndarray) -> np.ndarray:
    """Few deployments that between them offer every row an option (greedy set cover, the one
    serving most rows left first, the cheaper instance among ties), each with the fewest instances
    that hold, over the horizon, the work of the rows that are cheapest on it among those chosen."""
    left = np.ones(len(rows), dtype=bool)
    chosen: list[int] = []
    while left.any():
        cover = T.ok[rows[left]].sum(axis=0)
        cover[chosen] = 0
        if cover.max() <= 0:
            break
        top = np.flatnonzero(cover == cover.max())
        d = int(top[np.argmin(T.inst_cost[top])])
        chosen.append(d)
        left &= ~T.ok[rows, d]
    E = T.E[rows][:, chosen]
    pick = np.asarray(chosen)[E.argmin(axis=1)]
    load = np.zeros((T.n_d, T.S))
    load[:, 0] = np.bincount(pick, weights=T.R[rows, pick], minlength=T.n_d)
    return _fewest_instances(T, load)


def _plan_value(T: _Slots, dep: np.ndarray, lane: np.ndarray, start: np.ndarray) -> float:
    """The objective of a plan whose queries each lie inside one slot: their charged energy at
    their slot's price, plus the cost of every instance with work."""
    q = np.flatnonzero(dep >= 0)
    d = dep[q]
    k = np.clip(np.searchsorted(T.b, start[q], side="right") - 1, 0, T.S - 1)
    inst = lane[q] // T.lanes[d]
    M = int(inst.max(initial=0)) + 1
    d_on = np.unique(d * M + inst) // M
    return float(np.sum(T.E[q, d] * T.a0[d, k])) + float(T.inst_cost[d_on].sum())


def _fill(T: _Slots, V: _View, rows: np.ndarray, d0: np.ndarray, k0: np.ndarray, v0: np.ndarray, s0: np.ndarray,
          n_inst: np.ndarray, lam: np.ndarray, pi: np.ndarray, say: Callable[[str], None], mu: float = 0.0):
    """Each row's (deployment, slot): its proposal is kept while the cell's lane-seconds and the
    capped (cap row, slot)'s joules hold (largest regret first); the others are priced again among the
    cells not yet full. Returns the deployment and slot of every row (-1: none) and, for the rows
    left without one, the (cap row, slot) caps that turned them away."""
    a = T.a0 + T.pool_pi(pi)[T.pool_of]
    cap_time = (n_inst * T.lanes)[:, None] * T.dt[None, :]  # [n_d, S]
    cap_pow = np.full((T.n_c, T.S), np.inf)  # per cap row
    idle_on = np.bincount(T.pool_of, weights=n_inst * T.idle_w, minlength=T.n_p) if T.idle else np.zeros(T.n_p)
    cap_pow[T.capped] = T.cap_j - (T.cap_rows[T.capped] @ idle_on)[:, None] * T.dt[None, :]
    used_time = np.zeros((T.n_d, T.S))
    used_pow = np.zeros((T.n_c, T.S))
    closed = cap_time <= 0
    closed |= (T.cap_rows.T @ (cap_pow <= 0) > 0)[T.pool_of]
    d_of = np.full(len(rows), -1, dtype=np.int64)
    k_of = np.full(len(rows), -1, dtype=np.int64)
    blocked_pow = np.zeros((T.n_c, T.S))  # energy turned away by a cap [J]
    pend = np.arange(len(rows))
    pd_, pk, pv, ps = d0, k0, v0, s0
    # a proposal outside the query's own fit (the bound's windows are wider) is priced again
    for _round in range(T.n_d * T.S + T.n_c * T.S + 2):
        valid = pd_ >= 0
        if valid.any():
            vi = np.flatnonzero(valid)
            fits = T.fits(rows[pend[vi]], pd_[vi], pk[vi]) & ~closed[pd_[vi], pk[vi]]
            valid[vi[~fits]] = False
        # every pending row with a fitting proposal, largest regret first, per cell
        cand = np.flatnonzero(valid)
        dd, kk = pd_[cand], pk[cand]
        q = rows[pend[cand]]
        run, ener = T.R[q, dd], T.E[q, dd]
        regret = ps[cand] - pv[cand]
        cell = dd * T.S + kk
        o = np.lexsort((-regret, cell))
        cell_o = cell[o]
        first = np.r_[True, cell_o[1:] != cell_o[:-1]][: len(cell_o)]
        grp = np.cumsum(first) - 1
        csum = np.cumsum(run[o])
        base = (csum - run[o])[first][grp]
        within = used_time.reshape(-1)[cell_o] + (csum - base) <= cap_time.reshape(-1)[cell_o] * (1 + 1e-12)
        keep = np.zeros(len(cand), dtype=bool)
        keep[o] = within
        closed.reshape(-1)[np.unique(cell[~keep])] = True  # a cell that turned rows away is full
        # the caps: per capped (cap row, slot), the kept rows of its pools, largest regret first
        # (row after row: a row that a later cap turns away only frees room under the earlier ones)
        pool_dd = T.pool_of[dd]
        for c in T.capped.tolist():
            ci = np.flatnonzero((T.cap_rows[c, pool_dd] > 0) & keep)
            if not len(ci):
                continue
            o2 = ci[np.lexsort((-regret[ci], kk[ci]))]
            pc = kk[o2]
            first2 = np.r_[True, pc[1:] != pc[:-1]]
            grp2 = np.cumsum(first2) - 1
            c2 = np.cumsum(ener[o2])
            base2 = (c2 - ener[o2])[first2][grp2]
            ok2 = used_pow[c, pc] + (c2 - base2) <= cap_pow[c, pc] * (1 + 1e-12)
            turned = o2[~ok2]
            keep[turned] = False
            np.add.at(blocked_pow[c], kk[turned], ener[turned])
            for k in np.unique(pc[~ok2]).tolist():
                closed[T.cap_rows[c, T.pool_of] > 0, k] = True
        pcell = pool_dd * T.S + kk
        np.add.at(used_time.reshape(-1), cell[keep], run[keep])
        used_pool = np.zeros(T.n_p * T.S)
        np.add.at(used_pool, pcell[keep], ener[keep])
        used_pow += T.cap_rows @ used_pool.reshape(T.n_p, T.S)
        d_of[pend[cand[keep]]] = dd[keep]
        k_of[pend[cand[keep]]] = kk[keep]
        done = np.zeros(len(pend), dtype=bool)
        done[cand[keep]] = True
        pend = pend[~done]
        if not len(pend):
            break
        pd_, pk, pv, ps = _price_view(T, V, np.where(closed, np.inf, a), lam, pend, mu)
        if np.all(pd_ < 0):
            break
    return d_of, k_of, blocked_pow


def _sort_by_intensity(T: _Slots, rows: np.ndarray, d_of: np.ndarray, k_of: np.ndarray) -> int:
    """Within each deployment of a pool without a power cap, the rows that fit in every slot of it
    (released at the start, due at the end: most of a day-long batch) are dealt out again over the
    cells they fill, the cells' lane-seconds kept: the most joules per second of run first, into
    the cell of least price (in place). At the bound's prices whole bands of rows are tied between
    a clean cell and the next ones (their run per joule nearly alike), and which of them the fill
    keeps in a full clean cell follows its regret (over the other deployments), not the joules they
    move; for one deployment with every row free to take any slot, this order is the relaxation's
    (a clean cell's second is worth most to the row with the most joules per second), so it
    leaves the plan no dearer, a row or so per cell aside. A pool with a cap is left as the fill
    made it (its cells are held by joules too). Returns the rows moved to another cell."""
    moved = 0
    for d in range(T.n_d):
        if len(T.rows_of_pool[T.pool_of[d]]):
            continue
        i = np.flatnonzero(d_of == d)
        if len(i) < 2:
            continue
        q = rows[i]
        run = T.R[q, d]
        free_all = (T.rel[q] <= T.b[0]) & (T.due[q] >= T.b[-1]) & (run <= float(T.dt.min())) & (run > 0)
        i, q, run = i[free_all], q[free_all], run[free_all]
        if len(i) < 2:
            continue
        ks = k_of[i]
        # the cells these rows fill, least price first, and the seconds of run in each
        budget = np.bincount(ks, weights=run, minlength=T.S)
        cells = np.flatnonzero(budget > 0)
        cells = cells[np.argsort(T.a0[d, cells], kind="stable")]
        edges = np.cumsum(budget[cells])
        o = np.argsort(-T.E[q, d] / run, kind="stable")  # most joules per second of run first
        mid = np.cumsum(run[o]) - run[o] / 2
        new_k = cells[np.minimum(np.searchsorted(edges, mid, side="right"), len(cells) - 1)]
        new = np.empty(len(i), dtype=np.int64)
        new[o] = new_k
        ok = T.fits(q, np.full(len(q), d), new)
        new = np.where(ok, new, ks)
        moved += int(np.sum(new != ks))
        k_of[i] = new
    return moved


def _place_in_slot(run: np.ndarray, rel: np.ndarray, due: np.ndarray, free: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Queries (in the order given) onto lanes whose free times are ``free`` (changed in place),
    each onto the lane free first, starting at max(its free time, the query's release); -1 (and
    NaN) where it would end after ``due``. With many lanes a round of one query per lane at a time."""
    L = len(free)
    lane = np.full(len(run), -1, dtype=np.int64)
    start = np.full(len(run), np.nan)
    if L < ROUND_MIN_LANES:
        heap = [(float(f), i) for i, f in enumerate(free)]
        heapq.heapify(heap)
        for j, (r, at, du) in enumerate(zip(run.tolist(), rel.tolist(), due.tolist())):
            f, i = heap[0]
            s = f if f >= at else at
            if s + r <= du:
                heapq.heapreplace(heap, (s + r, i))
                lane[j], start[j] = i, s
        for f, i in heap:
            free[i] = f
        return lane, start
    for s0 in range(0, len(run), L):
        rr = run[s0:s0 + L]
        slots = np.argsort(free, kind="stable")[: len(rr)]
        st = np.maximum(free[slots], rel[s0:s0 + L])
        fit = st + rr <= due[s0:s0 + L]
        free[slots[fit]] = st[fit] + rr[fit]
        lane[s0:s0 + L] = np.where(fit, slots, -1)
        start[s0:s0 + L] = np.where(fit, st, np.nan)
    return lane, start


def _pack(T: _Slots, n_q: int, rows: np.ndarray, d_of: np.ndarray, k_of: np.ndarray, n_inst: np.ndarray,
          mu: float = 0.0):
    """Lanes and starts inside each row's slot; queries that do not fit are moved (see the module
    docstring; ``mu`` prices accuracy in the move). Returns deployment, lane and start per query,
    the queries left unplaced, and each packed (deployment, slot)'s lanes' free times."""
    dep = np.full(n_q, -1, dtype=np.int64)
    lane = np.full(n_q, -1, dtype=np.int64)
    start = np.full(n_q, np.nan)
    has = d_of >= 0
    q_all, d_all, k_all = rows[has], d_of[has], k_of[has]
    rel = np.maximum(T.rel[q_all], T.b[k_all])
    due = latest_end_s(np.minimum(T.due[q_all], T.b[k_all + 1]))
    run = T.R[q_all, d_all]
    cell = d_all * T.S + k_all
    o = np.lexsort((-run, due, rel, cell))
    cell_o = cell[o]
    cuts = np.flatnonzero(np.r_[True, cell_o[1:] != cell_o[:-1], True]) if len(cell_o) else np.zeros(1, dtype=np.int64)
    free: dict[int, np.ndarray] = {}
    late: list[int] = []
    for a, z in zip(cuts[:-1].tolist(), cuts[1:].tolist()):
        c = int(cell_o[a])
        d, k = divmod(c, T.S)
        f = np.full(int(n_inst[d] * T.lanes[d]), float(T.b[k]))
        idx = o[a:z]
        ln, st = _place_in_slot(run[idx], rel[idx], due[idx], f)
        free[c] = f
        ok = ln >= 0
        qs = q_all[idx]
        dep[qs[ok]], lane[qs[ok]], start[qs[ok]] = d, ln[ok], st[ok]
        late.extend(qs[~ok].tolist())
    # the rows the fill left without a cell (it closes a cell at the first row it turns away) are
    # tried by the repair too, where they are few
    left = [int(q) for q in rows[~has]]
    unplaced = left if len(left) > REPAIR_LEFT_MAX else []
    late = late if unplaced else left + late
    if late:
        unplaced += _repair(T, late, dep, lane, start, n_inst, free, mu)
    return dep, lane, start, unplaced, free


def _repair(T: _Slots, late: list[int], dep: np.ndarray, lane: np.ndarray, start: np.ndarray, n_inst: np.ndarray,
            free: dict[int, np.ndarray], mu: float = 0.0) -> list[int]:
    """Each late query to the cheapest (deployment, slot) whose lane free first still takes it
    inside the slot and its window, within the caps (``mu``: the accuracy row's price, in the
    cost); the queries none takes."""
    a = T.a0
    pool_energy = np.zeros((T.n_p, T.S))
    placed = np.flatnonzero(dep >= 0)
    k_of = np.searchsorted(T.b, start[placed], side="right") - 1
    np.add.at(pool_energy, (T.pool_of[dep[placed]], k_of), T.E[placed, dep[placed]])
    pool_energy = T.cap_rows @ pool_energy  # per cap row from here on
    cap = np.full((T.n_c, T.S), np.inf)
    if len(T.capped):
        idle_on = np.bincount(T.pool_of, weights=n_inst * T.idle_w, minlength=T.n_p) if T.idle else np.zeros(T.n_p)
        cap[T.capped] = T.cap_j - (T.cap_rows[T.capped] @ idle_on)[:, None] * T.dt[None, :]
    left = []
    late_a = np.asarray(late, dtype=np.int64)
    for b0 in range(0, len(late_a), DIRECT_BLOCK):  # each query's cells by cost, a block at a time
        qb = late_a[b0:b0 + DIRECT_BLOCK]
        n_block = n_inst.copy()
        order_b, n_fin = _cells_by_cost(T, qb, n_inst, mu)
        for i, q in enumerate(qb.tolist()):
            # the repair may switch on an instance: then the query's cells are priced again first
            fresh = np.array_equal(n_inst, n_block)
            if fresh and _repair_one(T, q, order_b[i, :n_fin[i]].tolist(), dep, lane, start, n_inst, free,
                                     pool_energy, cap):
                continue
            if not fresh:
                o1, f1 = _cells_by_cost(T, np.array([q]), n_inst, mu)
                if _repair_one(T, q, o1[0, :f1[0]].tolist(), dep, lane, start, n_inst, free, pool_energy, cap):
                    continue
            if not _on_new_instance(T, q, a, dep, lane, start, n_inst, free, pool_energy, cap, mu):
                left.append(q)
    return left


def _cells_by_cost(T: _Slots, qs: np.ndarray, n_inst: np.ndarray, mu: float) -> tuple[np.ndarray, np.ndarray]:
    """Per query of ``qs``, the (deployment, slot) cells (``d·S + k``) of switched-on deployments it
    fits in, least cost first (``mu``: the accuracy row's price), and how many there are."""
    allowed = T.cell_allowed(qs) & (n_inst[:, None] > 0)[None, :, :]
    cost = np.where(allowed, T.E[qs][:, :, None] * T.a0[None, :, :]
                    - (mu * T.w[qs][:, None] * T.acc[None, :])[:, :, None], np.inf).reshape(len(qs), -1)
    return np.argsort(cost, axis=1, kind="stable"), np.isfinite(cost).sum(axis=1)


def _repair_one(T: _Slots, q: int, cells: list[int], dep: np.ndarray, lane: np.ndarray, start: np.ndarray,
                n_inst: np.ndarray, free: dict[int, np.ndarray], pool_energy: np.ndarray, cap: np.ndarray) -> bool:
    """:func:`_repair` for one query onto the lane free first of the first of ``cells`` (cheapest
    first) that takes it inside the slot and its window, within the caps: whether one did."""
    for j in cells:
        d, k = divmod(j, T.S)
        p = T.rows_of_pool[T.pool_of[d]]  # the capped rows of its pool
        if np.any(pool_energy[p, k] + T.E[q, d] > cap[p, k] * (1 + 1e-12)):
            continue
        f = free.setdefault(j, np.full(int(n_inst[d] * T.lanes[d]), float(T.b[k])))
        i = int(np.argmin(f))
        s = max(float(f[i]), float(T.rel[q]), float(T.b[k]))
        if s + T.R[q, d] <= latest_end_s(min(T.due[q], T.b[k + 1])):
            f[i] = s + T.R[q, d]
            dep[q], lane[q], start[q] = d, i, s
            pool_energy[p, k] += T.E[q, d]
            return True
    return False


def _on_new_instance(T: _Slots, q: int, a: np.ndarray, dep: np.ndarray, lane: np.ndarray, start: np.ndarray,
                     n_inst: np.ndarray, free: dict[int, np.ndarray], pool_energy: np.ndarray, cap: np.ndarray,
                     mu: float = 0.0) -> bool:
    """A late query that no switched-on instance takes (a tight deadline, say, on a deployment the
    prices left off): one more instance of the cheapest deployment whose pool has the devices (and
    its fleet deployment the instances) for it, within the caps (``pool_energy`` and ``cap`` per
    cap row), idle draw included; ``n_inst`` and the lanes' free times grow with it. Whether the
    query was placed."""
    allowed = T.cell_allowed(np.array([q]))[0]
    cost = np.where(allowed, (T.E[q][:, None] * a) + np.maximum(T.inst_cost, 0)[:, None]
                    - mu * T.w[q] * T.acc[:, None], np.inf)
    for j in np.argsort(cost, axis=None).tolist():
        if not np.isfinite(cost.reshape(-1)[j]):
            return False
        d, k = divmod(j, T.S)
        p = int(T.pool_of[d])
        cnt, ds = T.pools[p]
        if int((T.k[ds] * n_inst[ds]).sum()) + T.k[d] > cnt or n_inst[T.groups_of[d]].sum() >= T.max_inst[d]:
            continue
        ci = T.rows_of_pool[p]  # its pool's capped rows
        if len(ci):
            room = cap[ci] - (T.idle_w[d] * T.dt if T.idle else 0.0)
            if np.any(pool_energy[ci] > room * (1 + 1e-12)) or np.any(pool_energy[ci, k] + T.E[q, d] > room[:, k] * (1 + 1e-12)):
                continue
            cap[ci] = room
        first = int(n_inst[d] * T.lanes[d])
        n_inst[d] += 1
        for kk in range(T.S):  # every slot of the deployment gets the new instance's lanes, free from its start
            c = d * T.S + kk
            if c in free:
                free[c] = np.concatenate([free[c], np.full(int(T.lanes[d]), float(T.b[kk]))])
        f = free.setdefault(j, np.full(int(n_inst[d] * T.lanes[d]), float(T.b[k])))
        s = max(float(T.rel[q]), float(T.b[k]))
        f[first] = s + T.R[q, d]
        dep[q], lane[q], start[q] = d, first, s
        pool_energy[ci, k] += T.E[q, d]
        return True
    return False


def _cap_room_j(T: _Slots, n_inst: np.ndarray) -> np.ndarray:
    """[n_c, S]: the joules each (cap row, slot) may charge to queries: its cap's less the idle draw
    of its pools' instances (with ``--idle``); inf for a row without a cap."""
    cap = np.full((T.n_c, T.S), np.inf)
    if len(T.capped):
        idle_on = np.bincount(T.pool_of, weights=n_inst * T.idle_w, minlength=T.n_p) if T.idle else np.zeros(T.n_p)
        cap[T.capped] = T.cap_j - (T.cap_rows[T.capped] @ idle_on)[:, None] * T.dt[None, :]
    return cap


def _pool_headroom_j(T: _Slots, cap: np.ndarray, pool_energy: np.ndarray) -> np.ndarray:
    """[n_p, S]: the joules each (pool, slot) may still take: the least room left in the capped
    rows it belongs to (its own cap, its site's; ``cap`` from :func:`_cap_room_j`), inf where none."""
    left = cap - T.cap_rows @ pool_energy
    head = np.full((T.n_p, T.S), np.inf)
    for p in range(T.n_p):
        if len(T.rows_of_pool[p]):
            head[p] = left[T.rows_of_pool[p]].min(axis=0)
    return head


def _improve(T: _Slots, V: _View, dep: np.ndarray, lane: np.ndarray, start: np.ndarray, n_inst: np.ndarray,
             free: dict[int, np.ndarray], mu: float = 0.0) -> int:
    """Local moves on a packed plan with an accuracy floor (in place; none without one): the fill
    at a raised accuracy price leaves accuracy above the floor, and cells with room. Each round
    prices every placed query among the (deployment, slot) cells with a lane of a switched-on
    instance free before the slot's end (``mu``: the accuracy row's price, in the choice), and
    appends the queries whose least priced open cell charges less than their own (the accuracy
    priced in the first round only), those saving most per second first, after the last query of
    the lane free first, inside the slot and their window; within the caps (the energy moved out
    freeing its own), losing no more accuracy than the plan has above the floor. Returns the
    queries moved."""
    if not T.has_acc:  # on the carbon day without a floor it moved 92,000 of 1,000,000 queries in 8 s
        return 0  # and left the plan's kgCO2e as it was (the fill leaves the clean cells full)
    rows = V.rows
    placed = dep[rows] >= 0
    if not placed.any():
        return 0
    k_of = np.full(len(dep), -1, dtype=np.int64)
    q0 = rows[placed]
    k_of[q0] = np.clip(np.searchsorted(T.b, start[q0], side="right") - 1, 0, T.S - 1)
    pool_energy = np.zeros((T.n_p, T.S))
    np.add.at(pool_energy, (T.pool_of[dep[q0]], k_of[q0]), T.E[q0, dep[q0]])
    cap = _cap_room_j(T, n_inst)
    surplus = T.accuracy_surplus(dep)
    # a cell is open while some lane is free for at least a short query's run on the deployment
    short_s = np.array([float(np.quantile(T.R[rows[T.ok[rows, d]], d], 0.1)) if T.ok[rows, d].any() else np.inf
                        for d in range(T.n_d)])
    moved_total = 0
    for _round in range(IMPROVE_ROUNDS):
        gap_s = np.zeros((T.n_d, T.S))
        for d in np.flatnonzero(n_inst > 0).tolist():
            for k in range(T.S):
                f = free.get(d * T.S + k)
                gap_s[d, k] = T.b[k + 1] - (float(f.min()) if f is not None and len(f) else T.b[k])
        open_ = (gap_s >= short_s[:, None]) & (gap_s > 0)
        open_ &= (_pool_headroom_j(T, cap, pool_energy) > 0)[T.pool_of]
        if not open_.any():
            break
        pos = np.flatnonzero(placed)
        # the first round keeps the accuracy priced; the later ones spend what the plan has above the floor
        mu_r = mu if _round == 0 else 0.0
        d_new, k_new, _, _ = _price_view(T, V, np.where(open_, T.a0, np.inf), np.zeros((T.n_d, T.S)), pos, mu_r)
        q = rows[pos]
        ok = d_new >= 0
        q, d_new, k_new = q[ok], d_new[ok], k_new[ok]
        here = T.E[q, dep[q]] * T.a0[dep[q], k_of[q]]
        there = T.E[q, d_new] * T.a0[d_new, k_new]
        gain = here - there
        better = (gain > 1e-12 * np.abs(here)) & ~((d_new == dep[q]) & (k_new == k_of[q]))
        q, d_new, k_new, gain = q[better], d_new[better], k_new[better], gain[better]
        if not len(q):
            break
        run = T.R[q, d_new]
        cell = d_new * T.S + k_new
        o = np.lexsort((-gain / np.maximum(run, 1e-12), cell))
        cell_o = cell[o]
        cuts = np.flatnonzero(np.r_[True, cell_o[1:] != cell_o[:-1], True])
        moved = 0
        for a, z in zip(cuts[:-1].tolist(), cuts[1:].tolist()):
            c = int(cell_o[a])
            d, k = divmod(c, T.S)
            p = int(T.pool_of[d])
            idx = o[a:z]
            qs = q[idx]
            # the caps: the energy each takes there (less what it leaves in the same pool and slot)
            de = T.E[qs, d] - np.where((T.pool_of[dep[qs]] == p) & (k_of[qs] == k), T.E[qs, dep[qs]], 0.0)
            head = float(_pool_headroom_j(T, cap, pool_energy)[p, k])  # a site's other pools' energy stays
            if np.isfinite(head):
                qs = qs[np.cumsum(np.maximum(de, 0.0)) <= head * (1 - 1e-12)]
            if T.has_acc:
                loss = T.w[qs] * (T.acc[dep[qs]] - T.acc[d])
                qs = qs[np.cumsum(np.maximum(loss, 0.0)) <= surplus - 1e-9 * max(T.acc_rhs, 1.0)]
            if not len(qs):
                continue
            f = free.setdefault(c, np.full(int(n_inst[d] * T.lanes[d]), float(T.b[k])))
            rel = np.maximum(T.rel[qs], T.b[k])
            due = latest_end_s(np.minimum(T.due[qs], T.b[k + 1]))
            ln, st = _place_in_slot(T.R[qs, d], rel, due, f)
            got = ln >= 0
            qm = qs[got]
            np.subtract.at(pool_energy, (T.pool_of[dep[qm]], k_of[qm]), T.E[qm, dep[qm]])
            pool_energy[p, k] += float(T.E[qm, d].sum())
            if T.has_acc:
                surplus -= float(np.dot(T.w[qm], T.acc[dep[qm]] - T.acc[d]))
            dep[qm], lane[qm], start[qm], k_of[qm] = d, ln[got], st[got], k
            moved += len(qm)
        moved_total += moved
        if not moved and not (T.has_acc and _round == 0):
            break
    return moved_total


def _instance_search(T: _Slots, full: _View, sb: SlotBound, bound: float,
                     upper: Callable[[], tuple[float, np.ndarray | None]],
                     try_plan: Callable, limits: Limits, say: Callable[[str], None], spent_s: float) -> float:
    """Close the gap the lumpy instances leave (Benders over the instance vector): the master
    (:func:`_instance_master`) names the instance vector n of least bound; the bundle with the
    instances fixed at n on the sample (from the prices it had at n before, if any) finds prices
    for n, and one pass over every query at them adds a cut there (each evaluation on every query
    is a cut for every n). The bundle stops as soon as L at n rules n out (reaches the best plan's
    value less the gap), so most vectors cost a few iterations and the time goes to the few that
    are not ruled out; where L at n is below the best plan's value, a plan with n is tried at the
    prices (again only where L at n rose since). A vector met for the first time starts from the
    prices of the nearest one met before (most differ in one pool's instances). Until the master's value
    is within the gap of the best plan, its time is up (``MASTER_TIME_SHARE`` of ``spent_s``), it names a vector
    once more after ``MASTER_VISITS`` (the last time its bundle ran on every query), or
    ``MASTER_ROUNDS``. Returns the bound."""
    t0 = time.perf_counter()
    left = limits.remaining_s()
    stop = t0 + MASTER_TIME_SHARE * spent_s + MASTER_MIN_S
    if left is not None:
        stop = min(stop, t0 + left / 2)
    patterns = option_patterns(T.ok[full.rows])
    theta, active, scale = sb.state  # type: ignore[attr-defined]
    sample = sb.sample  # type: ignore[attr-defined]
    prices: dict[tuple[int, ...], np.ndarray] = {}
    visits: dict[tuple[int, ...], int] = {}
    planned_at: dict[tuple[int, ...], float] = {}  # L at n when a plan with n was last tried
    for rnd in range(MASTER_ROUNDS):
        ub, n_best = upper()
        lb, n = _instance_master(T, patterns, near=n_best)
        bound = max(bound, lb)
        say(f"slots: instance master round {rnd}: bound {bound:.8g}, plan {ub:.8g}, gap {relative_gap(ub, bound):.4%}")
        if n is None or relative_gap(ub, bound) <= limits.mip_rel_gap or time.perf_counter() > stop:
            break
        key = tuple(n.tolist())
        visit = visits.get(key, 0) + 1
        if visit > MASTER_VISITS:
            break
        visits[key] = visit
        # L at n that rules n out: the best plan's value less the gap (on the sample a little more, for its noise)
        target = ub * (1 - limits.mip_rel_gap) if math.isfinite(ub) else math.inf
        if key in prices:
            start = prices[key]
        elif prices:  # from the prices of the vector nearest to n among those visited (most differ in one pool)
            near = min(prices, key=lambda k: int(np.abs(np.array(k) - np.array(key)).sum()))
            start = prices[near]
        else:
            start = theta
        if visit < MASTER_VISITS:  # prices for n on the sample (the bound's last stage)
            th, _, it, _, _ = _bundle(T, sample, start, active, scale, 0.05, rel_tol=1e-7,
                                      max_iter=MASTER_ITERATIONS, deadline=stop, say=say, fixed_n=n,
                                      target=target * (1 + SAMPLE_MARGIN))
            Ln = math.nan
        else:  # the sample's prices left n where it was, twice: every query's bundle at n
            th, _, it, _, Ln = _bundle(T, full, start, active, scale, 0.005, rel_tol=1e-7, max_iter=FULL_ITERATIONS,
                                       deadline=stop, say=say, fixed_n=n, target=target, stall=FULL_STALL)
        prices[key] = th
        lam, pi, mu = T.prices(th)
        if math.isnan(Ln):
            Ln = _evaluate(T, full, lam, pi, mu, fixed_n=n)[0]  # a cut at n (full views record theirs)
        say(f"slots: instances {n.tolist()}: L {Ln:.8g} on every query after {it} iterations on "
            f"{'the sample' if visit < MASTER_VISITS else 'every query'}")
        # a plan with n may beat the best one (again where L at n rose since by more than the gap
        # asked for: at prices that close, the 1,000,000-query carbon day's plan came out the same)
        if Ln < target and Ln > planned_at.get(key, -math.inf) * (1 + max(limits.mip_rel_gap, 1e-6)):
            planned_at[key] = Ln
            try_plan(n.copy(), lam, pi, mu)
    return bound


def _one_more(T: _Slots, n: np.ndarray) -> list[np.ndarray]:
    """The instance vectors with one more instance of a deployment whose pool has the devices (and
    its fleet deployment the instances) for it."""
    out = []
    for cnt, ds in T.pools:
        for d in ds.tolist():
            if int((T.k[ds] * n[ds]).sum()) + T.k[d] <= cnt and n[T.groups_of[d]].sum() < T.max_inst[d]:
                nn = n.copy()
                nn[d] += 1
                out.append(nn)
    return out


def _floor_plans(T: _Slots, fill_at: Callable, n: np.ndarray, lam: np.ndarray, pi: np.ndarray, mu: float,
                 mu_scale: float) -> list:
    """Plans for a batch whose plan at (λ, π, μ) with the instances ``n`` falls short of the
    accuracy floor with every query placed: the accuracy's price doubled at a time (from
    ``mu_scale``/1000 where μ is 0), instances added where the choices at that price run over,
    until the plan meets the floor; where no price does, one more instance of a deployment at a
    time (the one whose plan comes nearest the floor); then the price bisected between the last
    that fell short and the first that met it, as :mod:`.decompose` does. ``fill_at(n, λ, π, μ,
    grow)`` makes a plan: ((queries unplaced, or 1 short of the floor), value), (instances, ...,
    dep, ..., unplaced). Returns every plan tried."""
    tries = []
    lo, hi = mu, None
    mu_t = mu if mu > 0 else mu_scale * 1e-3
    for _ in range(FLOOR_STEPS):
        mu_t *= 2.0
        tries.append(fill_at(n, lam, pi, mu_t, grow=True))
        if tries[-1][0][0] == 0:
            hi = mu_t
            break
        lo = mu_t
    for _ in range(FLOOR_ADD if hi is None else 0):
        more = [fill_at(nn, lam, pi, mu_t) for nn in _one_more(T, n)]
        if not more:
            break
        tries += more
        met = [r for r in more if r[0][0] == 0]
        if met:
            n, hi = min(met, key=lambda r: r[0])[1][0], mu_t
            break
        n = max((r for r in more if not r[1][5]), key=lambda r: T.accuracy_surplus(r[1][2]), default=more[0])[1][0]
    if hi is None:
        return tries
    for _ in range(FLOOR_BISECTIONS):
        mid = (lo + hi) / 2
        tries.append(fill_at(n, lam, pi, mid))
        if tries[-1][0][0] == 0:
            hi = mid
        else:
            lo = mid
    return tries


class SlottedMethod(Method):
    """The slot bound, then the plan at its prices (see the module docstring)."""

    name = "slotted"

    def solve(self, problem: Problem, backend: Solver, limits: Limits, progress: Progress) -> Choice:
        sp = problem.slots
        assert sp is not None
        progress(f"model: {sp.n_slots} time slots priced for {sp.objective} (Lagrangian bound, then fill and pack)")
        t0 = time.perf_counter()
        left = limits.remaining_s()
        rel_tol = min(limits.mip_rel_gap / 10, 1e-6)
        sb, T, full = slot_bound(problem, rel_tol=rel_tol, time_limit_s=None if left is None else left / 2,
                                 progress=progress)
        progress(f"slots: bound {sb.bound:.8g} after {sb.iterations} iterations in {sb.time_s:.2f} s")
        L, g_lam, g_pi, g_mu, n_inst, best, kk, v, second, load = _evaluate(T, full, sb.lam, sb.pi, sb.mu, choices=True)
        rows = full.rows
        candidates = [_instances_for_plan(T, n_inst, load)]
        by_need = _instances_for_plan(T, np.zeros(T.n_d, dtype=np.int64), load, one_each=True)
        if not np.array_equal(by_need, candidates[0]):
            candidates.append(by_need)
        if T.idle:  # instances cost their idle draw all day: also the fewest that hold the chosen work over the horizon
            candidates += [_fewest_instances(T, load), _covering_instances(T, rows)]
        best_plan = None

        def fill_at(n_plan, lam, pi, mu, grow=False):
            """A plan with the instances ``n_plan`` filled at the prices (λ, π, μ), a little lowered: at
            the best prices whole groups of queries are tied between a priced cell and an unpriced
            one (a capped clean slot and the next cleanest); lowered, the priced cell is the cheaper,
            takes them up to its lane-seconds or joules, and the rest are priced again. Packed, then
            with an accuracy floor improved by local moves (:func:`_improve`). Returns (unplaced or short of the accuracy
            floor, value), and the plan. With ``grow``, an instance more for each deployment whose
            chosen work at these prices runs over (or has none), while devices last."""
            n_plan = n_plan.copy()  # the repair may switch on more
            lam, pi = lam * FILL_PRICE_SHARE, pi * FILL_PRICE_SHARE
            *_, d0, k0, v0, s0, load_at = _evaluate(T, full, lam, pi, mu, choices=True, fixed_n=n_plan, close=False)
            if grow:
                n_plan = _instances_for_plan(T, n_plan, load_at, one_each=True)
            d_of, k_of, blocked = _fill(T, full, rows, d0, k0, v0, s0, n_plan, lam, pi, progress, mu)
            _sort_by_intensity(T, rows, d_of, k_of)
            dep, lane, start, unplaced, free = _pack(T, problem.n_queries, rows, d_of, k_of, n_plan, mu)
            _improve(T, full, dep, lane, start, n_plan, free, mu)
            short = T.accuracy_surplus(dep) < -1e-9 * max(T.acc_rhs, 1.0)
            value = _plan_value(T, dep, lane, start) if not unplaced and not short else math.inf
            return (len(unplaced) + int(short), value), (n_plan, blocked, dep, lane, start, unplaced)

        def try_plan(n_plan, lam, pi, mu=0.0):
            """:func:`fill_at`, kept where it beats the best plan; with an accuracy floor the plan
            falls short of, :func:`_floor_plans` too."""
            nonlocal best_plan
            key, got = fill_at(n_plan, lam, pi, mu)
            tries = [(key, got)]
            if T.has_acc and key[0] > 0 and not got[5]:  # short of the floor, every query placed
                tries += _floor_plans(T, fill_at, got[0], lam, pi, mu, float(sb.state[2][-1]))
            for key, got in tries:
                if best_plan is None or key < best_plan[0]:
                    best_plan = (key, *got)

        for n_plan in candidates:
            try_plan(n_plan, sb.lam, sb.pi, sb.mu)
        assert best_plan is not None
        bound = sb.bound
        # also without a plan yet: the instance vectors the master names are planned too
        bound = _instance_search(T, full, sb, sb.bound, lambda: (best_plan[0][1], best_plan[1]), try_plan, limits, progress,
                                 spent_s=time.perf_counter() - t0)
        key, n_plan, blocked, dep, lane, start, unplaced = best_plan
        solver_s = time.perf_counter() - t0
        if not unplaced and key[0] > 0:  # every query placed, short of the accuracy floor
            floor = float(problem.min_mean_accuracy or 0.0)
            reach = problem.max_mean_accuracy()
            if reach < floor:
                return Choice.none(self.name, "-", Status.INFEASIBLE, Termination.INFEASIBLE, math.inf, BoundSource.NONE,
                                   solver_s=solver_s, message=f"token-weighted mean accuracy can reach at most {reach:.4f} "
                                   f"(every query on its most accurate option), below the floor {floor}")
            got = floor + T.accuracy_surplus(dep) / max(float(T.w[rows].sum()), 1e-300)
            return Choice.none(self.name, "-", Status.NO_SOLUTION, Termination.NO_SOLUTION, bound, BoundSource.LAGRANGIAN,
                               solver_s=solver_s, message=f"no plan found within the slots' lanes and caps meets the "
                               f"token-weighted mean accuracy floor {floor} (the best reached {got:.4f})")
        if unplaced:
            msg = f"{len(unplaced)} queries found no slot with room on a lane within their windows"
            idle_on = np.bincount(T.pool_of, weights=n_plan * T.idle_w, minlength=T.n_p) if T.idle else np.zeros(T.n_p)
            idle_on = T.cap_rows @ idle_on  # per cap row
            over_idle = [c for c in T.capped.tolist() if idle_on[c] >= T.cap_w[c]]
            if over_idle:
                c = over_idle[0]
                msg += (f"; the idle draw of {T.cap_label[c]}'s instances ({idle_on[c]:,.1f} W) alone reaches its "
                        f"power_cap_w ({T.cap_w[c]:,.6g} W) in every slot, {idle_on[c] - T.cap_w[c]:,.1f} W over")
            elif blocked.any():
                c, k = np.unravel_index(int(np.argmax(blocked)), blocked.shape)
                short_w = float(blocked[c, k]) / float(T.dt[k])
                msg += (f"; the power cap of {T.cap_label[c]} ({T.cap_w[c]:,.6g} W) is {short_w:,.1f} W short in "
                        f"{slot_name(T.b, int(k))}")
            # no plan costs more than every query on its dearest option in its dearest slot, every instance on
            dearest = float(np.sum(np.max(np.where(T.ok, T.E, 0.0), axis=1))) * float(T.a0.max())
            dearest += float(np.sum(np.maximum(T.inst_cost, 0) * T.max_inst))
            status = Status.INFEASIBLE if bound > dearest * (1 + 1e-9) + 1e-12 else Status.NO_SOLUTION
            return Choice.none(self.name, "-", status, Termination.NO_SOLUTION, bound, BoundSource.LAGRANGIAN,
                               solver_s=solver_s, message=msg)
        return Choice(self.name, "-", Status.FEASIBLE, Termination.FEASIBLE, bound, BoundSource.LAGRANGIAN,
                      dep_of_q=dep, n_inst=n_plan, lane_of_q=lane, objective=math.nan, solver_s=solver_s,
                      message=f"{sb.iterations} bundle iterations; {int(np.sum(n_plan))} instances",
                      start_of_q=start)
