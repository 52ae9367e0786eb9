"""Plan reports and sweep figures: the tables behind each plot, the PNGs, and one HTML page.

Every plot is drawn from a plain table computed here (tested on its own); matplotlib is imported
inside the drawing functions, with the non-interactive Agg backend, so nothing here needs a
display.

* ``energy_by_llm_device`` — queries, energy [J, kWh] and busy time [s] per (LLM, device), and
  (given the plan's per-row flags) the queries whose prediction is extrapolated, outside the
  token ranges their models were measured on, and their energy [J];
* ``instance_table`` — per instance: queries, busy time, last end, utilisation over the horizon;
* ``timeline_blocks`` — the Gantt chart's bars: per instance, each query (small plans) or each
  run of back-to-back queries (large ones);
* ``busy_lanes`` and ``utilisation_by_deployment`` — per deployment (LLM, device, batch size): the
  share of its switched-on instances' lanes busy over time, and its instances on (of those it
  could switch on, ``instances_available``) with the spread of their utilisation;
* ``pool_use`` — per pool over time: the devices busy and switched on, per deployment, and its size;
* ``deadline_slack`` — deadline − end [s] of every query with a deadline;
* ``slot_power`` and ``slot_summary`` — with signals (``--signals``), the plan per time slot: the
  average power [W] and kgCO2e of each (LLM, device) in each slot, and per slot its kWh, kgCO2e
  and cost, both from :func:`energyopt.slots.slot_table` (the one home of the per-slot formula);
  ``site_power`` — where the fleet has sites, each site's power per slot (the sum of its pools')
  beside its ``power_cap_w``.

The marginal energy cost of accuracy is a series of plans (:func:`energyopt.sweep.accuracy_cost`);
this module only draws the table it is given. No plan is made here.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from .accounting import J_PER_KWH, idle_energy_j, j_to_kwh
from .schedule import Schedule, Summary, extrapolated_rows
from .signals import Signals
from .writers import atomic_path, write_atomic

__all__ = [
    "energy_by_llm_device", "instance_table", "timeline_blocks", "deadline_slack", "slot_power", "slot_summary",
    "site_power",
    "busy_lanes", "pool_use", "instances_available", "utilisation_by_deployment", "write_report", "plot_sweep",
    "report_reserve_s", "REPORT_WRITE_S",
]

#: seconds of a time limit kept for writing the report's plots and tables (``solve --report``):
#: measured 1.8 s with 20,000 queries and 4.3 s with the 1,000-query example (a timeline per
#: instance) on this repository's 2-core machine under load; at most half the limit
REPORT_WRITE_S = 5.0


def report_reserve_s(time_limit_s: float | None) -> float:
    """Seconds the plans of ``solve --report`` leave of ``time_limit_s`` for writing the report."""
    return 0.0 if time_limit_s is None else min(REPORT_WRITE_S, time_limit_s / 2)


#: plans with more queries than this draw runs of back-to-back queries as one bar
GANTT_QUERY_LIMIT = 2000
#: above this many instances (or with any batched instance) the timeline and utilisation plots
#: show one row per deployment (LLM, device, batch size) instead of one per instance
INSTANCE_ROWS_LIMIT = 30
#: time steps of a deployment's busy-lanes curve
BUSY_CURVE_POINTS = 400
#: the report's per-slot table lists this many slots (those with the most kgCO2e, or energy)
TOP_SLOTS = 10
#: every figure gives accuracy as a fraction (MMLU score / 100), never in percent
ACCURACY_UNIT = "[0-1, MMLU score / 100]"


def energy_by_llm_device(assignment: pd.DataFrame, extrapolated: np.ndarray | None = None) -> pd.DataFrame:
    """Per (LLM, device): queries, energy, busy time, instances; with ``extrapolated`` (a flag per
    assignment row, :func:`~energyopt.schedule.extrapolated_rows`) also ``extrapolated_queries``
    and ``extrapolated_energy_j``."""
    a = assignment
    if extrapolated is not None:
        a = a.assign(_flag=extrapolated, _flag_j=np.where(extrapolated, a["energy_j"].to_numpy(dtype=float), 0.0))
    g = a.groupby(["llm", "device"], sort=True)
    extra = {"extrapolated_queries": ("_flag", "sum"), "extrapolated_energy_j": ("_flag_j", "sum")} \
        if extrapolated is not None else {}
    t = g.agg(queries=("query_id", "size"), energy_j=("energy_j", "sum"), busy_s=("runtime_s", "sum"),
              instances=("instance", "nunique"), **extra).reset_index()
    t["energy_kwh"] = t["energy_j"].map(j_to_kwh)
    t["energy_share"] = t["energy_j"] / t["energy_j"].sum() if len(t) else []
    if extrapolated is not None:
        t["extrapolated_queries"] = t["extrapolated_queries"].astype(np.int64)
    return t


def _instance_label(t: pd.DataFrame) -> pd.Series:
    """``llm @ device #instance``: how the instance plots name an instance."""
    return t["llm"] + " @ " + t["device"] + " #" + t["instance"].astype(str)


def instance_table(assignment: pd.DataFrame, horizon_s: float) -> pd.DataFrame:
    """Per instance: queries, busy lane-seconds, last end, energy, and utilisation: the share of
    its lanes' time over the horizon that they are busy."""
    g = assignment.groupby(["llm", "device", "instance"], sort=True)
    t = g.agg(queries=("query_id", "size"), busy_s=("runtime_s", "sum"), end_s=("end_s", "max"),
              energy_j=("energy_j", "sum"), batch_size=("batch_size", "max")).reset_index()
    t["utilisation"] = t["busy_s"] / (horizon_s * t["batch_size"])
    t["label"] = _instance_label(t)
    return t


def timeline_blocks(assignment: pd.DataFrame, limit: int = GANTT_QUERY_LIMIT) -> pd.DataFrame:
    """Bars of the Gantt chart: label, llm, start_s, end_s, queries (per bar)."""
    a = assignment.sort_values(["llm", "device", "instance", "start_s"])
    label = _instance_label(a)
    t = pd.DataFrame({"label": label.to_numpy(), "llm": a["llm"].to_numpy(), "start_s": a["start_s"].to_numpy(dtype=float),
                      "end_s": a["end_s"].to_numpy(dtype=float)})
    if len(t) <= limit:
        t["queries"] = 1
        return t.reset_index(drop=True)
    # merge runs of back-to-back queries on one instance
    new_inst = t["label"].to_numpy()[1:] != t["label"].to_numpy()[:-1]
    gap = t["start_s"].to_numpy()[1:] > t["end_s"].to_numpy()[:-1] + 1e-6
    starts = np.concatenate([[True], new_inst | gap])
    block = np.cumsum(starts) - 1
    g = t.groupby(block)
    return pd.DataFrame({"label": g["label"].first(), "llm": g["llm"].first(), "start_s": g["start_s"].min(),
                         "end_s": g["end_s"].max(), "queries": g.size()}).reset_index(drop=True)


def _deployment_name(llm: str, device: str, batch_size: int) -> str:
    """``llm @ device, batch b``: how the per-deployment plots name a deployment."""
    return f"{llm} @ {device}, batch {batch_size}"


def _deployment_label(t: pd.DataFrame) -> pd.Series:
    return pd.Series([_deployment_name(*r) for r in zip(t["llm"], t["device"], t["batch_size"])], index=t.index)


def busy_lanes(assignment: pd.DataFrame, horizon_s: float, points: int = BUSY_CURVE_POINTS) -> pd.DataFrame:
    """Per deployment (LLM, device, batch size), the share of its switched-on instances' lanes that
    are busy, averaged over each of ``points`` equal steps from 0 to the makespan: a dense stretch
    shows as full, not as one bar drawn over another. Columns: label, llm, device, batch_size, t0_s,
    t1_s, busy_share, instances, lanes."""
    a = assignment
    end = max(float(a["end_s"].max()) if len(a) else 0.0, 1e-9)
    edges = np.linspace(0.0, end, points + 1)
    out = []
    for (llm, dev, b), g in a.groupby(["llm", "device", "batch_size"], sort=True):
        s0, s1 = g["start_s"].to_numpy(dtype=float), g["end_s"].to_numpy(dtype=float)
        busy = np.diff(_busy_until(edges, s0, s1))  # busy lane-seconds in each step
        n_inst = int(g["instance"].nunique())
        lanes = n_inst * int(b)
        out.append(pd.DataFrame({"label": _deployment_name(llm, dev, b), "llm": llm, "device": dev, "batch_size": int(b),
                                 "t0_s": edges[:-1], "t1_s": edges[1:], "busy_share": busy / (np.diff(edges) * lanes),
                                 "instances": n_inst, "lanes": lanes}))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(
        columns=["label", "llm", "device", "batch_size", "t0_s", "t1_s", "busy_share", "instances", "lanes"])


def _busy_until(t: np.ndarray, s0: np.ndarray, s1: np.ndarray) -> np.ndarray:
    """Σ_q clip(t − s0_q, 0, s1_q − s0_q) for many queries: the busy time started by t minus the
    busy time still to come after t, from sorted starts and ends (n log n, not n × len(t))."""
    a0, a1 = np.sort(s0), np.sort(s1)
    c0 = np.concatenate([[0.0], np.cumsum(a0)])
    c1 = np.concatenate([[0.0], np.cumsum(a1)])
    k0 = np.searchsorted(a0, t, side="right")
    k1 = np.searchsorted(a1, t, side="right")
    # started by t: Σ (t − s0); ended by t: Σ (t − s1); busy in [0, t] = started − ended
    return (k0 * t - c0[k0]) - (k1 * t - c1[k1])


def utilisation_by_deployment(inst: pd.DataFrame, available: dict[str, int] | None = None,
                              available_instances: dict[tuple[str, str, int], int] | None = None) -> pd.DataFrame:
    """Per deployment: instances switched on, the devices of its pool (``available``: pool name to
    devices, as ``pool_instances``) and the instances it could switch on (``available_instances``,
    :func:`instances_available`, as ``instances_available``), where known, and the spread of their
    utilisation (min, median, max)."""
    g = inst.groupby(["llm", "device", "batch_size"], sort=True)["utilisation"]
    t = g.agg(instances="size", utilisation_min="min", utilisation_median="median", utilisation_max="max").reset_index()
    t["label"] = _deployment_label(t)
    if available:
        t["pool_instances"] = t["device"].map(available)
    if available_instances:
        t["instances_available"] = [available_instances.get((str(r.llm), str(r.device), int(r.batch_size)))
                                    for r in t.itertuples()]
    return t


def instances_available(deployments: pd.DataFrame) -> dict[tuple[str, str, int], int]:
    """Per deployment (LLM, device, batch size) of a problem's deployments table: the instances it
    could switch on, its cap and its pool's devices over the devices each instance takes."""
    cap = np.minimum(deployments["max_instances"].to_numpy(dtype=np.int64),
                     deployments["pool_count"].to_numpy(dtype=np.int64)
                     // np.maximum(deployments["devices_per_instance"].to_numpy(dtype=np.int64), 1))
    return {(str(llm), str(dev), int(b)): int(c) for llm, dev, b, c in
            zip(deployments["llm"], deployments["device"], deployments["batch_size"], cap)}


def pool_use(curves: pd.DataFrame, deployments: pd.DataFrame, pools: pd.DataFrame) -> pd.DataFrame:
    """Per pool and time step (the steps of :func:`busy_lanes`): the devices its deployments keep
    busy (``busy_devices``: busy lanes / batch size × devices per instance, so a half-busy batched
    instance counts half its devices) and switch on (``on_devices``), per deployment (``label``),
    with the pool's size (``pool_devices``). A pool without planned work has one row with the
    deployment ``(nothing planned)`` and zeros."""
    per_dev = {(str(r.llm), str(r.device), int(r.batch_size)): int(r.devices_per_instance)
               for r in deployments.itertuples()}
    size = dict(zip(pools["pool"].astype(str), pools["count"].astype(int)))
    c = curves
    d = np.array([per_dev.get((str(llm), str(dev), int(b)), 1)
                  for llm, dev, b in zip(c["llm"], c["device"], c["batch_size"])], dtype=float)
    on = c["instances"].to_numpy(dtype=float) * d
    t = pd.DataFrame({"pool": c["device"].astype(str), "label": c["label"], "llm": c["llm"],
                      "t0_s": c["t0_s"].to_numpy(dtype=float), "t1_s": c["t1_s"].to_numpy(dtype=float),
                      "busy_devices": c["busy_share"].to_numpy(dtype=float) * on, "on_devices": on})
    idle_pools = [p for p in size if p not in set(t["pool"])]
    end = float(t["t1_s"].max()) if len(t) else 1.0
    t = pd.concat([t, pd.DataFrame({"pool": idle_pools, "label": "(nothing planned)", "llm": "", "t0_s": 0.0,
                                    "t1_s": end, "busy_devices": 0.0, "on_devices": 0.0})], ignore_index=True)
    t["pool_devices"] = t["pool"].map(size).fillna(0).astype(np.int64)
    return t


def deadline_slack(assignment: pd.DataFrame) -> pd.DataFrame:
    a = assignment[assignment["deadline_s"].notna()]
    return pd.DataFrame({"query_id": a["query_id"].to_numpy(), "llm": a["llm"].to_numpy(),
                         "device": a["device"].to_numpy(),
                         "slack_s": (a["deadline_s"] - a["end_s"]).to_numpy(dtype=float)})


def slot_power(slots: pd.DataFrame) -> pd.DataFrame:
    """Per (slot, LLM, device) of a per-slot table (:func:`energyopt.slots.slot_table`): the
    average power it draws over the slot, ``power_w`` = ``energy_j`` / slot length [W] (idle
    included where the plan counts it), with its ``energy_j`` and, where the signals have carbon,
    ``kg_co2e``. Slots are named by their times (``slot_start_s``, ``slot_end_s``), so the series
    of several pools line up."""
    t = slots.copy()
    t["label"] = t["llm"] + " @ " + t["device"]
    t["power_w"] = t["energy_j"] / (t["slot_end_s"] - t["slot_start_s"])
    keep = ["slot_start_s", "slot_end_s", "label", "llm", "device", "power_w", "energy_j"]
    keep += [c for c in ("kg_co2e",) if c in t.columns]
    return t[keep].reset_index(drop=True)


def site_power(power: pd.DataFrame, sites: dict) -> pd.DataFrame:
    """Per (site, slot) of :func:`slot_power`'s table: ``power_w``, the sum of its pools' average
    power over the slot [W], and the site's ``power_cap_w``; ``sites`` maps a site's name to its
    :class:`~energyopt.fleet.Site` (pools and cap). Every slot of the table appears for every site."""
    edges = power[["slot_start_s", "slot_end_s"]].drop_duplicates().sort_values("slot_start_s")
    parts = []
    for name, site in sites.items():
        mine = power[power["device"].isin(site.pools)].groupby("slot_start_s")["power_w"].sum()
        starts = edges["slot_start_s"].to_numpy()
        parts.append(pd.DataFrame({"site": name, "slot_start_s": starts, "slot_end_s": edges["slot_end_s"].to_numpy(),
                                   "power_w": mine.reindex(starts, fill_value=0.0).to_numpy(dtype=float),
                                   "power_cap_w": float(site.power_cap_w)}))
    cols = ["site", "slot_start_s", "slot_end_s", "power_w", "power_cap_w"]
    return pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)


def slot_summary(slots: pd.DataFrame) -> pd.DataFrame:
    """Per slot (its times): ``energy_kwh``, the slot's ``carbon_g_per_kwh`` (energy-weighted over
    pools with series of their own) and ``kg_co2e``, ``cost``, each where the signals have it, in
    time order."""
    agg: dict[str, tuple[str, str]] = {"energy_j": ("energy_j", "sum"), "energy_kwh": ("energy_kwh", "sum")}
    for c in ("kg_co2e", "cost"):
        if c in slots.columns:
            agg[c] = (c, "sum")
    t = slots.groupby(["slot_start_s", "slot_end_s"], sort=True).agg(**agg).reset_index()
    if "kg_co2e" in t.columns:
        t["carbon_g_per_kwh"] = np.where(t["energy_kwh"] > 0, t["kg_co2e"] * 1000.0 / t["energy_kwh"].where(
            t["energy_kwh"] > 0, 1.0), np.nan)
    order = ["slot_start_s", "slot_end_s", "energy_kwh", "carbon_g_per_kwh", "kg_co2e", "cost"]
    return t[[c for c in order if c in t.columns]]


def _signal_series(signals: Signals, until_s: float) -> list[tuple[str, np.ndarray, np.ndarray, str]]:
    """The step lines the signals plot draws against the plan: per series (one per pool, or one),
    ``(name, bounds_s, values, quantity)`` over the slots that overlap ``[0, until_s)`` [s];
    carbon intensity where the signals have it, else price."""
    values, quantity = ((signals.carbon_g_per_kwh, "carbon intensity [gCO2e/kWh]") if signals.carbon_g_per_kwh is not None
                        else (signals.price_per_kwh, "price [currency/kWh]"))
    assert values is not None  # a Signals has carbon or price
    out = []
    for pool in signals.pools or (None,):
        rows = signals.rows_of(pool)
        b = signals.bounds_s(pool)
        k = np.flatnonzero((b[1:] > 0) & (b[:-1] < until_s))  # the slots that overlap [0, until_s)
        if not len(k):
            continue
        out.append(("" if pool is None else str(pool), b[k[0]:k[-1] + 2], values[rows][k[0]:k[-1] + 1], quantity))
    return out


def signals_source(signals: Signals) -> str:
    """How the report names a series: its file and the time of t = 0 where the file has times."""
    name = Path(signals.source).name if not signals.source.startswith("<") else signals.source
    return name + (f", t = 0 at {signals.batch_start}" if signals.batch_start else "")


# ------------------------------------------------------------------------------------------
# drawing
# ------------------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colors(names) -> dict:
    plt = _plt()
    cmap = plt.get_cmap("tab10")
    return {n: cmap(i % 10) for i, n in enumerate(sorted(set(names)))}


def _save(fig, path: Path) -> Path:
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    finally:
        _plt().close(fig)
    return path


def plot_energy(t: pd.DataFrame, path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(t) + 1.5))
    labels = t["llm"] + " @ " + t["device"]
    ax.set_ylabel("LLM @ device")
    col = _colors(t["llm"])
    ax.barh(labels, t["energy_kwh"], color=[col[x] for x in t["llm"]])
    for y, (e, n) in enumerate(zip(t["energy_kwh"], t["queries"])):
        ax.text(e, y, f" {e:.4g} kWh, {n:,} queries", va="center", fontsize=8)
    ax.set_xlabel("energy [kWh]")
    ax.set_title("Energy per LLM and device")
    ax.invert_yaxis()
    ax.set_xlim(0, max(t["energy_kwh"].max() * 1.45, 1e-9))
    return _save(fig, path)


def _llm_legend(ax, col: dict, **kw) -> None:
    """A legend of the LLMs' colours."""
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color=c, label=n) for n, c in col.items() if n], title="LLM", fontsize=7, title_fontsize=7,
              **({"loc": "upper left", "bbox_to_anchor": (1.01, 1.0)} | kw))


def plot_timeline(blocks: pd.DataFrame, horizon_s: float, path: Path) -> Path:
    plt = _plt()
    labels = list(dict.fromkeys(blocks["label"]))
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(labels) + 1.6))
    col = _colors(blocks["llm"])
    for y, lab in enumerate(labels):
        b = blocks[blocks["label"] == lab]
        # no edge lines: a dense stretch of short queries must read as busy, not as white seams
        ax.broken_barh(list(zip(b["start_s"], b["end_s"] - b["start_s"])), (y - 0.4, 0.8),
                       facecolors=col[b["llm"].iloc[0]], edgecolor="none", linewidth=0)
    ax.axvline(horizon_s, color="k", ls="--", lw=1)
    ax.text(horizon_s, -0.9, "horizon ", fontsize=8, ha="right")
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylim(len(labels) - 0.4, -1.2)
    ax.set_xlabel("time from the batch start [s]")
    ax.set_ylabel("instance (LLM @ device #k)")
    per = "query" if blocks["queries"].max() == 1 else "run of back-to-back queries"
    ax.set_title(f"Timeline per instance (one bar per {per})")
    _llm_legend(ax, col)
    return _save(fig, path)


def plot_busy_lanes(curves: pd.DataFrame, horizon_s: float, path: Path,
                    available_instances: dict[tuple[str, str, int], int] | None = None) -> Path:
    """One row per deployment: the share of its instances' lanes busy over time (0-100% of the row),
    with the instances switched on of those it could switch on (``available_instances``)."""
    plt = _plt()
    labels = list(dict.fromkeys(curves["label"]))
    fig, ax = plt.subplots(figsize=(9, 0.6 * len(labels) + 1.8))
    col = _colors(curves["llm"])
    ticks = []
    for y, lab in enumerate(labels):
        c = curves[curves["label"] == lab]
        x = np.concatenate([c["t0_s"].to_numpy()[:1], c["t1_s"].to_numpy()])
        share = np.concatenate([c["busy_share"].to_numpy(), c["busy_share"].to_numpy()[-1:]])
        ax.fill_between(x, y + 0.4, y + 0.4 - 0.8 * np.clip(share, 0, 1), step="post", color=col[c["llm"].iloc[0]], lw=0)
        ax.axhline(y + 0.4, color="0.85", lw=0.5)
        n, lanes = int(c["instances"].iloc[0]), int(c["lanes"].iloc[0])
        of = (available_instances or {}).get((str(c["llm"].iloc[0]), str(c["device"].iloc[0]), int(c["batch_size"].iloc[0])))
        mean = float(np.average(c["busy_share"], weights=c["t1_s"] - c["t0_s"])) if len(c) else 0.0
        ticks.append(f"{lab}\n{n:,}{'' if of is None else f' of {of:,}'} instances on, {lanes:,} lanes, {mean:.0%} busy")
    end = float(curves["t1_s"].max()) if len(curves) else horizon_s
    if horizon_s <= 1.05 * end:
        ax.axvline(horizon_s, color="k", ls="--", lw=1)
    ax.set_yticks(range(len(labels)), ticks, fontsize=7)
    ax.set_ylim(len(labels) - 0.5, -0.7)
    ax.set_xlabel(f"time from the batch start [s] (horizon {horizon_s:g} s)")
    ax.set_ylabel("deployment (LLM @ device, batch size)")
    ax.set_title("Busy lanes per deployment over time\n(row height = 100% of its switched-on instances' lanes; "
                 "% busy: mean until the makespan)", fontsize=10)
    _llm_legend(ax, col)
    return _save(fig, path)


def plot_pool_use(t: pd.DataFrame, horizon_s: float, path: Path) -> Path:
    """One panel per pool: the devices its deployments keep busy over time, stacked by deployment,
    against the devices switched on and the pool's size (:func:`pool_use`)."""
    plt = _plt()
    pools = list(dict.fromkeys(t["pool"]))
    fig, axes = plt.subplots(len(pools), 1, figsize=(9, 1.9 * len(pools) + 1.0), sharex=True, squeeze=False)
    col = _colors([x for x in t["llm"] if x])  # by LLM, as in the other figures; in a pool, its second deployment hatched
    hatch: dict[tuple[str, str], str] = {}
    for pool, label, llm in dict.fromkeys(zip(t["pool"], t["label"], t["llm"])):
        if llm:
            same = sum(1 for (p, h) in hatch if p == pool and h.split(" @ ")[0] == llm)
            hatch[(pool, label)] = ("", "///", "...", "xx")[same % 4]
    for ax, pool in zip(axes[:, 0], pools):
        g = t[t["pool"] == pool]
        size = int(g["pool_devices"].iloc[0])
        planned = g[g["label"] != "(nothing planned)"]
        if planned.empty:
            ax.text(0.5, 0.5, "nothing planned on this pool: every device off", ha="center", va="center",
                    transform=ax.transAxes, fontsize=8)
        else:
            wide = planned.pivot_table(index="t0_s", columns="label", values="busy_devices", aggfunc="sum", fill_value=0.0)
            ends = planned.groupby("t0_s")["t1_s"].max().reindex(wide.index).to_numpy()
            x = np.concatenate([wide.index.to_numpy(dtype=float), ends[-1:]])
            bottom = np.zeros(len(wide))
            llm_of = dict(zip(planned["label"], planned["llm"]))
            for label in wide.columns:
                v = wide[label].to_numpy(dtype=float)
                ax.stairs(bottom + v, x, baseline=bottom, fill=True, facecolor=col[llm_of[label]], hatch=hatch[(pool, label)],
                          edgecolor="white", label=label, lw=0)
                bottom = bottom + v
            on = float(planned.groupby("label")["on_devices"].first().sum())
            ax.axhline(on, color="k", ls="--", lw=1, label="devices switched on")
        on = float(planned.groupby("label")["on_devices"].first().sum()) if len(planned) else 0.0
        top = max(on, 1.0) * 1.25
        if planned.empty or size <= 1.5 * top:  # the pool's size in view
            ax.axhline(size, color="0.4", ls=":", lw=1.2, label="devices in the pool")
            ax.set_ylim(0, max(size, 1) * 1.12)
            cut = ""
        else:  # a large pool barely used: the axis follows the devices switched on, the title gives the size
            ax.set_ylim(0, top)
            cut = f"; the axis stops at {top:,.0f}"
        ax.set_ylabel("devices")
        ax.set_title(f"pool {pool}: {on:,.0f} of {size:,} devices switched on{cut}", fontsize=9, loc="left")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
    axes[-1, 0].set_xlabel(f"time from the batch start [s] (horizon {horizon_s:g} s)")
    fig.suptitle("Devices busy per pool over time, stacked by deployment (a batched instance counts its busy share)",
                 fontsize=10)
    return _save(fig, path)


def plot_utilisation_spread(t: pd.DataFrame, path: Path) -> Path:
    """One row per deployment: the median utilisation of its instances, whiskers from min to max."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 0.55 * len(t) + 1.6))
    col = _colors(t["llm"])
    y = np.arange(len(t))
    med = 100 * t["utilisation_median"].to_numpy()
    ax.barh(y, med, color=[col[x] for x in t["llm"]])
    ax.errorbar(med, y, xerr=[med - 100 * t["utilisation_min"].to_numpy(), 100 * t["utilisation_max"].to_numpy() - med],
                fmt="none", ecolor="k", elinewidth=0.8, capsize=2)
    ticks = []
    for r in t.itertuples():
        of = getattr(r, "instances_available", None)
        of_text = f" of {int(of):,}" if of is not None and pd.notna(of) else ""
        known = "pool_instances" in t.columns and pd.notna(r.pool_instances)
        pool = f" (pool: {int(r.pool_instances):,} devices)" if known else ""
        ticks.append(f"{r.label}\n{r.instances:,}{of_text} instances on{pool}")
    ax.set_yticks(y, ticks, fontsize=7)
    ax.set_ylabel("deployment (LLM @ device, batch size)")
    ax.set_xlabel("busy lane-time / (lanes × horizon) [%]: median bar, min-max whiskers over its instances")
    ax.set_xlim(0, 100)
    ax.set_title("Utilisation per deployment (over the horizon, of the instances switched on)")
    ax.invert_yaxis()
    return _save(fig, path)


def plot_utilisation(t: pd.DataFrame, path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(t) + 1.5))
    col = _colors(t["llm"])
    ax.barh(t["label"], 100 * t["utilisation"], color=[col[x] for x in t["llm"]])
    ax.set_xlabel("busy lane-time / (lanes × horizon) [%]")
    ax.set_ylabel("instance (LLM @ device #k)")
    ax.set_xlim(0, 105)
    ax.set_title("Utilisation per instance")
    _llm_legend(ax, col)
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=8)
    return _save(fig, path)


def plot_slack(t: pd.DataFrame, path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    if t.empty:
        ax.text(0.5, 0.5, "no query has a deadline", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    else:
        ax.hist(t["slack_s"], bins=min(40, max(5, len(t) // 5)), color="tab:blue")
        late = int((t["slack_s"] < -1e-6).sum())
        ax.axvline(0, color="k", lw=1)
        ax.set_xlabel("deadline − end [s] (negative: late)")
        ax.set_ylabel("queries")
        ax.set_title(f"Deadline slack of {len(t):,} queries with a deadline ({late:,} late)")
    return _save(fig, path)


def plot_accuracy_cost(t: pd.DataFrame, path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    ok = t[np.isfinite(t["total_energy_j"])]
    ax.plot(ok["token_weighted_mean_accuracy"], ok["total_energy_j"] / J_PER_KWH, "o-", color="tab:green",
            label="least energy at a raised accuracy floor")
    ax.plot(ok["token_weighted_mean_accuracy"].iloc[:1], ok["total_energy_j"].iloc[:1] / J_PER_KWH, "s", color="k",
            ms=8, label="this plan")
    xs, ys = ok["token_weighted_mean_accuracy"].to_numpy(), ok["total_energy_j"].to_numpy() / J_PER_KWH
    centre = (xs.min() + xs.max()) / 2 if len(xs) else 0.0
    for k in range(1, len(ok)):
        m = ok["marginal_j_per_point"].iloc[k]
        if np.isfinite(m):
            mid = (xs[k - 1] + xs[k]) / 2
            right = mid > centre  # a label in the right half ends at its segment, so it stays inside the axes
            ax.annotate(f"{m / J_PER_KWH:.3g} kWh per +0.01", (mid, (ys[k - 1] + ys[k]) / 2), fontsize=8,
                        textcoords="offset points", xytext=(-6 if right else -10, 6), ha="right" if right else "left")
    bad = int((~np.isfinite(t["total_energy_j"])).sum())
    ax.set_xlabel(f"token-weighted mean accuracy {ACCURACY_UNIT}")
    ax.set_ylabel("least energy [kWh]")
    ax.set_title("Marginal energy cost of accuracy" + (f" ({bad} floor(s) out of reach)" if bad else ""))
    ax.legend(loc="upper left")
    return _save(fig, path)


def plot_signals(power: pd.DataFrame, signals: Signals, until_s: float, path: Path,
                 caps_w: dict[str, float] | None = None, sites: pd.DataFrame | None = None) -> Path:
    """The plan per time slot against its signal: the average power [W] of each (LLM, device)
    stacked per slot (top) and its kgCO2e per slot (bottom, where the signals have carbon), each
    with the signal (carbon intensity, else price) as a step line on a second axis, up to
    ``until_s`` [s]. ``caps_w``: each capped pool's ``power_cap_w`` [W], drawn on the power panel
    as a level line beside its pool's power per slot (a step line); ``sites`` (:func:`site_power`'s
    table) likewise each site's power and cap. The title names the series' source."""
    plt = _plt()
    has_carbon = "kg_co2e" in power.columns
    fig, axes = plt.subplots(2 if has_carbon else 1, 1, figsize=(9, 6.4 if has_carbon else 3.8), sharex=True,
                             squeeze=False)
    col = _colors(power["label"])
    series = _signal_series(signals, until_s)
    edges = power[["slot_start_s", "slot_end_s"]].drop_duplicates().sort_values("slot_start_s")
    x0, w = edges["slot_start_s"].to_numpy() / 3600.0, (edges["slot_end_s"] - edges["slot_start_s"]).to_numpy() / 3600.0
    panels = [("power_w", "average power [W]", "Power per slot, stacked by LLM and device")]
    if has_carbon:
        panels.append(("kg_co2e", "kgCO2e per slot", "Carbon per slot, stacked by LLM and device"))
    for ax, (value, ylabel, title) in zip(axes[:, 0], panels):
        wide = power.pivot_table(index="slot_start_s", columns="label", values=value, aggfunc="sum", fill_value=0.0)
        wide = wide.reindex(edges["slot_start_s"].to_numpy(), fill_value=0.0)
        bottom = np.zeros(len(wide))
        for label in wide.columns:
            v = wide[label].to_numpy(dtype=float)
            ax.bar(x0, v, width=w, bottom=bottom, align="edge", color=col[label], edgecolor="white", linewidth=0.3,
                   label=label)
            bottom += v
        if value == "power_w" and caps_w:
            b = np.append(edges["slot_start_s"].to_numpy(), edges["slot_end_s"].to_numpy()[-1]) / 3600.0
            for k, (pool, cap) in enumerate(caps_w.items()):
                mine = power[power["device"] == pool].groupby("slot_start_s")["power_w"].sum()
                mine = mine.reindex(edges["slot_start_s"].to_numpy(), fill_value=0.0).to_numpy(dtype=float)
                shade = ("tab:red", "tab:purple", "tab:brown", "tab:olive")[k % 4]
                ax.stairs(mine, b, baseline=None, color=shade, lw=1.0, label=f"power of pool {pool}")
                ax.axhline(cap, color=shade, lw=1.2, ls="--", label=f"power cap of pool {pool} ({cap:,.6g} W)")
        if value == "power_w" and sites is not None and len(sites):
            b = np.append(edges["slot_start_s"].to_numpy(), edges["slot_end_s"].to_numpy()[-1]) / 3600.0
            for k, (name, t) in enumerate(sites.groupby("site", sort=False)):
                shade = ("tab:blue", "tab:cyan", "tab:gray", "tab:pink")[k % 4]
                ax.stairs(t["power_w"].to_numpy(dtype=float), b, baseline=None, color=shade, lw=1.4,
                          label=f"power of site {name}")
                cap = float(t["power_cap_w"].iloc[0])
                ax.axhline(cap, color=shade, lw=1.4, ls="-.", label=f"power cap of site {name} ({cap:,.6g} W)")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        twin = ax.twinx()
        for k, (pool, b, v, quantity) in enumerate(series):
            twin.stairs(v, b / 3600.0, baseline=None, color="k", lw=1.2, ls=("-", "--", ":", "-.")[k % 4],
                        label=f"{quantity.split(' [')[0]}{' (' + pool + ')' if pool else ''}")
        if series:
            twin.set_ylabel(series[0][3])
        twin.set_ylim(bottom=min(0.0, *(float(v.min()) for _, _, v, _ in series)) if series else 0.0)
        if ax is axes[0, 0]:
            h1, l1 = ax.get_legend_handles_labels()
            h2, l2 = twin.get_legend_handles_labels()
            ax.legend(h1 + h2, l1 + l2, loc="upper left", bbox_to_anchor=(1.1, 1.0), fontsize=7)
    axes[-1, 0].set_xlabel("time from the batch start [h]")
    fig.suptitle(f"The plan per time slot against the signal ({signals_source(signals)})", fontsize=10)
    return _save(fig, path)


def _tables_html(t: pd.DataFrame, fmt: dict[str, str]) -> str:
    def cell(c, v):
        if isinstance(v, float):
            return "-" if v != v else format(v, fmt.get(c, ".4g"))
        return html.escape(str(v))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in t.columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(c, r[c])}</td>" for c in t.columns) + "</tr>" for _, r in t.iterrows())
    return f"<table><tr>{head}</tr>{body}</table>"


def write_report(schedule: Schedule, out_dir: str | Path, accuracy_curve: pd.DataFrame, *,
                 progress: Callable[[str], None] | None = None) -> list[Path]:
    """Write the report of a plan into ``out_dir/report/``: PNGs, their tables (CSV), report.html.
    ``accuracy_curve`` is :func:`energyopt.sweep.accuracy_cost`'s table for this plan."""
    say = progress or (lambda s: None)
    d = Path(out_dir) / "report"
    a = schedule.assignment
    H = schedule.problem.horizon_s
    energy = energy_by_llm_device(a, extrapolated_rows(a, schedule.problem))
    inst = instance_table(a, H)
    slack = deadline_slack(a)
    curve = accuracy_curve
    pools = schedule.problem.pools
    deployments = schedule.problem.deployments
    curves = busy_lanes(a, H)
    per_pool = pool_use(curves, deployments, pools)
    if len(inst) > INSTANCE_ROWS_LIMIT or (len(inst) and int(inst["batch_size"].max()) > 1):
        # one row per deployment: readable at any number of instances, and a batched instance's
        # lanes show as the share busy rather than as bars drawn over each other
        say(f"report: {len(inst)} instances: timeline and utilisation per deployment ...")
        available = dict(zip(pools["pool"], pools["count"])) if pools is not None and len(pools) else None
        can = instances_available(deployments)
        timeline = plot_busy_lanes(curves, H, d / "timeline.png", can)
        utilisation = plot_utilisation_spread(utilisation_by_deployment(inst, available, can), d / "utilisation.png")
    else:
        blocks = timeline_blocks(a)
        say(f"report: drawing {len(blocks)} timeline bars on {inst.shape[0]} instances ...")
        timeline = plot_timeline(blocks, H, d / "timeline.png")
        utilisation = plot_utilisation(inst, d / "utilisation.png")
    written = [
        plot_energy(energy, d / "energy_by_llm_device.png"),
        timeline,
        utilisation,
        plot_pool_use(per_pool, H, d / "pools.png"),
        plot_slack(slack, d / "deadline_slack.png"),
        plot_accuracy_cost(curve, d / "accuracy_cost.png"),
    ]
    tables = [("energy_by_llm_device", energy), ("instances", inst.drop(columns="label")),
              ("busy_lanes", curves), ("pools", per_pool), ("deadline_slack", slack), ("accuracy_cost", curve)]
    per_slot = None
    if schedule.signals is not None and len(a):
        say("report: the plan per time slot against its signals ...")
        slots = schedule.slot_table()
        power, per_slot = slot_power(slots), slot_summary(slots)
        until = max(float(H), float(a["end_s"].max()))
        fleet = schedule.problem.inputs.fleet if schedule.problem.inputs is not None else None
        caps = {} if fleet is None else {p.name: p.power_cap_w for p in fleet.pools.values() if p.power_cap_w is not None}
        per_site = site_power(power, fleet.sites) if fleet is not None and fleet.sites else None
        written.append(plot_signals(power, schedule.signals, until, d / "signals.png", caps_w=caps or None,
                                    sites=per_site))
        tables += [("slot_power", power.drop(columns="label")), ("slot_totals", per_slot)]
        if per_site is not None:
            tables.append(("site_power", per_site))
    images = list(written)
    for name, t in tables:
        p = d / f"{name}.csv"
        write_atomic(p, t.to_csv(index=False, float_format="%.9g"))
        written.append(p)
    s = schedule.summary()
    imgs = "".join(
        f'<h2>{html.escape(p.stem.replace("_", " "))}</h2><img alt="{p.stem}" src="data:image/png;base64,'
        f'{base64.b64encode(p.read_bytes()).decode()}">' for p in images)
    facts = pd.DataFrame([
        ("status", str(s.status)), ("queries", s.queries), ("energy [kWh]", f"{s.total_energy_kwh:.6g}"),
        ("proven gap", f"{s.gap:.4%}"), ("token-weighted mean accuracy", f"{s.token_weighted_mean_accuracy:.4f}"),
        ("deadlines met", f"{s.deadlines_met}/{s.queries_with_deadline}"), ("makespan [s]", f"{s.makespan_s:.1f}"),
        ("queries released after t = 0", f"{s.queries_with_release} (latest at {s.latest_release_s:.1f} s)"),
        ("horizon [s]", f"{H:g}"), ("independent check", "ok" if s.check["ok"] else "FAILED"),
        ("queries on extrapolated predictions", _extrapolation_fact(s)),
        ("query energy [J]", f"{s.query_energy_j:.6g}"),
        ("idle energy [J]", _idle_fact(s, schedule)),
        ("empty batch slots [J]",
         "-" if s.padding_energy_j is None else f"{s.padding_energy_j:.6g} (predicted, not in the total)"),
        *_signals_facts(s, schedule.signals),
        ("solver", f"{s.solver} ({s.formulation})"), ("solver settings", _settings_fact(s)),
        ("objective", s.objective),
        *_input_facts(s),
        ("energyopt", s.energyopt_version), ("made at", s.created_at),
    ], columns=["", "value"])
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>energyopt plan report</title><style>"
        "body{font-family:sans-serif;max-width:1000px;margin:2em auto}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}img{max-width:100%}</style></head><body>"
        "<h1>energyopt plan report</h1>" + _tables_html(facts, {})
        + "<h2>energy per LLM and device</h2>"
        + _tables_html(energy, {"energy_j": ".6g", "energy_kwh": ".4f", "energy_share": ".1%", "busy_s": ".1f",
                                "extrapolated_energy_j": ".6g"})
        + ("" if per_slot is None else _slots_html(per_slot))
        + "<h2>marginal energy cost of accuracy</h2>"
        + _tables_html(curve, {"total_energy_j": ".6g", "marginal_j_per_point": ".4g"})
        + imgs + "</body></html>\n"
    )
    html_p = d / "report.html"
    write_atomic(html_p, page)
    return [html_p, *written]


def _idle_fact(s: Summary, schedule: Schedule) -> str:
    """The report's line on idle energy: counted in the total, or what the switched-on instances
    would draw idle over the horizon when it is not."""
    if s.idle_counted:
        return f"{s.idle_energy_j:.6g} (counted in the total: the switched-on instances over the horizon)"
    a, p = schedule.assignment, schedule.problem
    if a.empty:
        return "0 (idle not counted)"
    idle_w = dict(zip(zip(p.deployments["llm"], p.deployments["device"]), p.deployments["idle_power_w"]))
    on = a.drop_duplicates(["llm", "device", "instance"])
    would = float(idle_energy_j([idle_w[(r.llm, r.device)] for r in on.itertuples()], p.horizon_s).sum())
    return (f"not counted (--idle counts it): the {len(on):,} switched-on instances would draw {would:.6g} J idle "
            f"over the {p.horizon_s:g} s horizon")


def _settings_fact(s: Summary) -> str:
    """The settings a plan was made with, as the report lists them."""
    st = s.settings
    limit = st.get("time_limit_s")
    parts = [f"objective {st.get('objective')}" + (f" (zeta {st.get('zeta'):g})" if st.get("zeta") is not None else ""),
             "time limit " + ("none" if limit is None else f"{limit:g} s"),
             "gap " + ("-" if st.get("gap") is None else f"{st.get('gap'):g}"),
             "threads " + str(st.get("threads") if st.get("threads") is not None else "-"),
             f"idle {'counted' if st.get('idle') else 'not counted'}"]
    if st.get("min_mean_accuracy") is not None:
        parts.append(f"min mean accuracy {st['min_mean_accuracy']:g}")
    if st.get("strict_range"):
        parts.append("strict range")
    return ", ".join(parts)


def _input_facts(s: Summary) -> list[tuple[str, str]]:
    """The report's lines on the inputs: where each was read from and the SHA-256 of its file(s)."""
    sha = s.input_sha256 or {}

    def short(h: str | None) -> str:
        return "" if not h else f" (SHA-256 {h[:12]}…)"

    models = sha.get("models") or {}
    return [("workload", f"{s.inputs.get('workload') or 'not a file (stdin or a table)'}{short(sha.get('workload'))}"),
            ("fleet", f"{s.inputs.get('fleet')}{short(sha.get('fleet'))}"),
            ("models", f"{s.inputs.get('models')} ({len(models)} files)")]


def _signals_facts(s: Summary, signals: Signals | None) -> list[tuple[str, str]]:
    """The report's lines on the signals: the series, and the plan's kgCO2e and cost under it."""
    sig = s.signals
    if signals is None or sig is None:
        return []
    facts = [("signals", f"{signals_source(signals)}: {signals.n_slots} slots of {sig['slot_s']:g} s "
                         "(they price the plan; the objective is unchanged)")]
    if sig.get("total_kg_co2e") is not None:
        facts.append(("carbon [kgCO2e]", f"{sig['total_kg_co2e']:.6g} (mean {sig['mean_carbon_g_per_kwh']:.1f} gCO2e/kWh)"))
    if sig.get("total_cost") is not None:
        facts.append(("cost [currency]", f"{sig['total_cost']:.6g}"))
    return facts


def _slots_html(per_slot: pd.DataFrame) -> str:
    """The report's per-slot table: the slots with the most kgCO2e (or energy), then the total."""
    key = "kg_co2e" if "kg_co2e" in per_slot.columns else "energy_kwh"
    top = per_slot.nlargest(TOP_SLOTS, key, keep="first").sort_values("slot_start_s")
    total = {c: float(per_slot[c].sum()) for c in ("energy_kwh", "kg_co2e", "cost") if c in per_slot.columns}
    if "kg_co2e" in total:
        total["carbon_g_per_kwh"] = total["kg_co2e"] * 1000.0 / total["energy_kwh"] if total["energy_kwh"] > 0 else np.nan
    shown = pd.concat([top.assign(slot=[f"{a:g}-{b:g} s" for a, b in zip(top["slot_start_s"], top["slot_end_s"])]),
                       pd.DataFrame([{**total, "slot": f"all {len(per_slot)} slots"}])], ignore_index=True)
    shown = shown[["slot", *[c for c in per_slot.columns if c not in ("slot_start_s", "slot_end_s")]]]
    what = "kgCO2e" if key == "kg_co2e" else "energy"
    n = min(TOP_SLOTS, len(per_slot))
    head = (f"<h2>energy, carbon and cost per time slot</h2><p>The {n} slot{'' if n == 1 else 's'} with the most "
            f"{what} of the {len(per_slot)} that draw energy (all of them in slot_totals.csv).</p>")
    return head + _tables_html(shown, {"energy_kwh": ".6g", "carbon_g_per_kwh": ".1f", "kg_co2e": ".6g", "cost": ".6g"})


def _extrapolation_fact(s: Summary) -> str:
    """The report's line on predictions outside the measured token ranges."""
    strict = bool(s.settings.get("strict_range"))
    if not s.extrapolated_queries:
        return "none" + (" (--strict-range)" if strict else "")
    share = s.extrapolated_energy_share
    return (f"{s.extrapolated_queries} of {s.assigned}" + ("" if share is None else f", {share:.1%} of the queries' "
            "predicted energy") + ": outside the token ranges their models were measured on (--strict-range refuses them)")


def _keeps_promises(r: pd.Series) -> bool:
    """A baseline row that routes every query and meets every accuracy floor and deadline."""
    return (str(r["status"]) == "baseline" and r["deadlines_met"] == r["queries_with_deadline"]
            and r["accuracy_floors_met"] == r["queries"])


def plot_sweep(table: pd.DataFrame, path: str | Path, *, title: str = "") -> Path:
    """The sweep's figure: energy against accuracy (accuracy and ζ sweeps) or against the
    deadline scale, the plans as a line (Pareto points filled), the baselines as labelled points;
    for completion windows and power caps kgCO2e (cost, else energy) against the value."""
    plt = _plt()
    vary = str(table["vary"].iloc[0])
    opt = table[table["method"] == "optimal"]
    ok = opt[np.isfinite(opt["total_energy_kwh"])]
    base = table[(table["method"] != "optimal") & np.isfinite(table["total_energy_kwh"])]
    if vary in ("deadline-window", "power-cap"):
        return _plot_sweep_by_value(table, vary, Path(path), title)
    fig, ax = plt.subplots(figsize=(8, 5))
    if vary == "deadline-scale":
        ok = ok.sort_values("value")
        ax.plot(ok["value"], ok["total_energy_kwh"], "o-", color="tab:green", label="least energy (energyopt)")
        for _, r in ok.iterrows():
            ax.annotate(f"{r['deadlines_met']:.0f}/{r['queries_with_deadline']:.0f} met", (r["value"], r["total_energy_kwh"]),
                        fontsize=7, textcoords="offset points", xytext=(4, 4))
        for i, (_, r) in enumerate(base.iterrows()):
            col = plt.get_cmap("tab20")(i % 20)  # priced at the workload's own deadlines (scale 1)
            label = (f"{r['method']}: {r['deadlines_met']:.0f}/{r['queries_with_deadline']:.0f} deadlines, "
                     f"{r['accuracy_floors_met']:.0f}/{r['queries']:.0f} accuracy floors met")
            ax.plot([r["value"]], [r["total_energy_kwh"]], "s", ms=7, color=col,
                    mfc=col if _keeps_promises(r) else "none", label=label)
        ax.set_xscale("log")
        ticks = sorted(set(float(v) for v in opt["value"]) | {1.0})
        ax.set_xticks(ticks, [f"{v:g}×" for v in ticks])
        ax.minorticks_off()
        ax.set_xlabel("deadline scale (× each query's deadline; smaller is tighter); baselines at 1×, filled if "
                      "they meet every floor and deadline, hollow if not", fontsize=8)
        ax.invert_xaxis()
    else:
        ok = ok.sort_values("token_weighted_mean_accuracy")
        ax.plot(ok["token_weighted_mean_accuracy"], ok["total_energy_kwh"], "-", color="tab:green", lw=1.5,
                label="least energy (energyopt)")
        par = ok[ok["pareto"].astype(bool)]
        ax.plot(par["token_weighted_mean_accuracy"], par["total_energy_kwh"], "o", color="tab:green", label="Pareto points")
        if vary == "zeta":
            for _, r in ok.iterrows():
                ax.annotate(f"ζ={r['value']:g}", (r["token_weighted_mean_accuracy"], r["total_energy_kwh"]),
                            fontsize=7, textcoords="offset points", xytext=(4, -8))
        # baselines at one point share a label; a baseline that breaks floors or deadlines is hollow
        groups: dict[tuple[float, float], list] = {}
        for _, r in base.iterrows():
            groups.setdefault((round(r["token_weighted_mean_accuracy"], 4), round(r["total_energy_kwh"], 6)), []).append(r)
        for i, ((x, y), rs) in enumerate(sorted(groups.items())):
            col = plt.get_cmap("tab10")((i + 1) % 10)
            honest = all(_keeps_promises(r) for r in rs)
            ax.plot(x, y, "s", ms=6, color=col, mfc=col if honest else "none")
            ax.annotate(" / ".join(r["method"] for r in rs), (x, y), fontsize=7, textcoords="offset points",
                        xytext=(4, 3 if i % 2 == 0 else -9))
        ax.plot([], [], "s", color="grey", mfc="none", label="baseline breaking floors or deadlines")
        ax.plot([], [], "s", color="grey", label="baseline meeting them")
        ax.set_xlabel(f"token-weighted mean accuracy {ACCURACY_UNIT}")
    bad = int(len(opt) - len(ok))
    ax.set_ylabel("energy [kWh]")
    ax.set_title((title or f"Sweep over {vary}") + (f" ({bad} point(s) without a plan)" if bad else ""))
    ax.grid(alpha=0.3)
    if vary == "deadline-scale":
        ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=7)
    else:
        ax.legend(loc="best", fontsize=8)
    return _save(fig, Path(path))


def _plot_sweep_by_value(table: pd.DataFrame, vary: str, path: Path, title: str) -> Path:
    """A completion-window or power-cap sweep: kgCO2e (or cost, or energy where the plans are not
    priced) against the swept value, each plan labelled with its energy; baselines as lines."""
    plt = _plt()
    opt = table[table["method"] == "optimal"].sort_values("value")
    base = table[table["method"] != "optimal"]
    y, unit = next(((c, u) for c, u in (("kg_co2e", "kgCO2e"), ("cost", "cost"))
                    if c in table and np.isfinite(table.loc[table["method"] == "optimal", c].astype(float)).any()),
                   ("total_energy_kwh", "energy [kWh]"))
    ok = opt[np.isfinite(opt[y].astype(float))]
    fig, ax = plt.subplots(figsize=(8, 5))
    ax.plot(ok["value"], ok[y], "o-", color="tab:green", label="energyopt plan")
    shown = None
    for _, r in ok.iterrows():  # the plan's energy where it changes along the series
        if shown is None or not np.isclose(r["total_energy_kwh"], shown, rtol=1e-3):
            ax.annotate(f"{r['total_energy_kwh']:.3g} kWh", (r["value"], r[y]), fontsize=7, textcoords="offset points",
                        xytext=(4, 4))
            shown = r["total_energy_kwh"]
    if len(ok) and (ok[y] > 0).all():
        ax.set_yscale("log")  # the baselines may sit orders of magnitude above the plans
    for i, (_, r) in enumerate(base[np.isfinite(base[y].astype(float))].iterrows()):
        ax.axhline(r[y], ls=":", lw=1, color=plt.get_cmap("tab10")((i + 1) % 10), label=f"{r['method']} (unswept)")
    ax.set_xlabel("completion window [h]" if vary == "deadline-window" else "power cap of the pool or site [W]")
    ax.set_ylabel(unit)
    bad = int(len(opt) - len(ok))
    ax.set_title((title or f"Sweep over {vary}") + (f" ({bad} point(s) without a plan)" if bad else ""))
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=7)
    return _save(fig, path)
