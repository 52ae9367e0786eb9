"""Canonical column names, units and status values shared by every module.

Units live in the names: ``*_s`` seconds, ``*_j`` joules, ``*_w`` watts, ``*_gb`` gigabytes.
"""

from __future__ import annotations

from enum import Enum

__all__ = [
    "CHAR_REQUIRED",
    "CHAR_OPTIONAL_NUMERIC",
    "CHAR_OPTIONAL_SIGNED",
    "CHAR_COLUMN_ALIASES",
    "TARGETS",
    "TARGET_UNITS",
    "WORKLOAD_REQUIRED",
    "WORKLOAD_OPTIONAL",
    "ASSIGNMENT_COLUMNS",
    "SWEEP_COLUMNS",
    "Status",
    "BoundSource",
    "Termination",
]

# --- characterization data (one row per measured run) -------------------------------------
CHAR_REQUIRED = (
    "llm",
    "device",
    "input_tokens",
    "output_tokens",
    "batch_size",
    "runtime_s",
    "energy_j",
)
CHAR_OPTIONAL_NUMERIC = (
    "gpu_energy_j",
    "cpu_energy_j",
    "idle_power_w",
    "num_devices",
)
# numeric, any sign (energy above the idle floor can dip below 0 within measurement noise)
CHAR_OPTIONAL_SIGNED = ("above_idle_energy_j",)
# raw header (lower-cased, stripped) -> canonical name
CHAR_COLUMN_ALIASES = {
    "model": "llm",
    "llm_name": "llm",
    "hardware": "device",
    "input_token_count": "input_tokens",
    "tokens_in": "input_tokens",
    "num_input_tokens": "input_tokens",
    "output_token_count": "output_tokens",
    "tokens_out": "output_tokens",
    "num_output_tokens": "output_tokens",
    "batch": "batch_size",
    "runtime": "runtime_s",
    "runtime_sec": "runtime_s",
    "latency_s": "runtime_s",
    "energy": "energy_j",
    "energy_joules": "energy_j",
}

#: what the fitted models predict, with units
TARGETS = ("energy_j", "runtime_s")
TARGET_UNITS = {"energy_j": "J", "runtime_s": "s"}

# --- workload (one row per query) -----------------------------------------------------------
WORKLOAD_REQUIRED = ("query_id", "input_tokens", "output_tokens")
WORKLOAD_OPTIONAL = ("min_accuracy", "deadline_s")

# --- the exported plan ----------------------------------------------------------------------
ASSIGNMENT_COLUMNS = (
    "query_id",
    "llm",
    "device",
    "instance",
    "lane",
    "batch_size",
    "start_s",
    "end_s",
    "runtime_s",
    "energy_j",
    "accuracy",
    "deadline_s",
)


# --- a sweep (one row per plan or baseline) ---------------------------------------------------
SWEEP_COLUMNS = (
    "method", "vary", "value", "status", "queries", "total_energy_j", "total_energy_kwh",
    "token_weighted_mean_accuracy", "mean_accuracy", "deadlines_met", "queries_with_deadline",
    "accuracy_floors_met", "makespan_s", "gap", "total_s", "pareto",
)


class Status(str, Enum):
    """Outcome of a solve. Infeasible is a status, not an exception."""

    OPTIMAL = "optimal"  # proven optimal within the solver's tolerance
    FEASIBLE = "feasible"  # a plan, with a bound and a gap, not proven optimal (time limit)
    INFEASIBLE = "infeasible"  # no plan meets every requirement
    NO_SOLUTION = "no_solution"  # stopped before any plan was found
    ERROR = "error"

    def __str__(self) -> str:
        return self.value

    @property
    def has_plan(self) -> bool:
        """Whether a result of this status carries a plan (an assignment of every query)."""
        return self in (Status.OPTIMAL, Status.FEASIBLE)


class BoundSource(str, Enum):
    """Where a reported lower bound comes from."""

    MIP = "mip"  # the backend's own proof (branch and bound; also its proof of infeasibility)
    LP = "lp"  # the LP relaxation of the model the backend solved
    LAGRANGIAN = "lagrangian"  # the Lagrangian relaxation of the coupling rows (methods/decompose.py)
    NONE = "none"  # no bound is known

    def __str__(self) -> str:
        return self.value


class Termination(str, Enum):
    """Why a method or backend stopped."""

    OPTIMAL = "optimal"  # proven optimal within the gap asked for
    FEASIBLE = "feasible"  # stopped with a plan that is not proven within the gap (e.g. the time limit)
    INFEASIBLE = "infeasible"  # proved that no plan exists
    TIME_LIMIT = "time_limit"  # stopped by the time limit without a plan
    WATCHDOG = "watchdog"  # the backend overran its limit and was stopped from outside
    NO_SOLUTION = "no_solution"  # ended without a plan for another reason
    ERROR = "error"  # the backend failed

    def __str__(self) -> str:
        return self.value
