"""Ways of choosing where each query runs, behind one interface.

A :class:`Method` takes a :class:`~energyopt.problem.Problem`, a solver backend and one
:class:`Limits` (time for the whole call, relative gap, threads) and returns a :class:`Choice`:
the deployment of every query, the instances each deployment may switch on, optionally the
instance of every query, a lower bound with its typed source, the status and why it stopped.
Packing (:mod:`energyopt.packing`) turns a choice into a timeline.

* ``exact`` and ``aggregate`` (:mod:`.milp`): the matrix model handed to a backend;
* ``decompose`` (:mod:`.decompose`): the Lagrangian bound on the coupling rows, then the nearly
  tied queries solved exactly;
* the baselines (:mod:`.baselines`): routing rules planners use today, returned as choices and
  then packed, priced and checked like every plan.
"""

from __future__ import annotations

import dataclasses
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import DataError
from ..problem import Problem
from ..schema import BoundSource, Status, Termination
from ..solvers import Solver

__all__ = ["Limits", "Choice", "Method", "METHOD_NAMES", "EXACT_MAX_COLUMNS", "EXACT_MAX_NONZEROS",
           "AGGREGATE_MAX_QUERIES", "choose_method", "get_method", "Progress"]

Progress = Callable[[str], None]

#: the exact model is used while it has at most this many x columns (options × instances)
EXACT_MAX_COLUMNS = 20_000
#: beyond the exact model's size, the aggregate model is used for batches of at most this many queries
AGGREGATE_MAX_QUERIES = 2_000
#: what ``--formulation`` accepts
METHOD_NAMES = ("auto", "exact", "aggregate", "decompose")
#: ``--formulation exact`` is refused where its matrix would have more non-zeros than this (counted
#: before building it). Measured on this repository's machine: the 1,000-query example has 5.7
#: million (built in 3-5 s), 1,500 queries with deadlines 9 million (5-6 s, of which 1.2-1.6 s
#: assembling the sparse matrix, one step that no time limit interrupts), 3,000 queries 23 million
#: (13-16 s, 7-10 s of them assembling, 1.9 GB); 20,000 queries with deadlines would have a
#: billion (tens of GB: never built)
EXACT_MAX_NONZEROS = 10_000_000


def _process_age_s() -> float:
    """Seconds since this process started (0 where /proc cannot tell)."""
    import os

    try:
        with open("/proc/self/stat") as fh:
            start_ticks = float(fh.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as fh:
            uptime_s = float(fh.read().split()[0])
        return max(uptime_s - start_ticks / os.sysconf("SC_CLK_TCK"), 0.0)
    except (OSError, ValueError, IndexError):
        return 0.0


@dataclass(frozen=True)
class Limits:
    """What one call may spend: ``time_limit_s`` [s] for the whole call (None: no limit), counted
    from ``started_at`` (``time.perf_counter()``); the relative gap at which a search may stop;
    the threads a backend may use."""

    time_limit_s: float | None = None
    mip_rel_gap: float = 1e-4
    threads: int = 2
    started_at: float = field(default_factory=time.perf_counter)

    def __post_init__(self) -> None:
        if self.time_limit_s is not None and not self.time_limit_s > 0:
            raise DataError(f"time limit must be > 0 s, got {self.time_limit_s}")
        if not 0 <= self.mip_rel_gap <= 1:
            raise DataError(f"gap must be in [0, 1], got {self.mip_rel_gap}")
        if self.threads < 1:
            raise DataError(f"threads must be >= 1, got {self.threads}")

    def remaining_s(self) -> float | None:
        """Seconds left of the time limit (None: no limit; never below 0)."""
        if self.time_limit_s is None:
            return None
        return max(self.time_limit_s - (time.perf_counter() - self.started_at), 0.0)

    def expired(self) -> bool:
        left = self.remaining_s()
        return left is not None and left <= 0.0

    def deadline(self) -> float | None:
        """The ``time.perf_counter()`` value at which the time limit runs out (None: no limit)."""
        return None if self.time_limit_s is None else self.started_at + self.time_limit_s

    def less(self, reserve_s: float) -> Limits:
        """The same limits ending ``reserve_s`` earlier (time kept for what follows a step: packing,
        checking, writing); a limit already spent stays spent."""
        if self.time_limit_s is None:
            return self
        return dataclasses.replace(self, time_limit_s=max(self.time_limit_s - reserve_s, 1e-6))

    @classmethod
    def since_process_start(cls, time_limit_s: float | None = None, mip_rel_gap: float = 1e-4, threads: int = 2,
                            *, at_most_s: float = 2.0) -> Limits:
        """Limits counted from the start of this process (the imports of a command are part of
        it), where the system says when that was (Linux's /proc), but from at most ``at_most_s``
        ago: a long-running program that calls a command (a test, a notebook) is not charged
        for its own past."""
        return cls(time_limit_s, mip_rel_gap, threads, started_at=time.perf_counter() - min(_process_age_s(), at_most_s))

    def capped_s(self, cap_s: float | None, floor_s: float = 1.0) -> float | None:
        """A time limit for one step: what is left, at most ``cap_s``, at least ``floor_s``."""
        left = self.remaining_s()
        if left is None:
            return cap_s
        left = max(left, floor_s)
        return left if cap_s is None else min(left, cap_s)


@dataclass
class Choice:
    """What a method decided. ``dep_of_q`` is None when there is no plan (see ``status``)."""

    method: str  # "exact", "aggregate", "decompose", "baseline:<rule>"
    solver: str  # the backend that solved it ("-" for a rule)
    status: Status
    termination: Termination
    bound: float  # a valid lower bound on the optimum (-inf where none is known, inf: proven infeasible)
    bound_source: BoundSource
    dep_of_q: np.ndarray | None = None  # deployment index per query (-1: none)
    n_inst: np.ndarray | None = None  # instances each deployment may switch on
    # where the method names each query's place (else packing does): the lane within its deployment,
    # instance × lanes + lane of that instance (with one lane per instance: the instance)
    lane_of_q: np.ndarray | None = None
    objective: float = math.nan  # the method's own objective of the choice (before packing)
    solver_s: float = 0.0  # seconds spent in the method
    message: str = ""
    # where the method packed the plan itself (decompose compares packed plans): queries it could not place
    unplaced: list[int] = field(default_factory=list)
    # where the method timed each query itself (slotted plans): its start [s] (NaN: not placed)
    start_of_q: np.ndarray | None = None

    @property
    def has_choice(self) -> bool:
        return self.dep_of_q is not None

    @classmethod
    def none(cls, method: str, solver: str, status: Status, termination: Termination, bound: float,
             bound_source: BoundSource, *, solver_s: float = 0.0, message: str = "") -> Choice:
        """A result without a plan: infeasible, stopped, or failed."""
        return cls(method, solver, status, termination, bound, bound_source, solver_s=solver_s, message=message)


class Method(ABC):
    """One way of choosing places: ``solve`` never raises for an infeasible problem (it is a status)."""

    name: str = ""

    @abstractmethod
    def solve(self, problem: Problem, backend: Solver, limits: Limits, progress: Progress) -> Choice: ...


def choose_method(problem: Problem, name: str = "auto") -> str:
    """``auto``: the exact model while it is small (≤ ``EXACT_MAX_COLUMNS`` columns: options × lanes),
    else the aggregate model while the batch is small (≤ ``AGGREGATE_MAX_QUERIES`` queries: with its
    valid cuts, :mod:`.strong`, it is proven optimal in about a second on 1,000 queries), else
    decompose."""
    if name not in METHOD_NAMES:
        raise DataError(f"formulation must be one of {', '.join(METHOD_NAMES)}, got {name!r}")
    if problem.slots is not None:  # work moves in time: only the slotted method plans it
        if name != "auto":
            raise DataError(f"--formulation {name} does not plan time slots (--objective carbon|cost, power caps); "
                            "leave it at auto")
        return "slotted"
    if name == "exact":
        _refuse_a_huge_exact_model(problem)
    if name != "auto":
        return name
    deps = problem.deployments
    lanes = deps["max_instances"].to_numpy() * deps["lanes"].to_numpy()
    cols = int(np.count_nonzero(problem.ok, axis=0) @ lanes)  # x columns of the exact model: options × lanes
    if cols <= EXACT_MAX_COLUMNS:
        return "exact"
    return "aggregate" if problem.n_queries <= AGGREGATE_MAX_QUERIES else "decompose"


def _refuse_a_huge_exact_model(problem: Problem) -> None:
    """A :class:`DataError` (before anything is built or solved) where the exact model would have
    more than :data:`EXACT_MAX_NONZEROS` non-zeros: it could not be built within any time limit."""
    from ..formulation import matrix_nonzeros

    nnz = matrix_nonzeros(problem, "exact")
    if nnz > EXACT_MAX_NONZEROS:
        raise DataError(f"--formulation exact: the exact model of these {problem.n_queries:,} queries would have "
                        f"{nnz:,} matrix non-zeros (a column per option and lane, a row per lane and deadline), "
                        f"more than the {EXACT_MAX_NONZEROS:,} it is built with at most; use --formulation auto, "
                        "aggregate or decompose")


def get_method(name: str) -> Method:
    """The method called ``name`` (``exact``, ``aggregate`` or ``decompose``)."""
    if name in ("exact", "aggregate"):
        from .milp import MilpMethod

        return MilpMethod(name)
    if name == "slotted":
        from .slotted import SlottedMethod

        return SlottedMethod()
    if name == "decompose":
        from .decompose import DecomposeMethod

        return DecomposeMethod()
    raise DataError(f"unknown method {name!r}; choose one of {', '.join(METHOD_NAMES[1:])}")
