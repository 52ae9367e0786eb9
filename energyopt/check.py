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
from .fleet import Fleet
from .modelstore import FittedModels
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
    a = pd.read_csv(assignment, dtype={"query_id": str}) if isinstance(assignment, (str, Path)) else assignment
    out: list[str] = []
    missing = [c for c in ASSIGNMENT_COLUMNS if c not in a.columns]
    if missing:
        return [f"assignment lacks column(s) {', '.join(missing)}"]
    ids_s = a["query_id"].astype(str).reset_index(drop=True)
    wl_ids = pd.Index(workload["query_id"].astype(str))
    first = ~wl_ids.duplicated() if not wl_ids.is_unique else None
    if first is not None:  # an id given twice in a workload: its first row counts
        wl_rows = np.flatnonzero(first)
        wl_ids = wl_ids[first]
    else:
        wl_rows = np.arange(len(wl_ids))
    # each query exactly once: one hash lookup per assigned row (Index.get_indexer; Series.isin
    # on pyarrow-backed strings converts each value)
    pos = wl_ids.get_indexer(ids_s)
    known = pos >= 0
    times = np.bincount(pos[known], minlength=len(wl_ids))
    if (times > 1).any() or (not known.all() and ids_s[~known].duplicated().any()):
        dup = ids_s[ids_s.duplicated()]
        out.append(f"queries assigned more than once: {', '.join(dup.unique()[:5])}")
    if not known.all():
        unknown = sorted(ids_s[~known].unique())
        out.append(f"assignment names queries not in the workload: {', '.join(unknown[:5])}")
    if require_all and (times == 0).any():
        absent = sorted(wl_ids[times == 0])
        out.append(f"{len(absent)} queries not assigned, e.g. {', '.join(absent[:5])}")
    rows = np.flatnonzero(known)
    if not len(rows):
        return out
    # deployments exist and instance counts fit the pools; each (llm, device) pair as a code
    deps = {(d.llm, d.pool): d for d in fleet.deployments}
    sub = a.iloc[rows]
    code = sub.groupby(["llm", "device"], sort=False, dropna=False).ngroup().to_numpy()
    firsts = np.unique(code, return_index=True)[1]
    llm_col, dev_col = sub["llm"].astype(str), sub["device"].astype(str)
    pair_of = [(llm_col.iloc[i], dev_col.iloc[i]) for i in firsts]  # code -> (llm, device)
    is_dep = np.array([pr in deps for pr in pair_of])
    for l, d in (pr for pr, ok in zip(pair_of, is_dep) if not ok):
        out.append(f"{l} on {d} is not a deployment of the fleet")
    keep = is_dep[code]
    rows, code = rows[keep], code[keep]
    if not len(rows):
        return out
    sub = a.iloc[rows]
    inst = sub["instance"].to_numpy()
    on = pd.DataFrame({"c": code, "i": inst}).drop_duplicates()
    used = on.groupby("c")["i"].agg(["size", "max", "min"])
    devices = {p: 0 for p in fleet.pools}
    for c, r in used.iterrows():
        llm, dev = pair_of[c]
        d = deps[(llm, dev)]
        if r["min"] < 0 or r["max"] >= d.max_instances:
            out.append(f"{llm} on {dev}: instance numbers {r['min']}..{r['max']} outside 0..{d.max_instances - 1}")
        devices[dev] += int(r["size"]) * d.devices_per_instance
    for pool, n in devices.items():
        if n > fleet.pools[pool].count:
            out.append(f"pool {pool}: {n} devices switched on, only {fleet.pools[pool].count} exist")
    # runtimes, energies and accuracies re-derived from the models and the catalog
    at = wl_rows[pos[rows]]  # each assigned query's workload row
    tin = workload["input_tokens"].to_numpy()[at]
    tout = workload["output_tokens"].to_numpy()[at]
    rt = np.empty(len(rows))
    en = np.empty(len(rows))
    by_code = np.argsort(code, kind="stable")
    bounds = np.searchsorted(code[by_code], np.arange(len(pair_of) + 1))
    acc = np.empty(len(rows))
    for c, (llm, dev) in enumerate(pair_of):
        idx = by_code[bounds[c]:bounds[c + 1]]
        if not len(idx):
            continue
        p = models.predict(llm, dev, tin[idx], tout[idx])
        rt[idx] = p["runtime_s"].to_numpy()
        en[idx] = p["energy_j"].to_numpy()
        acc[idx] = fleet.llms[llm].accuracy
        if not p["valid"].all():
            out.append(f"{llm} on {dev}: {int((~p['valid']).sum())} queries where the model predicts <= 0")
        ctx = fleet.llms[llm].context_tokens
        if ctx is not None and np.any(tin[idx] + tout[idx] > ctx):
            out.append(f"{llm}: {int(np.sum(tin[idx] + tout[idx] > ctx))} queries exceed its {ctx}-token context")
    def close(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.abs(x - y) <= REL * np.maximum(np.abs(y), 1.0) + 1e-9

    def first_id(mask: np.ndarray) -> str:  # for the messages: no million-row conversion of the ids
        return str(ids_s.iloc[rows[np.flatnonzero(mask)[0]]])

    for name, col, ref in (("runtime_s", sub["runtime_s"].to_numpy(float), rt), ("energy_j", sub["energy_j"].to_numpy(float), en)):
        bad = ~close(col, ref)
        if bad.any():
            out.append(f"{name} differs from the model's prediction for {int(bad.sum())} queries, e.g. {first_id(bad)}")
    start = sub["start_s"].to_numpy(float)
    end = sub["end_s"].to_numpy(float)
    if np.any(start < -TOL_S):
        out.append(f"{int(np.sum(start < -TOL_S))} queries start before t = 0")
    bad = np.abs(end - start - rt) > TOL_S + REL * rt
    if bad.any():
        out.append(f"end_s - start_s differs from the runtime for {int(bad.sum())} queries, e.g. {first_id(bad)}")
    dl = workload["deadline_s"].to_numpy(float)[at]
    late = ~np.isnan(dl) & (end > dl + TOL_S)
    if late.any():
        out.append(f"{int(late.sum())} queries end after their deadline, e.g. {first_id(late)}")
    over = end > fleet.horizon_s + TOL_S
    if over.any():
        out.append(f"{int(over.sum())} queries end after the horizon of {fleet.horizon_s:g} s")
    if not np.allclose(sub["accuracy"].to_numpy(float), acc):
        out.append("accuracy column differs from the fleet's LLM catalog")
    floor = workload["min_accuracy"].to_numpy(float)[at]
    low = acc < floor - 1e-12
    if low.any():
        out.append(f"{int(low.sum())} queries run on an LLM below their min_accuracy, e.g. {first_id(low)}")
    if min_mean_accuracy is not None:
        w = (tin + tout).astype(float)
        mean = float(np.sum(w * acc) / w.sum())
        if mean < min_mean_accuracy - 1e-9:
            out.append(f"token-weighted mean accuracy {mean:.4f} below the floor {min_mean_accuracy}")
    # no overlap on any instance
    k = code.astype(np.int64) * (int(inst.max()) - int(inst.min()) + 1) + (inst - inst.min())
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
