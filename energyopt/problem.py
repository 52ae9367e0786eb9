"""The planning problem: every (query, deployment) option that can serve a query, with its cost.

A *deployment* is one LLM on one device pool with a number of devices per instance. An option of
a query is a deployment whose LLM meets the query's accuracy floor, whose context window holds the
query, and whose predicted runtime fits before the query's deadline and the horizon. Options a
published model predicts at <= 0 J or s are dropped (counted in ``excluded_invalid``): a negative
prediction must never make an option look free. A prefill-only query (0 output tokens) is
predicted as one with 1 output token (:func:`~energyopt.accounting.planned_output_tokens`): its
prefill yields the first token, and the models predict for one output token or more.

``extrapolated`` flags every (query, deployment) pair whose prediction lies outside the token
ranges (or batch sizes) the pair's models were measured on. Such a pair stays an option, and the
summary of a plan counts the queries that rest on one; with ``strict_range=True`` it is not an
option (nor ``runnable``), and a query left with none is unservable with a reason naming the
ranges.

Objective coefficients (``cost``):

* ``energy`` — predicted energy [J] of the query on that deployment. With ``idle=True`` the
  energy above the instance's idle power, ``max(E - P_idle·t, 0)``, plus, per switched-on instance,
  ``P_idle × horizon``: a device that is on costs its idle energy whether busy or not, and one
  with no work can be off.
* ``tradeoff`` — the paper's ζ·(energy / E_norm) − (1 − ζ)·(w_q·accuracy / A_norm), with each
  query's own costs; E_norm = Σ_q max_option E and A_norm = Σ_q w_q · max accuracy are computed
  once over the batch, so the objective stays linear. ``w_q`` = input + output tokens.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from .accounting import effective_deadline_s, idle_energy_j, planned_output_tokens, query_energy_cost_j, token_weight
from .errors import DataError
from .fleet import Fleet
from .inputs import Inputs
from .modelstore import FittedModels
from .progress import phase
from .timeslots import SlotPrices

__all__ = ["Problem", "build_problem", "option_cost", "OBJECTIVES", "with_slots"]

OBJECTIVES = ("energy", "tradeoff")


@dataclass
class Problem:
    """Every option as dense [queries × deployments] arrays: ``ok`` says which pairs are options,
    ``cost`` is each option's objective coefficient (+inf where not an option). :attr:`cand`, the
    same options as a table (one row each), is built on first use."""

    # query_id, input_tokens, output_tokens, min_accuracy, deadline_s, release_s, weight, deadline_eff_s
    queries: pd.DataFrame
    # deployment, llm, device, kind, devices_per_instance, max_instances, accuracy, idle_power_w, pool_count
    deployments: pd.DataFrame
    ok: np.ndarray  # [n_q, n_d] the pair is an option
    cost: np.ndarray  # [n_q, n_d] objective coefficient of each option; +inf where not an option
    energy_j: np.ndarray  # [n_q, n_d] predicted energy on every deployment (0 where the prediction is invalid)
    runtime_s: np.ndarray  # [n_q, n_d]
    # [n_q, n_d] the model's prediction is valid (with strict_range: and not extrapolated) and the LLM's context
    # holds the query
    runnable: np.ndarray
    extrapolated: np.ndarray  # [n_q, n_d] the prediction lies outside the token ranges (or batch sizes) measured
    instance_cost: np.ndarray  # [n_d] objective cost of switching one instance on
    pools: pd.DataFrame  # pool, count
    horizon_s: float
    objective: str = "energy"
    zeta: float = 0.5
    idle: bool = False
    min_mean_accuracy: float | None = None
    strict_range: bool = False  # extrapolated predictions are not options
    unservable: pd.DataFrame = field(default_factory=pd.DataFrame)  # query_id, reason
    excluded_invalid: int = 0
    excluded_invalid_by: dict[str, int] = field(default_factory=dict)  # the same per deployment with any
    norms: dict[str, float] = field(default_factory=dict)
    # the raw inputs (workload, fleet, models), for the independent checker
    inputs: Inputs | None = None
    # time slots and their prices (objective carbon or cost, or a fleet with power caps): the plan moves
    # work in time, ``cost`` stays each option's charged energy [J] and the slots price it
    slots: SlotPrices | None = None

    @property
    def n_queries(self) -> int:
        return len(self.queries)

    @property
    def n_deployments(self) -> int:
        return len(self.deployments)

    @property
    def n_options(self) -> int:
        return int(np.count_nonzero(self.ok))

    @property
    def release_s(self) -> np.ndarray:
        """Each query's release [s] from the batch start (0 for all where the workload gives none)."""
        if "release_s" not in self.queries.columns:
            return np.zeros(self.n_queries)
        return self.queries["release_s"].to_numpy(dtype=float)

    @property
    def has_releases(self) -> bool:
        """Whether some query is released after t = 0 (then EDF per lane is a heuristic, not exact)."""
        return bool(np.any(self.release_s > 0))

    @cached_property
    def cand(self) -> pd.DataFrame:
        """The options as a table, one row each, grouped by query in deployment order: ``q``,
        ``d``, ``energy_j``, ``runtime_s``, ``accuracy``, ``deadline_eff_s``, ``cost``, ``release_s``.
        Option ``c`` of the formulations is row ``c``."""
        flat = np.flatnonzero(self.ok)  # row-major: options grouped by query, in deployment order
        qi, di = np.divmod(flat, self.n_deployments)
        acc = self.deployments["accuracy"].to_numpy(dtype=float)
        return pd.DataFrame({"q": qi, "d": di, "energy_j": self.energy_j.ravel()[flat],
                             "runtime_s": self.runtime_s.ravel()[flat], "accuracy": acc[di],
                             "deadline_eff_s": self.queries["deadline_eff_s"].to_numpy()[qi],
                             "cost": self.cost.ravel()[flat], "release_s": self.release_s[qi]})

    def pair_cost(self, q: np.ndarray, d: np.ndarray) -> np.ndarray:
        """The objective coefficient of queries ``q`` on deployments ``d`` (index arrays), whether or
        not the pair is an option (a routing rule may pick one that misses a floor or a deadline):
        the formula of :func:`option_cost`, priced from the predictions."""
        deps = self.deployments
        return option_cost(self.energy_j[q, d], self.runtime_s[q, d], deps["idle_power_w"].to_numpy(dtype=float)[d],
                           self.queries["weight"].to_numpy(dtype=float)[q], deps["accuracy"].to_numpy(dtype=float)[d],
                           objective=self.objective, zeta=self.zeta, idle=self.idle, norms=self.norms,
                           lanes=deps["lanes"].to_numpy(dtype=float)[d])

    def max_mean_accuracy(self) -> float:
        """The most token-weighted mean accuracy a plan can reach: every query (that has an
        option) on its most accurate option."""
        acc = self.deployments["accuracy"].to_numpy(dtype=float)
        best = np.where(self.ok, acc[None, :], -np.inf).max(axis=1)
        has = np.isfinite(best)
        w = self.queries["weight"].to_numpy(dtype=float)[has]
        return float(np.sum(w * best[has]) / w.sum())

    def describe(self) -> dict[str, Any]:
        return {
            "queries": self.n_queries,
            "deployments": self.n_deployments,
            "options": self.n_options,
            "unservable": len(self.unservable),
            "excluded_invalid_predictions": self.excluded_invalid,
        }


def option_cost(energy_j, runtime_s, idle_power_w, weight, accuracy, *, objective: str, zeta: float, idle: bool,
                norms: dict[str, float], lanes=1) -> np.ndarray:
    """The objective coefficient of running queries on deployments (arrays broadcast): the energy
    a query is charged (:func:`~energyopt.accounting.query_energy_cost_j`), or for the trade-off
    ζ·energy/E_norm − (1−ζ)·w·accuracy/A_norm with the batch's normalisers ``norms``."""
    energy_cost = query_energy_cost_j(energy_j, runtime_s, idle_power_w, idle=idle, lanes=lanes)
    if objective == "tradeoff":
        return zeta * energy_cost / norms["energy_norm_j"] - (1 - zeta) * weight * accuracy / norms["accuracy_norm"]
    return energy_cost


def _check_models(fleet: Fleet, models: FittedModels) -> None:
    missing = [d.name for d in fleet.deployments if (d.llm, d.pool) not in models]
    if missing:
        raise DataError(
            f"{fleet.source}: no fitted model for deployment(s) {', '.join(missing)}; "
            f"fit them (energyopt fit) or remove them from the fleet"
        )


def _outside_ranges_reason(row: Any, deps: pd.DataFrame, models: FittedModels, candidates: np.ndarray,
                           ranges_of: dict[bytes, str]) -> str:
    """Why a query has no option under ``strict_range``: its token counts and each range measured
    for the (LLM, device) pairs of its ``candidates`` (deployments it could otherwise run on), with
    up to two pairs named per range (the text of each set of candidates is kept in ``ranges_of``)."""
    key = candidates.tobytes()
    if key not in ranges_of:
        by_range: dict[tuple[tuple[int, int], tuple[int, int]], list[str]] = {}
        for llm, dev in dict.fromkeys(zip(deps["llm"].to_numpy()[candidates], deps["device"].to_numpy()[candidates])):
            tokens_in, tokens_out, _ = models.measured_ranges(llm, dev)
            by_range.setdefault((tokens_in, tokens_out), []).append(f"{llm}/{dev}")
        ranges_of[key] = "; ".join(
            f"input {a}-{b} and output {c}-{d} for {', '.join(names[:2])}"
            + (f" and {len(names) - 2} more" if len(names) > 2 else "")
            for ((a, b), (c, d)), names in by_range.items())
    return (f"{row.input_tokens} input and {row.output_tokens} output tokens lie outside the token ranges measured "
            f"for every accurate-enough option ({ranges_of[key]}); --strict-range refuses extrapolated predictions")


def build_problem(
    workload: pd.DataFrame,
    fleet: Fleet,
    models: FittedModels,
    *,
    objective: str = "energy",
    zeta: float = 0.5,
    idle: bool = False,
    min_mean_accuracy: float | None = None,
    strict_range: bool = False,
) -> Problem:
    """Candidate options and their costs for a workload on a fleet. ``strict_range``: a pair whose
    prediction is extrapolated (outside the token ranges measured) is not an option."""
    if objective not in OBJECTIVES:
        raise DataError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if not 0 <= zeta <= 1:
        raise DataError(f"zeta must be in [0, 1], got {zeta}")
    if min_mean_accuracy is not None and not 0 <= min_mean_accuracy <= 1:
        raise DataError(f"min_mean_accuracy must be in [0, 1], got {min_mean_accuracy}")
    if workload.empty:
        raise DataError("the workload has no queries")
    _check_models(fleet, models)
    H = fleet.horizon_s
    q = workload[["query_id", "input_tokens", "output_tokens", "min_accuracy", "deadline_s"]].reset_index(drop=True).copy()
    q["release_s"] = (np.nan_to_num(workload["release_s"].to_numpy(dtype=float), nan=0.0)
                      if "release_s" in workload.columns else np.zeros(len(q)))
    q["weight"] = token_weight(q["input_tokens"], q["output_tokens"])
    q["deadline_eff_s"] = effective_deadline_s(q["deadline_s"].to_numpy(dtype=float), H)
    deps = fleet.deployments_table()
    deps["pool_count"] = deps["device"].map({n: p.count for n, p in fleet.pools.items()})
    n_d = len(deps)
    tin = q["input_tokens"].to_numpy()
    tout = q["output_tokens"].to_numpy()
    pairs = list(zip(deps["llm"], deps["device"]))
    # the one place the problem asks the models: a prefill-only query (0 output tokens) as 1 output token
    tout_planned = planned_output_tokens(tout)
    with phase(f"problem: energy and runtime of {len(q):,} queries on {n_d} deployments"):
        E, R, valid = models.predict_matrix(pairs, tin, tout_planned, deps["batch_size"].tolist())
        extrapolated = models.extrapolated_matrix(pairs, tin, tout_planned, deps["batch_size"].tolist())
    usable = valid & ~extrapolated if strict_range else valid  # a prediction the plan may rest on
    acc = deps["accuracy"].to_numpy()
    # the LLM's context window, and the KV cache of an instance's lanes at the query's context
    window_ok = (tin + tout)[:, None] <= deps["context_tokens"].to_numpy()[None, :]
    ctx_ok = window_ok & ((tin + tout)[:, None] <= deps["kv_context_tokens"].to_numpy()[None, :])
    acc_ok = acc[None, :] >= q["min_accuracy"].to_numpy()[:, None] - 1e-12
    # released at release_s, a query ends no earlier than release + runtime (without releases, 0 + R is R:
    # the same comparison without a [queries × deployments] sum)
    release = q["release_s"].to_numpy()
    due = q["deadline_eff_s"].to_numpy()[:, None]
    time_ok = due >= (release[:, None] + R if release.any() else R)
    time_ok &= usable  # NaN-safe
    fits = acc_ok & ctx_ok
    ok = fits & time_ok
    invalid = fits & ~valid
    del fits
    invalid_by = np.count_nonzero(invalid, axis=0)
    excluded_invalid = int(invalid_by.sum())
    excluded_invalid_by = {str(deps.deployment[j]): int(n) for j, n in enumerate(invalid_by) if n}

    # why a query has no option: the first requirement that no deployment meets
    no_opt = ~ok.any(axis=1)
    reasons = []
    ranges_of: dict[bytes, str] = {}
    for i in np.flatnonzero(no_opt):
        row = q.iloc[i]
        if not acc_ok[i].any():
            msg = f"needs accuracy >= {row.min_accuracy:g}; the best LLM in the fleet has {acc.max():g}"
        elif not (acc_ok[i] & window_ok[i]).any():
            msg = f"{row.input_tokens + row.output_tokens} tokens exceed the context of every LLM accurate enough"
        elif not (acc_ok[i] & ctx_ok[i]).any():
            msg = (f"{row.input_tokens + row.output_tokens} tokens do not fit the KV cache that the lanes of every "
                   "accurate-enough deployment leave room for at its batch sizes")
        elif not (acc_ok[i] & ctx_ok[i] & valid[i]).any():
            msg = "every accurate-enough option's model predicts <= 0 for this query (outside its valid domain)"
        elif not (acc_ok[i] & ctx_ok[i] & usable[i]).any():
            msg = _outside_ranges_reason(row, deps, models, acc_ok[i] & ctx_ok[i] & valid[i], ranges_of)
        else:
            cand_r = np.where(acc_ok[i] & ctx_ok[i] & usable[i], R[i], np.inf)
            j = int(np.argmin(cand_r))
            limit = "deadline" if not np.isnan(row.deadline_s) and row.deadline_s <= H else "horizon"
            if row.release_s > 0:  # the release is what binds: it could end in time from t = 0
                msg = (f"released at {row.release_s:.6g} s, its fastest accurate-enough option ({deps.deployment[j]}) "
                       f"takes {cand_r[j]:.3g} s and ends at {row.release_s + cand_r[j]:.6g} s at the earliest, "
                       f"after its {limit} of {row.deadline_eff_s:.6g} s")
            else:
                msg = (f"fastest accurate-enough option ({deps.deployment[j]}) takes {cand_r[j]:.3g} s, "
                       f"more than its {limit} of {row.deadline_eff_s:.3g} s")
        reasons.append({"query_id": row.query_id, "reason": msg})
    unservable = pd.DataFrame(reasons, columns=["query_id", "reason"])

    idle_w = deps["idle_power_w"].to_numpy(dtype=float)
    inst_cost = idle_energy_j(idle_w, H) if idle else np.zeros(n_d)
    norms: dict[str, float] = {}
    if objective == "tradeoff":
        Eok = np.where(ok, E, -np.inf)
        e_norm = float(np.sum(np.max(Eok, axis=1)[~no_opt])) or 1.0
        a_norm = float(np.sum(q["weight"].to_numpy()[~no_opt]) * acc.max()) or 1.0
        inst_cost = zeta * inst_cost / e_norm
        norms = {"energy_norm_j": e_norm, "accuracy_norm": a_norm}
    with phase(f"problem: costs of {len(q):,} × {n_d} options"):
        cost = option_cost(E, R, idle_w[None, :], q["weight"].to_numpy()[:, None], acc[None, :], objective=objective,
                           zeta=zeta, idle=idle, norms=norms, lanes=deps["lanes"].to_numpy(dtype=float)[None, :])
        cost = np.where(ok, cost, np.inf)
    pools = pd.DataFrame([{"pool": p.name, "count": p.count} for p in fleet.pools.values()])
    return Problem(
        queries=q,
        deployments=deps,
        ok=ok,
        cost=cost,
        energy_j=E,
        runtime_s=R,
        runnable=usable & ctx_ok,
        extrapolated=extrapolated,
        instance_cost=inst_cost,
        pools=pools,
        horizon_s=H,
        objective=objective,
        zeta=zeta,
        idle=idle,
        min_mean_accuracy=min_mean_accuracy,
        strict_range=strict_range,
        unservable=unservable,
        excluded_invalid=excluded_invalid,
        excluded_invalid_by=excluded_invalid_by,
        norms=norms,
        inputs=Inputs(workload, fleet, models),
    )


def with_slots(problem: Problem, slots: SlotPrices) -> Problem:
    """The problem planned per time slot: its options' ``cost`` stays their charged energy [J]
    (the problem must be built for energy), its objective becomes ``slots.objective``, and an
    instance costs its idle draw priced over every slot (:meth:`SlotPrices.instance_price`)."""
    if problem.objective != "energy":
        raise DataError(f"planning per time slot (objective {slots.objective}, or power caps) prices energy; "
                        f"--objective {problem.objective} is not supported with it")
    pool_of = np.array([slots.pools.index(p) for p in problem.deployments["device"]], dtype=np.int64)
    idle_w = problem.deployments["idle_power_w"].to_numpy(dtype=float)
    inst = slots.instance_price(pool_of, idle_w) if problem.idle else np.zeros(problem.n_deployments)
    return dataclasses.replace(problem, objective=slots.objective, slots=slots, instance_cost=inst)
