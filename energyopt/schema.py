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
    "Status",
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
    "start_s",
    "end_s",
    "runtime_s",
    "energy_j",
    "accuracy",
    "deadline_s",
)


class Status(str, Enum):
    """Outcome of a solve. Infeasible is a status, not an exception."""

    OPTIMAL = "optimal"  # proven optimal within the solver's tolerance
    FEASIBLE = "feasible"  # a plan, with a bound and a gap, not proven optimal (time limit)
    INFEASIBLE = "infeasible"  # no plan meets every requirement
    NO_SOLUTION = "no_solution"  # stopped before any plan was found
    ERROR = "error"

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.value
