"""From a chosen option per query to a timeline: which instance, when it starts and ends.

On each instance queries run one after another from t = 0 in earliest-deadline-first order (for
queries all released at t = 0 that order meets every deadline whenever any order does). The
exact formulation names the instance of every query. The aggregate one gives only how many
instances each deployment switches on: queries are then *packed*, in EDF order, each onto the
instance of its deployment that is free first; a query that would finish late is *repaired*: moved
to the cheapest instance that still meets every deadline, among its options' four least-loaded
instances and one more switched on where the pool has devices left. The plan is priced again from its final assignment.
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
    """Option and instance of each query (-1: not placed)."""

    cand: np.ndarray  # option index per query
    instance: np.ndarray  # instance index within its deployment per query
    unplaced: list[int] = field(default_factory=list)  # queries the packing could not place


def _edf_feasible(dl: np.ndarray, r: np.ndarray) -> bool:
    order = np.lexsort((r, dl))
    return bool(np.all(np.cumsum(r[order]) <= dl[order] * (1 + 1e-12) + EPS))


def pack(problem: Problem, cand_of_q: np.ndarray, n_inst: np.ndarray, *, repair: bool = True) -> Timeline:
    """Place each query's option on an instance of its deployment (see the module docstring).

    ``cand_of_q[q]`` is the chosen option (row of ``problem.cand``) or -1; ``n_inst[d]`` the
    instances deployment d may use before repair opens more.
    """
    cand = problem.cand
    cd = cand["d"].to_numpy()
    cr = cand["runtime_s"].to_numpy()
    cdl = cand["deadline_eff_s"].to_numpy()
    n_q = problem.n_queries
    inst = np.full(n_q, -1, dtype=np.int64)
    chosen = cand_of_q.copy()
    deps = problem.deployments
    m_d = deps["max_instances"].to_numpy()
    n_inst = np.minimum(np.asarray(n_inst, dtype=np.int64), m_d)
    # per (deployment, instance): list of queries
    loads: dict[tuple[int, int], list[int]] = {}
    late: list[int] = []
    placed = np.flatnonzero(chosen >= 0)
    for d in range(problem.n_deployments):
        qs = placed[cd[chosen[placed]] == d]
        if not len(qs):
            continue
        k = max(1, int(n_inst[d]))
        c = chosen[qs]
        srt = np.lexsort((-cr[c], cdl[c]))
        order = qs[srt].tolist()
        runs = cr[c[srt]].tolist()
        dues = (cdl[c[srt]] * (1 + 1e-12) + EPS).tolist()
        heap = [(0.0, i) for i in range(k)]  # (finish time, instance): the least loaded on top
        got = np.full(len(order), -1, dtype=np.int64)
        for j, (q, r, due) in enumerate(zip(order, runs, dues)):
            f, i = heap[0]
            if f + r > due:
                late.append(q)
                continue
            heapq.heapreplace(heap, (f + r, i))
            got[j] = i
        ok = got >= 0
        placed_q, placed_i = np.asarray(order, dtype=np.int64)[ok], got[ok]
        inst[placed_q] = placed_i
        by = np.argsort(placed_i, kind="stable")  # EDF order kept within each instance
        ids, starts = np.unique(placed_i[by], return_index=True)
        for i, part in zip(ids.tolist(), np.split(placed_q[by], starts[1:])):
            loads[(d, i)] = part.tolist()
    unplaced: list[int] = []
    if late and repair:
        unplaced = _repair(problem, chosen, inst, loads, late)
    else:
        unplaced = late
    return Timeline(chosen, inst, unplaced)


REPAIR_TRIES = 4  # instances of one deployment tried per late query, least loaded first


def _repair(problem: Problem, chosen: np.ndarray, inst: np.ndarray, loads: dict[tuple[int, int], list[int]], late: list[int]) -> list[int]:
    cand = problem.cand
    cd = cand["d"].to_numpy()
    cq = cand["q"].to_numpy()
    cr = cand["runtime_s"].to_numpy()
    cdl = cand["deadline_eff_s"].to_numpy()
    cost = cand["cost"].to_numpy()
    deps = problem.deployments
    k_d = deps["devices_per_instance"].to_numpy()
    m_d = deps["max_instances"].to_numpy()
    pool_of = deps["device"].to_numpy()
    count = dict(zip(problem.pools["pool"], problem.pools["count"]))
    used_inst = {d: {i for (dd, i) in loads if dd == d} for d in range(problem.n_deployments)}
    used_dev = {p: 0 for p in count}
    for d, s in used_inst.items():
        used_dev[pool_of[d]] += len(s) * k_d[d]
    acc = cand["accuracy"].to_numpy()
    order_q = np.argsort(cq, kind="stable")
    starts = np.searchsorted(cq[order_q], np.arange(problem.n_queries))
    ends = np.searchsorted(cq[order_q], np.arange(problem.n_queries), side="right")
    load_s = {key: float(cr[chosen[np.asarray(qs, dtype=np.int64)]].sum()) for key, qs in loads.items()}
    unplaced = []
    for q in sorted(late, key=lambda q: cdl[chosen[q]]):
        opts = order_q[starts[q]:ends[q]]
        best = None
        for c in opts:
            if problem.min_mean_accuracy is not None and chosen[q] >= 0 and acc[c] < acc[chosen[q]] - 1e-12:
                continue  # a less accurate option could break the batch's mean-accuracy floor
            d = int(cd[c])
            # the least-loaded instances are the likeliest to take it: try a few of them
            tries = [(i, 0.0) for i in sorted(used_inst[d], key=lambda i: load_s.get((d, i), 0.0))[:REPAIR_TRIES]]
            free = sorted(set(range(m_d[d])) - used_inst[d])
            if free and used_dev[pool_of[d]] + k_d[d] <= count[pool_of[d]]:
                tries.append((free[0], float(problem.instance_cost[d])))
            for i, extra in tries:
                qs = np.asarray(loads.get((d, i), []), dtype=np.int64)
                dl = np.append(cdl[chosen[qs]], cdl[c])
                r = np.append(cr[chosen[qs]], cr[c])
                if _edf_feasible(dl, r):
                    delta = cost[c] + extra
                    if best is None or delta < best[0]:
                        best = (delta, c, d, i)
                    break  # instances of one deployment are alike: the first that fits will do
        if best is None:
            unplaced.append(q)
            continue
        _, c, d, i = best
        chosen[q] = c
        inst[q] = i
        loads.setdefault((d, i), []).append(q)
        load_s[(d, i)] = load_s.get((d, i), 0.0) + float(cr[c])
        if i not in used_inst[d]:
            used_inst[d].add(i)
            used_dev[pool_of[d]] += k_d[d]
    return unplaced


def plan_objective(problem: Problem, tl: Timeline) -> float:
    """Objective of a placed plan: option costs plus the cost of each instance that has work."""
    ok = (tl.cand >= 0) & (tl.instance >= 0)
    cost = problem.cand["cost"].to_numpy()
    cd = problem.cand["d"].to_numpy()
    d_on = cd[tl.cand[ok]]
    on = np.unique(d_on * (int(tl.instance[ok].max(initial=0)) + 1) + tl.instance[ok])  # distinct (d, instance)
    d_of_on = on // (int(tl.instance[ok].max(initial=0)) + 1)
    return float(cost[tl.cand[ok]].sum() + problem.instance_cost[d_of_on].sum())


def assignment_table(problem: Problem, tl: Timeline) -> pd.DataFrame:
    """One row per placed query with its timeline (EDF order per instance)."""
    cand = problem.cand
    qs = np.flatnonzero((tl.cand >= 0) & (tl.instance >= 0))
    c = tl.cand[qs]
    deps = problem.deployments
    df = pd.DataFrame(
        {
            "q": qs,
            "query_id": problem.queries["query_id"].to_numpy()[qs],
            "llm": deps["llm"].to_numpy()[cand["d"].to_numpy()[c]],
            "device": deps["device"].to_numpy()[cand["d"].to_numpy()[c]],
            "d": cand["d"].to_numpy()[c],
            "instance": tl.instance[qs],
            "runtime_s": cand["runtime_s"].to_numpy()[c],
            "energy_j": cand["energy_j"].to_numpy()[c],
            "accuracy": cand["accuracy"].to_numpy()[c],
            "deadline_s": problem.queries["deadline_s"].to_numpy()[qs],
            "_dl": cand["deadline_eff_s"].to_numpy()[c],
        }
    )
    # compact instance numbers per deployment (only instances with work are on)
    df["instance"] = df.groupby("d")["instance"].transform(lambda s: pd.factorize(s, sort=True)[0])
    df = df.sort_values(["d", "instance", "_dl", "runtime_s", "q"], kind="stable")
    df["end_s"] = df.groupby(["d", "instance"])["runtime_s"].cumsum()
    df["start_s"] = df["end_s"] - df["runtime_s"]
    df = df.sort_values("q", kind="stable")
    return df[list(ASSIGNMENT_COLUMNS)].reset_index(drop=True)


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

    with atomic_path(path) as tmp:
        pa_csv.write_csv(pa.Table.from_pandas(table, preserve_index=False), tmp,
                         write_options=pa_csv.WriteOptions(quoting_style="needed"))


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

    def write_summary(self, out_dir: str | Path) -> Path:
        """Write ``summary.json`` alone (replaced atomically), e.g. for a plan that does not exist."""
        path = Path(out_dir) / "summary.json"
        write_atomic(path, json.dumps(_jsonable(self.summary()), indent=2) + "\n")
        return path

    def write(self, out_dir: str | Path) -> list[Path]:
        """Write ``assignment.csv`` and ``summary.json`` (each replaced atomically)."""
        csv_path = Path(out_dir) / "assignment.csv"
        self.to_csv(csv_path)
        return [csv_path, self.write_summary(out_dir)]


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
