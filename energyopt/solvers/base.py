"""The solver interface, the registry, and the LP-relaxation bound every backend can fall back on."""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..errors import SolverNotAvailableError
from ..formulation import MatrixModel
from ..schema import BoundSource, Status, Termination

__all__ = ["SolveResult", "Solver", "available_solvers", "get_solver", "lp_bound", "native_stdout_silenced", "SOLVER_NAMES"]

#: backend name -> module:class; "auto" picks the first available in this order
SOLVER_NAMES = {
    "highs": "energyopt.solvers.highs:HighsSolver",
    "cbc": "energyopt.solvers.cbc:CbcSolver",
    "cpsat": "energyopt.solvers.cpsat:CpSatSolver",
}


@contextlib.contextmanager
def native_stdout_silenced() -> Iterator[None]:
    """File descriptor 1 points at /dev/null while native code runs: a solver library that prints
    with C's printf (HiGHS's MIP solver prints debug lines such as
    ``HighsMipSolverData::transformNewIntegerFeasibleSolution`` with its log off) must not mix into
    stdout, which ``--json`` and ``-o -`` keep for their output alone, nor show under ``--quiet``
    (the watchdog's child drops them the same way). What a solver has to say comes back in its result."""
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError):  # no file descriptor 1 (embedded interpreters): nothing to protect
        yield
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 1)
        finally:
            os.close(devnull)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.dup2(saved, 1)
        os.close(saved)


@dataclass
class SolveResult:
    status: Status
    x: np.ndarray | None  # values of the model's variables, or None without a solution
    objective: float  # model objective of x (float coefficients), NaN without a solution
    bound: float  # a valid lower bound on the model's optimum (-inf if none, inf: proven infeasible)
    bound_source: BoundSource
    solver: str
    time_s: float
    message: str = ""
    termination: Termination | None = None  # why it stopped; by default read off the status
    # where this result proves that no plan exists and can say why in the user's words (an accuracy
    # floor above the most a relaxation allows): that reason; else "" and the diagnosis says why
    reason: str = ""

    def __post_init__(self) -> None:
        if self.termination is None:
            self.termination = _TERMINATION_OF[self.status]


_TERMINATION_OF = {
    Status.OPTIMAL: Termination.OPTIMAL,
    Status.FEASIBLE: Termination.FEASIBLE,
    Status.INFEASIBLE: Termination.INFEASIBLE,
    Status.NO_SOLUTION: Termination.NO_SOLUTION,
    Status.ERROR: Termination.ERROR,
}


class Solver(ABC):
    name: str = ""
    #: whether a column of integrality 0 stays continuous (CP-SAT makes every column an integer, and
    #: reports the LP bound of the float model: a model with integer columns relaxed gains it nothing)
    keeps_continuous: bool = True

    @classmethod
    @abstractmethod
    def available(cls) -> bool: ...

    @abstractmethod
    def solve(self, model: MatrixModel, *, time_limit_s: float | None = None, mip_rel_gap: float = 1e-4,
              threads: int = 2) -> SolveResult: ...


def _load(name: str) -> type[Solver]:
    mod, cls = SOLVER_NAMES[name].split(":")
    return getattr(importlib.import_module(mod), cls)


def available_solvers() -> list[str]:
    """Names of the backends that can run here."""
    out = []
    for name in SOLVER_NAMES:
        try:
            if _load(name).available():
                out.append(name)
        except ImportError:
            continue
    return out


def _first_available() -> str | None:
    """The first backend of :data:`SOLVER_NAMES` that can run here, without loading the others
    (importing OR-Tools and probing PuLP's CBC cost about 0.1 s that a plan on HiGHS never uses)."""
    for name in SOLVER_NAMES:
        try:
            if _load(name).available():
                return name
        except ImportError:
            continue
    return None


def get_solver(name: str = "auto") -> Solver:
    if name == "auto":
        first = _first_available()
        if first is None:
            raise SolverNotAvailableError("no solver backend is installed (need scipy, pulp or ortools)")
        name = first
    if name not in SOLVER_NAMES:
        raise SolverNotAvailableError(f"unknown solver {name!r}; choose auto or one of {', '.join(SOLVER_NAMES)}")
    try:
        cls = _load(name)
    except ImportError as exc:
        raise SolverNotAvailableError(f"solver {name} is not installed ({exc})") from None
    if not cls.available():
        raise SolverNotAvailableError(f"solver {name} is not available here")
    return cls()


def lp_bound(model: MatrixModel, time_limit_s: float | None = None) -> float:
    """Optimum of the LP relaxation (HiGHS through scipy): a valid lower bound; -inf if unknown
    (also where ``time_limit_s`` [s] runs out first; with no time left, the LP is not tried)."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    opts: dict = {"disp": False}
    if time_limit_s is not None:
        if time_limit_s <= 0:
            return -np.inf
        opts["time_limit"] = float(time_limit_s)
    cons = [LinearConstraint(model.A, model.row_lo, model.row_hi)] if model.A.shape[0] else []
    bounds = Bounds(model.var_lo, model.var_hi)
    res = milp(model.c, constraints=cons, integrality=np.zeros(model.n_vars), bounds=bounds, options=opts)
    if res.status == 0 and res.fun is not None:
        return float(res.fun)
    return -np.inf


def now() -> float:
    return time.perf_counter()
