"""energyopt: offline energy-optimal scheduling of LLM queries on heterogeneous fleets.

Data flows one way: characterization → models → problem → solver → schedule → report.
"""

__version__ = "0.1.0"

from .check import check_plan, check_schedule
from .errors import DataError, EnergyoptError, FitError, InfeasibleError, SolverNotAvailableError
from .fit import FittedModels, fit_models
from .fleet import Fleet, read_fleet
from .io import read_characterization, read_workload
from .explain import explain_plan_dir
from .plan import plan
from .report import plot_sweep, write_report
from .methods import Limits
from .sweep import sweep
from .problem import Problem, build_problem
from .schedule import Schedule
from .schema import Status
from .solvers import available_solvers

__all__ = [
    "__version__",
    "DataError",
    "EnergyoptError",
    "FitError",
    "InfeasibleError",
    "Limits",
    "SolverNotAvailableError",
    "FittedModels",
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
    "read_workload",
    "sweep",
    "write_report",
]
