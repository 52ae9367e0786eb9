"""energyopt: offline energy-optimal scheduling of LLM queries on heterogeneous fleets.

Data flows one way: characterization → models → problem → solver → schedule → report.

The names below are imported on first use (module ``__getattr__``), so ``import energyopt`` and
the command line's start-up import none of pandas, numpy, scipy or scikit-learn until a name that
needs them is asked for. ``__version__`` is the installed distribution's version.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

__all__ = [
    "__version__",
    "DataError",
    "EnergyoptError",
    "FitError",
    "InfeasibleError",
    "SolverNotAvailableError",
    "FittedModels",
    "Limits",
    "Fleet",
    "Problem",
    "Schedule",
    "Status",
    "available_solvers",
    "build_problem",
    "check_plan",
    "check_schedule",
    "explain_plan_dir",
    "fit_models",
    "plan",
    "plot_sweep",
    "read_characterization",
    "read_fleet",
    "read_signals",
    "read_workload",
    "Signals",
    "sweep",
    "write_report",
]

#: public name -> the submodule (relative to this package) that defines it
_HOMES: dict[str, str] = {
    "DataError": ".errors",
    "EnergyoptError": ".errors",
    "FitError": ".errors",
    "InfeasibleError": ".errors",
    "SolverNotAvailableError": ".errors",
    "FittedModels": ".modelstore",
    "Limits": ".methods",
    "Fleet": ".fleet",
    "Problem": ".problem",
    "Schedule": ".schedule",
    "Status": ".schema",
    "available_solvers": ".solvers",
    "build_problem": ".problem",
    "check_plan": ".check",
    "check_schedule": ".check",
    "explain_plan_dir": ".explain",
    "fit_models": ".fit",
    "plan": ".plan",
    "plot_sweep": ".report",
    "read_characterization": ".io",
    "read_fleet": ".fleet",
    "read_signals": ".signals",
    "Signals": ".signals",
    "read_workload": ".io",
    "sweep": ".sweep",
    "write_report": ".report",
}

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ imports on demand
    from .check import check_plan, check_schedule
    from .errors import DataError, EnergyoptError, FitError, InfeasibleError, SolverNotAvailableError
    from .explain import explain_plan_dir
    from .fit import fit_models
    from .fleet import Fleet, read_fleet
    from .io import read_characterization, read_workload
    from .methods import Limits
    from .modelstore import FittedModels
    from .plan import plan
    from .problem import Problem, build_problem
    from .report import plot_sweep, write_report
    from .schedule import Schedule
    from .schema import Status
    from .signals import Signals, read_signals
    from .solvers import available_solvers
    from .sweep import sweep

    __version__: str


def __getattr__(name: str) -> Any:
    """Import the submodule that defines ``name`` on first use and keep the value here."""
    if name == "__version__":
        from .version import package_version

        value: Any = package_version()
    elif name in _HOMES:
        value = getattr(importlib.import_module(_HOMES[name], __name__), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    """The public names and what is bound already (loaded names, submodules)."""
    return sorted(set(globals()) | set(__all__))


class _Facade(types.ModuleType):
    """The package module: keeps ``energyopt.plan`` and ``energyopt.sweep`` the functions.

    Importing a submodule binds it on its package under its own name (``import energyopt.plan``
    sets ``energyopt.plan`` to the module), which would hide the function of the same name that
    the facade exposes. Such a binding is replaced by the function, as the eager facade did.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _HOMES.get(name) == f".{name}":
            if not hasattr(value, name):  # still being initialised: __getattr__ binds it later
                return
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Facade
