"""The assignment problem as one sparse matrix model that every backend solves.

Variables, in column order:

* ``x`` — binary, one per (option, machine): the query of the option runs there;
* ``z`` — continuous ≥ 0, the work [s] of one deadline bucket on one machine;
* ``u`` — capacity switches.

A *deployment* here is one LLM on one pool at one batch size b; an instance of it is b *lanes*,
each running its queries one after another. A *machine* is one lane of one instance in the
**exact** formulation (``u`` binary per instance: on or off, its lanes with it) and all lanes of
a deployment in the **aggregate** formulation (``u`` integer 0…max_instances: instances on).

Rows:

* every servable query is assigned once: Σ x = 1;
* each pool's devices: Σ devices_per_instance · u ≤ count;
* the batch sizes of one fleet deployment share its instances: Σ u ≤ max_instances;
* deadlines (completion times, all queries released at t = 0): on one lane, running queries in
  earliest-deadline-first order is optimal, and it meets every deadline iff for each deadline T the
  work of the queries due by T is ≤ T. With bucket loads z_l = Σ_{c in bucket l} r_c·x_c, the rows
  are Σ_{l' ≤ l} z_l' − T_l·lanes·u ≤ 0. The exact formulation has a level for every distinct
  deadline of a lane's options (so it is exact); the aggregate one pools a deployment's lanes and
  keeps at most ``max_levels`` levels, each row being implied by the exact model: it is a
  relaxation, so its optimum is a valid lower bound, and the plan is made by packing
  (``packing.py``);
* release windows (only where some query is released after t = 0): with release times EDF is no
  longer optimal on one lane and the deadline rows above are only implied by every feasible
  schedule, not sufficient for one. They stay (a relaxation), and for each release level r of a
  machine (at most ``max_levels``, the largest kept) the work of the queries released at or after
  r must fit between r and D_r, the latest deadline among those queries' options:
  Σ_{release ≥ r} r_c·x_c − (D_r − r)·lanes·u ≤ −(the fixed queries' such work). Every feasible
  schedule meets them, so the model stays a relaxation and its optimum a valid lower bound; the
  plan is made (or its lanes re-timed and repaired) by release-aware packing (``packing.py``);
* optional token-weighted mean accuracy: Σ w_q·acc·x ≥ A·Σ w_q;
* exact only: instances of a deployment switch on in order, u_i ≥ u_{i+1} (symmetry breaking).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from .problem import Problem

__all__ = ["MatrixModel", "build_matrix", "KINDS", "deadline_levels", "level_of", "matrix_nonzeros", "BuildTimedOut"]

#: the two matrix models: one column per (option, instance), or per option with instance counts
KINDS = ("exact", "aggregate")


#: seconds the sparse matrix's assembly takes per non-zero, a little more than measured on this
#: repository's machine (0.04 µs at 5.7 million non-zeros, 0.2 µs at 15 million, 0.32 µs at 23 million)
ASSEMBLY_S_PER_NONZERO = 4e-7


class BuildTimedOut(Exception):
    """The time limit ran out while a matrix model was being built (:func:`build_matrix`'s
    ``deadline``); the build stopped there."""


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
    x_lane: np.ndarray  # lane of its instance of each x column (exact) or -1
    u_dep: np.ndarray  # deployment of each u column
    u_inst: np.ndarray  # instance index (exact) or -1
    u_start: int
    row_kind: np.ndarray  # "assign", "pool", "group", "deadline", "release", "accuracy", "order", "load"

    @property
    def n_vars(self) -> int:
        return len(self.c)

    def u_values(self, sol: np.ndarray) -> np.ndarray:
        """The u columns' values (any columns after them, e.g. lane cuts' switches, left out)."""
        return sol[self.u_start:self.u_start + len(self.u_dep)]


def deadline_levels(deadlines_s: np.ndarray, max_levels: int | None) -> np.ndarray:
    """The deadline levels [s] of the capacity rows: the distinct deadlines, or, where there are
    more than ``max_levels``, evenly spaced quantiles of them that always keep the largest."""
    levels = np.unique(deadlines_s)
    if max_levels is not None and len(levels) > max_levels:
        idx = np.unique(np.round(np.linspace(0, len(levels) - 1, max_levels)).astype(int))
        levels = levels[idx]
    return levels


def level_of(levels_s: np.ndarray, deadlines_s: np.ndarray) -> np.ndarray:
    """Each deadline's level: the smallest kept level ≥ it (the row "work due by T" includes it)."""
    return np.searchsorted(levels_s, deadlines_s, side="left")


class _Rows:
    """Rows of the sparse matrix, collected as (row, column, value) triplets."""

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

    def add_many(self, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                 kind: str) -> None:
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


@dataclass
class _Options:
    """The problem's options as arrays: deployment, query, runtime [s], effective deadline [s],
    objective coefficient and release [s] of each."""

    dep: np.ndarray
    query: np.ndarray
    runtime_s: np.ndarray
    deadline_s: np.ndarray
    cost: np.ndarray
    release_s: np.ndarray


@dataclass
class _FixedWork:
    """Queries decided outside the model (aggregate only): deployment, deadline [s], runtime [s],
    release [s]."""

    dep: np.ndarray
    deadline_s: np.ndarray
    runtime_s: np.ndarray
    release_s: np.ndarray


@dataclass
class _Columns:
    """The column layout: x columns (option and machine), z columns (loads per machine and
    deadline level), then u columns. A *machine* runs queries one after another: one lane of one
    instance in the exact model, all lanes of all instances of a deployment in the aggregate one.
    A ``u`` is one instance's switch (exact) or a deployment's instance count (aggregate)."""

    x_cand: np.ndarray  # option of each x column
    x_inst: np.ndarray  # instance of each x column (exact) or -1
    x_lane: np.ndarray  # lane of each x column (exact) or -1
    x_machine: np.ndarray  # machine of each x column
    machine_dep: np.ndarray  # deployment of each machine
    machine_u: np.ndarray  # u column (0-based among the u) of each machine
    machine_lanes: np.ndarray  # lanes a machine's capacity counts per unit of its u (aggregate: the batch size)
    u_dep: np.ndarray  # deployment of each u column
    u_inst: np.ndarray  # instance of each u column (exact) or -1
    levels: list[np.ndarray]  # deadline levels [s] per deployment
    x_level: np.ndarray  # deadline level of each x column
    z_start: np.ndarray  # first z column of each machine

    @property
    def n_x(self) -> int:
        return len(self.x_cand)

    @cached_property
    def n_z(self) -> int:
        """z columns: one per machine and deadline level (counted once: the row builders ask per machine)."""
        return int(sum(len(self.levels[d]) for d in self.machine_dep))

    @property
    def u_start(self) -> int:
        return self.n_x + self.n_z

    @property
    def n_vars(self) -> int:
        return self.u_start + len(self.u_dep)


def _starts(counts: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64) if len(counts) else np.zeros(0, np.int64)


def _machines(kind: str, opts: _Options, max_inst: np.ndarray, lanes: np.ndarray) -> tuple[np.ndarray, ...]:
    """Machines, u columns and x columns: exact, one machine per lane of each instance, one u per
    instance and one x per (option, lane); aggregate, one machine and one u per deployment and
    one x per option."""
    n_d = len(max_inst)
    if kind == "exact":
        u_dep = np.repeat(np.arange(n_d), max_inst)
        u_inst = np.concatenate([np.arange(m) for m in max_inst]) if n_d else np.zeros(0, dtype=int)
        first_u = _starts(max_inst)
        per_dep = max_inst * lanes  # machines (lanes) per deployment
        machine_dep = np.repeat(np.arange(n_d), per_dep)
        k = np.concatenate([np.arange(m) for m in per_dep]) if n_d else np.zeros(0, dtype=int)  # lane slot within it
        machine_u = first_u[machine_dep] + k // lanes[machine_dep]
        machine_lanes = np.ones(len(machine_dep), dtype=np.int64)  # each machine is one lane
        reps = per_dep[opts.dep]
        x_cand = np.repeat(np.arange(len(opts.dep)), reps)
        slot = np.concatenate([np.arange(r) for r in reps]) if len(opts.dep) else np.zeros(0, dtype=int)
        x_dep = opts.dep[x_cand]
        x_inst = slot // lanes[x_dep]
        x_lane = slot % lanes[x_dep]
        x_machine = _starts(per_dep)[x_dep] + slot
    else:
        u_dep = np.arange(n_d)
        u_inst = np.full(n_d, -1)
        machine_dep = np.arange(n_d)
        machine_u = np.arange(n_d)
        machine_lanes = np.asarray(lanes, dtype=np.int64)
        x_cand = np.arange(len(opts.dep))
        x_inst = np.full(len(opts.dep), -1)
        x_lane = np.full(len(opts.dep), -1)
        x_machine = opts.dep.copy()
    return x_cand, x_inst, x_lane, x_machine, machine_dep, machine_u, machine_lanes, u_dep, u_inst


def _columns(kind: str, opts: _Options, fixed: _FixedWork, max_inst: np.ndarray, lanes: np.ndarray,
             max_levels: int) -> _Columns:
    """The column layout, with the deadline levels of each deployment (every distinct deadline in
    the exact model, at most ``max_levels`` in the aggregate one)."""
    x_cand, x_inst, x_lane, x_machine, machine_dep, machine_u, machine_lanes, u_dep, u_inst = _machines(
        kind, opts, max_inst, lanes)
    n_d = len(max_inst)
    levels = [
        deadline_levels(np.concatenate([opts.deadline_s[opts.dep == j], fixed.deadline_s[fixed.dep == j]]),
                        None if kind == "exact" else max_levels)
        if (np.any(opts.dep == j) or np.any(fixed.dep == j)) else np.zeros(0)
        for j in range(n_d)
    ]
    x_dep = opts.dep[x_cand]
    x_deadline = opts.deadline_s[x_cand]
    x_level = np.empty(len(x_cand), dtype=np.int64)
    for j in range(n_d):
        sel = x_dep == j
        if sel.any():
            x_level[sel] = level_of(levels[j], x_deadline[sel])
    n_lv_machine = np.array([len(levels[j]) for j in machine_dep], dtype=np.int64)
    z_start = len(x_cand) + _starts(n_lv_machine)
    return _Columns(x_cand, x_inst, x_lane, x_machine, machine_dep, machine_u, machine_lanes, u_dep, u_inst, levels,
                    x_level, z_start)


def _assignment_rows(rows: _Rows, cols: _Columns, opts: _Options, n_queries: int) -> np.ndarray:
    """Σ x = 1 for every servable query; returns the servable queries."""
    served_q = np.unique(opts.query)
    q_row = np.full(n_queries, -1, dtype=np.int64)
    q_row[served_q] = np.arange(len(served_q))
    ones = np.ones(len(served_q))
    rows.add_many(q_row[opts.query[cols.x_cand]], np.arange(cols.n_x), np.ones(cols.n_x), ones, ones, "assign")
    return served_q


def _load_rows(rows: _Rows, cols: _Columns, opts: _Options, fixed: _FixedWork) -> None:
    """z_(machine, level) − Σ r·x = the fixed queries' work at that level (0 without them)."""
    n_x, n_z = cols.n_x, cols.n_z
    z_row_of_x = cols.z_start[cols.x_machine] + cols.x_level - n_x
    fixed_load = np.zeros(n_z)
    for j in np.unique(fixed.dep):  # aggregate: machine j is deployment j
        sel = fixed.dep == j
        lv = level_of(cols.levels[j], fixed.deadline_s[sel])
        np.add.at(fixed_load, cols.z_start[j] - n_x + lv, fixed.runtime_s[sel])
    rows.add_many(
        np.concatenate([z_row_of_x, np.arange(n_z)]),
        np.concatenate([np.arange(n_x), n_x + np.arange(n_z)]),
        np.concatenate([-opts.runtime_s[cols.x_cand], np.ones(n_z)]),
        fixed_load, fixed_load, "load",
    )


def _deadline_rows(rows: _Rows, cols: _Columns, deadline: float | None = None) -> None:
    """Σ_{l' ≤ l} z_l' − T_l·lanes·u ≤ 0 per machine and deadline level (lanes = 1 for a lane of
    the exact model, the batch size for a deployment of the aggregate one); the clock is checked
    per machine against ``deadline`` (see :func:`build_matrix`)."""
    rr, cc, vv = [], [], []
    k = 0
    for m, dep in enumerate(cols.machine_dep):
        _check_time(deadline)
        z0 = cols.z_start[m]
        u_col = cols.u_start + cols.machine_u[m]
        for lv, T in enumerate(cols.levels[dep]):
            rr.append(np.full(lv + 2, k))
            cc.append(np.concatenate([z0 + np.arange(lv + 1), [u_col]]))
            vv.append(np.concatenate([np.ones(lv + 1), [-T * cols.machine_lanes[m]]]))
            k += 1
    if k:
        rows.add_many(np.concatenate(rr), np.concatenate(cc), np.concatenate(vv), np.full(k, -np.inf), np.zeros(k),
                      "deadline")


def _release_rows(rows: _Rows, cols: _Columns, opts: _Options, fixed: _FixedWork, max_levels: int) -> None:
    """Σ_{release ≥ r} r_c·x_c − (D_r − r)·lanes·u ≤ −fixed work released ≥ r, per machine and
    release level r > 0 of its deployment, D_r being the latest deadline among the options (and
    fixed queries) of the deployment released at or after r (see the module docstring)."""
    if not (np.any(opts.release_s > 0) or np.any(fixed.release_s > 0)):
        return
    n_d = int(cols.machine_dep.max(initial=-1)) + 1
    x_dep = opts.dep[cols.x_cand]
    x_rel = opts.release_s[cols.x_cand]
    x_run = opts.runtime_s[cols.x_cand]
    levels: list[np.ndarray] = []
    latest: list[np.ndarray] = []
    fixed_after: list[np.ndarray] = []
    for j in range(n_d):
        rel = np.concatenate([opts.release_s[opts.dep == j], fixed.release_s[fixed.dep == j]])
        due = np.concatenate([opts.deadline_s[opts.dep == j], fixed.deadline_s[fixed.dep == j]])
        lv = deadline_levels(rel[rel > 0], max_levels)
        by_rel = np.argsort(rel, kind="stable")
        suffix_max = np.maximum.accumulate(due[by_rel][::-1])[::-1] if len(rel) else np.zeros(0)
        latest.append(suffix_max[np.searchsorted(rel[by_rel], lv, side="left")] if len(lv) else np.zeros(0))
        levels.append(lv)
        f_sel = fixed.dep == j
        f_rel, f_run = fixed.release_s[f_sel], fixed.runtime_s[f_sel]
        fixed_after.append(np.array([f_run[f_rel >= r].sum() for r in lv]))
    n_lv = np.array([len(levels[int(j)]) for j in cols.machine_dep], dtype=np.int64)
    if not n_lv.sum():
        return
    row_start = _starts(n_lv)
    # each x is in the rows of the levels at or below its release
    count = np.zeros(cols.n_x, dtype=np.int64)
    for j in range(n_d):
        sel = x_dep == j
        if len(levels[j]) and sel.any():
            count[sel] = np.searchsorted(levels[j], x_rel[sel], side="right")
    x_idx = np.repeat(np.arange(cols.n_x), count)
    level = np.arange(len(x_idx)) - np.repeat(np.cumsum(count) - count, count)
    x_rows = row_start[cols.x_machine[x_idx]] + level
    m_of_row = np.repeat(np.arange(len(n_lv)), n_lv)
    lv_of_row = np.arange(int(n_lv.sum())) - np.repeat(row_start, n_lv)
    dep_of_row = cols.machine_dep[m_of_row]
    r_of_row = np.array([levels[int(j)][a] for j, a in zip(dep_of_row, lv_of_row)])
    d_of_row = np.array([latest[int(j)][a] for j, a in zip(dep_of_row, lv_of_row)])
    cap = -(d_of_row - r_of_row) * cols.machine_lanes[m_of_row]
    fixed_rhs = -np.array([fixed_after[int(j)][a] for j, a in zip(dep_of_row, lv_of_row)])
    n_rows = len(m_of_row)
    rows.add_many(np.concatenate([x_rows, np.arange(n_rows)]),
                  np.concatenate([x_idx, cols.u_start + cols.machine_u[m_of_row]]),
                  np.concatenate([x_run[x_idx], cap]), np.full(n_rows, -np.inf), fixed_rhs, "release")


def _pool_rows(rows: _Rows, cols: _Columns, problem: Problem) -> None:
    """Σ devices_per_instance · u ≤ the pool's devices."""
    deps = problem.deployments
    devices_per_inst = deps["devices_per_instance"].to_numpy()
    pool_of_machine = deps["device"].to_numpy()[cols.u_dep]
    for pool, count in zip(problem.pools["pool"], problem.pools["count"]):
        sel = np.flatnonzero(pool_of_machine == pool)
        if len(sel):
            rows.add(cols.u_start + sel, devices_per_inst[cols.u_dep[sel]].astype(float), -np.inf, float(count), "pool")


def _group_rows(rows: _Rows, cols: _Columns, problem: Problem) -> None:
    """The batch sizes of one fleet deployment share its max_instances: Σ u ≤ max_instances."""
    deps = problem.deployments
    group_of_u = deps["group"].to_numpy()[cols.u_dep]
    for g, members in deps.groupby("group").groups.items():
        if len(members) < 2:
            continue  # one batch size: the u's own upper bound says it
        sel = np.flatnonzero(group_of_u == g)
        rows.add(cols.u_start + sel, np.ones(len(sel)), -np.inf, float(deps["max_instances"].iloc[members[0]]), "group")


def _accuracy_row(rows: _Rows, cols: _Columns, problem: Problem, opts: _Options, served_q: np.ndarray,
                  fixed_accuracy: float, weight_total: float | None) -> None:
    """Σ w_q·acc·x ≥ A·Σ w_q (less what the fixed queries already bring)."""
    if problem.min_mean_accuracy is None:
        return
    w = problem.queries["weight"].to_numpy()
    acc = problem.deployments["accuracy"].to_numpy(dtype=float)[opts.dep]
    coef = w[opts.query[cols.x_cand]] * acc[cols.x_cand]
    w_total = float(w[served_q].sum()) if weight_total is None else weight_total
    rows.add(np.arange(cols.n_x), coef, problem.min_mean_accuracy * w_total - fixed_accuracy, np.inf, "accuracy")


def _order_rows(rows: _Rows, cols: _Columns) -> None:
    """Symmetry breaking (exact): instances of a deployment switch on in order, u_i ≥ u_{i+1}."""
    u = cols.u_dep
    same = (u[:-1] == u[1:]) if len(u) > 1 else np.zeros(0, dtype=bool)
    for m in np.flatnonzero(same):
        rows.add(np.array([cols.u_start + m, cols.u_start + m + 1]), np.array([1.0, -1.0]), 0.0, np.inf, "order")


def matrix_nonzeros(problem: Problem, kind: str, max_levels: int = 24) -> int:
    """The non-zeros of :func:`build_matrix`'s matrix for ``problem`` (without fixed work),
    counted from the options alone, before (and instead of) building it: the x columns twice
    (assignment and load rows), the z columns (load rows), the deadline rows (a machine with L
    deadline levels has rows of 2, 3, …, L + 1 entries: the exact model, one machine per lane and
    a level per distinct deadline, grows with lanes × deadlines²), the release rows (at most
    every x in every release level) and the accuracy row. The row kinds with a few entries per
    instance (pool, group, order) are left out."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    cand = problem.cand
    deps = problem.deployments
    machines = (deps["max_instances"].to_numpy() * deps["lanes"].to_numpy()).astype(np.int64) if kind == "exact" \
        else np.ones(len(deps), dtype=np.int64)
    by_dep = cand.groupby("d")
    n_opts = by_dep.size().reindex(range(len(deps)), fill_value=0).to_numpy(dtype=np.int64)
    levels = by_dep["deadline_eff_s"].nunique().reindex(range(len(deps)), fill_value=0).to_numpy(dtype=np.int64)
    if kind == "aggregate":
        levels = np.minimum(levels, max_levels)
    released = cand[cand["release_s"] > 0].groupby("d")["release_s"].nunique()
    rel_levels = np.minimum(released.reindex(range(len(deps)), fill_value=0).to_numpy(dtype=np.int64), max_levels)
    n_x = n_opts * machines
    per_machine = levels * (levels + 1) // 2 + levels  # deadline rows: Σ_{l<L} (l + 2)
    nnz = 2 * n_x + machines * levels + machines * per_machine + n_x * rel_levels
    if problem.min_mean_accuracy is not None:
        nnz = nnz + n_x
    return int(nnz.sum())


def _check_time(deadline: float | None) -> None:
    """Raise :class:`BuildTimedOut` once ``time.perf_counter()`` has passed ``deadline``."""
    if deadline is not None and time.perf_counter() > deadline:
        raise BuildTimedOut()


def build_matrix(
    problem: Problem,
    kind: str,
    max_levels: int = 24,
    *,
    fixed_work: tuple[np.ndarray, ...] | None = None,
    fixed_accuracy: float = 0.0,
    weight_total: float | None = None,
    deadline: float | None = None,
) -> MatrixModel:
    """The ``exact`` or ``aggregate`` matrix model of a problem (see the module docstring).

    ``fixed_work`` = (deployment, deadline [s], runtime [s][, release [s]]) of queries already
    decided outside the model (aggregate only): their work enters the deadline and release rows as
    constants, and
    ``fixed_accuracy`` (their Σ w·acc) the accuracy row, whose total weight is then ``weight_total``.
    ``deadline`` (a ``time.perf_counter()`` value, e.g. :meth:`~energyopt.methods.Limits.deadline`):
    the build checks the clock between its steps (and per machine while it writes the deadline
    rows, the exact model's largest step) and raises :class:`BuildTimedOut` once it has passed;
    the last step, assembling the sparse matrix, cannot be interrupted: it starts only where
    :data:`ASSEMBLY_S_PER_NONZERO` per non-zero is left.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if fixed_work is not None and kind != "aggregate":
        raise ValueError("fixed work needs the aggregate formulation")
    if fixed_work is None:
        fixed = _FixedWork(np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros(0))
    else:
        fw = [np.asarray(a) for a in fixed_work]
        release = fw[3] if len(fw) > 3 else np.zeros(len(fw[0]))
        fixed = _FixedWork(fw[0], fw[1], fw[2], release)
    cand = problem.cand
    opts = _Options(cand["d"].to_numpy(), cand["q"].to_numpy(), cand["runtime_s"].to_numpy(),
                    cand["deadline_eff_s"].to_numpy(), cand["cost"].to_numpy(), cand["release_s"].to_numpy())
    max_inst = problem.deployments["max_instances"].to_numpy()
    lanes = problem.deployments["lanes"].to_numpy().astype(np.int64)
    _check_time(deadline)
    cols = _columns(kind, opts, fixed, max_inst, lanes, max_levels)
    _check_time(deadline)

    rows = _Rows()
    served_q = _assignment_rows(rows, cols, opts, problem.n_queries)
    _load_rows(rows, cols, opts, fixed)
    _check_time(deadline)
    _deadline_rows(rows, cols, deadline)
    _check_time(deadline)
    _release_rows(rows, cols, opts, fixed, max_levels)
    _check_time(deadline)
    _pool_rows(rows, cols, problem)
    _group_rows(rows, cols, problem)
    _accuracy_row(rows, cols, problem, opts, served_q, fixed_accuracy, weight_total)
    if kind == "exact":
        _order_rows(rows, cols)
    # the assembly is one step: it starts only where it can end in time
    _check_time(None if deadline is None else deadline - ASSEMBLY_S_PER_NONZERO * sum(len(c) for c in rows.c))

    n_x, u_start, n_vars = cols.n_x, cols.u_start, cols.n_vars
    c = np.zeros(n_vars)
    c[:n_x] = opts.cost[cols.x_cand]
    c[u_start:] = problem.instance_cost[cols.u_dep]
    var_lo = np.zeros(n_vars)
    var_hi = np.full(n_vars, np.inf)
    var_hi[:n_x] = 1.0
    var_hi[u_start:] = 1.0 if kind == "exact" else max_inst[cols.u_dep]
    integrality = np.zeros(n_vars, dtype=np.int8)
    integrality[:n_x] = 1
    integrality[u_start:] = 1
    return MatrixModel(
        kind=kind, c=c, A=rows.matrix(n_vars), row_lo=np.array(rows.lo, dtype=float),
        row_hi=np.array(rows.hi, dtype=float), var_lo=var_lo, var_hi=var_hi.astype(float),
        integrality=integrality, n_x=n_x, x_cand=cols.x_cand, x_inst=cols.x_inst, x_lane=cols.x_lane, u_dep=cols.u_dep,
        u_inst=cols.u_inst, u_start=u_start, row_kind=np.array(rows.kind),
    )
