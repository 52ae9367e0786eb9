"""Exception hierarchy. Every error a user can cause is an :class:`EnergyoptError`.

The CLI turns any of them into a one-line message and exit code 2.
"""

__all__ = [
    "EnergyoptError",
    "DataError",
    "FitError",
    "InfeasibleError",
    "SolverNotAvailableError",
]


class EnergyoptError(Exception):
    """Base class of every error that energyopt raises on purpose."""


class DataError(EnergyoptError, ValueError):
    """An input file or table is malformed: names the file, the row or key, and what was expected."""


class FitError(EnergyoptError):
    """A regression model could not be fitted, or failed the R² gate."""


class InfeasibleError(EnergyoptError):
    """No plan meets every requirement (raised only where a caller asks for a plan or nothing)."""


class SolverNotAvailableError(EnergyoptError):
    """The requested solver backend is not installed or cannot run in this process."""
