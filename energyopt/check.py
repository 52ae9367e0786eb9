"""Independent plan checker: re-derives every constraint from an exported assignment.

It reads only the assignment table (or its CSV), the workload, the fleet and the models, and
recomputes each query's runtime and energy from the models itself; nothing of the solver's
internal arrays is used, so a bug in the formulation or the packing cannot hide here.

:func:`check_plan` is a short driver over named rules, one function each, every one returning its
violation lines (an empty list: the rule holds). The first three look at the table as it is
(columns, query ids, deployments); the others share one :class:`CheckedRows`, the assigned rows
that name a query of the workload and a deployment of the fleet, with what the checker re-derived
for each. Every rule is vectorised over the rows (a plan may have a million): no per-row Python.

:func:`derive_totals` re-derives the summary's energy totals (queries, idle, total) from the same
rows and the formulas of :mod:`energyopt.accounting`; :func:`extrapolation_matches` holds the
summary's count of queries on extrapolated predictions (and their energy) to the rows'.
Under ``strict_range`` (``summary.json`` ``settings.strict_range``, the plan's ``--strict-range``),
:func:`predictions_within_measured_ranges` refuses any query whose prediction is extrapolated.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .accounting import idle_energy_j, planned_output_tokens, query_energy_cost_j, token_weight, weighted_mean_accuracy
from .caps import cap_bounds_s, pool_power_w, site_members, site_power_w, slot_name
from .enginesim import simulate_rows
from .errors import DataError
from .fleet import Deployment, Fleet, kv_context_tokens
from .modelstore import FittedModels
from .schema import ASSIGNMENT_REQUIRED, SUMMARY_EXTRAPOLATION_KEYS

__all__ = [
    "TOL_S",
    "REL",
    "TOTALS_KEYS",
    "EXTRAPOLATION_KEYS",
    "CheckedRows",
    "WorkloadMatch",
    "check_plan",
    "check_schedule",
    "derive_totals",
    "columns_present",
    "each_query_exactly_once",
    "deployments_exist",
    "instances_within_deployments_and_pools",
    "predictions_valid_and_within_context",
    "runtimes_and_energies_match_models",
    "starts_at_or_after_zero",
    "starts_at_or_after_release",
    "durations_match_runtimes",
    "deadlines_met",
    "horizon_met",
    "accuracy_column_matches_catalog",
    "accuracy_floors_met",
    "batch_mean_accuracy_floor_met",
    "batch_sizes_and_lanes_valid",
    "no_overlap_on_a_lane",
    "engine_times_match",
    "totals_match",
    "predictions_within_measured_ranges",
    "extrapolation_matches",
    "power_caps_met",
]

#: absolute tolerance on times [s]
TOL_S = 1e-6
#: relative tolerance on re-derived runtimes, energies and totals
REL = 1e-6
#: the energy totals of a plan's summary that :func:`derive_totals` re-derives [J]
TOTALS_KEYS = ("query_energy_j", "idle_energy_j", "total_energy_j")
#: the summary's count of assigned queries whose prediction is extrapolated, and their energy [J]
EXTRAPOLATION_KEYS = SUMMARY_EXTRAPOLATION_KEYS


@dataclass(frozen=True)
class WorkloadMatch:
    """Each assignment row's query in the workload (an id listed twice in a workload: its first row)."""

    query_ids: pd.Series  # every assignment row's query_id as str, in assignment order
    workload_ids: pd.Index  # the workload's distinct query ids, first occurrence each
    workload_row: np.ndarray  # row in the workload table of each distinct id
    position: np.ndarray  # per assignment row: index into workload_ids, -1 for an id not in the workload
    times_assigned: np.ndarray  # per distinct workload id: how many assignment rows name it

    @property
    def known(self) -> np.ndarray:
        """Per assignment row: it names a query of the workload."""
        return self.position >= 0


@dataclass(frozen=True)
class CheckedRows:
    """The assignment rows that name a query of the workload and a deployment of the fleet (in
    assignment order), what the plan states for each, and what the checker re-derived for each from
    the workload, the fleet and the models alone."""

    query_ids: pd.Series  # every assignment row's query_id as str (messages name queries from it)
    assignment_row: np.ndarray  # position in the assignment of each checked row
    deployments: list[Deployment]  # the fleet's deployment behind each deployment code
    deployment_code: np.ndarray  # each row's deployment, an index into deployments
    instance: np.ndarray
    lane: np.ndarray  # the lane of its instance
    batch_size: np.ndarray  # the batch size its instance runs at, as the plan states it
    # stated by the plan
    start_s: np.ndarray
    end_s: np.ndarray
    stated_runtime_s: np.ndarray
    stated_energy_j: np.ndarray
    stated_accuracy: np.ndarray
    # from the workload
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    deadline_s: np.ndarray  # NaN: none
    release_s: np.ndarray  # the workload's release (0 where it gives none)
    stated_release_s: np.ndarray  # the assignment's release_s column (NaN where it has none)
    min_accuracy: np.ndarray
    # re-derived from the models and the fleet
    model_runtime_s: np.ndarray
    model_energy_j: np.ndarray
    prediction_valid: np.ndarray  # False where the model's raw prediction is <= 0
    prediction_extrapolated: np.ndarray  # True where the query lies outside the ranges its models were measured on
    catalog_accuracy: np.ndarray
    context_tokens: np.ndarray  # the LLM's context window (inf: none stated)
    kv_context_tokens: np.ndarray  # the longest context whose KV cache fits batch_size times beside the weights
    instance_idle_power_w: np.ndarray  # idle draw of the row's instance (pool idle power × devices per instance)

    def __len__(self) -> int:
        return len(self.assignment_row)

    def first_query_id(self, mask: np.ndarray) -> str:
        """The query of the first checked row where ``mask`` holds (for messages: no million-row
        conversion of the ids)."""
        return str(self.query_ids.iloc[self.assignment_row[np.flatnonzero(mask)[0]]])

    def count_per_deployment(self, mask: np.ndarray) -> np.ndarray:
        """How many rows of each deployment code ``mask`` holds for."""
        return np.bincount(self.deployment_code[mask], minlength=len(self.deployments))


# --- the driver -------------------------------------------------------------------------------


def check_plan(
    assignment: pd.DataFrame | str | Path,
    workload: pd.DataFrame,
    fleet: Fleet,
    models: FittedModels,
    *,
    min_mean_accuracy: float | None = None,
    require_all: bool = True,
    totals: Mapping[str, float] | None = None,
    idle: bool = False,
    strict_range: bool = False,
    cap_bounds_s: np.ndarray | None = None,
) -> list[str]:
    """Every violated constraint, one line each; an empty list means the plan is valid.

    Where a pool or a site of the fleet has a ``power_cap_w``, its power per slot is re-derived
    from the rows (:func:`power_caps_met`); ``cap_bounds_s`` are the slot boundaries [s] the caps hold in
    (the plan's signals' slots; default whole hours, :func:`~energyopt.caps.cap_bounds_s`).

    ``totals``: energy totals the plan reports (e.g. its ``summary.json``; any of
    :data:`TOTALS_KEYS` [J]), compared with :func:`derive_totals` (``idle``: idle power counted),
    and any of :data:`EXTRAPOLATION_KEYS` it names, compared with the rows'. ``strict_range``: the
    plan was made with ``--strict-range``, so no query may rest on an extrapolated prediction.
    """
    table = _read_assignment(assignment)
    violations = columns_present(table)
    if violations:
        return violations
    match = _match_workload(table, workload)
    violations += each_query_exactly_once(match, require_all=require_all)
    known_rows = np.flatnonzero(match.known)
    if not len(known_rows):
        return violations
    pair_code, pairs = _llm_device_pairs(table, known_rows)
    violations += deployments_exist(pairs, fleet)
    rows = _checked_rows(table, match, known_rows, pair_code, pairs, workload, fleet, models)
    if rows is None:
        return violations
    violations += instances_within_deployments_and_pools(rows, fleet)
    violations += predictions_valid_and_within_context(rows)
    if strict_range:
        violations += predictions_within_measured_ranges(rows)
    violations += runtimes_and_energies_match_models(rows)
    violations += starts_at_or_after_zero(rows)
    violations += starts_at_or_after_release(rows)
    violations += durations_match_runtimes(rows)
    violations += deadlines_met(rows)
    violations += horizon_met(rows, fleet.horizon_s)
    violations += accuracy_column_matches_catalog(rows)
    violations += accuracy_floors_met(rows)
    if min_mean_accuracy is not None:
        violations += batch_mean_accuracy_floor_met(rows, min_mean_accuracy)
    violations += batch_sizes_and_lanes_valid(rows)
    violations += no_overlap_on_a_lane(rows)
    violations += engine_times_match(rows, table, models)
    if fleet.has_power_caps:
        violations += power_caps_met(rows, fleet, cap_bounds_s, idle=idle)
    if totals is not None:
        violations += totals_match(totals, _totals_of(rows, fleet.horizon_s, idle=idle))
        violations += extrapolation_matches(totals, rows)
    return violations


def check_schedule(problem, schedule) -> list[str]:
    """:func:`check_plan` on a schedule, from the raw workload, fleet and models the problem was
    built from (none of the problem's derived arrays is used), its energy totals and its count of
    queries on extrapolated predictions included, under the problem's ``strict_range``."""
    if problem.inputs is None:
        raise DataError("this problem does not carry its inputs; call check_plan(assignment, workload, fleet, models)")
    workload, fleet, models = problem.inputs
    return check_plan(schedule.assignment, workload, fleet, models,
                      min_mean_accuracy=problem.min_mean_accuracy, require_all=True,
                      totals={**schedule.energy_totals(), **schedule.extrapolation_totals()}, idle=problem.idle,
                      strict_range=problem.strict_range)


def derive_totals(
    assignment: pd.DataFrame | str | Path,
    workload: pd.DataFrame,
    fleet: Fleet,
    models: FittedModels,
    *,
    idle: bool,
) -> dict[str, float]:
    """The plan's energy totals [J] re-derived from the assignment's placements (query, LLM, device,
    instance), the workload, the fleet and the models alone; the assignment's own runtimes and
    energies are not read.

    Without ``idle``: ``query_energy_j`` is the sum of each query's predicted energy and
    ``idle_energy_j`` is 0. With ``idle``: each query is charged its energy above idle,
    ``max(E − P_idle·t, 0)``, and each switched-on instance (a distinct LLM, device and instance
    with work) ``P_idle × horizon``, ``P_idle`` being its pool's idle power per device times its
    devices. ``total_energy_j`` is their sum. A row naming a query not in the workload or an (LLM,
    device) the fleet does not deploy cannot be priced: :class:`DataError`.
    """
    table = _read_assignment(assignment)
    missing = columns_present(table)
    if missing:
        raise DataError(missing[0])
    match = _match_workload(table, workload)
    if not match.known.all():
        qid = match.query_ids.iloc[int(np.flatnonzero(~match.known)[0])]
        raise DataError(f"cannot re-derive the energy totals: query {qid!r} is not in the workload")
    known_rows = np.arange(len(table))
    pair_code, pairs = _llm_device_pairs(table, known_rows)
    deployed = {(d.llm, d.pool) for d in fleet.deployments}
    off_fleet = np.flatnonzero(~np.array([pair in deployed for pair in pairs], dtype=bool)[pair_code])
    if len(off_fleet):
        i = int(off_fleet[0])
        raise DataError(f"cannot re-derive the energy totals: query {match.query_ids.iloc[i]!r} is on "
                        f"{table['llm'].iloc[i]}/{table['device'].iloc[i]}, which the fleet does not deploy")
    rows = _checked_rows(table, match, known_rows, pair_code, pairs, workload, fleet, models)
    return _totals_of(rows, fleet.horizon_s, idle=idle)


# --- preparing the rows -----------------------------------------------------------------------


def _read_assignment(assignment: pd.DataFrame | str | Path) -> pd.DataFrame:
    if isinstance(assignment, (str, Path)):
        from .io import read_assignment_csv

        return read_assignment_csv(assignment)
    return assignment


def _match_workload(table: pd.DataFrame, workload: pd.DataFrame) -> WorkloadMatch:
    """Look up each assignment row's query in the workload: one hash lookup per row
    (``Index.get_indexer``; ``Series.isin`` on pyarrow-backed strings converts each value)."""
    query_ids = table["query_id"].astype(str).reset_index(drop=True)
    workload_ids = pd.Index(workload["query_id"].astype(str))
    if workload_ids.is_unique:
        workload_row = np.arange(len(workload_ids))
    else:  # an id given twice in a workload: its first row counts
        first = ~workload_ids.duplicated()
        workload_row = np.flatnonzero(first)
        workload_ids = workload_ids[first]
    position = workload_ids.get_indexer(pd.Index(query_ids))
    times_assigned = np.bincount(position[position >= 0], minlength=len(workload_ids))
    return WorkloadMatch(query_ids, workload_ids, workload_row, position, times_assigned)


def _llm_device_pairs(table: pd.DataFrame, rows: np.ndarray) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Each of ``rows``'s (llm, device) pair as a code, and the pair behind each code (in order of
    first appearance)."""
    labels = table[["llm", "device"]]
    if len(rows) < len(table):
        labels = labels.iloc[rows]
    code = labels.groupby(["llm", "device"], sort=False, dropna=False).ngroup().to_numpy()
    firsts = np.unique(code, return_index=True)[1]
    llm, device = labels["llm"].astype(str), labels["device"].astype(str)
    return code, [(llm.iloc[i], device.iloc[i]) for i in firsts]


def _checked_rows(table: pd.DataFrame, match: WorkloadMatch, known_rows: np.ndarray, pair_code: np.ndarray,
                  pairs: list[tuple[str, str]], workload: pd.DataFrame, fleet: Fleet,
                  models: FittedModels) -> CheckedRows | None:
    """The rows of known queries on deployments of the fleet (None if there are none), with their
    runtimes, energies, validity, accuracy, context window and idle power re-derived."""
    deployment_of = {(d.llm, d.pool): d for d in fleet.deployments}
    is_deployment = np.array([pair in deployment_of for pair in pairs], dtype=bool)
    keep = is_deployment[pair_code]
    rows = known_rows[keep]
    if not len(rows):
        return None
    # deployment codes: the pairs that are deployments, renumbered in the same order
    code = (np.cumsum(is_deployment) - 1)[pair_code[keep]]
    deployments = [deployment_of[pair] for pair, ok in zip(pairs, is_deployment, strict=True) if ok]
    everything = len(rows) == len(table)

    def column(name: str, dtype=None) -> np.ndarray:
        values = table[name].to_numpy(dtype=dtype)
        return values if everything else values[rows]

    at = match.workload_row[match.position[rows]]  # each row's query in the workload table
    input_tokens = workload["input_tokens"].to_numpy()[at]
    output_tokens = workload["output_tokens"].to_numpy()[at]
    batch_size = _whole(column("batch_size", float), invalid=0)  # empty or fractional: 0, not a batch size
    model_runtime_s = np.full(len(rows), np.nan)
    model_energy_j = np.full(len(rows), np.nan)
    prediction_valid = np.zeros(len(rows), dtype=bool)
    prediction_extrapolated = np.zeros(len(rows), dtype=bool)
    kv_context = np.full(len(rows), np.inf)
    # one prediction per (deployment, batch size): the models at the batch size the plan states
    key = code.astype(np.int64) * (int(batch_size.max(initial=1)) + 1) + np.maximum(batch_size, 0)
    by_key = np.argsort(key, kind="stable")
    starts = np.flatnonzero(np.r_[True, key[by_key][1:] != key[by_key][:-1]])
    for a, b in zip(starts, np.r_[starts[1:], len(key)], strict=True):
        idx = by_key[a:b]
        d, size = deployments[int(code[idx[0]])], int(batch_size[idx[0]])
        if size < 1:
            continue  # batch_sizes_and_lanes_valid says so; nothing to predict
        kv_context[idx] = kv_context_tokens(fleet.pools[d.pool], fleet.llms[d.llm], d.devices_per_instance, size)
        try:
            predicted = models.predict(d.llm, d.pool, input_tokens[idx], planned_output_tokens(output_tokens[idx]),
                                       batch_size=size)
        except DataError:
            continue  # no model at that batch size: NaN predictions fail the model rules
        model_runtime_s[idx] = predicted["runtime_s"].to_numpy()
        model_energy_j[idx] = predicted["energy_j"].to_numpy()
        prediction_valid[idx] = predicted["valid"].to_numpy()
        prediction_extrapolated[idx] = predicted["extrapolated"].to_numpy()
    accuracy_of = np.array([fleet.llms[d.llm].accuracy for d in deployments], dtype=float)
    context_of = np.array([np.inf if fleet.llms[d.llm].context_tokens is None else fleet.llms[d.llm].context_tokens
                           for d in deployments], dtype=float)
    idle_of = np.array([fleet.instance_idle_power_w(d) for d in deployments], dtype=float)
    return CheckedRows(
        query_ids=match.query_ids, assignment_row=rows, deployments=deployments, deployment_code=code,
        instance=_whole(column("instance", float), invalid=-1), lane=_whole(column("lane", float), invalid=-1),
        batch_size=batch_size,
        start_s=column("start_s", float), end_s=column("end_s", float),
        stated_runtime_s=column("runtime_s", float), stated_energy_j=column("energy_j", float),
        stated_accuracy=column("accuracy", float), input_tokens=input_tokens, output_tokens=output_tokens,
        deadline_s=workload["deadline_s"].to_numpy(float)[at],
        release_s=(np.nan_to_num(workload["release_s"].to_numpy(float)[at], nan=0.0) if "release_s" in workload.columns
                   else np.zeros(len(rows))),
        stated_release_s=column("release_s", float) if "release_s" in table.columns else np.full(len(rows), np.nan),
        min_accuracy=workload["min_accuracy"].to_numpy(float)[at],
        model_runtime_s=model_runtime_s, model_energy_j=model_energy_j, prediction_valid=prediction_valid,
        prediction_extrapolated=prediction_extrapolated,
        catalog_accuracy=accuracy_of[code], context_tokens=context_of[code], kv_context_tokens=kv_context,
        instance_idle_power_w=idle_of[code],
    )


def _whole(values: np.ndarray, *, invalid: int) -> np.ndarray:
    """Whole numbers as integers; an empty or fractional cell becomes ``invalid`` (which the rules
    then refuse: no instance, lane or batch size has that number)."""
    ok = np.isfinite(values) & (np.mod(np.where(np.isfinite(values), values, 0.0), 1.0) == 0)
    return np.where(ok, np.nan_to_num(values, nan=float(invalid)), float(invalid)).astype(np.int64)


def _totals_of(rows: CheckedRows | None, horizon_s: float, *, idle: bool) -> dict[str, float]:
    """Energy totals [J] of the checked rows (see :func:`derive_totals`)."""
    if rows is None:
        return dict.fromkeys(TOTALS_KEYS, 0.0)
    query_j = float(np.sum(query_energy_cost_j(rows.model_energy_j, rows.model_runtime_s,
                                               rows.instance_idle_power_w, idle=idle,
                                               lanes=np.maximum(rows.batch_size, 1))))
    idle_j = 0.0
    if idle:
        switched_on = pd.DataFrame({"d": rows.deployment_code, "i": rows.instance}).drop_duplicates().index.to_numpy()
        idle_j = float(np.sum(idle_energy_j(rows.instance_idle_power_w[switched_on], horizon_s)))
    return {"query_energy_j": query_j, "idle_energy_j": idle_j, "total_energy_j": query_j + idle_j}


def _close(stated: np.ndarray, derived: np.ndarray) -> np.ndarray:
    return np.abs(stated - derived) <= REL * np.maximum(np.abs(derived), 1.0) + 1e-9


# --- the rules on the table as it is ----------------------------------------------------------


def columns_present(table: pd.DataFrame) -> list[str]:
    """Every column of the assignment contract is there."""
    missing = [c for c in ASSIGNMENT_REQUIRED if c not in table.columns]
    return [f"assignment lacks column(s) {', '.join(missing)}"] if missing else []


def each_query_exactly_once(match: WorkloadMatch, *, require_all: bool) -> list[str]:
    """No query twice, none the workload lacks, and (``require_all``) every query of the workload."""
    out = []
    ids, known = match.query_ids, match.known
    if (match.times_assigned > 1).any() or (not known.all() and ids[~known].duplicated().any()):
        duplicated = ids[ids.duplicated()]
        out.append(f"queries assigned more than once: {', '.join(duplicated.unique()[:5])}")
    if not known.all():
        unknown = sorted(ids[~known].unique())
        out.append(f"assignment names queries not in the workload: {', '.join(unknown[:5])}")
    if require_all and (match.times_assigned == 0).any():
        absent = sorted(match.workload_ids[match.times_assigned == 0])
        out.append(f"{len(absent)} queries not assigned, e.g. {', '.join(absent[:5])}")
    return out


def deployments_exist(pairs: list[tuple[str, str]], fleet: Fleet) -> list[str]:
    """Every (llm, device) the plan uses is a deployment of the fleet."""
    deployed = {(d.llm, d.pool) for d in fleet.deployments}
    return [f"{llm} on {device} is not a deployment of the fleet" for llm, device in pairs
            if (llm, device) not in deployed]


# --- the rules on the checked rows ------------------------------------------------------------


def instances_within_deployments_and_pools(rows: CheckedRows, fleet: Fleet) -> list[str]:
    """Instance numbers within 0..max_instances − 1 of their deployment, and no pool with more devices
    switched on than it has."""
    out = []
    switched_on = pd.DataFrame({"d": rows.deployment_code, "i": rows.instance}).drop_duplicates()
    per_deployment = switched_on.groupby("d")["i"].agg(["size", "min", "max"])
    devices_on = dict.fromkeys(fleet.pools, 0)
    for code, n_instances, lowest, highest in zip(per_deployment.index.to_numpy(), *per_deployment.to_numpy().T,
                                                  strict=True):
        d = rows.deployments[int(code)]
        if lowest < 0 or highest >= d.max_instances:
            out.append(f"{d.llm} on {d.pool}: instance numbers {lowest}..{highest} outside 0..{d.max_instances - 1}")
        devices_on[d.pool] += int(n_instances) * d.devices_per_instance
    for pool, n in devices_on.items():
        if n > fleet.pools[pool].count:
            out.append(f"pool {pool}: {n} devices switched on, only {fleet.pools[pool].count} exist")
    return out


def predictions_valid_and_within_context(rows: CheckedRows) -> list[str]:
    """Per deployment: no query without a model at its batch size or where the model's raw
    prediction is <= 0, none beyond the LLM's context window, none whose context the KV cache of
    its instance's lanes leaves no room for."""
    tokens = rows.input_tokens + rows.output_tokens
    unmodelled = rows.count_per_deployment(np.isnan(rows.model_energy_j) & (rows.batch_size >= 1))
    invalid = rows.count_per_deployment(~rows.prediction_valid & ~np.isnan(rows.model_energy_j))
    too_long = rows.count_per_deployment(tokens > rows.context_tokens)
    no_kv_room = rows.count_per_deployment((tokens <= rows.context_tokens) & (tokens > rows.kv_context_tokens))
    out = []
    for code, d in enumerate(rows.deployments):
        if unmodelled[code]:
            out.append(f"{d.llm} on {d.pool}: {int(unmodelled[code])} queries at a batch size its models were "
                       "not measured at")
        if invalid[code]:
            out.append(f"{d.llm} on {d.pool}: {int(invalid[code])} queries where the model predicts <= 0")
        if too_long[code]:
            context = int(rows.context_tokens[rows.deployment_code == code][0])
            out.append(f"{d.llm}: {int(too_long[code])} queries exceed its {context}-token context")
        if no_kv_room[code]:
            out.append(f"{d.llm} on {d.pool}: {int(no_kv_room[code])} queries whose context does not fit the KV "
                       "cache of their instance's lanes beside the weights")
    return out


def predictions_within_measured_ranges(rows: CheckedRows) -> list[str]:
    """Per deployment (under ``--strict-range`` only): no query whose token counts lie outside the
    ranges its models were measured on."""
    outside = rows.count_per_deployment(rows.prediction_extrapolated)
    return [f"{d.llm} on {d.pool}: {int(outside[code])} queries outside the token ranges its models were measured "
            f"on (--strict-range), e.g. {rows.first_query_id(rows.prediction_extrapolated & (rows.deployment_code == code))}"
            for code, d in enumerate(rows.deployments) if outside[code]]


def runtimes_and_energies_match_models(rows: CheckedRows) -> list[str]:
    """Each stated runtime and energy is the model's prediction (relative :data:`REL`)."""
    out = []
    for name, stated, derived in (("runtime_s", rows.stated_runtime_s, rows.model_runtime_s),
                                  ("energy_j", rows.stated_energy_j, rows.model_energy_j)):
        bad = ~_close(stated, derived)
        if bad.any():
            out.append(f"{name} differs from the model's prediction for {int(bad.sum())} queries, "
                       f"e.g. {rows.first_query_id(bad)}")
    return out


def starts_at_or_after_zero(rows: CheckedRows) -> list[str]:
    """No query starts before the batch start, t = 0."""
    early = rows.start_s < -TOL_S
    return [f"{int(early.sum())} queries start before t = 0"] if early.any() else []


def starts_at_or_after_release(rows: CheckedRows) -> list[str]:
    """No query starts before its release (the workload's ``release_s``), and a ``release_s`` the
    assignment states is the workload's."""
    out = []
    early = (rows.release_s > 0) & (rows.start_s < rows.release_s - TOL_S)  # before t = 0: the rule above
    if early.any():
        i = int(np.flatnonzero(early)[0])
        out.append(f"{int(early.sum())} queries start before their release, e.g. {rows.first_query_id(early)} at "
                   f"{rows.start_s[i]:.6g} s, released at {rows.release_s[i]:.6g} s")
    stated = ~np.isnan(rows.stated_release_s)
    wrong = stated & (np.abs(rows.stated_release_s - rows.release_s) > TOL_S + REL * rows.release_s)
    if wrong.any():
        out.append(f"release_s differs from the workload's for {int(wrong.sum())} queries, "
                   f"e.g. {rows.first_query_id(wrong)}")
    return out


def durations_match_runtimes(rows: CheckedRows) -> list[str]:
    """end_s − start_s is the re-derived runtime."""
    bad = np.abs(rows.end_s - rows.start_s - rows.model_runtime_s) > TOL_S + REL * rows.model_runtime_s
    if bad.any():
        return [f"end_s - start_s differs from the runtime for {int(bad.sum())} queries, "
                f"e.g. {rows.first_query_id(bad)}"]
    return []


def deadlines_met(rows: CheckedRows) -> list[str]:
    """Every query with a deadline (the workload's) ends by it."""
    late = ~np.isnan(rows.deadline_s) & (rows.end_s > rows.deadline_s + TOL_S)
    if late.any():
        return [f"{int(late.sum())} queries end after their deadline, e.g. {rows.first_query_id(late)}"]
    return []


def engine_times_match(rows: CheckedRows, table: pd.DataFrame, models: FittedModels) -> list[str]:
    """Where the plan states engine times (``engine_start_s``, ``engine_end_s``: its batched
    instances as a continuous-batching engine runs them), they are the ones re-derived from its
    rows: each instance's lanes, each lane's queries in start order, simulated from the models
    (:func:`~energyopt.enginesim.simulate_rows`); empty at batch size 1. A plan that states none
    (made per time slot, with release times, or by an older version) is not checked here."""
    if "engine_start_s" not in table.columns or "engine_end_s" not in table.columns:
        return []
    rows_all = rows.assignment_row
    stated_start = table["engine_start_s"].to_numpy(dtype=float)[rows_all]
    stated_end = table["engine_end_s"].to_numpy(dtype=float)[rows_all]
    if not (np.isfinite(stated_start).any() or np.isfinite(stated_end).any()):
        return []
    ok_rows = (rows.batch_size >= 1) & (rows.lane >= 0) & (rows.instance >= 0)
    if not ok_rows.all():
        return []  # batch_sizes_and_lanes_valid says so
    llm = np.array([d.llm for d in rows.deployments], dtype=object)[rows.deployment_code]
    pool = np.array([d.pool for d in rows.deployments], dtype=object)[rows.deployment_code]
    derived = simulate_rows(models, llm, pool, rows.batch_size, rows.instance, rows.lane, rows.start_s,
                            rows.input_tokens, rows.output_tokens)
    if derived is None:
        return ["the plan states engine times, but the models cannot simulate its batched instances"]
    out = []
    for name, stated, got in (("engine_start_s", stated_start, derived[0]), ("engine_end_s", stated_end, derived[1])):
        both_nan = np.isnan(stated) & np.isnan(got)
        bad = ~both_nan & ~(np.abs(stated - got) <= TOL_S + REL * np.abs(got))
        if bad.any():
            out.append(f"{name} differs from the engine simulation of the plan's lanes for {int(bad.sum())} "
                       f"queries, e.g. {rows.first_query_id(bad)}")
    return out


def horizon_met(rows: CheckedRows, horizon_s: float) -> list[str]:
    """Every query ends by the fleet's horizon."""
    over = rows.end_s > horizon_s + TOL_S
    return [f"{int(over.sum())} queries end after the horizon of {horizon_s:g} s"] if over.any() else []


def accuracy_column_matches_catalog(rows: CheckedRows) -> list[str]:
    """The accuracy column is the LLM's accuracy in the fleet's catalog."""
    if not np.allclose(rows.stated_accuracy, rows.catalog_accuracy):
        return ["accuracy column differs from the fleet's LLM catalog"]
    return []


def accuracy_floors_met(rows: CheckedRows) -> list[str]:
    """Every query runs on an LLM at least as accurate as its min_accuracy."""
    low = rows.catalog_accuracy < rows.min_accuracy - 1e-12
    if low.any():
        return [f"{int(low.sum())} queries run on an LLM below their min_accuracy, e.g. {rows.first_query_id(low)}"]
    return []


def batch_mean_accuracy_floor_met(rows: CheckedRows, min_mean_accuracy: float) -> list[str]:
    """The batch's token-weighted mean accuracy reaches its floor."""
    mean = weighted_mean_accuracy(token_weight(rows.input_tokens, rows.output_tokens), rows.catalog_accuracy)
    if mean < min_mean_accuracy - 1e-9:
        return [f"token-weighted mean accuracy {mean:.4f} below the floor {min_mean_accuracy}"]
    return []


def batch_sizes_and_lanes_valid(rows: CheckedRows) -> list[str]:
    """Each instance runs at one batch size its deployment allows, and each query on a lane
    0..batch size − 1 of it."""
    out = []
    per_instance = pd.DataFrame({"d": rows.deployment_code, "i": rows.instance, "b": rows.batch_size})
    sizes = per_instance.drop_duplicates()
    mixed = sizes.duplicated(["d", "i"])
    if mixed.any():
        r = sizes[mixed].iloc[0]
        d = rows.deployments[int(r["d"])]
        out.append(f"{d.llm} on {d.pool}: {int(mixed.sum())} instance(s) run at more than one batch size, "
                   f"e.g. instance {int(r['i'])}")
    for code, b in sizes[["d", "b"]].drop_duplicates().itertuples(index=False):
        d = rows.deployments[int(code)]
        if int(b) not in d.batch_sizes:
            out.append(f"{d.llm} on {d.pool}: batch size {int(b)} is not one of its batch sizes {list(d.batch_sizes)}")
    bad_lane = (rows.lane < 0) | (rows.lane >= rows.batch_size)
    if bad_lane.any():
        out.append(f"{int(bad_lane.sum())} queries on a lane outside 0..batch size - 1, e.g. "
                   f"{rows.first_query_id(bad_lane)}")
    return out


def no_overlap_on_a_lane(rows: CheckedRows) -> list[str]:
    """Queries on one lane of an instance run one after another: none starts before the previous one ends."""
    lowest = int(rows.instance.min())
    lanes = int(max(rows.lane.max(), 0)) + 1
    lane_key = ((rows.deployment_code.astype(np.int64) * (int(rows.instance.max()) - lowest + 1)
                 + (rows.instance - lowest)) * lanes + np.clip(rows.lane, 0, None))
    order = np.lexsort((rows.start_s, lane_key))
    key, start_s, end_s = lane_key[order], rows.start_s[order], rows.end_s[order]
    overlap = (key[1:] == key[:-1]) & (start_s[1:] < end_s[:-1] - TOL_S)
    return [f"{int(overlap.sum())} queries overlap another on the same lane"] if overlap.any() else []


def power_caps_met(rows: CheckedRows, fleet: Fleet, bounds_s: np.ndarray | None, *, idle: bool) -> list[str]:
    """Every pool with a ``power_cap_w`` draws at most its cap in every slot: its queries' charged
    energy (re-derived from the models; above idle where idle is counted) spread over each one's
    ``[start_s, end_s)``, plus with ``idle`` its switched-on instances' idle draw, per second of
    the slot (:func:`~energyopt.caps.pool_power_w`); and every site draws at most its cap, the
    sum of its pools' powers (:func:`~energyopt.caps.site_power_w`). The slot furthest over the
    cap of each such pool or site is named, with its excess [W]."""
    b = cap_bounds_s(fleet.horizon_s) if bounds_s is None else np.asarray(bounds_s, dtype=float)
    names = list(fleet.pools)
    pool_of_code = np.array([names.index(d.pool) for d in rows.deployments], dtype=np.int64)
    pool = pool_of_code[rows.deployment_code]
    charged = query_energy_cost_j(rows.model_energy_j, rows.model_runtime_s, rows.instance_idle_power_w, idle=idle,
                                  lanes=np.maximum(rows.batch_size, 1))
    usable = np.isfinite(charged) & np.isfinite(rows.start_s) & np.isfinite(rows.end_s)
    start = np.clip(rows.start_s[usable], b[0], b[-1])
    end = np.clip(rows.end_s[usable], start, b[-1])
    idle_pool = idle_w = None
    if idle:
        on = pd.DataFrame({"d": rows.deployment_code, "i": rows.instance}).drop_duplicates().index.to_numpy()
        idle_pool, idle_w = pool[on], rows.instance_idle_power_w[on]
    power = pool_power_w(b, pool[usable], start, end, charged[usable], len(names), idle_pool=idle_pool, idle_w=idle_w,
                         horizon_s=float(b[-1]))
    caps = [(f"pool {name}", power[j], fleet.pools[name].power_cap_w) for j, name in enumerate(names)]
    site_power = site_power_w(power, site_members(fleet.sites, names))
    caps += [(f"site {site.name}", site_power[i], site.power_cap_w) for i, site in enumerate(fleet.sites.values())]
    out = []
    for label, drawn, cap in caps:
        if cap is None:
            continue
        over = np.flatnonzero(drawn > cap * (1 + REL) + 1e-6)
        if len(over):
            k = int(over[np.argmax(drawn[over])])
            out.append(f"{label} draws {drawn[k]:,.1f} W in {slot_name(b, k)}, {drawn[k] - cap:,.1f} W over "
                       f"its power_cap_w of {cap:,.6g} W ({len(over)} slot{'' if len(over) == 1 else 's'} over)")
    return out


def extrapolation_matches(stated: Mapping[str, float], rows: CheckedRows) -> list[str]:
    """The count of queries on extrapolated predictions a plan states (``extrapolated_queries``), and
    their energy (``extrapolated_energy_j`` [J], relative :data:`REL`), are those of the rows, where
    the plan states them."""
    flagged = rows.prediction_extrapolated
    derived = {"extrapolated_queries": float(flagged.sum()),
               "extrapolated_energy_j": float(np.sum(rows.model_energy_j[flagged]))}
    out = []
    for key in EXTRAPOLATION_KEYS:
        if stated.get(key) is None:
            continue
        given, expected = float(stated[key]), derived[key]
        if not abs(given - expected) <= REL * max(abs(expected), 1.0):
            out.append(f"{key} {given:.9g} differs from the {expected:.9g} re-derived from the assignment and the "
                       f"models' measured ranges")
    return out


def totals_match(stated: Mapping[str, float], derived: Mapping[str, float]) -> list[str]:
    """The energy totals a plan states (those of :data:`TOTALS_KEYS` it names) are the re-derived
    ones (relative :data:`REL`)."""
    named = [k for k in TOTALS_KEYS if k in stated]
    if not named:
        return [f"the totals name none of {', '.join(TOTALS_KEYS)}"]
    out = []
    for key in named:
        given, expected = float(stated[key]), float(derived[key])
        if not abs(given - expected) <= REL * max(abs(expected), 1.0):
            out.append(f"{key} {given:.9g} J differs from the {expected:.9g} J re-derived from the assignment "
                       f"and the models")
    return out
