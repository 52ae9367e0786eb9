"""The fleet: device pools, LLM catalog, deployments and the time horizon, read from TOML.

Example::

    horizon_s = 3600                      # every query must finish within this [s]

    [pools.h100]
    kind = "gpu"                          # gpu or cpu
    count = 4                             # devices in the pool
    memory_gb = 80                        # per device
    idle_power_w = 70                     # per device, drawn while switched on
    power_cap_w = 2000                    # optional: the most the pool may draw in any slot [W]

    [llms.falcon-7b]
    accuracy = 0.262                      # 0-1, e.g. MMLU 5-shot / 100
    accuracy_source = "Touvron et al. 2023, Table 3"
    params_b = 7.22                       # parameters [billions]
    bytes_per_param = 2                   # bf16
    context_tokens = 2048                 # input + output must fit
    kv_bytes_per_token = 524288           # KV cache per token of context [bytes]; needed for batch sizes > 1

    [sites.hall-a]                        # optional: pools that share a feed
    pools = ["h100", "h200"]              # fleet pools, each in one site at most
    power_cap_w = 3000                    # the most the site's pools may draw together in any slot [W]

    [[deployments]]
    llm = "falcon-7b"
    pool = "h100"
    devices_per_instance = 1
    max_instances = 4                     # optional; default: as many as the pool holds
    batch_sizes = [1, 8, 32]              # optional (or batch_size = 8); default [1]

An instance at batch size b serves b queries at once: it is b *lanes*, each running its queries
one after another, each query costing the batch-b prediction of the models. Where a deployment
allows several batch sizes, the plan chooses one per instance. The KV cache of b lanes at the
longest context an instance's queries need must fit beside the weights:
``weights × MEMORY_OVERHEAD + b × kv_bytes_per_token × context ≤ memory_gb × devices``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import DataError, excerpt, key_text, one_line, unknown_key_hint
from .io import read_toml_document

__all__ = ["Pool", "Site", "LLMInfo", "Deployment", "Fleet", "read_fleet", "fleet_from_dict", "MEMORY_OVERHEAD", "GB"]

#: weights' memory × this factor must fit in the instance's memory (KV cache and activations)
MEMORY_OVERHEAD = 1.2
#: bytes in one GB (the fleet's memory_gb and an LLM's weights are in 10^9 bytes)
GB = 1e9

_POOL_KEYS = ("kind", "count", "memory_gb", "idle_power_w", "power_cap_w")
_LLM_KEYS = ("accuracy", "accuracy_source", "params_b", "bytes_per_param", "context_tokens", "kv_bytes_per_token")
_SITE_KEYS = ("pools", "power_cap_w")
_DEPLOYMENT_KEYS = ("llm", "pool", "devices_per_instance", "max_instances", "batch_size", "batch_sizes")


@dataclass(frozen=True)
class Pool:
    name: str
    kind: str
    count: int
    memory_gb: float
    idle_power_w: float
    # the most power [W] the pool's instances may draw together in any time slot (None: no cap)
    power_cap_w: float | None = None


@dataclass(frozen=True)
class Site:
    """Pools that share a power feed: together they may draw at most ``power_cap_w`` [W] in any
    time slot (the sum of their powers as :func:`~energyopt.caps.pool_power_w` computes them)."""

    name: str
    pools: tuple[str, ...]
    power_cap_w: float


@dataclass(frozen=True)
class LLMInfo:
    name: str
    accuracy: float
    accuracy_source: str
    params_b: float
    bytes_per_param: float = 2.0
    context_tokens: int | None = None
    kv_bytes_per_token: float | None = None  # KV cache per token of context [bytes]

    @property
    def memory_gb(self) -> float:
        return self.params_b * self.bytes_per_param


@dataclass(frozen=True)
class Deployment:
    llm: str
    pool: str
    devices_per_instance: int
    max_instances: int
    batch_sizes: tuple[int, ...] = (1,)  # the batch sizes an instance may run at

    @property
    def name(self) -> str:
        return f"{self.llm}@{self.pool}"


@dataclass
class Fleet:
    pools: dict[str, Pool]
    llms: dict[str, LLMInfo]
    deployments: list[Deployment]
    horizon_s: float
    source: str = "<memory>"
    meta: dict[str, Any] = field(default_factory=dict)
    #: sites grouping pools under a shared power cap (``[sites.NAME]``), in the file's order
    sites: dict[str, Site] = field(default_factory=dict)

    def instance_idle_power_w(self, d: Deployment) -> float:
        """An instance's idle draw [W]: its pool's idle power per device times its devices."""
        return self.pools[d.pool].idle_power_w * d.devices_per_instance

    @property
    def has_power_caps(self) -> bool:
        """Whether some pool or site has a ``power_cap_w``."""
        return bool(self.sites) or any(p.power_cap_w is not None for p in self.pools.values())

    @property
    def batched(self) -> bool:
        """Whether any deployment runs at a batch size above 1."""
        return any(b > 1 for d in self.deployments for b in d.batch_sizes)

    def deployments_table(self) -> pd.DataFrame:
        """One row per deployment and batch size it may run at (the problem's "deployments"), with
        what the problem builder needs; ``group`` is the deployment's index in the fleet (its
        batch sizes share its ``max_instances``), ``lanes`` the queries an instance runs at once,
        ``kv_context_tokens`` the longest context whose KV cache fits ``lanes`` times beside the
        weights."""
        rows = []
        for g, d in enumerate(self.deployments):
            p = self.pools[d.pool]
            m = self.llms[d.llm]
            for b in d.batch_sizes:
                rows.append(
                    {
                        "deployment": d.name if d.batch_sizes == (1,) else f"{d.name}/b{b}",
                        "llm": d.llm,
                        "device": d.pool,
                        "kind": p.kind,
                        "devices_per_instance": d.devices_per_instance,
                        "max_instances": d.max_instances,
                        "accuracy": m.accuracy,
                        "context_tokens": m.context_tokens if m.context_tokens else 10**12,
                        "idle_power_w": self.instance_idle_power_w(d),
                        "group": g,
                        "batch_size": b,
                        "lanes": b,
                        "kv_context_tokens": kv_context_tokens(p, m, d.devices_per_instance, b),
                    }
                )
        return pd.DataFrame(rows)


def kv_context_tokens(pool: Pool, llm: LLMInfo, devices: int, batch_size: int) -> int:
    """The longest context [tokens] whose KV cache, ``batch_size`` times, fits beside the weights
    in an instance of ``devices`` devices of ``pool`` (no limit at batch size 1: the weights'
    ``MEMORY_OVERHEAD`` covers one query's cache, as it always has)."""
    if batch_size == 1 or llm.kv_bytes_per_token is None:
        return 10**12
    free_bytes = (pool.memory_gb * devices - llm.memory_gb * MEMORY_OVERHEAD) * GB
    tokens = free_bytes // (batch_size * llm.kv_bytes_per_token)
    if not tokens > 0:  # none left, or NaN where memories too large for a float were subtracted
        return 0
    return int(min(tokens, 10**12))


def _no_unknown_keys(table: dict[str, Any], known: tuple[str, ...], where: str, path: Path) -> None:
    """A key the reader does not know is an error (a typo must not drop a limit silently)."""
    for key in table:
        if key not in known:
            raise DataError(f"{path}: unknown key {where}.{key_text(key)}{unknown_key_hint(key, known)}")


def _batch_sizes(t: dict[str, Any], where: str, path: Path) -> tuple[int, ...]:
    if "batch_size" in t and "batch_sizes" in t:
        raise DataError(f"{path}: key {where}: give batch_size or batch_sizes, not both")
    raw = t.get("batch_sizes", [t.get("batch_size", 1)])
    if not isinstance(raw, list) or not raw:
        raise DataError(f"{path}: key {where}.batch_sizes must be a non-empty list of whole numbers >= 1, got {excerpt(raw)}")
    for b in raw:
        if not isinstance(b, int) or isinstance(b, bool) or b < 1:
            key = "batch_sizes" if "batch_sizes" in t else "batch_size"
            raise DataError(f"{path}: key {where}.{key} must hold whole numbers >= 1, got {excerpt(b)}")
    if len(set(raw)) != len(raw):
        raise DataError(f"{path}: key {where}.batch_sizes lists a batch size twice: {excerpt(raw)}")
    return tuple(sorted(raw))


def _need(table: dict[str, Any], key: str, typ: type | tuple[type, ...], where: str, path: Path) -> Any:
    if key not in table:
        raise DataError(f"{path}: key {where}.{key} is missing")
    val = table[key]
    if isinstance(val, bool) or not isinstance(val, typ):
        names = typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
        raise DataError(f"{path}: key {where}.{key} must be {names}, got {excerpt(val)}")
    return val


def read_fleet(path: str | Path) -> Fleet:
    """Read and validate a fleet TOML file (see the module docstring for the layout)."""
    p = Path(path)
    return fleet_from_dict(read_toml_document(p), p)


def fleet_from_dict(doc: dict[str, Any], path: Path | str = "<fleet>") -> Fleet:
    """Validate a fleet document (the parsed TOML) and build the :class:`Fleet`; ``path`` names it in errors."""
    p = Path(path)
    _check_finite_numbers(doc, p)
    _check_top_level_keys(doc, p)
    horizon = _read_horizon(doc, p)
    pools = _read_pools(doc, p)
    llms = _read_llms(doc, p)
    deployments = _read_deployments(doc, pools, llms, p)
    sites = _read_sites(doc, pools, p)
    meta: dict[str, Any] = {key: doc[key] for key in ("name", "description") if key in doc}
    return Fleet(pools, llms, deployments, horizon, str(p), meta, sites)


def _check_finite_numbers(doc: dict[str, Any], p: Path) -> None:
    """Every number anywhere in the fleet is finite: TOML's nan and inf (and a float too large,
    such as 1e400) are errors naming the key, whatever the key (a NaN compares false with every
    bound, so a range check alone lets it through)."""
    stack: list[tuple[str, Any]] = [(key_text(k), v) for k, v in reversed(list(doc.items()))]
    while stack:  # depth-first in the file's order, without recursion
        where, value = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            raise DataError(f"{p}: key {where} must be a finite number, got {value}")
        if isinstance(value, dict):
            stack.extend((f"{where}.{key_text(k)}", v) for k, v in reversed(list(value.items())))
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", v) for i, v in reversed(list(enumerate(value))))


def _check_top_level_keys(doc: dict[str, Any], p: Path) -> None:
    known = {"horizon_s", "pools", "llms", "deployments", "sites", "name", "description"}
    unknown = sorted(set(doc) - known)
    if unknown:
        raise DataError(f"{p}: unknown top-level key(s) {one_line(', '.join(map(key_text, unknown)))}; "
                        f"expected {', '.join(sorted(known))}")


def _read_horizon(doc: dict[str, Any], p: Path) -> float:
    horizon = _need(doc, "horizon_s", (int, float), "<top>", p)
    if not horizon > 0 or not math.isfinite(horizon):
        raise DataError(f"{p}: key horizon_s must be > 0 seconds, got {horizon}")
    return float(horizon)


def _table_at(t: Any, known: tuple[str, ...], w: str, p: Path) -> dict[str, Any]:
    """``t`` checked to be a table (the entry ``w`` of the document) holding only ``known`` keys."""
    if not isinstance(t, dict):
        raise DataError(f"{p}: key {w} must be a table")
    _no_unknown_keys(t, known, w, p)
    return t


def _read_pools(doc: dict[str, Any], p: Path) -> dict[str, Pool]:
    pools_doc = _need(doc, "pools", dict, "<top>", p)
    if not pools_doc:
        raise DataError(f"{p}: key pools is empty; expected at least one device pool")
    return {name: _read_pool(name, _table_at(t, _POOL_KEYS, f"pools.{key_text(name)}", p), p) for name, t in pools_doc.items()}


def _read_pool(name: str, t: dict[str, Any], p: Path) -> Pool:
    w = f"pools.{key_text(name)}"
    kind = _need(t, "kind", str, w, p)
    if kind not in ("gpu", "cpu"):
        raise DataError(f"{p}: key {w}.kind must be 'gpu' or 'cpu', got {excerpt(kind)}")
    count = _need(t, "count", int, w, p)
    if count < 1:
        raise DataError(f"{p}: key {w}.count must be >= 1, got {count}")
    mem = _need(t, "memory_gb", (int, float), w, p)
    idle = _need(t, "idle_power_w", (int, float), w, p)
    if mem <= 0 or idle < 0:
        raise DataError(f"{p}: key {w}: memory_gb must be > 0 and idle_power_w >= 0")
    cap = t.get("power_cap_w")
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, (int, float)) or not cap > 0):
        raise DataError(f"{p}: key {w}.power_cap_w must be a number of watts > 0, got {excerpt(cap)}")
    return Pool(name, kind, count, float(mem), float(idle), None if cap is None else float(cap))


def _read_sites(doc: dict[str, Any], pools: dict[str, Pool], p: Path) -> dict[str, Site]:
    """``[sites.NAME]`` tables: each names fleet pools (each pool in one site at most) and the
    power cap [W] they share."""
    if "sites" not in doc:
        return {}
    sites_doc = _need(doc, "sites", dict, "<top>", p)
    sites: dict[str, Site] = {}
    site_of: dict[str, str] = {}
    for name, entry in sites_doc.items():
        w = f"sites.{key_text(name)}"
        t = _table_at(entry, _SITE_KEYS, w, p)
        members = _need(t, "pools", list, w, p)
        if not members:
            raise DataError(f"{p}: key {w}.pools is empty; expected the names of the pools the site groups")
        for pool in members:
            if not isinstance(pool, str):
                raise DataError(f"{p}: key {w}.pools must hold pool names (strings), got {excerpt(pool)}")
            if pool not in pools:
                raise DataError(f"{p}: key {w}.pools: unknown device pool {excerpt(pool)}; [pools] defines {_names(pools)}")
            if pool in site_of:
                where = "twice" if site_of[pool] == name else f"in site {key_text(site_of[pool])} too"
                raise DataError(f"{p}: key {w}.pools: pool {key_text(pool)} is listed {where}; "
                                "expected each pool in one site at most")
            site_of[pool] = name
        if "power_cap_w" not in t:
            raise DataError(f"{p}: key {w}.power_cap_w is missing; expected the watts the site's pools may draw together")
        cap = t["power_cap_w"]
        if not _is_positive_finite_number(cap):
            raise DataError(f"{p}: key {w}.power_cap_w must be a number of watts > 0, got {excerpt(cap)}")
        sites[name] = Site(name, tuple(members), float(cap))
    return sites


def _read_llms(doc: dict[str, Any], p: Path) -> dict[str, LLMInfo]:
    llms_doc = _need(doc, "llms", dict, "<top>", p)
    return {name: _read_llm(name, _table_at(t, _LLM_KEYS, f"llms.{key_text(name)}", p), p) for name, t in llms_doc.items()}


def _read_llm(name: str, t: dict[str, Any], p: Path) -> LLMInfo:
    w = f"llms.{key_text(name)}"
    acc = _need(t, "accuracy", (int, float), w, p)
    if not 0 <= acc <= 1:
        raise DataError(f"{p}: key {w}.accuracy must be in [0, 1], got {acc}")
    src = _need(t, "accuracy_source", str, w, p)
    params = _need(t, "params_b", (int, float), w, p)
    bpp = t.get("bytes_per_param", 2.0)
    ctx = t.get("context_tokens")
    if params <= 0 or not isinstance(bpp, (int, float)) or bpp <= 0:
        raise DataError(f"{p}: key {w}: params_b and bytes_per_param must be > 0")
    if ctx is not None and (not isinstance(ctx, int) or ctx < 2):
        raise DataError(f"{p}: key {w}.context_tokens must be a whole number >= 2, got {excerpt(ctx)}")
    kv = t.get("kv_bytes_per_token")
    if kv is not None and not _is_positive_finite_number(kv):
        raise DataError(f"{p}: key {w}.kv_bytes_per_token must be a number > 0 [bytes], got {excerpt(kv)}")
    return LLMInfo(name, float(acc), src, float(params), float(bpp), ctx, None if kv is None else float(kv))


def _names(table: dict[str, Any]) -> str:
    """The names a fleet table defines, for a message (cut past a line's worth)."""
    return one_line(", ".join(key_text(n) for n in sorted(table)), 200)


def _is_positive_finite_number(x: Any) -> bool:
    return not isinstance(x, bool) and isinstance(x, (int, float)) and x > 0 and math.isfinite(x)


def _is_whole_number_at_least_1(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 1


def _read_deployments(doc: dict[str, Any], pools: dict[str, Pool], llms: dict[str, LLMInfo], p: Path) -> list[Deployment]:
    deps_doc = _need(doc, "deployments", list, "<top>", p)
    if not deps_doc:
        raise DataError(f"{p}: key deployments is empty; expected at least one")
    deployments: list[Deployment] = []
    seen: set[tuple[str, str]] = set()
    for i, entry in enumerate(deps_doc):
        w = f"deployments[{i}]"
        t = _table_at(entry, _DEPLOYMENT_KEYS, w, p)
        llm, pool = _read_llm_and_pool(t, w, pools, llms, p)
        if (llm, pool) in seen:
            raise DataError(f"{p}: key {w}: {key_text(llm)} on {key_text(pool)} is deployed twice")
        seen.add((llm, pool))
        deployments.append(_read_instances(t, w, llms[llm], pools[pool], p))
    return deployments


def _read_llm_and_pool(t: dict[str, Any], w: str, pools: dict[str, Pool], llms: dict[str, LLMInfo], p: Path) -> tuple[str, str]:
    """The LLM and the device pool a deployment names, both defined in the fleet."""
    llm = _need(t, "llm", str, w, p)
    pool = _need(t, "pool", str, w, p)
    if llm not in llms:
        raise DataError(f"{p}: key {w}.llm: unknown LLM {excerpt(llm)}; [llms] defines {_names(llms)}")
    if pool not in pools:
        raise DataError(f"{p}: key {w}.pool: unknown device pool {excerpt(pool)}; [pools] defines {_names(pools)}")
    return llm, pool


def _read_instances(t: dict[str, Any], w: str, llm: LLMInfo, pool: Pool, p: Path) -> Deployment:
    """The deployment of ``llm`` on ``pool``: devices per instance, how many instances, batch sizes."""
    k = t.get("devices_per_instance", 1)
    if not _is_whole_number_at_least_1(k):
        raise DataError(f"{p}: key {w}.devices_per_instance must be a whole number >= 1, got {excerpt(k)}")
    cap = pool.count // k
    if cap < 1:
        raise DataError(f"{p}: key {w}: an instance needs {k} devices but pool {key_text(pool.name)} has {pool.count}")
    m = t.get("max_instances", cap)
    if not _is_whole_number_at_least_1(m):
        raise DataError(f"{p}: key {w}.max_instances must be a whole number >= 1, got {excerpt(m)}")
    _check_weights_fit(llm, pool, k, w, p)
    sizes = _batch_sizes(t, w, p)
    if max(sizes) > 1 and llm.kv_bytes_per_token is None:
        raise DataError(f"{p}: key llms.{key_text(llm.name)}.kv_bytes_per_token is missing; {w} runs at batch sizes "
                        f"{list(sizes)}, whose KV cache must be checked against the memory")
    return Deployment(llm.name, pool.name, k, min(m, cap), sizes)


def _check_weights_fit(llm: LLMInfo, pool: Pool, k: int, w: str, p: Path) -> None:
    need = llm.memory_gb * MEMORY_OVERHEAD
    have = pool.memory_gb * k
    if need > have:
        raise DataError(
            f"{p}: key {w}: {key_text(llm.name)} needs {need:.0f} GB ({llm.memory_gb:.0f} GB of weights x "
            f"{MEMORY_OVERHEAD}) but an instance of {k} x {key_text(pool.name)} has {have:.0f} GB; raise devices_per_instance"
        )
