"""An accuracy floor no plan can meet, proven by bounding the most accuracy instead of searching
for a plan that does not exist.

A model with a mean-accuracy floor has the row Σ w_q·acc·x ≥ A·Σ w_q (:mod:`energyopt.formulation`).
Where no plan meets it, :mod:`.strong` proves that only by a search: on the 1,000-query example
the floor 0.666 (Llama-3-8B alone's accuracy, in ``compare``) took 107 s for step 3's relaxation
and 80-125 s for the whole model. The same relaxation (instance counts integral, options
relaxed), without the floor row and maximising the row's left side instead, proves in 5-13 s
(2-core machine, one branch-and-bound node) that no plan of the fleet's capacity and deadlines
reaches a token-weighted mean accuracy above 0.6648: below the floor, so no plan meets it.

What the most accuracy is known to be, its :class:`Ceiling`, comes from (cheapest first):

* the ceilings of earlier models of the same rows, remembered within
  :func:`~.strong.remembered_cuts` (compare's and sweep's floors, one model each): a floor above a
  proven ceiling is out of reach at once, a floor at or below what a relaxation reached is not
  tried again, and a floor above all that earlier floors reached, where none searched, is searched
  for at once, before the LP (:func:`remembered_verdict`);
* the LP relaxation with the cuts found so far (:func:`lp_ceiling`), where the LP with the floor
  row is infeasible (one LP instead of the backend's search);
* the relaxation with the instance counts integral (:func:`relaxation_ceiling`), after the LP
  and before steps 2-3, in a batch for step 3, where the LP's optimum meets the floor with no
  slack (a floor that does not bind there is not what makes the batch hard), no relaxation of
  the same rows reached it before, and the LP's instance counts rounded do not reach it either
  (:func:`rounded_reach`: a point of the relaxation in numpy or one LP; on the example it spares
  the search for compare's floors 0.5224-0.64, where it would add 3-7 s to a 4 s plan).

Every ceiling is a valid upper bound on every plan's Σ w·acc·x: each model solved is a
relaxation of the plans (the cut rows of :mod:`.strong` and :mod:`.lanecuts` hold for every plan).
A floor is called out of reach only below the ceiling by :data:`FLOOR_SLACK` (relative), more
than the backends' tolerances, and more than the checker's 1e-9 on the mean.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..diagnose import shown_below
from ..formulation import MatrixModel
from ..problem import Problem
from ..solvers import Solver
from . import Limits
from .strong import INT_TOL, RELAXED_SHARE, _lp, backend_solve, count_columns, options_relaxed, recall, remember

__all__ = ["Ceiling", "FloorRow", "FLOOR_SLACK", "CEILING_REL_GAP", "CEILING_MIN_S", "CEILING_TIME_FACTOR",
           "floor_row", "out_of_reach", "remembered_ceiling", "lp_ceiling", "relaxation_ceiling",
           "remembered_verdict", "lp_verdict", "relaxation_verdict", "rounded_reach"]

#: a floor is out of reach where the ceiling is below it by more than this share of the floor row's
#: right-hand side (HiGHS's feasibility tolerances are 1e-7 on rows; the checker allows 1e-9 on the mean)
FLOOR_SLACK = 1e-6
#: the relaxation's search stops within this relative gap of its ceiling (measured on the example:
#: one node, 0.66476 reached, 0.66483 proven; a tenth of it took 11 nodes and twice the time)
CEILING_REL_GAP = 1e-4
#: the relaxation may take this many times the seconds spent on the model so far, at least
#: CEILING_MIN_S (measured on the example: 5-13 s on the 2-core machine, as busy as it was)
CEILING_TIME_FACTOR = 2.0
CEILING_MIN_S = 20.0


@dataclasses.dataclass(frozen=True)
class Ceiling:
    """What is known of the most Σ w·acc·x (the floor row's left side) over a model's plans:
    ``at_most`` is proven (inf: nothing is), ``how`` says by what; a relaxation ``reached``
    (-inf: none), so it proves nothing of a floor at or below that."""

    at_most: float = math.inf
    reached: float = -math.inf
    how: str = ""
    searched: bool = False  # whether the relaxation's search (relaxation_ceiling) gave it: no second search

    def merged(self, other: Ceiling) -> Ceiling:
        """The tighter proof and the higher point of the two."""
        proof = self if self.at_most <= other.at_most else other
        return Ceiling(proof.at_most, max(self.reached, other.reached), proof.how, self.searched or other.searched)


@dataclasses.dataclass(frozen=True)
class FloorRow:
    """A model's floor row: its index, its right-hand side, the key of what its ceiling depends on
    (:func:`_key`), the total weight that turns the row's value into the mean (None where the
    model holds queries decided outside it: the row is then the free queries' part), and the floor."""

    row: int
    rhs: float
    key: tuple
    weight_total: float | None
    floor: float

    def mean(self, value: float) -> float | None:
        """The token-weighted mean accuracy of the row's ``value`` (None where it is not a mean)."""
        return None if self.weight_total is None else value / self.weight_total

    def shown(self, value: float) -> float:
        """The mean of the row's ``value`` where it is one, else the value."""
        mean = self.mean(value)
        return value if mean is None else mean

    def reaches(self, value: float) -> bool:
        """Whether a point whose row value is ``value`` meets the floor, within :data:`FLOOR_SLACK` (an
        LP's point at the floor is there up to its tolerances: 0.64 came out as 0.6399999999999999)."""
        return value >= self.rhs - FLOOR_SLACK * max(abs(self.rhs), 1.0)

    def beyond(self, ceiling: Ceiling) -> bool:
        """Whether the floor is above what ``ceiling`` proves, by more than :data:`FLOOR_SLACK`."""
        return ceiling.at_most < self.rhs - FLOOR_SLACK * max(abs(self.rhs), 1.0)


def floor_row(model: MatrixModel, problem: Problem) -> FloorRow | None:
    """The model's mean-accuracy floor row (None: it has none)."""
    rows = np.flatnonzero(model.row_kind == "accuracy")
    if problem.min_mean_accuracy is None or len(rows) != 1 or not np.isfinite(model.row_lo[rows[0]]):
        return None
    r = int(rows[0])
    rhs = float(model.row_lo[r])
    w = problem.queries["weight"].to_numpy(dtype=float)
    total = float(w[np.unique(problem.cand["q"].to_numpy()[model.x_cand])].sum())
    floor = float(problem.min_mean_accuracy)
    # the row is A·Σ w where no query is decided outside the model (decompose's parts are not)
    is_mean = math.isclose(rhs, floor * total, rel_tol=1e-9, abs_tol=1e-9)
    return FloorRow(r, rhs, _key(model, r), total if is_mean else None, floor)


def _key(model: MatrixModel, row: int) -> tuple:
    """What the most Σ w·acc·x depends on: the model's rows but the floor's and the cuts (vub, lane,
    which every plan meets) over its option, load and instance columns, their bounds and
    integrality, and the floor row's coefficients (not its right-hand side): the options, runtimes,
    deadlines, lanes, instances, pools and accuracy weights."""
    n = model.u_start + len(model.u_dep)  # lane cuts' switch columns come after these
    keep = ~np.isin(model.row_kind, ("accuracy", "vub", "lane"))
    A = model.A[np.flatnonzero(keep)][:, :n].tocsr()
    acc = model.A[row]
    return ("ceiling", model.kind, n, hash(model.x_cand.tobytes()), hash(A.indptr.tobytes()),
            hash(A.indices.tobytes()), hash(A.data.tobytes()), hash(model.row_lo[keep].tobytes()),
            hash(model.row_hi[keep].tobytes()), hash(model.var_lo[:n].tobytes()), hash(model.var_hi[:n].tobytes()),
            hash(model.integrality[:n].tobytes()), hash(acc.indices.tobytes()), hash(acc.data.tobytes()))


def remembered_ceiling(fr: FloorRow) -> Ceiling:
    """The ceiling remembered for the floor row's model (within :func:`~.strong.remembered_cuts`)."""
    return recall(fr.key) or Ceiling()


def _remember(fr: FloorRow, ceiling: Ceiling) -> Ceiling:
    """Keep ``ceiling``, merged with what was known; returns the merged one."""
    merged = remembered_ceiling(fr).merged(ceiling)
    remember(fr.key, merged)
    return merged


def out_of_reach(fr: FloorRow, ceiling: Ceiling) -> str | None:
    """Why no plan meets the floor where ``ceiling`` proves it (one reason, in words), else None."""
    if not fr.beyond(ceiling):
        return None
    best = fr.mean(ceiling.at_most)
    if best is None:
        return (f"the accuracy floor {fr.floor:.6g} is out of reach: the queries solved here can add at most "
                f"{ceiling.at_most:.6g} of the {fr.rhs:.6g} token-weighted accuracy it needs ({ceiling.how})")
    return (f"token-weighted mean accuracy can reach at most {shown_below(best, fr.floor)} within the fleet's "
            f"capacity and deadlines ({ceiling.how}), below the floor {fr.floor:.6g}")


def _most_accuracy(model: MatrixModel, row: int) -> MatrixModel:
    """``model`` without its floor row, minimising −(the row's left side)."""
    acc = model.A[row]
    c = np.zeros(model.n_vars)
    c[acc.indices] = -acc.data
    keep = np.flatnonzero(np.arange(model.A.shape[0]) != row)
    return dataclasses.replace(model, c=c, A=model.A[keep], row_lo=model.row_lo[keep], row_hi=model.row_hi[keep],
                               row_kind=model.row_kind[keep])


def lp_ceiling(model: MatrixModel, fr: FloorRow, limits: Limits) -> Ceiling:
    """The ceiling of the LP relaxation of ``model`` (with its cuts): one LP."""
    res = _lp(_most_accuracy(model, fr.row), limits.remaining_s())
    if res.status != 0 or res.fun is None:
        return Ceiling()
    found = Ceiling(-float(res.fun), -float(res.fun), "the LP relaxation with its cuts")
    return _remember(fr, found)


def relaxation_ceiling(model: MatrixModel, fr: FloorRow, backend: Solver, limits: Limits, cap_s: float | None,
                       say) -> Ceiling:
    """The ceiling of ``model`` with its instance counts (and lane cuts' switches and sets) integral
    and its other options relaxed, as step 3 of :mod:`.strong` relaxes it, searched by ``backend``
    within ``cap_s``: its proven bound where it has one (also where the time ran out), and the
    accuracy of its best point. Nothing with a backend that makes every column an integer (CP-SAT:
    the whole model)."""
    if not backend.keeps_continuous:
        return Ceiling()
    relaxed = options_relaxed(_most_accuracy(model, fr.row))
    res = backend_solve(backend, relaxed, dataclasses.replace(limits, mip_rel_gap=CEILING_REL_GAP), cap_s)
    at_most = -float(res.bound) if math.isfinite(res.bound) else math.inf
    reached = -float(res.objective) if res.x is not None else -math.inf
    if math.isinf(at_most) and at_most < 0:  # the model is infeasible without the floor: not this module's to say
        return Ceiling()
    found = Ceiling(at_most, reached, "the bound of the model with its instance counts whole and its options relaxed",
                    searched=True)
    say(f"{backend.name}: the most accuracy with the options relaxed: at most {fr.shown(at_most):.6g}, reached "
        f"{fr.shown(reached):.6g} in {res.time_s:.2f} s (floor {fr.floor:.6g})")
    return _remember(fr, found)


def remembered_verdict(model: MatrixModel, fr: FloorRow, backend: Solver, limits: Limits, cap_s: float | None,
                       say) -> str | None:
    """Why the floor is out of reach, where a ceiling remembered for its model proves it (else None);
    where earlier floors of the same rows were planned (a series: compare, a sweep), each reached
    less than this floor and none searched the relaxation, the relaxation's search first, before the
    LP: such a floor is the one a series finds out of reach (measured on the example: compare's
    0.666, after its floors 0.5224-0.548 were met by rounded counts; the search takes 5 s on the
    model without cuts, the same bound as with them, and spares the LP's 8 rounds, 8-10 s)."""
    known = remembered_ceiling(fr)
    if (why := out_of_reach(fr, known)) is not None:
        return why
    if known.searched or known.reached == -math.inf or fr.reaches(known.reached):
        return None
    # as step 3's relaxation: at most CEILING_MIN_S, and half of what is left of the call's cap and limit
    left = [t for t in (cap_s, limits.remaining_s()) if t is not None]
    at_most_s = min([CEILING_MIN_S, *(RELAXED_SHARE * t for t in left)])
    return out_of_reach(fr, relaxation_ceiling(model, fr, backend, limits, at_most_s, say))


def lp_verdict(model: MatrixModel, fr: FloorRow, limits: Limits) -> str | None:
    """Why the floor is out of reach, where the LP relaxation of ``model`` proves it (else None): for
    a model whose LP with the floor row is infeasible, one LP that says by how much."""
    return out_of_reach(fr, lp_ceiling(model, fr, limits))


def relaxation_verdict(model: MatrixModel, fr: FloorRow, x: np.ndarray, backend: Solver, limits: Limits,
                       cap_s: float | None, say) -> str | None:
    """Why the floor is out of reach, where the relaxation with integral instance counts proves it
    (else None). Not tried where the LP's optimum ``x`` meets the floor with slack (it binds where a
    floor makes a batch hard), nor where a relaxation of the same rows already reached the floor."""
    known = remembered_ceiling(fr)
    if (why := out_of_reach(fr, known)) is not None:
        return why
    slack = float((model.A[fr.row] @ x)[0]) - fr.rhs
    if slack > FLOOR_SLACK * max(abs(fr.rhs), 1.0) or fr.reaches(known.reached) or known.searched:
        return None
    reach = rounded_reach(model, fr, x, limits)
    if fr.reaches(reach):  # the relaxation reaches the floor: it cannot prove it out of reach
        _remember(fr, Ceiling(reached=reach))
        return None
    return out_of_reach(fr, relaxation_ceiling(model, fr, backend, limits, cap_s, say))


def rounded_reach(model: MatrixModel, fr: FloorRow, x: np.ndarray, limits: Limits) -> float:
    """The floor row's value at a point of step 3's relaxation (instance counts whole, options
    relaxed) found from the LP's optimum ``x`` by rounding its instance counts (-inf: none found):
    their whole parts, each fraction rounded up (the largest first) where the rows of counts alone
    (pools, groups, the exact model's order) still hold. Every count rounded up: ``x`` itself is
    such a point (more instances only add capacity); else the most accuracy of the options at those
    counts (one LP). Where it reaches the floor, no relaxation proves the floor out of reach, and
    the search is not started (measured on the example: compare's floors 0.5224-0.64, 3-7 s saved
    each). Not with lane cuts (their switches and sets are integral in the relaxation)."""
    if np.any(model.row_kind == "lane"):
        return -math.inf
    cols = np.flatnonzero(count_columns(model))
    n = _rounded_counts(model, cols, x[cols])
    if n is None:
        return -math.inf
    if np.all(n >= x[cols] - INT_TOL):
        up = x.copy()
        up[cols] = n
        if _holds(model, up, np.arange(model.A.shape[0]) != fr.row):
            return float((model.A[fr.row] @ up)[0])
    most = _most_accuracy(model, fr.row)
    lo, hi = most.var_lo.copy(), most.var_hi.copy()
    lo[cols] = hi[cols] = n
    res = _lp(dataclasses.replace(most, var_lo=lo, var_hi=hi), limits.remaining_s())
    return -float(res.fun) if res.status == 0 and res.fun is not None else -math.inf


def _rounded_counts(model: MatrixModel, cols: np.ndarray, values: np.ndarray) -> np.ndarray | None:
    """The counts ``values`` (of columns ``cols``) rounded as :func:`rounded_reach` says (None: their
    whole parts already break a row of counts alone)."""
    A = model.A[:, cols]
    only = np.flatnonzero(A.getnnz(axis=1) == model.A.getnnz(axis=1))  # rows of the counts alone
    Ac, lo, hi = A[only], model.row_lo[only], model.row_hi[only]

    def ok(n: np.ndarray) -> bool:
        v = Ac @ n
        return bool(np.all(v >= lo - 1e-9) and np.all(v <= hi + 1e-9) and np.all(n <= model.var_hi[cols] + 1e-9))

    n = np.floor(values + INT_TOL)
    if not ok(n):
        return None
    frac = values - n
    for j in np.argsort(-frac, kind="stable"):
        if frac[j] <= INT_TOL:
            break
        n[j] += 1
        if not ok(n):
            n[j] -= 1
    return n


def _holds(model: MatrixModel, y: np.ndarray, rows: np.ndarray) -> bool:
    """Whether ``y`` meets the model's ``rows`` (a mask) and column bounds, within 1e-6 relative."""
    ay = model.A[np.flatnonzero(rows)] @ y
    lo, hi = model.row_lo[rows], model.row_hi[rows]
    tol = 1e-6 * np.maximum(1.0, np.abs(np.where(np.isfinite(hi), hi, np.where(np.isfinite(lo), lo, 0.0))))
    return bool(np.all(ay >= lo - tol) and np.all(ay <= hi + tol)
                and np.all(y >= model.var_lo - 1e-9) and np.all(y <= model.var_hi + 1e-9))
