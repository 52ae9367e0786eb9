"""Solver backends behind one interface; see :func:`available_solvers`."""

from .base import SOLVER_NAMES, Solver, SolveResult, available_solvers, get_solver, lp_bound

__all__ = ["SolveResult", "Solver", "available_solvers", "get_solver", "lp_bound", "SOLVER_NAMES"]
