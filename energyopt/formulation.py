"""The assignment problem as one sparse matrix model that every backend solves.

Variables, in column order:

* ``x`` — binary, one per (option, machine): the query of the option runs there;
* ``z`` — continuous ≥ 0, the work [s] of one deadline bucket on one machine;
* ``u`` — a machine's capacity switch.

A *machine* is one instance in the **exact** formulation (``u`` binary: instance on or off) and one
deployment in the **aggregate** formulation (``u`` integer 0…max_instances: instances switched on).

Rows:

* every servable query is assigned once: Σ x = 1;
* each pool's devices: Σ devices_per_instance · u ≤ count;
* deadlines (completion times, all queries released at t = 0): on one instance, running queries in
  earliest-deadline-first order is optimal, and it meets every deadline iff for each deadline T the
  work of the queries due by T is ≤ T. With bucket loads z_l = Σ_{c in bucket l} r_c·x_c, the rows
  are Σ_{l' ≤ l} z_l' − T_l·u ≤ 0. The exact formulation has a level for every distinct deadline of
  an instance's options (so it is exact); the aggregate one pools a deployment's instances and keeps
  at most ``max_levels`` levels, each row being implied by the exact model: it is a relaxation, so
  its optimum is a valid lower bound, and the plan is made by packing (``schedule.py``);
* optional token-weighted mean accuracy: Σ w_q·acc·x ≥ A·Σ w_q;
* exact only: instances of a deployment switch on in order, u_i ≥ u_{i+1} (symmetry breaking).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .problem import Problem

__all__ = ["MatrixModel", "build_matrix", "FORMULATIONS", "choose_formulation"]

FORMULATIONS = ("auto", "exact", "aggregate", "decompose")
EXACT_MAX_COLUMNS = 20_000


@dataclass
class MatrixModel:
    kind: str  # "exact" or "aggregate"
    c: np.ndarray
    A: sp.csr_matrix
    row_lo: np.ndarray
    row_hi: np.ndarray
    var_lo: np.ndarray
    var_hi: np.ndarray
    integrality: np.ndarray  # 1 integer, 0 continuous
    n_x: int
    x_cand: np.ndarray  # option index of each x column
    x_inst: np.ndarray  # instance index of each x column (exact) or -1
    u_dep: np.ndarray  # deployment of each u column
    u_inst: np.ndarray  # instance index (exact) or -1
    u_start: int
    row_kind: np.ndarray  # "assign", "pool", "deadline", "accuracy", "order", "load"

    @property
    def n_vars(self) -> int:
        return len(self.c)

    def u_values(self, sol: np.ndarray) -> np.ndarray:
        return sol[self.u_start:]


def choose_formulation(problem: Problem, formulation: str = "auto") -> str:
    if formulation not in FORMULATIONS:
        raise ValueError(f"formulation must be one of {FORMULATIONS}, got {formulation!r}")
    if formulation != "auto":
        return formulation
    m = problem.deployments["max_instances"].to_numpy()
    cols = int(np.count_nonzero(problem.ok, axis=0) @ m)  # x columns of the exact model: options × instances
    return "exact" if cols <= EXACT_MAX_COLUMNS else "decompose"


def _levels(deadlines: np.ndarray, max_levels: int | None) -> np.ndarray:
    levels = np.unique(deadlines)
    if max_levels is not None and len(levels) > max_levels:
        # keep evenly spaced quantiles of the distinct deadlines, always the largest
        idx = np.unique(np.round(np.linspace(0, len(levels) - 1, max_levels)).astype(int))
        levels = levels[idx]
    return levels


class _Rows:
    def __init__(self) -> None:
        self.r: list[np.ndarray] = []
        self.c: list[np.ndarray] = []
        self.v: list[np.ndarray] = []
        self.lo: list[float] = []
        self.hi: list[float] = []
        self.kind: list[str] = []

    def add(self, cols: np.ndarray, vals: np.ndarray, lo: float, hi: float, kind: str) -> None:
        k = len(self.lo)
        self.r.append(np.full(len(cols), k, dtype=np.int64))
        self.c.append(np.asarray(cols, dtype=np.int64))
        self.v.append(np.asarray(vals, dtype=float))
        self.lo.append(lo)
        self.hi.append(hi)
        self.kind.append(kind)

    def add_many(self, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, lo: np.ndarray, hi: np.ndarray, kind: str) -> None:
        """Rows numbered 0..len(lo)-1 locally, appended after the existing ones."""
        base = len(self.lo)
        self.r.append(np.asarray(rows, dtype=np.int64) + base)
        self.c.append(np.asarray(cols, dtype=np.int64))
        self.v.append(np.asarray(vals, dtype=float))
        self.lo.extend(np.asarray(lo, dtype=float).tolist())
        self.hi.extend(np.asarray(hi, dtype=float).tolist())
        self.kind.extend([kind] * len(lo))

    def matrix(self, n_cols: int) -> sp.csr_matrix:
        if not self.r:
            return sp.csr_matrix((0, n_cols))
        return sp.csr_matrix(
            (np.concatenate(self.v), (np.concatenate(self.r), np.concatenate(self.c))),
            shape=(len(self.lo), n_cols),
        )


def build_matrix(
    problem: Problem,
    formulation: str = "auto",
    max_levels: int = 24,
    *,
    fixed_work: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    fixed_accuracy: float = 0.0,
    weight_total: float | None = None,
) -> MatrixModel:
    """The matrix model of a problem (see the module docstring).

    ``fixed_work`` = (deployment, deadline, runtime) of queries already decided outside the model
    (aggregate only): their work enters the deadline rows as constants, and ``fixed_accuracy``
    (their Σ w·acc) the accuracy row, whose total weight is then ``weight_total``.
    """
    kind = choose_formulation(problem, formulation)
    if kind == "decompose":  # its MILP part is aggregate (decompose.py)
        kind = "aggregate"
    if fixed_work is not None and kind != "aggregate":
        raise ValueError("fixed work needs the aggregate formulation")
    fd, fdl, fr = fixed_work if fixed_work is not None else (np.zeros(0, np.int64), np.zeros(0), np.zeros(0))
    cand = problem.cand
    deps = problem.deployments
    n_d = len(deps)
    m_d = deps["max_instances"].to_numpy()
    cd = cand["d"].to_numpy()
    cq = cand["q"].to_numpy()
    cr = cand["runtime_s"].to_numpy()
    cdl = cand["deadline_eff_s"].to_numpy()
    ccost = cand["cost"].to_numpy()

    # machines and x columns
    if kind == "exact":
        u_dep = np.repeat(np.arange(n_d), m_d)
        u_inst = np.concatenate([np.arange(m) for m in m_d]) if n_d else np.zeros(0, dtype=int)
        first_u = np.concatenate([[0], np.cumsum(m_d)[:-1]]) if n_d else np.zeros(0, dtype=int)
        reps = m_d[cd]
        x_cand = np.repeat(np.arange(len(cand)), reps)
        x_inst = np.concatenate([np.arange(r) for r in reps]) if len(cand) else np.zeros(0, dtype=int)
        x_machine = first_u[cd[x_cand]] + x_inst
    else:
        u_dep = np.arange(n_d)
        u_inst = np.full(n_d, -1)
        x_cand = np.arange(len(cand))
        x_inst = np.full(len(cand), -1)
        x_machine = cd.copy()
    n_x = len(x_cand)
    n_u = len(u_dep)

    # deadline levels per machine: level index of each x column, loads z per (machine, level)
    levels_of_dep = [
        _levels(np.concatenate([cdl[cd == j], fdl[fd == j]]), None if kind == "exact" else max_levels)
        if (np.any(cd == j) or np.any(fd == j)) else np.zeros(0)
        for j in range(n_d)
    ]
    x_dl = cdl[x_cand]
    x_level = np.empty(n_x, dtype=np.int64)
    for j in range(n_d):
        sel = cd[x_cand] == j
        if sel.any():
            # the smallest kept level >= the deadline (the largest deadline is always kept)
            x_level[sel] = np.searchsorted(levels_of_dep[j], x_dl[sel], side="left")
    n_lv_machine = np.array([len(levels_of_dep[j]) for j in u_dep], dtype=np.int64)
    z_start_machine = n_x + np.concatenate([[0], np.cumsum(n_lv_machine)[:-1]]) if n_u else np.zeros(0, dtype=np.int64)
    n_z = int(n_lv_machine.sum())
    u_start = n_x + n_z
    n_vars = u_start + n_u

    rows = _Rows()
    # assignment rows: one per servable query
    served_q = np.unique(cq)
    q_row = np.full(problem.n_queries, -1, dtype=np.int64)
    q_row[served_q] = np.arange(len(served_q))
    rows.add_many(q_row[cq[x_cand]], np.arange(n_x), np.ones(n_x), np.ones(len(served_q)), np.ones(len(served_q)), "assign")
    # load rows: z_(machine, level) - sum r x = 0
    z_col_of_x = z_start_machine[x_machine] + x_level
    n_load = n_z
    load_rows_x = z_col_of_x - n_x
    fixed_load = np.zeros(n_load)
    for j in np.unique(fd):  # aggregate: machine j is deployment j
        sel = fd == j
        lv = np.searchsorted(levels_of_dep[j], fdl[sel], side="left")
        np.add.at(fixed_load, z_start_machine[j] - n_x + lv, fr[sel])
    rows.add_many(
        np.concatenate([load_rows_x, np.arange(n_z)]),
        np.concatenate([np.arange(n_x), n_x + np.arange(n_z)]),
        np.concatenate([-cr[x_cand], np.ones(n_z)]),
        fixed_load, fixed_load, "load",
    )
    # deadline prefix rows: sum_{l' <= l} z_l' - T_l u <= 0
    rr, cc, vv = [], [], []
    k = 0
    for m in range(n_u):
        lv = levels_of_dep[u_dep[m]]
        z0 = z_start_machine[m]
        for l, T in enumerate(lv):
            rr.append(np.full(l + 2, k))
            cc.append(np.concatenate([z0 + np.arange(l + 1), [u_start + m]]))
            vv.append(np.concatenate([np.ones(l + 1), [-T]]))
            k += 1
    if k:
        rows.add_many(np.concatenate(rr), np.concatenate(cc), np.concatenate(vv), np.full(k, -np.inf), np.zeros(k), "deadline")
    # pool rows
    k_d = deps["devices_per_instance"].to_numpy()
    for _, p in problem.pools.iterrows():
        sel = np.flatnonzero(deps["device"].to_numpy()[u_dep] == p["pool"])
        if len(sel):
            rows.add(u_start + sel, k_d[u_dep[sel]].astype(float), -np.inf, float(p["count"]), "pool")
    # accuracy row
    if problem.min_mean_accuracy is not None:
        w = problem.queries["weight"].to_numpy()
        acc = cand["accuracy"].to_numpy()
        coef = w[cq[x_cand]] * acc[x_cand]
        w_total = float(w[served_q].sum()) if weight_total is None else weight_total
        rows.add(np.arange(n_x), coef, problem.min_mean_accuracy * w_total - fixed_accuracy, np.inf, "accuracy")
    # symmetry breaking (exact): u_i - u_{i+1} >= 0 within a deployment
    if kind == "exact":
        same = (u_dep[:-1] == u_dep[1:]) if n_u > 1 else np.zeros(0, dtype=bool)
        for m in np.flatnonzero(same):
            rows.add(np.array([u_start + m, u_start + m + 1]), np.array([1.0, -1.0]), 0.0, np.inf, "order")

    c = np.zeros(n_vars)
    c[:n_x] = ccost[x_cand]
    c[u_start:] = problem.instance_cost[u_dep]
    var_lo = np.zeros(n_vars)
    var_hi = np.full(n_vars, np.inf)
    var_hi[:n_x] = 1.0
    var_hi[u_start:] = 1.0 if kind == "exact" else m_d[u_dep]
    integrality = np.zeros(n_vars, dtype=np.int8)
    integrality[:n_x] = 1
    integrality[u_start:] = 1
    return MatrixModel(
        kind=kind,
        c=c,
        A=rows.matrix(n_vars),
        row_lo=np.array(rows.lo, dtype=float),
        row_hi=np.array(rows.hi, dtype=float),
        var_lo=var_lo,
        var_hi=var_hi.astype(float),
        integrality=integrality,
        n_x=n_x,
        x_cand=x_cand,
        x_inst=x_inst,
        u_dep=u_dep,
        u_inst=u_inst,
        u_start=u_start,
        row_kind=np.array(rows.kind),
    )
