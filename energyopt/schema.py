"""Canonical columns, units and status values shared by every module: the data contracts as data.

Each table energyopt reads or writes has a spec, a tuple of :class:`ColumnSpec` (name, dtype, unit,
required, description, accepted values): the characterization CSV (:data:`CHAR_SPEC`), the
workload (:data:`WORKLOAD_SPEC`), the plan's ``assignment.csv`` (:data:`ASSIGNMENT_SPEC`), a
sweep's ``sweep.csv`` (:data:`SWEEP_SPEC`), and the keys of ``summary.json`` that count the plan's
queries on extrapolated predictions (:data:`SUMMARY_EXTRAPOLATION_SPEC`). Readers validate against them, writers order their
columns by them, and a test holds README's "Data formats" table to them. The name tuples
(``CHAR_REQUIRED``, ``ASSIGNMENT_COLUMNS``, …) are derived from the specs.

Units live in the names too: ``*_s`` seconds, ``*_j`` joules, ``*_w`` watts, ``*_gb`` gigabytes,
``*_kwh`` kilowatt-hours. This module imports nothing else of energyopt.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "ColumnSpec",
    "DTYPES",
    "names",
    "required_names",
    "optional_names",
    "spec_of",
    "CHAR_SPEC",
    "CHAR_REQUIRED",
    "CHAR_OPTIONAL_NUMERIC",
    "CHAR_OPTIONAL_SIGNED",
    "CHAR_COLUMN_ALIASES",
    "MAX_TOKENS",
    "MAX_BATCH_SIZE",
    "TARGETS",
    "TARGET_UNITS",
    "WORKLOAD_SPEC",
    "WORKLOAD_REQUIRED",
    "WORKLOAD_OPTIONAL",
    "ASSIGNMENT_SPEC",
    "ASSIGNMENT_COLUMNS",
    "ASSIGNMENT_REQUIRED",
    "SWEEP_SPEC",
    "SWEEP_COLUMNS",
    "SUMMARY_EXTRAPOLATION_SPEC",
    "SUMMARY_EXTRAPOLATION_KEYS",
    "Status",
    "BoundSource",
    "Termination",
]

#: the dtypes a column may have: text, whole number, floating point number, true/false
DTYPES = ("str", "int64", "float64", "bool")


@dataclass(frozen=True)
class ColumnSpec:
    """One column of a table energyopt reads or writes: the contract as data.

    ``unit`` is the physical unit (``"s"``, ``"J"``, ``"W"``, ``"kWh"``), empty for text, counts
    and dimensionless numbers (accuracies, gaps); the name carries it too (``*_s``, ``*_j``, …).
    ``dtype`` is the type a reader returns or a writer writes (one of :data:`DTYPES`). For numbers,
    ``minimum`` (excluded itself when ``exclusive_minimum``) and ``maximum`` bound the values a
    reader accepts (``None``: unbounded); for text, ``choices`` lists the values accepted (empty:
    any). ``required`` says whether a table must have the column (an optional one may be absent).
    """

    name: str
    dtype: str
    unit: str
    required: bool
    description: str
    minimum: float | None = None
    exclusive_minimum: bool = False
    maximum: float | None = None
    choices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"column {self.name}: dtype {self.dtype!r} is not one of {', '.join(DTYPES)}")
        if self.dtype not in ("int64", "float64") and (self.minimum is not None or self.maximum is not None):
            raise ValueError(f"column {self.name}: only numeric columns have bounds")
        if self.choices and self.dtype != "str":
            raise ValueError(f"column {self.name}: only text columns have choices")

    @property
    def is_numeric(self) -> bool:
        """Whether the column holds numbers (whole or floating point)."""
        return self.dtype in ("int64", "float64")

    @property
    def label(self) -> str:
        """The name with its unit in brackets, as in messages and docs: ``runtime_s [s]``."""
        return f"{self.name} [{self.unit}]" if self.unit else self.name


def names(spec: tuple[ColumnSpec, ...]) -> tuple[str, ...]:
    """Every column name of a spec, in its order."""
    return tuple(c.name for c in spec)


def required_names(spec: tuple[ColumnSpec, ...]) -> tuple[str, ...]:
    """The names of the columns a table must have, in the spec's order."""
    return tuple(c.name for c in spec if c.required)


def optional_names(spec: tuple[ColumnSpec, ...]) -> tuple[str, ...]:
    """The names of the columns a table may have, in the spec's order."""
    return tuple(c.name for c in spec if not c.required)


def spec_of(spec: tuple[ColumnSpec, ...], name: str) -> ColumnSpec:
    """The column called ``name`` in ``spec`` (``KeyError`` when there is none)."""
    for c in spec:
        if c.name == name:
            return c
    raise KeyError(name)


def _text(name: str, required: bool, description: str, choices: tuple[str, ...] = ()) -> ColumnSpec:
    return ColumnSpec(name, "str", "", required, description, choices=choices)


#: the most tokens a reader accepts in one token count: a larger count is no real query (a typo, a
#: unit mistake, a corrupted file) and would overflow the whole numbers it is stored in
MAX_TOKENS = 10_000_000
#: the largest batch size a characterization file may state
MAX_BATCH_SIZE = 1_000_000

# --- characterization data (one row per measured run) -------------------------------------
CHAR_SPEC: tuple[ColumnSpec, ...] = (
    _text("llm", True, "LLM measured (the name the fleet's [llms] table uses)"),
    _text("device", True, "device measured (the name the fleet's [pools] table uses)"),
    ColumnSpec("input_tokens", "int64", "", True, "prompt length (a count of tokens)", minimum=0, exclusive_minimum=True,
               maximum=MAX_TOKENS),
    ColumnSpec("output_tokens", "int64", "", True, "generated length (a count of tokens)", minimum=0, exclusive_minimum=True,
               maximum=MAX_TOKENS),
    ColumnSpec("batch_size", "int64", "", True, "identical queries run together (one prefill, then decode steps of all)",
               minimum=0, exclusive_minimum=True, maximum=MAX_BATCH_SIZE),
    ColumnSpec("runtime_s", "float64", "s", True, "wall time of one run: each query's latency in the batch",
               minimum=0, exclusive_minimum=True),
    ColumnSpec("energy_j", "float64", "J", True, "whole-system energy of one run (the whole batch's)",
               minimum=0, exclusive_minimum=True),
    ColumnSpec("energy_per_query_j", "float64", "J", False,
               "a query's share of the batch's energy, energy_j / batch_size (what the energy models predict)",
               minimum=0),
    ColumnSpec("gpu_energy_j", "float64", "J", False, "the GPUs' part of energy_j; empty where not metered", minimum=0),
    ColumnSpec("cpu_energy_j", "float64", "J", False, "the CPU package's part of energy_j; empty where not metered",
               minimum=0),
    ColumnSpec("idle_power_w", "float64", "W", False, "idle power of the devices used, measured before the sweep",
               minimum=0),
    # any sign: energy above the idle floor can dip below 0 within measurement noise
    ColumnSpec("above_idle_energy_j", "float64", "J", False, "energy_j less idle_power_w × runtime_s"),
    ColumnSpec("num_devices", "float64", "", False, "devices the run used (a count)", minimum=0),
    _text("energy_source", False, "meter(s) behind energy_j: nvml, rapl or estimate (joined by + when several "
          "add up); dry_run: simulated (--dry-run)"),
    _text("split", False, "design: fitted; holdout: only scored; empty: design", choices=("design", "holdout")),
    _text("repeat", False, "harness bookkeeping: the repeat index of the point (kept as text)"),
    _text("inner_runs", False, "harness bookkeeping: runs in the measured window, the row is their mean (kept as text)"),
    _text("decode_loop", False, "decode loop measured: cuda_graph or eager"),
    _text("decode_attention", False, "how a decode step attends: grouped (each KV head read once), sdpa, or ragged "
          "(the replay's engine: a prefill per query, attention over each query's own tokens)"),
    _text("dtype", False, "provenance: the weights' number format (bf16, fp32, ...)"),
    _text("gpu_name", False, "provenance: the GPU's name as NVML reports it"),
    _text("cpu_name", False, "provenance: the host CPU's model name"),
    _text("driver", False, "provenance: the GPU driver version"),
    _text("torch_version", False, "provenance: the torch version"),
    _text("transformers_version", False, "provenance: the transformers version"),
    _text("host", False, "provenance: the host name"),
    _text("measured_at", False, "provenance: when the run ended (ISO 8601, UTC)"),
)
CHAR_REQUIRED = required_names(CHAR_SPEC)
# numeric, optional, >= 0
CHAR_OPTIONAL_NUMERIC = tuple(c.name for c in CHAR_SPEC if not c.required and c.is_numeric and c.minimum is not None)
# numeric, optional, any sign (energy above the idle floor can dip below 0 within measurement noise)
CHAR_OPTIONAL_SIGNED = tuple(c.name for c in CHAR_SPEC if not c.required and c.is_numeric and c.minimum is None)
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
TARGET_UNITS = {t: spec_of(CHAR_SPEC, t).unit for t in TARGETS}

# --- workload (one row per query) -----------------------------------------------------------
WORKLOAD_SPEC: tuple[ColumnSpec, ...] = (
    _text("query_id", True, "the query's id, unique in the batch"),
    ColumnSpec("input_tokens", "int64", "", True, "prompt length (a count of tokens)", minimum=0, exclusive_minimum=True,
               maximum=MAX_TOKENS),
    # a prefill-only request (0 output tokens) is planned as 1 output token: its prefill yields the first
    ColumnSpec("output_tokens", "int64", "", True, "generated length (a count of tokens); 0: prefill only, planned as 1",
               minimum=0, maximum=MAX_TOKENS),
    ColumnSpec("min_accuracy", "float64", "", False, "the query's accuracy floor, 0-1; empty: 0 (none)",
               minimum=0, maximum=1),
    ColumnSpec("deadline_s", "float64", "s", False, "completion time from the batch start; empty: none",
               minimum=0, exclusive_minimum=True),
    # an arrival: the query cannot start before it (Azure TIMESTAMP and JSONL arrival/timestamp convert to it)
    ColumnSpec("release_s", "float64", "s", False, "the query's arrival from the batch start: it starts no earlier; "
               "empty or absent: 0", minimum=0),
)
WORKLOAD_REQUIRED = required_names(WORKLOAD_SPEC)
WORKLOAD_OPTIONAL = optional_names(WORKLOAD_SPEC)

# --- the exported plan (assignment.csv, one row per query) ----------------------------------
ASSIGNMENT_SPEC: tuple[ColumnSpec, ...] = (
    _text("query_id", True, "the query's id, as in the workload"),
    _text("llm", True, "the LLM that serves the query"),
    _text("device", True, "the device pool it runs on"),
    ColumnSpec("instance", "int64", "", True, "the instance of that (LLM, device), numbered from 0"),
    ColumnSpec("lane", "int64", "", True, "the lane of that instance that runs the query, numbered from 0"),
    ColumnSpec("batch_size", "int64", "", True, "the batch size the instance runs at (its number of lanes)"),
    ColumnSpec("start_s", "float64", "s", True, "start time from the batch start"),
    ColumnSpec("end_s", "float64", "s", True, "completion time from the batch start"),
    ColumnSpec("runtime_s", "float64", "s", True, "predicted runtime of the query there"),
    ColumnSpec("energy_j", "float64", "J", True, "predicted energy of the query there"),
    ColumnSpec("accuracy", "float64", "", True, "the LLM's accuracy, 0-1"),
    ColumnSpec("deadline_s", "float64", "s", True, "the query's deadline from the batch start; empty: none"),
    # always written; a plan made before release times lacks it, and reads as every query released at 0
    ColumnSpec("release_s", "float64", "s", False, "the query's release from the batch start (0: none); "
               "start_s is never earlier"),
    # written from the version that times batched instances as the engine runs them; older plans lack them
    ColumnSpec("engine_start_s", "float64", "s", False, "the query's start (its prefill) when its batched instance "
               "runs on a continuous-batching engine, simulated from t = 0; empty at batch size 1, with release "
               "times and for plans made per time slot"),
    ColumnSpec("engine_end_s", "float64", "s", False, "its end there; where a deadline fails on it, the plan "
               "is packed again to meet it, and summary.json counts those met; empty where engine_start_s is"),
)
ASSIGNMENT_COLUMNS = names(ASSIGNMENT_SPEC)
#: the columns an assignment must have to be checked or explained (a plan made before release times lacks release_s)
ASSIGNMENT_REQUIRED = required_names(ASSIGNMENT_SPEC)

# --- a sweep (sweep.csv, one row per plan of the series or per baseline) ----------------------
SWEEP_SPEC: tuple[ColumnSpec, ...] = (
    _text("method", True, "optimal (a plan of the series) or the baseline's name"),
    _text("vary", True, "what the series varies: min-mean-accuracy, zeta, deadline-scale, deadline-window or power-cap"),
    ColumnSpec("value", "float64", "", True,
               "the varied value at this point (floor, zeta, deadline scale, window [h] or power cap [W])"),
    _text("status", True, "the plan's status, or baseline (with the number of queries it leaves unrouted)"),
    ColumnSpec("queries", "int64", "", True, "queries in the batch"),
    ColumnSpec("total_energy_j", "float64", "J", True, "energy of the plan; empty without a plan"),
    ColumnSpec("total_energy_kwh", "float64", "kWh", True, "the same energy in kilowatt-hours"),
    ColumnSpec("token_weighted_mean_accuracy", "float64", "", True, "accuracy weighted by each query's tokens, 0-1"),
    ColumnSpec("mean_accuracy", "float64", "", True, "mean accuracy over the queries, 0-1"),
    ColumnSpec("deadlines_met", "float64", "", True, "queries that end by their deadline (a count; empty without a plan)"),
    ColumnSpec("engine_deadlines_met", "float64", "", True,
               "queries that end by their deadline on a continuous-batching engine (the assignment's "
               "engine_end_s; a count; empty without a plan or where no instance is batched)"),
    ColumnSpec("queries_with_deadline", "int64", "", True, "queries that have a deadline"),
    ColumnSpec("accuracy_floors_met", "float64", "", True, "queries whose accuracy floor is met (a count; empty without a plan)"),
    ColumnSpec("makespan_s", "float64", "s", True, "when the last query ends, from the batch start"),
    ColumnSpec("gap", "float64", "", True, "relative gap between the plan's objective and the proven bound"),
    ColumnSpec("total_s", "float64", "s", True, "wall time of the plan's call"),
    ColumnSpec("pareto", "bool", "", True, "whether the point is on the energy/merit front"),
    ColumnSpec("kg_co2e", "float64", "kgCO2e", True,
               "the plan priced per time slot under --signals' carbon; empty without signals or carbon"),
    ColumnSpec("cost", "float64", "", True, "the plan priced per time slot under --signals' price; empty without"),
    _text("reason", True, "why a point has no plan (empty where it has one)"),
)
SWEEP_COLUMNS = names(SWEEP_SPEC)

# --- summary.json: the plan's queries on predictions outside the measured token ranges ----------
# (keys of summary.json, and of each entry of its by_llm_device list)
SUMMARY_EXTRAPOLATION_SPEC: tuple[ColumnSpec, ...] = (
    ColumnSpec("extrapolated_queries", "int64", "", True,
               "assigned queries whose prediction lies outside the token ranges their models were measured on",
               minimum=0),
    ColumnSpec("extrapolated_energy_j", "float64", "J", True,
               "their predicted energy (the assignment's energy_j, idle not subtracted); null without a plan",
               minimum=0),
)
SUMMARY_EXTRAPOLATION_KEYS = names(SUMMARY_EXTRAPOLATION_SPEC)


class Status(StrEnum):
    """Outcome of a solve. Infeasible is a status, not an exception."""

    OPTIMAL = "optimal"  # proven optimal within the solver's tolerance
    FEASIBLE = "feasible"  # a plan, with a bound and a gap, not proven optimal (time limit)
    INFEASIBLE = "infeasible"  # no plan meets every requirement
    NO_SOLUTION = "no_solution"  # stopped before any plan was found
    ERROR = "error"

    @property
    def has_plan(self) -> bool:
        """Whether a result of this status carries a plan (an assignment of every query)."""
        return self in (Status.OPTIMAL, Status.FEASIBLE)


class BoundSource(StrEnum):
    """Where a reported lower bound comes from."""

    MIP = "mip"  # the backend's own proof (branch and bound; also its proof of infeasibility)
    LP = "lp"  # the LP relaxation of the model the backend solved
    LAGRANGIAN = "lagrangian"  # the Lagrangian relaxation of the coupling rows (methods/decompose.py)
    SERIES = "series"  # a sweep of ζ: the chord of the bounds on either side (the optimum is concave in ζ)
    NONE = "none"  # no bound is known


class Termination(StrEnum):
    """Why a method or backend stopped."""

    OPTIMAL = "optimal"  # proven optimal within the gap asked for
    FEASIBLE = "feasible"  # stopped with a plan that is not proven within the gap (e.g. the time limit)
    INFEASIBLE = "infeasible"  # proved that no plan exists
    TIME_LIMIT = "time_limit"  # stopped by the time limit without a plan
    WATCHDOG = "watchdog"  # the backend overran its limit and was stopped from outside
    NO_SOLUTION = "no_solution"  # ended without a plan for another reason
    ERROR = "error"  # the backend failed
