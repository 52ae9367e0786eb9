"""What a joule costs in each time slot, for plans that move work in time (``--objective carbon|cost``,
and any plan on a fleet with power caps).

:class:`SlotPrices` holds the slots of a plan over ``[0, horizon)`` (the signals' slots cut at the
horizon, or whole hours where a fleet with caps is planned without signals), the objective's
price of a joule charged in each (pool, slot), each pool's power cap and each site's (pools
sharing a cap):

* ``carbon`` — kgCO2e per J: the slot's carbon intensity [gCO2e/kWh] / 1000 / 3.6e6;
* ``cost`` — currency per J: the slot's price [currency/kWh] / 3.6e6;
* ``energy`` — 1 per J (a plan for least energy that must keep power caps).

A query is charged (:func:`~energyopt.accounting.query_energy_cost_j`) uniformly over its
``[start_s, end_s)`` and priced by the slots it overlaps (:func:`~energyopt.accounting.slot_energy_j`);
with idle counted, a switched-on instance draws its idle power over the whole horizon, priced in
every slot. :meth:`SlotPrices.plan_value` is the objective of a placed plan, the one formula the
planner, its bound and the summary use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .accounting import J_PER_KWH
from .caps import cap_bounds_s, cap_rows, pool_power_w, site_members
from .errors import DataError
from .fleet import Fleet
from .signals import Signals

__all__ = ["SlotPrices", "slot_prices", "SLOT_OBJECTIVES", "OBJECTIVE_UNITS"]

#: objectives that price each slot (``energy`` too where the fleet has power caps)
SLOT_OBJECTIVES = ("carbon", "cost")
#: the unit of each objective's value
OBJECTIVE_UNITS = {"energy": "J", "carbon": "kgCO2e", "cost": "currency"}


@dataclass(frozen=True)
class SlotPrices:
    """Slots over ``[0, horizon)`` and their prices. ``bounds_s``: S + 1 boundaries [s];
    ``price_per_j``: ``(n_pools, S)`` objective units per J charged; ``pools``: the fleet's pools in
    the rows' order; ``cap_w``: each pool's power cap [W] (inf: none); ``sites``: the fleet's sites,
    ``site_pools`` ``(n_sites, n_pools)`` which pools each groups (0/1), ``site_cap_w`` their caps [W]."""

    objective: str
    bounds_s: np.ndarray
    price_per_j: np.ndarray
    pools: tuple[str, ...]
    cap_w: np.ndarray
    sites: tuple[str, ...] = ()
    site_pools: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    site_cap_w: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def cap_rows(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Every pool's and site's cap as a row over the pools (:func:`~energyopt.caps.cap_rows`)."""
        return cap_rows(self.pools, self.cap_w, self.sites, self.site_pools, self.site_cap_w)

    @property
    def n_slots(self) -> int:
        return len(self.bounds_s) - 1

    @property
    def slot_s(self) -> np.ndarray:
        """Each slot's length [s]."""
        return np.diff(self.bounds_s)

    @property
    def unit(self) -> str:
        return OBJECTIVE_UNITS[self.objective]

    def pool_energy_j(self, pool: np.ndarray, start_s: np.ndarray, end_s: np.ndarray, charged_j: np.ndarray, *,
                      idle_pool: np.ndarray | None = None, idle_w: np.ndarray | None = None) -> np.ndarray:
        """Energy [J] per (pool, slot): queries of pool index ``pool`` charged ``charged_j`` over
        ``[start_s, end_s)``, plus switched-on instances of pool ``idle_pool`` drawing ``idle_w`` [W]
        over the horizon."""
        power_w = pool_power_w(self.bounds_s, pool, start_s, end_s, charged_j, len(self.pools), idle_pool=idle_pool,
                               idle_w=idle_w, horizon_s=float(self.bounds_s[-1]))
        return power_w * self.slot_s[None, :]

    def plan_value(self, pool: np.ndarray, start_s: np.ndarray, end_s: np.ndarray, charged_j: np.ndarray, *,
                   idle_pool: np.ndarray | None = None, idle_w: np.ndarray | None = None) -> float:
        """The objective of a placed plan: the energy per (pool, slot) times its price."""
        energy = self.pool_energy_j(pool, start_s, end_s, charged_j, idle_pool=idle_pool, idle_w=idle_w)
        return float(np.sum(energy * self.price_per_j))

    def instance_price(self, pool: np.ndarray, idle_w: np.ndarray) -> np.ndarray:
        """The objective cost of switching instances on (of pool index ``pool``, idle draw ``idle_w``
        [W]): their idle draw over every slot at its price."""
        per_w = self.price_per_j @ self.slot_s  # objective units per W held over the horizon, per pool
        return np.asarray(idle_w, dtype=float) * per_w[np.asarray(pool, dtype=np.int64)]


def slot_prices(fleet: Fleet, signals: Signals | None, objective: str) -> SlotPrices:
    """The slots and prices of a plan for ``objective`` (``carbon``, ``cost`` or ``energy``) on
    ``fleet`` under ``signals`` (required for carbon and cost; for energy they only set the slots
    caps hold in). Raises :class:`DataError` for signals without the objective's column, or with
    per-pool series whose slots differ."""
    if objective not in (*SLOT_OBJECTIVES, "energy"):
        why = (": the trade-off weighs energy against accuracy and has no price per slot; plan for carbon or cost "
               "with an accuracy floor (--min-mean-accuracy) instead") if objective == "tradeoff" else ""
        raise DataError(f"objective must be one of energy, {', '.join(SLOT_OBJECTIVES)} to plan per time slot "
                        f"(power caps), got {objective!r}{why}")
    pools = tuple(fleet.pools)
    cap = np.array([np.inf if fleet.pools[p].power_cap_w is None else fleet.pools[p].power_cap_w for p in pools])
    site_cap = np.array([s.power_cap_w for s in fleet.sites.values()], dtype=float)
    site_kw: dict[str, Any] = {"sites": tuple(fleet.sites), "site_pools": site_members(fleet.sites, pools),
                               "site_cap_w": site_cap}
    if signals is None:
        if objective != "energy":
            raise DataError(f"--objective {objective}: give --signals FILE with a "
                            f"{'carbon_g_per_kwh' if objective == 'carbon' else 'price_per_kwh'} column")
        b = cap_bounds_s(fleet.horizon_s)
        return SlotPrices(objective, b, np.ones((len(pools), len(b) - 1)), pools, cap, **site_kw)
    column = {"carbon": signals.carbon_g_per_kwh, "cost": signals.price_per_kwh, "energy": None}[objective]
    if objective != "energy" and column is None:
        name = "carbon_g_per_kwh" if objective == "carbon" else "price_per_kwh"
        raise DataError(f"{signals.source}: --objective {objective} needs a {name} column; the file has none")
    series = signals.pools or (None,)
    b0 = signals.bounds_s(series[0])
    for p in series[1:]:
        bp = signals.bounds_s(p)
        if len(bp) != len(b0) or not np.allclose(bp, b0):
            raise DataError(f"{signals.source}: the series of pool {p} has other slots than pool {series[0]}'s; "
                            "expected the same slots for every pool to plan per slot")
    i0 = max(int(np.searchsorted(b0, 0.0, side="right")) - 1, 0)  # the slot holding t = 0 (earlier rows unused)
    b = cap_bounds_s(fleet.horizon_s, b0[i0:])
    b[0] = 0.0
    n_s = len(b) - 1
    price = np.ones((len(pools), n_s))
    if column is not None:
        to_j = 1e-3 / J_PER_KWH if objective == "carbon" else 1.0 / J_PER_KWH
        for j, p in enumerate(pools):
            rows = signals.rows_of(p if signals.pools else None)
            price[j] = column[rows][i0:i0 + n_s] * to_j
        if np.any(price < 0):
            raise DataError(f"{signals.source}: a negative {objective} signal; planning per slot expects prices >= 0")
    return SlotPrices(objective, b, price, pools, cap, **site_kw)
