"""From a chosen option per query to a timeline: which instance, when it starts and ends.

On each instance queries run one after another from t = 0 in earliest-deadline-first order (for
queries all released at t = 0 that order meets every deadline whenever any order does). The
exact formulation names the instance of every query. The aggregate one gives only how many
instances each deployment switches on: queries are then *packed*, in EDF order, each onto the
instance of its deployment that is free first (with 16 or more instances, a round of one query
per instance at a time: the round's i-th query onto the i-th least loaded instance); a query
that would finish late is *repaired*: moved to the cheapest instance that still meets every
deadline, among its options' four least-loaded instances and one more switched on where the
pool has devices left. The plan is priced again from its final assignment.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from .problem import Problem
from .schema import ASSIGNMENT_COLUMNS, Status

__all__ = ["Schedule", "Timeline", "pack", "plan_objective", "assignment_table", "write_atomic"]

EPS = 1e-9


@dataclass
class Timeline:
    """Deployment and instance of each query (-1: not placed)."""

    dep: np.ndarray  # deployment index per query
    instance: np.ndarray  # instance index within its deployment per query
    unplaced: list[int] = field(default_factory=list)  # queries the packing could not place


def _edf_feasible(dl: np.ndarray, r: np.ndarray) -> bool:
    order = np.lexsort((r, dl))
    return bool(np.all(np.cumsum(r[order]) <= dl[order] * (1 + 1e-12) + EPS))


#: deployments with at least this many instances are packed a round at a time (vectorised)
ROUND_MIN_INSTANCES = 16


def _place(runs: np.ndarray, dues: np.ndarray, k: int) -> np.ndarray:
    """Instances (0..k-1) for queries taken in the given order, each onto the instance free
    first; -1 where the query would end after its due time. With many instances the queries go
    a round of k at a time: the round's i-th query to the i-th least loaded instance."""
    got = np.full(len(runs), -1, dtype=np.int64)
    if k < ROUND_MIN_INSTANCES:
        heap = [(0.0, i) for i in range(k)]  # (finish time, instance): the least loaded on top
        for j, (r, due) in enumerate(zip(runs.tolist(), dues.tolist())):
            f, i = heap[0]
            if f + r <= due:
                heapq.heapreplace(heap, (f + r, i))
                got[j] = i
        return got
    loads = np.zeros(k)
    for s in range(0, len(runs), k):
        rr, du = runs[s:s + k], dues[s:s + k]
        slots = np.argsort(loads, kind="stable")[: len(rr)]
        f = loads[slots] + rr
        fit = f <= du
        loads[slots[fit]] = f[fit]
        got[s:s + k] = np.where(fit, slots, -1)
    return got


def pack(problem: Problem, dep_of_q: np.ndarray, n_inst: np.ndarray, *, repair: bool = True) -> Timeline:
    """Place each query on an instance of its deployment (see the module docstring).

    ``dep_of_q[q]`` is the chosen deployment or -1; ``n_inst[d]`` the instances deployment d
    may use before repair opens more.
    """
    n_q, n_d = problem.n_queries, problem.n_deployments
    inst = np.full(n_q, -1, dtype=np.int64)
    chosen = np.asarray(dep_of_q, dtype=np.int64).copy()
    m_d = problem.deployments["max_instances"].to_numpy()
    n_inst = np.minimum(np.asarray(n_inst, dtype=np.int64), m_d)
    due_all = problem.queries["deadline_eff_s"].to_numpy(dtype=float)
    placed = np.flatnonzero(chosen >= 0)
    run_all = np.zeros(n_q)
    run_all[placed] = problem.runtime_s.reshape(-1)[placed * n_d + chosen[placed]]
    # EDF, longest first among equal deadlines, per deployment
    order = placed[np.lexsort((-run_all[placed], due_all[placed], chosen[placed]))]
    bounds = np.searchsorted(chosen[order], np.arange(n_d + 1))
    late: list[int] = []
    for d in range(n_d):
        qs = order[bounds[d]:bounds[d + 1]]
        if not len(qs):
            continue
        got = _place(run_all[qs], due_all[qs] * (1 + 1e-12) + EPS, max(1, int(n_inst[d])))
        inst[qs] = got
        late.extend(qs[got < 0].tolist())
    unplaced: list[int] = []
    if late and repair:
        unplaced = _repair(problem, chosen, inst, run_all, late)
    else:
        unplaced = late
    return Timeline(chosen, inst, unplaced)


REPAIR_TRIES = 4  # instances of one deployment tried per late query, least loaded first


def _repair(problem: Problem, chosen: np.ndarray, inst: np.ndarray, run_all: np.ndarray, late: list[int]) -> list[int]:
    n_d = problem.n_deployments
    R = problem.runtime_s
    due_all = problem.queries["deadline_eff_s"].to_numpy(dtype=float)
    deps = problem.deployments
    k_d = deps["devices_per_instance"].to_numpy()
    m_d = deps["max_instances"].to_numpy()
    pool_of = deps["device"].to_numpy()
    acc = deps["accuracy"].to_numpy(dtype=float)
    count = dict(zip(problem.pools["pool"], problem.pools["count"]))
    # the queries on each (deployment, instance), from one sort
    on = np.flatnonzero(inst >= 0)
    M = int(m_d.max()) + 1
    key = chosen[on] * M + inst[on]
    srt = np.argsort(key, kind="stable")
    keys, starts = np.unique(key[srt], return_index=True)
    ends = np.append(starts[1:], len(srt))
    members = {(int(k) // M, int(k) % M): on[srt[a:b]] for k, a, b in zip(keys, starts, ends)}
    load_s = {dk: float(run_all[qs].sum()) for dk, qs in members.items()}
    used_inst: dict[int, set[int]] = {d: set() for d in range(n_d)}
    for d, i in members:
        used_inst[d].add(i)
    used_dev = {p: 0 for p in count}
    for d, s in used_inst.items():
        used_dev[pool_of[d]] += len(s) * k_d[d]
    unplaced = []
    for q in sorted(late, key=lambda q: due_all[q]):
        best = None
        for d in np.flatnonzero(problem.ok[q]).tolist():
            if problem.min_mean_accuracy is not None and chosen[q] >= 0 and acc[d] < acc[chosen[q]] - 1e-12:
                continue  # a less accurate option could break the batch's mean-accuracy floor
            # the least-loaded instances are the likeliest to take it: try a few of them
            tries = [(i, 0.0) for i in sorted(used_inst[d], key=lambda i: load_s.get((d, i), 0.0))[:REPAIR_TRIES]]
            free = sorted(set(range(m_d[d])) - used_inst[d])
            if free and used_dev[pool_of[d]] + k_d[d] <= count[pool_of[d]]:
                tries.append((free[0], float(problem.instance_cost[d])))
            for i, extra in tries:
                qs = members.get((d, i), np.zeros(0, dtype=np.int64))
                if _edf_feasible(np.append(due_all[qs], due_all[q]), np.append(run_all[qs], R[q, d])):
                    delta = float(problem.cost[q, d]) + extra
                    if best is None or delta < best[0]:
                        best = (delta, d, i)
                    break  # instances of one deployment are alike: the first that fits will do
        if best is None:
            unplaced.append(q)
            continue
        _, d, i = best
        chosen[q] = d
        inst[q] = i
        run_all[q] = R[q, d]
        members[(d, i)] = np.append(members.get((d, i), np.zeros(0, dtype=np.int64)), q)
        load_s[(d, i)] = load_s.get((d, i), 0.0) + float(R[q, d])
        if i not in used_inst[d]:
            used_inst[d].add(i)
            used_dev[pool_of[d]] += k_d[d]
    return unplaced


def plan_objective(problem: Problem, tl: Timeline) -> float:
    """Objective of a placed plan: option costs plus the cost of each instance that has work."""
    qs = np.flatnonzero((tl.dep >= 0) & (tl.instance >= 0))
    d = tl.dep[qs]
    M = int(tl.instance[qs].max(initial=0)) + 1
    d_of_on = np.unique(d * M + tl.instance[qs]) // M  # one entry per distinct (d, instance)
    return float(problem.cost.reshape(-1)[qs * problem.n_deployments + d].sum() + problem.instance_cost[d_of_on].sum())


def assignment_table(problem: Problem, tl: Timeline) -> pd.DataFrame:
    """One row per placed query with its timeline (EDF order per instance)."""
    qs = np.flatnonzero((tl.dep >= 0) & (tl.instance >= 0))
    d = tl.dep[qs]
    n_d = problem.n_deployments
    at = qs * n_d + d
    run = problem.runtime_s.reshape(-1)[at]
    deps = problem.deployments
    q = problem.queries
    # compact instance numbers per deployment (only instances with work are on)
    inst = tl.instance[qs]
    M = int(inst.max(initial=0)) + 1
    used = np.zeros((n_d, M), dtype=bool)
    used[d, inst] = True
    instance = (np.cumsum(used, axis=1) - 1)[d, inst]
    grp = d * M + inst  # orders queries by (deployment, instance)
    # each instance runs its queries in EDF order (shorter first among equal deadlines, then by
    # query: the sort is stable and qs ascends)
    dl_eff = q["deadline_eff_s"].to_numpy(dtype=float)[qs]
    keys = (run, grp) if np.all(dl_eff == dl_eff[:1]) else (run, dl_eff, grp)
    order = np.lexsort(keys)
    end = np.empty(len(qs))
    end[order] = pd.Series(run[order]).groupby(grp[order], sort=False).cumsum().to_numpy()
    ids = q["query_id"]
    df = pd.DataFrame(
        {
            "query_id": ids.reset_index(drop=True) if len(qs) == len(q) else ids.iloc[qs].reset_index(drop=True),
            "llm": deps["llm"].to_numpy(dtype=object)[d],
            "device": deps["device"].to_numpy(dtype=object)[d],
            "instance": instance,
            "start_s": end - run,
            "end_s": end,
            "runtime_s": run,
            "energy_j": problem.energy_j.reshape(-1)[at],
            "accuracy": deps["accuracy"].to_numpy(dtype=float)[d],
            "deadline_s": q["deadline_s"].to_numpy(dtype=float)[qs],
        }
    )
    return df[list(ASSIGNMENT_COLUMNS)]


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[str]:
    """A temporary file beside ``path`` to write into; it replaces ``path`` only when the block
    ends without error, so a failed write never leaves a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def write_table_csv(table: pd.DataFrame, path: Path) -> None:
    """A table as CSV, replaced atomically: strings quoted only where needed, missing values empty."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    t = pa.Table.from_pandas(table, preserve_index=False)
    # large tables in two halves formatted at once (pyarrow's writer releases the GIL), then
    # written one after the other: formatting floats is most of the time
    half = (t.num_rows + 1) // 2 if t.num_rows >= 200_000 else t.num_rows
    parts = [t.slice(0, half), t.slice(half)] if half < t.num_rows else [t]

    def fmt(part: pa.Table, header: bool) -> pa.Buffer:
        sink = pa.BufferOutputStream()
        pa_csv.write_csv(part, sink, write_options=pa_csv.WriteOptions(quoting_style="needed", include_header=header))
        return sink.getvalue()

    headers = [True] + [False] * (len(parts) - 1)
    with atomic_path(path) as tmp:
        if len(parts) == 1:
            bufs = [fmt(parts[0], True)]
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(len(parts)) as ex:
                bufs = list(ex.map(fmt, parts, headers))
        with open(tmp, "wb") as fh:
            for b in bufs:
                fh.write(b)


@dataclass
class Schedule:
    """A plan: the assignment table, its status, and how good it is proven to be."""

    assignment: pd.DataFrame
    problem: Problem
    status: Status
    solver: str
    objective: float
    bound: float
    bound_source: str
    formulation: str
    timings_s: dict[str, float]
    message: str = ""
    unplaced: list[str] = field(default_factory=list)
    check_violations: list[str] = field(default_factory=list)

    @property
    def gap(self) -> float:
        if not math.isfinite(self.objective) or not math.isfinite(self.bound):
            return math.inf
        return max(0.0, self.objective - self.bound) / max(abs(self.objective), 1e-12)

    def energy_totals(self) -> dict[str, float]:
        a = self.assignment
        p = self.problem
        if a.empty:
            return {"query_energy_j": 0.0, "idle_energy_j": 0.0, "total_energy_j": 0.0}
        qe = float(a["energy_j"].sum())
        if not p.idle:
            return {"query_energy_j": qe, "idle_energy_j": 0.0, "total_energy_j": qe}
        idle_w = dict(zip(zip(p.deployments["llm"], p.deployments["device"]), p.deployments["idle_power_w"]))
        key = list(zip(a["llm"], a["device"]))
        above = np.maximum(a["energy_j"].to_numpy() - np.array([idle_w[k] for k in key]) * a["runtime_s"].to_numpy(), 0)
        on = a.drop_duplicates(["llm", "device", "instance"])
        idle_e = float(sum(idle_w[(r.llm, r.device)] for r in on.itertuples()) * p.horizon_s)
        return {"query_energy_j": float(above.sum()), "idle_energy_j": idle_e, "total_energy_j": float(above.sum()) + idle_e}

    def summary(self) -> dict[str, Any]:
        a = self.assignment
        p = self.problem
        q = p.queries
        if len(a) == len(q) and a["query_id"].reset_index(drop=True).equals(q["query_id"].reset_index(drop=True)):
            w = q["weight"].to_numpy(dtype=float)  # the plan lists every query in the problem's order
        else:
            w = (q["weight"].to_numpy(dtype=float)[pd.Index(q["query_id"]).get_indexer(a["query_id"])]
                 if len(a) else np.zeros(0))
        e = self.energy_totals()
        has_dl = a["deadline_s"].notna() if len(a) else pd.Series(dtype=bool)
        met = int(((a["end_s"] <= a["deadline_s"] + 1e-9) & has_dl).sum()) if len(a) else 0
        per = []
        if len(a):
            g = a.groupby(["llm", "device"], sort=True)
            per = [
                {"llm": llm, "device": dev, "queries": int(len(s)), "energy_j": float(s["energy_j"].sum()),
                 "instances": int(s["instance"].nunique()), "busy_s": float(s["runtime_s"].sum())}
                for (llm, dev), s in g
            ]
        return {
            "status": str(self.status),
            "solver": self.solver,
            "formulation": self.formulation,
            "objective": self.problem.objective,
            "zeta": self.problem.zeta if self.problem.objective == "tradeoff" else None,
            "objective_value": self.objective,
            "bound": self.bound,
            "bound_source": self.bound_source,
            "gap": self.gap,
            "idle_counted": self.problem.idle,
            "queries": int(p.n_queries),
            "assigned": int(len(a)),
            "unservable": self.problem.unservable.to_dict("records"),
            "unplaced": self.unplaced,
            **{k: v for k, v in e.items()},
            "total_energy_kwh": e["total_energy_j"] / 3.6e6,
            "mean_accuracy": float(a["accuracy"].mean()) if len(a) else None,
            "token_weighted_mean_accuracy": float(np.sum(w * a["accuracy"].to_numpy()) / w.sum()) if len(a) else None,
            "min_mean_accuracy": self.problem.min_mean_accuracy,
            "makespan_s": float(a["end_s"].max()) if len(a) else 0.0,
            "horizon_s": self.problem.horizon_s,
            "queries_with_deadline": int(has_dl.sum()) if len(a) else 0,
            "deadlines_met": met,
            "by_llm_device": per,
            "excluded_invalid_predictions": self.problem.excluded_invalid,
            "check": {"ok": not self.check_violations, "violations": self.check_violations[:20]},
            "timings_s": self.timings_s,
            "message": self.message,
            "inputs": self.inputs(),
        }

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
        """Write the assignment as CSV (atomically). pyarrow's writer formats a million rows in about
        a second, where pandas' takes about seven; floats are written in their shortest exact form."""
        write_table_csv(self.assignment, Path(path))

    def write_summary(self, out_dir: str | Path, summary: dict[str, Any] | None = None) -> Path:
        """Write ``summary.json`` alone (replaced atomically), e.g. for a plan that does not exist.
        ``summary``: :meth:`summary`'s result if the caller has it already."""
        path = Path(out_dir) / "summary.json"
        write_atomic(path, json.dumps(_jsonable(summary or self.summary()), indent=2) + "\n")
        return path

    def write(self, out_dir: str | Path, summary: dict[str, Any] | None = None) -> list[Path]:
        """Write ``assignment.csv`` and ``summary.json`` (each replaced atomically)."""
        csv_path = Path(out_dir) / "assignment.csv"
        self.to_csv(csv_path)
        return [csv_path, self.write_summary(out_dir, summary)]


def _jsonable(o: Any) -> Any:
    if isinstance(o, dict):
        return {k: _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating, float)):
        f = float(o)
        return None if math.isnan(f) else (f if math.isfinite(f) else ("inf" if f > 0 else "-inf"))
    return o
