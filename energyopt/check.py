"""Independent plan checker: re-derives every constraint from an exported assignment.

It reads only the assignment table (or its CSV), the workload, the fleet and the models, and
recomputes each query's runtime and energy from the models itself; nothing of the solver's
internal arrays is used, so a bug in the formulation or the packing cannot hide here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError
from .fit import FittedModels
from .fleet import Fleet
from .schema import ASSIGNMENT_COLUMNS

__all__ = ["check_plan", "check_schedule"]

TOL_S = 1e-6
REL = 1e-6


def check_plan(
    assignment: pd.DataFrame | str | Path,
    workload: pd.DataFrame,
    fleet: Fleet,
    models: FittedModels,
    *,
    min_mean_accuracy: float | None = None,
    require_all: bool = True,
) -> list[str]:
    """Every violated constraint, one line each; an empty list means the plan is valid."""
    a = pd.read_csv(assignment, dtype={"query_id": str}) if isinstance(assignment, (str, Path)) else assignment.copy()
    out: list[str] = []
    missing = [c for c in ASSIGNMENT_COLUMNS if c not in a.columns]
    if missing:
        return [f"assignment lacks column(s) {', '.join(missing)}"]
    a["query_id"] = a["query_id"].astype(str)
    wl = workload.set_index(workload["query_id"].astype(str))
    # each query exactly once
    dup = a["query_id"][a["query_id"].duplicated()] if not pd.Index(a["query_id"]).is_unique else a["query_id"][:0]
    if len(dup):
        out.append(f"queries assigned more than once: {', '.join(dup.unique()[:5])}")
    # hash lookups (Index.get_indexer): Series.isin on pyarrow-backed strings converts each value
    known = wl.index.get_indexer(a["query_id"]) >= 0 if wl.index.is_unique else a["query_id"].isin(wl.index).to_numpy()
    unknown = sorted(a["query_id"][~known].unique())
    if unknown:
        out.append(f"assignment names queries not in the workload: {', '.join(unknown[:5])}")
    if require_all:
        absent = sorted(wl.index[pd.Index(a["query_id"]).drop_duplicates().get_indexer(wl.index) < 0])
        if absent:
            out.append(f"{len(absent)} queries not assigned, e.g. {', '.join(absent[:5])}")
    a = a[known]
    if a.empty:
        return out
    # deployments exist and instance counts fit the pools
    deps = {(d.llm, d.pool): d for d in fleet.deployments}
    pairs = a[["llm", "device"]].astype(str).drop_duplicates()
    is_dep = pd.Series([(l, d) in deps for l, d in zip(pairs["llm"], pairs["device"])], index=pd.MultiIndex.from_frame(pairs))
    for l, d in is_dep.index[~is_dep.to_numpy()]:
        out.append(f"{l} on {d} is not a deployment of the fleet")
    a = a[is_dep.reindex(pd.MultiIndex.from_frame(a[["llm", "device"]].astype(str))).to_numpy()]
    used = a.groupby(["llm", "device"])["instance"].agg(["nunique", "max", "min"])
    devices = {p: 0 for p in fleet.pools}
    for (llm, dev), r in used.iterrows():
        d = deps[(llm, dev)]
        if r["min"] < 0 or r["max"] >= d.max_instances:
            out.append(f"{llm} on {dev}: instance numbers {r['min']}..{r['max']} outside 0..{d.max_instances - 1}")
        devices[dev] += int(r["nunique"]) * d.devices_per_instance
    for pool, n in devices.items():
        if n > fleet.pools[pool].count:
            out.append(f"pool {pool}: {n} devices switched on, only {fleet.pools[pool].count} exist")
    # runtimes, energies and accuracies re-derived from the models and the catalog
    at = wl.index.get_indexer(a["query_id"])  # each assigned query's workload row (all known here)
    tin = wl["input_tokens"].to_numpy()[at]
    tout = wl["output_tokens"].to_numpy()[at]
    rt = np.empty(len(a))
    en = np.empty(len(a))
    for (llm, dev), idx in a.groupby(["llm", "device"]).indices.items():
        p = models.predict(llm, dev, tin[idx], tout[idx])
        rt[idx] = p["runtime_s"].to_numpy()
        en[idx] = p["energy_j"].to_numpy()
        if not p["valid"].all():
            out.append(f"{llm} on {dev}: {int((~p['valid']).sum())} queries where the model predicts <= 0")
        ctx = fleet.llms[llm].context_tokens
        if ctx is not None and np.any(tin[idx] + tout[idx] > ctx):
            out.append(f"{llm}: {int(np.sum(tin[idx] + tout[idx] > ctx))} queries exceed its {ctx}-token context")
    def close(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.abs(x - y) <= REL * np.maximum(np.abs(y), 1.0) + 1e-9

    ids = a["query_id"].to_numpy()
    for name, col, ref in (("runtime_s", a["runtime_s"].to_numpy(float), rt), ("energy_j", a["energy_j"].to_numpy(float), en)):
        bad = ~close(col, ref)
        if bad.any():
            out.append(f"{name} differs from the model's prediction for {int(bad.sum())} queries, e.g. {ids[bad][0]}")
    start = a["start_s"].to_numpy(float)
    end = a["end_s"].to_numpy(float)
    if np.any(start < -TOL_S):
        out.append(f"{int(np.sum(start < -TOL_S))} queries start before t = 0")
    bad = np.abs(end - start - rt) > TOL_S + REL * rt
    if bad.any():
        out.append(f"end_s - start_s differs from the runtime for {int(bad.sum())} queries, e.g. {ids[bad][0]}")
    dl = wl["deadline_s"].to_numpy(float)[at]
    late = ~np.isnan(dl) & (end > dl + TOL_S)
    if late.any():
        out.append(f"{int(late.sum())} queries end after their deadline, e.g. {ids[late][0]}")
    over = end > fleet.horizon_s + TOL_S
    if over.any():
        out.append(f"{int(over.sum())} queries end after the horizon of {fleet.horizon_s:g} s")
    acc = a["llm"].astype(str).map({name: x.accuracy for name, x in fleet.llms.items()}).to_numpy(float)
    if not np.allclose(a["accuracy"].to_numpy(float), acc):
        out.append("accuracy column differs from the fleet's LLM catalog")
    floor = wl["min_accuracy"].to_numpy(float)[at]
    low = acc < floor - 1e-12
    if low.any():
        out.append(f"{int(low.sum())} queries run on an LLM below their min_accuracy, e.g. {ids[low][0]}")
    if min_mean_accuracy is not None:
        w = (tin + tout).astype(float)
        mean = float(np.sum(w * acc) / w.sum())
        if mean < min_mean_accuracy - 1e-9:
            out.append(f"token-weighted mean accuracy {mean:.4f} below the floor {min_mean_accuracy}")
    # no overlap on any instance
    k = a.groupby(["llm", "device", "instance"], sort=False).ngroup().to_numpy()
    order = np.lexsort((start, k))
    ks, st, en = k[order], start[order], end[order]
    overlap = (ks[1:] == ks[:-1]) & (st[1:] < en[:-1] - TOL_S)
    if overlap.any():
        out.append(f"{int(overlap.sum())} queries overlap another on the same instance")
    return out


def check_schedule(problem, schedule) -> list[str]:
    """:func:`check_plan` on a schedule, from the raw workload, fleet and models the problem was
    built from (none of the problem's derived arrays is used)."""
    if problem.inputs is None:
        raise DataError("this problem does not carry its inputs; call check_plan(assignment, workload, fleet, models)")
    workload, fleet, models = problem.inputs
    return check_plan(schedule.assignment, workload, fleet, models,
                      min_mean_accuracy=problem.min_mean_accuracy, require_all=True)
