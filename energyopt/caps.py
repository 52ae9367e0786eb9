"""Power caps: the power each device pool draws per time slot, and the slots caps hold in.

A pool's ``power_cap_w`` (fleet TOML) holds in every slot: the energy its queries are charged in
the slot (:func:`~energyopt.accounting.query_energy_cost_j`, drawn uniformly over each query's
``[start_s, end_s)``; :func:`~energyopt.accounting.slot_energy_j`), plus, where idle power is
counted, the idle draw of its switched-on instances (on over the whole horizon), divided by the
slot's length, stays at or under the cap. The slots are the signals' (``--signals``) where a plan
has them, else whole hours from t = 0 (:data:`CAP_SLOT_S`). The planner, the checker and the
report all compute a pool's power with :func:`pool_power_w`.

A site (``[sites.NAME]`` in the fleet) groups pools under one ``power_cap_w`` that holds in every
slot over the sum of its pools' powers (:func:`site_power_w`). The planner sees every cap as a
*cap row*: a set of pools and its cap (:func:`cap_rows`), a pool's own cap being the row of that
pool alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .accounting import slot_energy_j

__all__ = ["CAP_SLOT_S", "cap_bounds_s", "pool_power_w", "site_members", "site_power_w", "cap_rows", "slot_name"]

#: the slot length [s] in which caps hold where a plan has no signals
CAP_SLOT_S = 3600.0


def cap_bounds_s(horizon_s: float, signal_bounds_s: np.ndarray | None = None) -> np.ndarray:
    """The slot boundaries [s] power caps hold in over ``[0, horizon_s)``: the signals' slots that
    start before the horizon (``signal_bounds_s``, S + 1 values, the first slot holding t = 0, which
    becomes its start), the last one cut at the horizon, or whole hours (:data:`CAP_SLOT_S`) where
    there are no signals."""
    H = float(horizon_s)
    if signal_bounds_s is None:
        n = max(int(math.ceil(H / CAP_SLOT_S - 1e-9)), 1)
        b = np.arange(n + 1, dtype=float) * CAP_SLOT_S
    else:
        b = np.asarray(signal_bounds_s, dtype=float)
        b = b[: int(np.searchsorted(b, H, side="left")) + 1].copy()
    b[-1] = H
    return b


def pool_power_w(bounds_s: np.ndarray, pool: np.ndarray, start_s: np.ndarray, end_s: np.ndarray,
                 charged_j: np.ndarray, n_pools: int, *, idle_pool: np.ndarray | None = None,
                 idle_w: np.ndarray | None = None, horizon_s: float = 0.0) -> np.ndarray:
    """Mean power [W] per (pool, slot), an ``(n_pools, S)`` array: queries (of pool index ``pool``)
    drawing ``charged_j`` [J] uniformly over ``[start_s, end_s)``, plus switched-on instances (of
    pool ``idle_pool``) drawing ``idle_w`` [W] over ``[0, horizon_s)``, per second of each slot."""
    b = np.asarray(bounds_s, dtype=float)
    energy = slot_energy_j(b, start_s, end_s, charged_j, np.asarray(pool, dtype=np.int64), n_pools)
    if idle_pool is not None and idle_w is not None and len(idle_pool):
        zeros = np.zeros(len(idle_pool))
        energy += slot_energy_j(b, zeros, zeros + float(horizon_s), np.asarray(idle_w, dtype=float) * float(horizon_s),
                                np.asarray(idle_pool, dtype=np.int64), n_pools)
    return energy / np.diff(b)[None, :]


def site_members(sites: Mapping[str, Any], pools: Sequence[str]) -> np.ndarray:
    """``(n_sites, n_pools)`` 0/1 floats: which of ``pools`` (names, in the rows' order) each site
    of ``sites`` (:class:`~energyopt.fleet.Site` by name, in order) groups."""
    members = np.zeros((len(sites), len(pools)))
    for i, site in enumerate(sites.values()):
        members[i, [list(pools).index(p) for p in site.pools]] = 1.0
    return members


def site_power_w(pool_power: np.ndarray, members: np.ndarray) -> np.ndarray:
    """Mean power [W] per (site, slot), ``(n_sites, S)``: the sum of its pools' (``pool_power``,
    ``(n_pools, S)`` from :func:`pool_power_w`; ``members`` from :func:`site_members`)."""
    return np.asarray(members, dtype=float) @ np.asarray(pool_power, dtype=float)


def cap_rows(pools: Sequence[str], pool_cap_w: np.ndarray, sites: Sequence[str] = (),
             members: np.ndarray | None = None, site_cap_w: np.ndarray | None = None
             ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Every cap as a row over the pools: ``(labels, rows, cap_w)`` with ``rows`` ``(n_pools +
    n_sites, n_pools)`` 0/1 floats, first each pool alone (``cap_w`` inf where it has no cap), then
    each site; labels ``pool NAME`` and ``site NAME`` as messages name them."""
    labels = [f"pool {p}" for p in pools] + [f"site {s}" for s in sites]
    rows = np.eye(len(pools))
    cap = np.asarray(pool_cap_w, dtype=float)
    if len(sites):
        assert members is not None and site_cap_w is not None
        rows = np.vstack([rows, np.asarray(members, dtype=float)])
        cap = np.concatenate([cap, np.asarray(site_cap_w, dtype=float)])
    return labels, rows, cap


def slot_name(bounds_s: np.ndarray, k: int) -> str:
    """A slot as messages name it: ``slot 3 (t = 5,400-7,200 s)``."""
    return f"slot {k} (t = {bounds_s[k]:,.0f}-{bounds_s[k + 1]:,.0f} s)"
