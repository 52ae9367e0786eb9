"""Solver backends behind one interface; see :func:`available_solvers`."""

from .base import SolveResult, Solver, available_solvers, get_solver, lp_bound, SOLVER_NAMES

__all__ = ["SolveResult", "Solver", "available_solvers", "get_solver", "lp_bound", "SOLVER_NAMES"]
