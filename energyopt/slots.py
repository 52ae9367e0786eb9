"""A plan priced per time slot: energy, kWh, kgCO2e and cost per (slot, LLM, device).

Each query draws the energy it is charged (:func:`~energyopt.accounting.query_energy_cost_j`: all
of it, or with idle counted its energy above idle) uniformly over ``[start_s, end_s)``; with idle
counted, each switched-on instance draws its idle power over the horizon, as
:func:`~energyopt.schedule.energy_totals` counts it. A slot's energy is the part of each that falls
in it (:func:`~energyopt.accounting.slot_energy_j`), so the table's total is the plan's total energy.
The signals price the plan; they do not change it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from .accounting import J_PER_KWH, kg_co2e, query_energy_cost_j, slot_energy_j
from .signals import Signals

__all__ = ["SLOT_COLUMNS", "slot_table", "slot_totals"]

#: the columns of the per-slot table (carbon and price ones only where the signals have them)
SLOT_COLUMNS = ("slot", "slot_start_s", "slot_end_s", "llm", "device", "query_energy_j", "idle_energy_j", "energy_j",
                "energy_kwh", "carbon_g_per_kwh", "kg_co2e", "price_per_kwh", "cost")


def slot_table(assignment: pd.DataFrame, signals: Signals, *, idle_power_w: Mapping[tuple[str, str], float],
               horizon_s: float, idle: bool) -> pd.DataFrame:
    """One row per (slot, LLM, device) that draws energy: ``slot`` (its index in its series),
    ``slot_start_s``, ``slot_end_s`` [s], ``query_energy_j``, ``idle_energy_j``, ``energy_j`` [J],
    ``energy_kwh``, and where the signals have them ``carbon_g_per_kwh`` with ``kg_co2e`` and
    ``price_per_kwh`` with ``cost``. ``idle_power_w`` is each (LLM, device) instance's idle draw
    [W]; ``idle`` whether the plan counts it (then over ``[0, horizon_s)`` per switched-on
    instance). The series must cover the horizon and the last query's end."""
    a = assignment
    until = max(float(horizon_s), float(a["end_s"].max()) if len(a) else 0.0)
    signals.check_covers(until, "the plan's horizon and its last query's end")
    parts = [_pool_table(a if pool is None else a[a["device"] == pool], signals, pool, idle_power_w, horizon_s, idle)
             for pool in signals.pools or (None,)]
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    keep = [c for c in SLOT_COLUMNS if c in table.columns]
    return table[keep].sort_values(["slot_start_s", "device", "llm"], kind="stable").reset_index(drop=True)


def _pool_table(a: pd.DataFrame, signals: Signals, pool: str | None, idle_power_w: Mapping[tuple[str, str], float],
                horizon_s: float, idle: bool) -> pd.DataFrame:
    rows = signals.rows_of(pool)
    bounds = signals.bounds_s(pool)
    pairs = pd.MultiIndex.from_arrays([a["llm"].astype(str), a["device"].astype(str)])
    codes, uniques = pairs.factorize()
    n_groups = len(uniques)
    idle_w = np.array([float(idle_power_w[k]) for k in uniques], dtype=float)
    charged = query_energy_cost_j(a["energy_j"].to_numpy(dtype=float), a["runtime_s"].to_numpy(dtype=float),
                                  idle_w[codes], idle=idle, lanes=a["batch_size"].to_numpy(dtype=float))
    query_j = slot_energy_j(bounds, a["start_s"].to_numpy(dtype=float), a["end_s"].to_numpy(dtype=float), charged,
                            codes, n_groups)
    idle_j = np.zeros_like(query_j)
    if idle and len(a):
        on = pd.MultiIndex.from_arrays([a["llm"].astype(str), a["device"].astype(str), a["instance"]]).unique()
        g = uniques.get_indexer(on.droplevel(2))
        zeros = np.zeros(len(g))
        idle_j = slot_energy_j(bounds, zeros, zeros + float(horizon_s), idle_w[g] * float(horizon_s), g, n_groups)
    total = query_j + idle_j
    grp, k = np.nonzero(total > 0)
    out: dict[str, Any] = {
        "slot": k,
        "slot_start_s": bounds[k],
        "slot_end_s": bounds[k + 1],
        "llm": np.asarray(uniques.get_level_values(0), dtype=object)[grp],
        "device": np.asarray(uniques.get_level_values(1), dtype=object)[grp],
        "query_energy_j": query_j[grp, k],
        "idle_energy_j": idle_j[grp, k],
        "energy_j": total[grp, k],
        "energy_kwh": total[grp, k] / J_PER_KWH,
    }
    if signals.carbon_g_per_kwh is not None:
        carbon = signals.carbon_g_per_kwh[rows][k]
        out["carbon_g_per_kwh"] = carbon
        out["kg_co2e"] = kg_co2e(out["energy_j"], carbon)
    if signals.price_per_kwh is not None:
        price = signals.price_per_kwh[rows][k]
        out["price_per_kwh"] = price
        out["cost"] = out["energy_kwh"] * price
    return pd.DataFrame(out)


def slot_totals(table: pd.DataFrame) -> dict[str, float | int | None]:
    """A per-slot table's totals: ``total_energy_j``, ``total_energy_kwh``, ``total_kg_co2e`` and
    ``total_cost`` (None where the signals have no carbon or no price), the energy-weighted mean
    carbon intensity ``mean_carbon_g_per_kwh`` and the ``slots`` that draw energy."""
    energy = float(table["energy_j"].sum()) if len(table) else 0.0
    kg = float(table["kg_co2e"].sum()) if "kg_co2e" in table.columns else None
    return {
        "total_energy_j": energy,
        "total_energy_kwh": energy / J_PER_KWH,
        "total_kg_co2e": kg,
        "mean_carbon_g_per_kwh": None if kg is None or energy <= 0 else kg * 1000.0 / (energy / J_PER_KWH),
        "total_cost": float(table["cost"].sum()) if "cost" in table.columns else None,
        "slots": int(table[["slot_start_s", "slot_end_s"]].drop_duplicates().shape[0]) if len(table) else 0,
    }
