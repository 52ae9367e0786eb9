"""Routing rules planners use today, returned as a :class:`~energyopt.methods.Choice` like any method.

Each rule picks a deployment per query from those that can run it at all (a valid model, and a
context window that holds the query); it ignores accuracy floors, deadlines and the energy. The
pool's devices are split evenly among the deployments a rule uses (:func:`even_split`); packing
then runs the queries in EDF order on the instance of their deployment that is free first,
however late they end; the plan is priced and checked like every plan, and whatever the rule
misses (accuracy floors, deadlines, the horizon) is counted by the checker, not hidden.
"""

from __future__ import annotations

import numpy as np

from ..problem import Problem
from ..schema import BoundSource, Status, Termination
from . import Choice

__all__ = ["BASELINES", "baseline_names", "baseline_routing", "baseline_choice", "even_split"]

BASELINES = ("round-robin", "random", "most-accurate-fastest", "fastest")


def baseline_names(problem: Problem) -> list[str]:
    return list(BASELINES) + [f"only:{llm}" for llm in sorted(problem.deployments["llm"].unique())]


def baseline_routing(problem: Problem, name: str, seed: int = 0) -> np.ndarray:
    """Deployment index per query (-1 where the rule finds nothing that can run it). Where a fleet
    deployment may run at several batch sizes, a rule runs a query at the largest one whose KV
    cache holds it (as an engine that batches would)."""
    ok = _largest_runnable_batch_size(problem)
    if name == "round-robin":
        return _round_robin(ok)
    if name == "random":
        return _random_runnable(ok, seed)
    if name == "fastest":
        return _fastest(problem, ok)
    if name == "most-accurate-fastest":
        return _most_accurate_fastest(problem, ok)
    if name.startswith("only:"):
        return _only_llm(problem, ok, name.split(":", 1)[1])
    raise ValueError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}, only:<llm>")


def _unrouted(ok: np.ndarray) -> np.ndarray:
    return np.full(ok.shape[0], -1, dtype=np.int64)


def _round_robin(ok: np.ndarray) -> np.ndarray:
    """Each query to the next deployment in turn, after the one the previous query went to, that can run it."""
    out = _unrouted(ok)
    n_q, n_d = ok.shape
    k = 0
    for i in range(n_q):
        for step in range(n_d):
            d = (k + step) % n_d
            if ok[i, d]:
                out[i] = d
                k = d + 1
                break
    return out


def _random_runnable(ok: np.ndarray, seed: int) -> np.ndarray:
    """Each query to a deployment drawn at random among those that can run it."""
    out = _unrouted(ok)
    rng = np.random.default_rng(seed)
    for i in range(ok.shape[0]):
        opts = np.flatnonzero(ok[i])
        if len(opts):
            out[i] = rng.choice(opts)
    return out


def _fastest(problem: Problem, ok: np.ndarray) -> np.ndarray:
    """Each query to the deployment that runs it in the least time."""
    out = _unrouted(ok)
    runtime = np.where(ok, problem.runtime_s, np.inf)
    has = ok.any(axis=1)
    out[has] = np.argmin(runtime[has], axis=1)
    return out


def _most_accurate_fastest(problem: Problem, ok: np.ndarray) -> np.ndarray:
    """The most accurate LLM on its fastest device (median runtime over the batch); a query it
    cannot run goes to the next most accurate LLM."""
    out = _unrouted(ok)
    n_d = ok.shape[1]
    acc = problem.deployments["accuracy"].to_numpy()
    # the median runtime of each deployment over the queries it can run (inf: none)
    med = np.array([np.median(problem.runtime_s[ok[:, d], d]) if ok[:, d].any() else np.inf for d in range(n_d)])
    order = sorted(range(n_d), key=lambda d: (-acc[d], np.nan_to_num(med[d], nan=np.inf)))
    for d in order:
        free = (out < 0) & ok[:, d]
        out[free] = d
    return out


def _only_llm(problem: Problem, ok: np.ndarray, llm: str) -> np.ndarray:
    """Every query to a deployment of ``llm``, spread over its deployments in turn."""
    ds = np.flatnonzero(problem.deployments["llm"].to_numpy() == llm)
    if not len(ds):
        raise ValueError(f"no deployment of {llm}")
    out = _unrouted(ok)
    k = 0
    for i in range(ok.shape[0]):
        for step in range(len(ds)):
            d = ds[(k + step) % len(ds)]
            if ok[i, d]:
                out[i] = d
                k += 1
                break
    return out


def _largest_runnable_batch_size(problem: Problem) -> np.ndarray:
    """[queries × deployments]: the pair can run the query, and no larger batch size of the same
    fleet deployment can."""
    deps = problem.deployments
    ok = problem.runnable.copy()
    sizes = deps["batch_size"].to_numpy()
    for members in deps.groupby("group").indices.values():
        if len(members) < 2:
            continue
        members = members[np.argsort(-sizes[members])]  # largest batch size first
        taken = np.zeros(problem.n_queries, dtype=bool)
        for d in members:
            ok[:, d] &= ~taken
            taken |= problem.runnable[:, d]
    return ok


def even_split(problem: Problem, dep_of_q: np.ndarray) -> np.ndarray:
    """Instances per deployment: each pool's devices split evenly among the deployments the
    routing uses there (at least one instance each, at most the deployment's maximum)."""
    deps = problem.deployments
    n_inst = np.zeros(problem.n_deployments, dtype=np.int64)
    used = np.unique(dep_of_q[dep_of_q >= 0])
    pool_of = deps["device"].to_numpy()
    for pool, cnt in zip(problem.pools["pool"], problem.pools["count"]):
        in_pool = [j for j in used if pool_of[j] == pool]
        for j in in_pool:
            share = int(cnt) // len(in_pool)
            n_inst[j] = max(1, min(int(deps["max_instances"].iloc[j]), share // int(deps["devices_per_instance"].iloc[j])))
    return n_inst


def baseline_choice(problem: Problem, name: str, seed: int = 0) -> Choice:
    """The rule ``name`` as a choice: its routing and an even split of each pool's devices. A rule
    proves no bound (``-inf``); queries it cannot route are left out (``dep_of_q`` −1)."""
    dep_of_q = baseline_routing(problem, name, seed)
    unrouted = int((dep_of_q < 0).sum())
    return Choice(f"baseline:{name}", "-", Status.FEASIBLE, Termination.FEASIBLE, -np.inf, BoundSource.NONE,
                  dep_of_q=dep_of_q, n_inst=even_split(problem, dep_of_q),
                  message=f"{unrouted} queries no deployment can run" if unrouted else "")
