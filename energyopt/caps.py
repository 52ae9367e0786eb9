"""Power caps: the power each device pool draws per time slot, and the slots caps hold in.

A pool's ``power_cap_w`` (fleet TOML) holds in every slot: the energy its queries are charged in
the slot (:func:`~energyopt.accounting.query_energy_cost_j`, drawn uniformly over each query's
``[start_s, end_s)``; :func:`~energyopt.accounting.slot_energy_j`), plus, where idle power is
counted, the idle draw of its switched-on instances (on over the whole horizon), divided by the
slot's length, stays at or under the cap. The slots are the signals' (``--signals``) where a plan
has them, else whole hours from t = 0 (:data:`CAP_SLOT_S`). The planner, the checker and the
report all compute a pool's power with :func:`pool_power_w`.
"""

from __future__ import annotations

import math

import numpy as np

from .accounting import slot_energy_j

__all__ = ["CAP_SLOT_S", "cap_bounds_s", "pool_power_w", "slot_name"]

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


def slot_name(bounds_s: np.ndarray, k: int) -> str:
    """A slot as messages name it: ``slot 3 (t = 5,400-7,200 s)``."""
    return f"slot {k} (t = {bounds_s[k]:,.0f}-{bounds_s[k + 1]:,.0f} s)"
