"""The result of planning: the assignment table with its timeline, its status, bound and gap,
and its summary.

A :class:`Schedule` is made once, with its final status, by :func:`energyopt.plan.plan` (or for a
routing rule by :func:`energyopt.plan.plan_choice`); it is not changed afterwards.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .accounting import (
    above_idle_energy_j,
    ends_in_time,
    idle_energy_j,
    j_to_kwh,
    padding_energy_j,
    relative_gap,
    weighted_mean_accuracy,
)
from .enginesim import engine_timing_applies, simulate_rows
from .packing import Timeline, timeline_times_s
from .problem import Problem
from .schema import ASSIGNMENT_COLUMNS, BoundSource, Status, Termination
from .signals import Signals
from .slots import slot_table, slot_totals
from .version import package_version
from .writers import write_json, write_table_csv

__all__ = ["Schedule", "Summary", "assignment_table", "empty_assignment", "energy_totals", "extrapolated_rows",
           "extrapolation_totals"]


def _compact_instances(deps: pd.DataFrame, d: np.ndarray, inst: np.ndarray) -> np.ndarray:
    """Instance numbers 0, 1, … per (LLM, device): only instances with work are on, and the batch
    sizes of one fleet deployment (its problem deployments) share its numbering."""
    n_d = len(deps)
    M = int(inst.max(initial=0)) + 1
    used = np.zeros((n_d, M), dtype=bool)
    used[d, inst] = True
    within = np.cumsum(used, axis=1) - 1  # compact per problem deployment
    on = used.sum(axis=1)
    group = deps["group"].to_numpy()
    offset = np.zeros(n_d, dtype=np.int64)  # instances on in earlier batch sizes of the same group
    for g in np.unique(group):
        members = np.flatnonzero(group == g)
        offset[members] = np.concatenate([[0], np.cumsum(on[members])[:-1]])
    return within[d, inst] + offset[d]


def assignment_table(problem: Problem, tl: Timeline) -> pd.DataFrame:
    """One row per placed query with its timeline (lane order per lane: EDF without release times;
    :func:`~energyopt.accounting.lane_schedule_s`), its release included."""
    qs = np.flatnonzero((tl.dep >= 0) & (tl.lane >= 0))
    d = tl.dep[qs]
    n_d = problem.n_deployments
    at = qs * n_d + d
    run = problem.runtime_s.reshape(-1)[at]
    deps = problem.deployments
    lanes = deps["lanes"].to_numpy().astype(np.int64)
    q = problem.queries
    lane_id = tl.lane[qs]
    inst = lane_id // lanes[d]
    # each lane runs its queries in lane order: EDF without release times (shorter first among
    # equal deadlines, then by query: the sort is stable and qs ascends), else release order first;
    # each starts at max(its release, the previous one's end); a slotted plan's times as it set them
    release = problem.release_s[qs]
    start, end = timeline_times_s(problem, tl, qs)
    ids = q["query_id"]
    df = pd.DataFrame(
        {
            "query_id": ids.reset_index(drop=True) if len(qs) == len(q) else ids.iloc[qs].reset_index(drop=True),
            "llm": deps["llm"].to_numpy(dtype=object)[d],
            "device": deps["device"].to_numpy(dtype=object)[d],
            "instance": _compact_instances(deps, d, inst),
            "lane": lane_id % lanes[d],
            "batch_size": deps["batch_size"].to_numpy().astype(np.int64)[d],
            "start_s": start,
            "end_s": end,
            "runtime_s": run,
            "energy_j": problem.energy_j.reshape(-1)[at],
            "accuracy": deps["accuracy"].to_numpy(dtype=float)[d],
            "deadline_s": q["deadline_s"].to_numpy(dtype=float)[qs],
            "release_s": release,
        }
    )
    # a timeline the method timed itself (slotted plans; a distributed plan's partitions) is not the engine's
    times = engine_times_s(df, problem) if tl.start_s is None else None
    df["engine_start_s"] = np.nan if times is None else times[0]
    df["engine_end_s"] = np.nan if times is None else times[1]
    return df[list(ASSIGNMENT_COLUMNS)]


def energy_totals(assignment: pd.DataFrame, problem: Problem) -> dict[str, float]:
    """A plan's energy [J]: per query (above idle where idle is counted), idle of the switched-on
    instances over the horizon, and their sum."""
    a, p = assignment, problem
    if a.empty:
        return {"query_energy_j": 0.0, "idle_energy_j": 0.0, "total_energy_j": 0.0}
    qe = float(a["energy_j"].sum())
    if not p.idle:
        return {"query_energy_j": qe, "idle_energy_j": 0.0, "total_energy_j": qe}
    idle_w = dict(zip(zip(p.deployments["llm"], p.deployments["device"]), p.deployments["idle_power_w"]))
    key = list(zip(a["llm"], a["device"]))
    above = above_idle_energy_j(a["energy_j"].to_numpy(), a["runtime_s"].to_numpy(), np.array([idle_w[k] for k in key]),
                                a["batch_size"].to_numpy(dtype=float))
    on = a.drop_duplicates(["llm", "device", "instance"])
    idle_e = float(idle_energy_j([idle_w[(r.llm, r.device)] for r in on.itertuples()], p.horizon_s).sum())
    return {"query_energy_j": float(above.sum()), "idle_energy_j": idle_e, "total_energy_j": float(above.sum()) + idle_e}


def extrapolated_rows(assignment: pd.DataFrame, problem: Problem) -> np.ndarray:
    """Per assignment row: whether the prediction its query rests on (its query on its LLM, device
    and batch size) is extrapolated, outside the ranges the models were measured on
    (``problem.extrapolated``). A row that names no query or deployment of the problem is False."""
    a, p = assignment, problem
    if a.empty:
        return np.zeros(0, dtype=bool)
    q = p.queries["query_id"]
    if len(a) == len(q) and a["query_id"].reset_index(drop=True).equals(q.reset_index(drop=True)):
        qi = np.arange(len(q))  # the plan lists every query in the problem's order
    else:
        qi = pd.Index(q.astype(str)).get_indexer(pd.Index(a["query_id"].astype(str)))
    deps = p.deployments
    d = pd.MultiIndex.from_arrays([deps["llm"], deps["device"], deps["batch_size"].astype(np.int64)]).get_indexer(
        pd.MultiIndex.from_arrays([a["llm"], a["device"], a["batch_size"].astype(np.int64)]))
    known = (qi >= 0) & (d >= 0)
    out = np.zeros(len(a), dtype=bool)
    out[known] = p.extrapolated[qi[known], d[known]]
    return out


def extrapolation_totals(assignment: pd.DataFrame, problem: Problem, flags: np.ndarray | None = None) -> dict[str, float]:
    """How many assigned queries rest on an extrapolated prediction (:func:`extrapolated_rows`, or
    ``flags`` if given) and their predicted energy [J] (the assignment's ``energy_j``, idle not
    subtracted)."""
    flags = extrapolated_rows(assignment, problem) if flags is None else flags
    energy = assignment["energy_j"].to_numpy(dtype=float)[flags] if len(flags) else np.zeros(0)
    return {"extrapolated_queries": int(flags.sum()), "extrapolated_energy_j": float(energy.sum())}


def padding_totals(assignment: pd.DataFrame, problem: Problem) -> float:
    """Predicted energy [J] of the empty lane-time of the plan's batched instances: an instance at
    batch size b runs its b slots until its last query ends, and a slot with no query still costs
    its share of each decode step (:func:`~energyopt.accounting.padding_energy_j`, at the models'
    :meth:`~energyopt.modelstore.FittedModels.empty_slot_power_w`). With idle counted, only the
    part above the slot's share of idle power (the idle is in the idle energy already). Not in the
    objective: it depends on how the lanes are packed, which the plan's methods do not price."""
    a, p = assignment, problem
    if a.empty or p.inputs is None or int(a["batch_size"].max()) <= 1:
        return 0.0
    idle_w = dict(zip(zip(p.deployments["llm"], p.deployments["device"]), p.deployments["idle_power_w"]))
    total = 0.0
    batched = a[a["batch_size"] > 1]
    for (llm, dev, b), grp in batched.groupby(["llm", "device", "batch_size"], sort=False):
        slot_w = p.inputs.models.empty_slot_power_w(llm, dev, int(b))
        if slot_w is None:
            continue
        if p.idle:
            slot_w = max(slot_w - float(idle_w[(llm, dev)]) / int(b), 0.0)
        per = grp.groupby("instance").agg(end_s=("end_s", "max"), busy_s=("runtime_s", "sum"))
        total += sum(padding_energy_j(slot_w, int(b), r.end_s, r.busy_s) for r in per.itertuples())
    return float(total)


def engine_times_s(assignment: pd.DataFrame, problem: Problem) -> tuple[np.ndarray, np.ndarray] | None:
    """Each row's start and end [s] when the plan's batched instances run on a continuous-batching
    engine (:func:`~energyopt.enginesim.simulate_rows`: every refill's prefill stalls every slot),
    NaN at batch size 1. None where the plan is not timed so
    (:func:`~energyopt.enginesim.engine_timing_applies`) or the models cannot say."""
    a, p = assignment, problem
    if a.empty or p.inputs is None:
        return None
    if not engine_timing_applies(a["batch_size"].to_numpy(), p.release_s, slotted=p.slots is not None):
        return None
    tok = p.queries.set_index("query_id")[["input_tokens", "output_tokens"]].loc[a["query_id"]]
    return simulate_rows(p.inputs.models, a["llm"].to_numpy(), a["device"].to_numpy(), a["batch_size"].to_numpy(),
                         a["instance"].to_numpy(), a["lane"].to_numpy(), a["start_s"].to_numpy(dtype=float),
                         tok["input_tokens"].to_numpy(), tok["output_tokens"].to_numpy())


def engine_totals(assignment: pd.DataFrame) -> tuple[float | None, int | None]:
    """The plan's makespan [s] and deadlines met as a continuous-batching engine runs its batched
    instances (the assignment's ``engine_end_s``; ``end_s`` at batch size 1); (None, None) where
    the plan is not timed so."""
    a = assignment
    if a.empty or "engine_end_s" not in a or not a["engine_end_s"].notna().any():
        return None, None
    eng = a["engine_end_s"].to_numpy(dtype=float)
    end = np.where(np.isnan(eng), a["end_s"].to_numpy(dtype=float), eng)
    due = a["deadline_s"].to_numpy(dtype=float)
    has = ~np.isnan(due)
    return float(end.max()), int(ends_in_time(end[has], due[has]).sum())


def empty_assignment() -> pd.DataFrame:
    """An assignment table with no rows (a result without a plan)."""
    return pd.DataFrame(columns=list(ASSIGNMENT_COLUMNS))


def _file_sha256(path: Path) -> str | None:
    """The SHA-256 of a file's bytes (None if it cannot be read), cached by path, size and mtime."""
    try:
        st = path.stat()
    except OSError:
        return None
    return _sha256_cached(str(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str | None:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return None
    return h.hexdigest()


def _finite_or_none(x: float) -> tuple[float | None, int]:
    """A float as JSON has it: the number, or None with the sign of an infinity (1, -1; 0 for a
    finite number or NaN)."""
    if math.isinf(x):
        return None, (1 if x > 0 else -1)
    return (None if math.isnan(x) else x), 0


@dataclass(frozen=True)
class Summary:
    """Totals and figures of merit of a plan; ``to_dict()`` is what ``summary.json`` holds.

    Without a plan (no assignment, or a status without one) the energies are None (not 0), the
    accuracies None, and ``check`` is ``{"ok": None, "checked": False, ...}``: no plan was
    checked. In ``summary.json`` every number is a JSON number or null: ``bound`` and ``gap`` are
    null when not finite, and ``bound_infinite`` (1: +inf, the proof that no plan exists; -1:
    -inf, no bound known; 0: finite or unknown) and ``gap_infinite`` (true: the gap is infinite,
    e.g. no plan or a bound of 0) say which infinity a null stands for. ``settings`` are the
    settings asked for (solver and formulation as requested; ``solver`` and ``formulation`` at the
    top level are what ran), ``input_sha256`` the SHA-256 of the input files (each model file by
    name), ``energyopt_version`` and ``created_at`` (UTC, ISO 8601) where and when it was made.
    ``padding_energy_j`` is the predicted energy of the batched instances' empty slots until each
    instance's last query ends (:func:`padding_totals`), beside the total, not in it.
    ``queries_with_release`` counts the workload's queries released after t = 0 and
    ``latest_release_s`` is the latest release [s] (0 and 0.0: every query at the batch start).
    ``extrapolated_queries`` counts the assigned queries whose prediction is extrapolated (outside
    the token ranges their models were measured on) and ``extrapolated_energy_j`` is their
    predicted energy [J] (None without a plan); ``by_llm_device`` has both per (LLM, device).
    """

    status: Status
    termination: Termination
    solver: str
    formulation: str  # the method: exact, aggregate, decompose, baseline:<rule>
    objective: str  # energy or tradeoff
    zeta: float | None
    objective_value: float
    bound: float
    bound_source: BoundSource
    gap: float
    idle_counted: bool
    queries: int
    assigned: int
    unservable: list[dict[str, Any]]
    unplaced: list[str]
    query_energy_j: float | None
    idle_energy_j: float | None
    total_energy_j: float | None
    padding_energy_j: float | None  # predicted, of batched instances' empty slots; not in total_energy_j
    total_energy_kwh: float | None
    mean_accuracy: float | None
    token_weighted_mean_accuracy: float | None
    min_mean_accuracy: float | None
    accuracy_floors_met: int
    makespan_s: float
    horizon_s: float
    queries_with_deadline: int
    deadlines_met: int
    queries_with_release: int  # queries released after t = 0 (0: every query at the batch start, as without release_s)
    latest_release_s: float  # the latest release [s] (0 without releases)
    by_llm_device: list[dict[str, Any]]
    excluded_invalid_predictions: int
    extrapolated_queries: int  # assigned queries whose prediction lies outside the ranges measured
    extrapolated_energy_j: float | None  # their predicted energy [J]
    check: dict[str, Any]
    timings_s: dict[str, float]
    message: str
    inputs: dict[str, str | None]
    settings: dict[str, Any] = field(default_factory=dict)
    input_sha256: dict[str, Any] = field(default_factory=dict)
    energyopt_version: str = ""
    created_at: str = ""
    engine_makespan_s: float | None = None  # batched instances on a continuous-batching engine (engine_totals)
    engine_deadlines_met: int | None = None  # the deadlines met so
    signals: dict[str, Any] | None = None  # the plan priced per slot (--signals); absent from to_dict without

    @property
    def extrapolated_energy_share(self) -> float | None:
        """``extrapolated_energy_j`` over the predicted energy of every assigned query (None
        without a plan or energy)."""
        total = sum(float(r["energy_j"]) for r in self.by_llm_device)
        if self.extrapolated_energy_j is None or not total > 0:
            return None
        return self.extrapolated_energy_j / total

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        bound, bound_inf = _finite_or_none(self.bound)
        gap, gap_inf = _finite_or_none(self.gap)
        out: dict[str, Any] = {}
        for k, v in d.items():
            if k == "signals" and v is None:
                continue  # a plan without signals: summary.json as before
            if k == "bound":
                out["bound"], out["bound_infinite"] = bound, bound_inf
            elif k == "gap":
                out["gap"], out["gap_infinite"] = gap, bool(gap_inf)
            else:
                out[k] = v
        return out


@dataclass(frozen=True)
class Schedule:
    """A plan: the assignment table, its status, and how good it is proven to be."""

    assignment: pd.DataFrame
    problem: Problem
    status: Status
    solver: str
    objective: float
    bound: float
    bound_source: BoundSource
    formulation: str
    timings_s: dict[str, float]
    message: str = ""
    unplaced: list[str] = field(default_factory=list)
    check_violations: list[str] = field(default_factory=list)
    termination: Termination = Termination.OPTIMAL
    settings: dict[str, Any] = field(default_factory=dict)  # what plan() was asked for (solver, limits, ...)
    signals: Signals | None = None  # carbon intensity and price per slot: they price the plan, not change it

    @property
    def gap(self) -> float:
        return relative_gap(self.objective, self.bound)

    def energy_totals(self) -> dict[str, float]:
        """The plan's energy [J] (see :func:`energy_totals`)."""
        return energy_totals(self.assignment, self.problem)

    def slot_table(self) -> pd.DataFrame:
        """The plan's energy, kWh, kgCO2e and cost per (slot, LLM, device) under its signals
        (:func:`~energyopt.slots.slot_table`); raises ValueError for a schedule without signals."""
        if self.signals is None:
            raise ValueError("this plan has no signals: plan(..., signals=FILE) prices it per slot")
        p = self.problem
        idle_w = dict(zip(zip(p.deployments["llm"], p.deployments["device"]), p.deployments["idle_power_w"]))
        return slot_table(self.assignment, self.signals, idle_power_w=idle_w, horizon_s=p.horizon_s, idle=p.idle)

    def _signals_summary(self, table: pd.DataFrame | None) -> dict[str, Any] | None:
        """What ``summary.json`` says of the signals: the file, its batch start and slot length,
        and with a plan the totals of :meth:`slot_table` (kWh, kgCO2e, cost)."""
        sig = self.signals
        if sig is None:
            return None
        src = None if sig.source.startswith("<") else str(Path(sig.source).resolve())
        out: dict[str, Any] = {"file": src, "sha256": None if src is None else _file_sha256(Path(src)),
                               "batch_start": sig.batch_start, "slot_s": sig.slot_s(), "pools": list(sig.pools),
                               "carbon": sig.carbon_g_per_kwh is not None, "price": sig.price_per_kwh is not None,
                               "planned_per_slot": self.problem.slots is not None}
        if table is not None:
            out.update(slot_totals(table))
            out["slots_csv"] = "slots.csv"
        return out

    def extrapolation_totals(self) -> dict[str, float]:
        """The assigned queries whose prediction is extrapolated and their energy [J] (see
        :func:`extrapolation_totals`)."""
        return extrapolation_totals(self.assignment, self.problem)

    def _weights(self) -> np.ndarray:
        """Each assigned query's token weight, in the assignment's order."""
        a, q = self.assignment, self.problem.queries
        if len(a) == len(q) and a["query_id"].reset_index(drop=True).equals(q["query_id"].reset_index(drop=True)):
            return q["weight"].to_numpy(dtype=float)  # the plan lists every query in the problem's order
        if not len(a):
            return np.zeros(0)
        return q["weight"].to_numpy(dtype=float)[pd.Index(q["query_id"]).get_indexer(a["query_id"])]

    def _floors_met(self) -> int:
        a, q = self.assignment, self.problem.queries
        if not len(a):
            return 0
        floor = q["min_accuracy"].to_numpy(dtype=float)[pd.Index(q["query_id"]).get_indexer(a["query_id"])]
        return int(np.sum(a["accuracy"].to_numpy(dtype=float) >= floor - 1e-12))

    def _by_llm_device(self, extrapolated: np.ndarray) -> list[dict[str, Any]]:
        a = self.assignment
        if not len(a):
            return []
        groups = a.groupby(["llm", "device"], sort=True)
        rows = []
        for (llm, dev), s in groups:
            flagged = extrapolated[groups.indices[(llm, dev)]]
            rows.append({"llm": llm, "device": dev, "queries": int(len(s)), "energy_j": float(s["energy_j"].sum()),
                         "instances": int(s["instance"].nunique()), "busy_s": float(s["runtime_s"].sum()),
                         "batch_sizes": sorted(int(b) for b in s["batch_size"].unique()),
                         "extrapolated_queries": int(flagged.sum()),
                         "extrapolated_energy_j": float(s["energy_j"].to_numpy(dtype=float)[flagged].sum())})
        return rows

    @property
    def has_plan(self) -> bool:
        """Whether there is a plan to report: an assignment and a status that carries one."""
        return not self.assignment.empty and self.status.has_plan

    def summary(self) -> Summary:
        a = self.assignment
        p = self.problem
        planned = self.has_plan
        e: dict[str, float | None] = dict(self.energy_totals()) if planned else dict.fromkeys(
            ("query_energy_j", "idle_energy_j", "total_energy_j"))
        total = e["total_energy_j"]
        met = int(np.sum(ends_in_time(a["end_s"].to_numpy(dtype=float), a["deadline_s"].to_numpy(dtype=float)))) if len(a) else 0
        flags = extrapolated_rows(a, p)
        extrapolation = extrapolation_totals(a, p, flags)
        check = ({"ok": not self.check_violations, "violations": self.check_violations[:20]} if planned else
                 {"ok": None, "checked": False, "violations": [], "note": "no plan was checked"})
        engine = engine_totals(a) if planned else (None, None)
        return Summary(
            status=self.status,
            termination=self.termination,
            solver=self.solver,
            formulation=self.formulation,
            objective=p.objective,
            zeta=p.zeta if p.objective == "tradeoff" else None,
            objective_value=self.objective,
            bound=self.bound,
            bound_source=self.bound_source,
            gap=self.gap,
            idle_counted=p.idle,
            queries=int(p.n_queries),
            assigned=int(len(a)),
            unservable=p.unservable.to_dict("records"),
            unplaced=self.unplaced,
            query_energy_j=e["query_energy_j"],
            idle_energy_j=e["idle_energy_j"],
            total_energy_j=total,
            padding_energy_j=padding_totals(a, p) if planned else None,
            total_energy_kwh=None if total is None else j_to_kwh(total),
            mean_accuracy=float(a["accuracy"].mean()) if len(a) else None,
            token_weighted_mean_accuracy=weighted_mean_accuracy(self._weights(), a["accuracy"].to_numpy()) if len(a) else None,
            min_mean_accuracy=p.min_mean_accuracy,
            accuracy_floors_met=self._floors_met(),
            makespan_s=float(a["end_s"].max()) if len(a) else 0.0,
            horizon_s=p.horizon_s,
            queries_with_deadline=int(p.queries["deadline_s"].notna().sum()),  # the workload's, planned or not
            deadlines_met=met,
            queries_with_release=int(np.count_nonzero(p.release_s > 0)),  # the workload's, planned or not
            latest_release_s=float(p.release_s.max(initial=0.0)),
            by_llm_device=self._by_llm_device(flags),
            excluded_invalid_predictions=p.excluded_invalid,
            extrapolated_queries=int(extrapolation["extrapolated_queries"]),
            extrapolated_energy_j=extrapolation["extrapolated_energy_j"] if planned else None,
            engine_makespan_s=engine[0],
            engine_deadlines_met=engine[1],
            check=check,
            timings_s=self.timings_s,
            message=self.message,
            inputs=self.inputs(),
            settings=self._settings(),
            input_sha256=self.input_sha256(),
            energyopt_version=package_version(),
            created_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            signals=self._signals_summary(self.slot_table() if planned and self.signals is not None else None),
        )

    def _settings(self) -> dict[str, Any]:
        """The settings the plan was made with: as recorded by plan() where it made it, else the
        problem's and what ran."""
        p = self.problem
        base = {"solver": self.solver, "formulation": self.formulation, "time_limit_s": None, "gap": None,
                "threads": None, "objective": p.objective, "zeta": p.zeta if p.objective == "tradeoff" else None,
                "idle": p.idle, "min_mean_accuracy": p.min_mean_accuracy, "strict_range": p.strict_range}
        return {**base, **self.settings}

    def input_sha256(self) -> dict[str, Any]:
        """SHA-256 of the input files: the workload (or the bytes read from standard input), the
        fleet, and each model file by name (None: built in memory or not readable)."""
        where = self.inputs()
        models: dict[str, str | None] | None = None
        if where["models"] is not None:
            m = Path(where["models"])
            files = sorted(m.glob("*.json")) if m.is_dir() else [m]
            models = {f.name: _file_sha256(f) for f in files}
        wl_sha = None if self.problem.inputs is None else self.problem.inputs[0].attrs.get("sha256")  # read from stdin
        return {"workload": wl_sha if where["workload"] is None else _file_sha256(Path(where["workload"])),
                "fleet": None if where["fleet"] is None else _file_sha256(Path(where["fleet"])),
                "models": models}

    def inputs(self) -> dict[str, str | None]:
        """Where the plan's workload, fleet and models were read from (None: built in memory)."""
        if self.problem.inputs is None:
            return {"workload": None, "fleet": None, "models": None}
        wl, fl, fm = self.problem.inputs

        def where(s: str | None) -> str | None:
            return str(Path(s).resolve()) if s and not s.startswith("<") else None

        return {"workload": where(wl.attrs.get("source")), "fleet": where(getattr(fl, "source", None)),
                "models": where(getattr(fm, "source", None))}

    def to_csv(self, path: str | Path) -> None:
        """Write the assignment as CSV (atomically; floats in their shortest exact form)."""
        write_table_csv(self.assignment, Path(path))

    def write_summary(self, out_dir: str | Path, summary: Summary | None = None) -> Path:
        """Write ``summary.json`` alone (replaced atomically), e.g. for a plan that does not exist.
        ``summary``: :meth:`summary`'s result if the caller has it already."""
        return write_json(Path(out_dir) / "summary.json", (summary or self.summary()).to_dict())

    def write(self, out_dir: str | Path, summary: Summary | None = None) -> list[Path]:
        """Write ``assignment.csv`` and ``summary.json`` (each replaced atomically), and with
        signals ``slots.csv`` (:meth:`slot_table`)."""
        csv_path = Path(out_dir) / "assignment.csv"
        self.to_csv(csv_path)
        written = [csv_path, self.write_summary(out_dir, summary)]
        if self.signals is not None:
            slots_path = Path(out_dir) / "slots.csv"
            write_table_csv(self.slot_table(), slots_path)
            written.append(slots_path)
        return written
