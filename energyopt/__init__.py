"""energyopt: offline energy-optimal scheduling of LLM queries on heterogeneous fleets.

Data flows one way: characterization → models → problem → solver → schedule → report.
"""

__version__ = "0.1.0"

from .errors import DataError, EnergyoptError, FitError, InfeasibleError, SolverNotAvailableError
from .fit import FittedModels, fit_models
from .io import read_characterization, read_workload

__all__ = [
    "__version__",
    "DataError",
    "EnergyoptError",
    "FitError",
    "InfeasibleError",
    "SolverNotAvailableError",
    "FittedModels",
    "fit_models",
    "read_characterization",
    "read_workload",
]
