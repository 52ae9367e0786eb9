"""Whole instances in a Lagrangian bound: Benders cuts over the instance vector.

Maximising a Lagrangian over its prices gives the relaxation in which the instance vector is a
mix of integer ones (0.7 of an H200 serving one LLM): with ``--idle`` an instance costs its idle
draw over the whole horizon, and that mix leaves out most of the idle energy of the instances any
plan must switch on (gaps of 10-40 % at 20,000-100,000 queries). Every evaluation of L at prices
θ on every query is also a cut

    V(n) ≥ α(θ) − gain(θ)·n

on V(n), the least objective of the plans whose instance vector is n (α: L's part that does not
depend on the instances; gain: what one instance of each deployment is worth at θ, its priced
capacity less its own cost): with n fixed, L is a Lagrangian relaxation of those plans. The
*instance master* (:func:`instance_master`) is a small MILP, one integer per deployment, that
finds the n of least ``max`` over the cuts among the vectors the fleet allows (each pool's
devices, each fleet deployment's instances, and an instance for each set of options some query
has); its value bounds every plan. Cuts near the master's n (L maximised with the instances fixed
there) tighten it where it matters, as in Benders' decomposition.

The same master serves :mod:`.slotted` (cuts of L per time slot) and :mod:`.decompose`.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["MASTER_SLACK", "MASTER_TIE", "option_patterns", "instance_master"]

#: the master's bound is kept this much (relative) below HiGHS's value, for its tolerances
MASTER_SLACK = 1e-5
#: instance vectors whose master value is within this much (relative to the cuts' scale) of the least tie
MASTER_TIE = 1e-6


def option_patterns(ok: np.ndarray) -> np.ndarray:
    """The distinct sets of deployments the rows of ``ok`` (queries × deployments) have options on
    (``[m, n_d]`` bool; rows with no option left out): every plan switches on an instance of at
    least one deployment of each."""
    ok = np.asarray(ok, dtype=bool)
    ok = ok[ok.any(axis=1)]
    if not len(ok):
        return np.zeros((0, ok.shape[1]), dtype=bool)
    packed = np.packbits(ok, axis=1)
    return np.unpackbits(np.unique(packed, axis=0), axis=1, count=ok.shape[1]).astype(bool)


def instance_master(alpha: np.ndarray, gain: np.ndarray, pools: list[tuple[int, np.ndarray]],
                    groups: list[np.ndarray], devices: np.ndarray, max_inst: np.ndarray,
                    patterns: np.ndarray, near: np.ndarray | None = None) -> tuple[float, np.ndarray | None]:
    """min over integer n of max_c (``alpha[c]`` − ``gain[c]``·n), subject to each pool's devices
    (``pools``: count and deployments; ``devices`` per instance), each fleet deployment's
    instances (``groups``: the batch sizes of one deployment share ``max_inst``), and an instance
    of one deployment of each row of ``patterns``. Returns the value (-inf without cuts; +inf when
    no n is allowed) and the minimising n (None then). With ``near`` (the best plan's instances),
    among the vectors within :data:`MASTER_TIE` of the least the one nearest to ``near`` (a second
    MILP): many vectors tie where instances cost nothing and some are worth nothing at the prices
    so far (instances of an idle pool), and without it the master names one after another of them."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    from ..solvers.base import native_stdout_silenced

    alpha = np.asarray(alpha, dtype=float)
    if not len(alpha):
        return -math.inf, None
    G = np.asarray(gain, dtype=float).reshape(len(alpha), -1)
    n_d = G.shape[1]
    # about the objective's size, so that the values are near 1
    unit = max(float(np.median(np.abs(alpha))), float(np.max(np.abs(alpha))) * 1e-6, 1e-300)
    per_pool = np.zeros(n_d, dtype=np.int64)
    for cnt, ds in pools:
        per_pool[ds] = int(cnt) // np.maximum(devices[ds].astype(np.int64), 1)
    hi = np.minimum(max_inst.astype(np.int64), per_pool)
    rows = [np.hstack([G / unit, np.ones((len(alpha), 1))])]  # t + gain·n ≥ α
    lo_b, hi_b = [alpha / unit], [np.full(len(alpha), np.inf)]
    for cnt, ds in pools:
        r = np.zeros((1, n_d + 1))
        r[0, ds] = devices[ds]
        rows.append(r)
        lo_b.append(np.zeros(1))
        hi_b.append(np.array([float(cnt)]))
    for m in groups:
        if len(m) > 1:
            r = np.zeros((1, n_d + 1))
            r[0, m] = 1.0
            rows.append(r)
            lo_b.append(np.zeros(1))
            hi_b.append(np.array([float(max_inst[m[0]])]))
    if len(patterns):
        rows.append(np.hstack([patterns.astype(float), np.zeros((len(patterns), 1))]))
        lo_b.append(np.ones(len(patterns)))
        hi_b.append(np.full(len(patterns), np.inf))
    A = np.vstack(rows)
    c = np.r_[np.zeros(n_d), 1.0]
    with native_stdout_silenced():  # HiGHS's MIP solver prints debug lines at times, with presolve off too
        res = milp(c, constraints=LinearConstraint(A, np.concatenate(lo_b), np.concatenate(hi_b)),
                   integrality=np.r_[np.ones(n_d), 0.0],
                   bounds=Bounds(np.r_[np.zeros(n_d), -np.inf], np.r_[hi.astype(float), np.inf]),
                   options={"mip_rel_gap": 0.0, "presolve": False})
    if res.status == 2:  # infeasible: no instance vector serves every query within the fleet
        return math.inf, None
    if res.x is None:  # pragma: no cover - a MILP of ~20 integers solves
        return -math.inf, None
    n = np.round(res.x[:n_d]).astype(np.int64)
    dual = float(getattr(res, "mip_dual_bound", res.fun))
    if not math.isfinite(dual):
        dual = float(res.fun)
    if near is not None and not np.array_equal(n, near):
        # t within MASTER_TIE of the least; least Σ u with u ≥ |n − near| (u: n_d more columns)
        A2 = np.vstack([np.hstack([A, np.zeros((len(A), n_d))]),
                        np.r_[np.zeros(n_d), 1.0, np.zeros(n_d)],
                        np.hstack([np.eye(n_d), np.zeros((n_d, 1)), -np.eye(n_d)]),  # n − u ≤ near
                        np.hstack([-np.eye(n_d), np.zeros((n_d, 1)), -np.eye(n_d)])])  # −n − u ≤ −near
        lo2 = np.r_[np.concatenate(lo_b), -np.inf, np.full(2 * n_d, -np.inf)]
        hi2 = np.r_[np.concatenate(hi_b), float(res.fun) + MASTER_TIE, near.astype(float), -near.astype(float)]
        with native_stdout_silenced():
            res2 = milp(np.r_[np.zeros(n_d + 1), np.ones(n_d)], constraints=LinearConstraint(A2, lo2, hi2),
                        integrality=np.r_[np.ones(n_d), 0.0, np.zeros(n_d)],
                        bounds=Bounds(np.r_[np.zeros(n_d), -np.inf, np.zeros(n_d)],
                                      np.r_[hi.astype(float), np.inf, np.full(n_d, np.inf)]),
                        options={"mip_rel_gap": 0.0, "presolve": False})
        if res2.x is not None:
            n = np.round(res2.x[:n_d]).astype(np.int64)
    # HiGHS's tolerances (1e-7 on rows, values near 1): the bound is kept MASTER_SLACK below its value
    value = min(dual, float(res.fun))
    return (value - MASTER_SLACK * max(abs(value), 1.0)) * unit, n
