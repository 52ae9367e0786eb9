"""Distributed planning: a batch too large for one machine, planned by the decomposition
(:mod:`energyopt.methods.decompose`) with its queries in partitions on workers.

Each partition is a contiguous range of the workload file's rows (:mod:`energyopt.partitions`),
read by a long-lived worker (a Ray actor, or an object in this process with ``executor="local"``)
that builds its queries' options (:func:`~energyopt.problem.build_problem`) and keeps them. The
driver holds a few numbers per query (deadline, release, token weight, and the chosen option's
deployment, runtime and cost), never a (queries × deployments) array:

* **Bound.** Prices are found on seeded samples of the batch gathered from the workers (as the
  single-process method samples it), then on all rows: each bundle iteration sends the prices out
  and gets each partition's per-block sums back (:class:`~energyopt.methods.decompose.Partial`:
  the least priced costs, the work due per deployment and deadline level, Σ w·acc), which the
  driver folds in block order. Partitions hold whole blocks, so L, its subgradient, and so the
  prices are those of the single-process method to the last bit; the bound is the sum of the
  partitions' Lagrangian values.
* **Plan.** The workers give each query's least priced option and its flip value at the best
  prices; the driver fixes the clearly decided ones, asks the workers for the nearly tied
  queries' options, and solves those exactly beside the fixed work (the MILP of the
  single-process method, on the same rows). Packing runs in the driver on the chosen options'
  runtimes (a query's other options are fetched only for the late queries that repair moves).
* **Output.** Each worker writes its rows of the plan (``assignment-part-00000.csv`` …) and runs
  the independent checker (:func:`~energyopt.check.check_plan`) on them against its partition of
  the workload; the rules that couple partitions (devices per pool, one batch size per instance,
  no overlap on a lane, the batch's mean accuracy floor, the idle energy of the instances on) are
  checked by the driver on the columns the workers read back from the written files.

Same answer: on a batch that fits one machine, the objective, bound and gap are those of
``plan(..., formulation="decompose")`` and so is the plan (its start and end times included).

Not supported (a one-line error): the trade-off, carbon and cost objectives, signals and power
caps (their normalisers and slots span the batch), arrival times to convert (give ``release_s``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from .accounting import idle_energy_j, relative_gap, token_weight, within_gap
from .check import (
    CheckedRows,
    batch_sizes_and_lanes_valid,
    check_plan,
    instances_within_deployments_and_pools,
    no_overlap_on_a_lane,
    totals_match,
)
from .errors import DataError
from .executors import _import_ray, ray_session
from .fleet import Fleet, read_fleet
from .formulation import build_matrix, level_of
from .methods import Limits, decompose
from .methods.decompose import (
    SOLVE_WHOLE_UP_TO,
    Partial,
    _Dense,
    _flip,
    _fold,
    _instances_needed,
    _move_loss,
    _move_off,
    _price_rows,
    dense_oracle,
    fix_within_capacity,
    maximise_bound,
    price_scales,
    sample_rows,
    sub_problem,
)
from .methods.strong import backend_solve, solve_strong
from .modelstore import FittedModels
from .packing import PlaceJob, Timeline, _repair, pack, place_lanes, plan_objective, timeline_times_s
from .partitions import PartitionSpec, read_partition, split_workload
from .problem import Problem, build_problem
from .progress import phase
from .schedule import _compact_instances, assignment_table, energy_totals, extrapolation_totals
from .schema import BoundSource, Status
from .solvers import Solver, get_solver
from .writers import write_json, write_table_csv

__all__ = ["DistributedResult", "plan_distributed", "PartitionWorker", "EXECUTORS", "part_name"]

EXECUTORS = ("local", "ray")
#: the Lagrangian's deadline levels at most (as the single-process method)
MAX_LEVELS = 24

Progress = Callable[[str], None]


def part_name(index: int) -> str:
    """The file of one partition's rows of the plan."""
    return f"assignment-part-{index:05d}.csv"


# --------------------------------------------------------------------------------------------
# the worker of one partition
# --------------------------------------------------------------------------------------------
class PartitionWorker:
    """One partition's queries and their options, kept between calls (a Ray actor, or an object
    in the driver's process). Every method returns numbers per query or a few totals."""

    def __init__(self, spec: PartitionSpec, fleet_path: str, models_path: str, idle: bool,
                 min_mean_accuracy: float | None, strict_range: bool, block_rows: int):
        self.spec, self.block_rows = spec, block_rows
        self.fleet_path, self.models_path = fleet_path, models_path
        self.idle, self.min_mean_accuracy, self.strict_range = idle, min_mean_accuracy, strict_range
        self.problem: Problem | None = None
        self.D: _Dense | None = None
        self.best: np.ndarray | None = None

    # -- reading and the options
    def load(self) -> dict[str, Any]:
        """Read the partition and build its options. Returns what the driver keeps per query
        (deadline, release, weight, a hash of the id) and the queries without an option."""
        wl = read_partition(self.spec)
        fleet = read_fleet(self.fleet_path)
        models = FittedModels.load(self.models_path)
        self.problem = build_problem(wl, fleet, models, idle=self.idle, min_mean_accuracy=self.min_mean_accuracy,
                                     strict_range=self.strict_range)
        q = self.problem.queries
        return {
            "n": len(q),
            "id_hash": pd.util.hash_pandas_object(q["query_id"].astype(str), index=False).to_numpy(),
            "due_s": q["deadline_eff_s"].to_numpy(dtype=float),
            "release_s": self.problem.release_s,
            "weight": q["weight"].to_numpy(dtype=float),
            "unservable": self.problem.unservable,
        }

    def ids_of(self, hashes: np.ndarray) -> list[tuple[str, int]]:
        """The query ids (and their rows in the file, from 0) whose hash is in ``hashes``."""
        assert self.problem is not None
        ids = self.problem.queries["query_id"].astype(str)
        h = pd.util.hash_pandas_object(ids, index=False).to_numpy()
        at = np.flatnonzero(np.isin(h, hashes))
        return [(ids.iloc[i], self.spec.first_row + int(i)) for i in at]

    def meta(self) -> dict[str, Any]:
        """The problem's tables that are not per query (deployments, pools, costs per instance)."""
        assert self.problem is not None
        p = self.problem
        return {"deployments": p.deployments, "pools": p.pools, "instance_cost": p.instance_cost,
                "horizon_s": p.horizon_s, "objective": p.objective, "norms": p.norms}

    def dense(self, levels: np.ndarray, acc_rhs: float) -> tuple[float, _Dense]:
        """The options as dense arrays with the batch's deadline levels and accuracy target; returns
        the partition's share of the cap on any plan's cost, and the arrays' non-row part."""
        assert self.problem is not None
        D = _Dense(self.problem, MAX_LEVELS)
        D.levels = levels
        dl = self.problem.queries["deadline_eff_s"].to_numpy(dtype=float)[D.rows]
        D.lev = level_of(levels, dl).clip(0, len(levels) - 1)
        D.acc_rhs = acc_rhs
        self.D = D
        cap = float(np.max(D.cost, axis=1, where=D.ok, initial=-np.inf).sum())
        return cap, _rowless(D)

    def rows(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """Rows ``idx`` (of the partition) of the dense arrays: cost, runtime, options, level, weight."""
        D = self.D
        assert D is not None
        return D.cost[idx], D.run[idx], D.ok[idx], D.lev[idx], None if D.w is None else D.w[idx]

    # -- the bound
    def price(self, lam: np.ndarray, mu: float) -> Partial:
        assert self.D is not None
        return _price_rows(self.D, lam, mu, block_rows=self.block_rows)[0]

    def margins(self, lam: np.ndarray, mu: float) -> tuple[Partial, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """At the best prices: the sums, each row's least priced option (kept here too), that
        option's runtime and cost, and each row's flip value."""
        D = self.D
        assert D is not None
        part, best, (gap, second) = _price_rows(D, lam, mu, margin=True, block_rows=self.block_rows)
        assert gap is not None and second is not None
        flip = _flip(D, lam, mu, best, second, gap)
        self.best = best.copy()
        at = np.arange(len(best)) * D.cost.shape[1] + best
        return part, best, D.run.reshape(-1)[at], D.cost.reshape(-1)[at], flip

    # -- fixing within the pools
    def move_loss(self, d: int, dropped: np.ndarray) -> float:
        assert self.D is not None and self.best is not None
        return _move_loss(self.D, self.best, d, dropped)

    def move_off(self, d: int, dropped: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The rows on ``d`` moved to their cheapest option not dropped: the rows, their new
        deployment, its runtime and cost; and the rows with none."""
        D, best = self.D, self.best
        assert D is not None and best is not None
        rows = np.flatnonzero(best == d)
        none = _move_off(D, best, d, dropped)
        at = rows * D.cost.shape[1] + best[rows]
        return rows, best[rows], D.run.reshape(-1)[at], D.cost.reshape(-1)[at], none

    def free_problem(self, idx: np.ndarray) -> Problem:
        """The problem of rows ``idx`` (the nearly tied queries of this partition)."""
        assert self.problem is not None
        return dataclasses.replace(sub_problem(self.problem, idx), inputs=None)

    def place_lanes(self, jobs: list[PlaceJob]) -> list[np.ndarray]:
        """Packing's placement of some deployments' queries on their lanes, given whole (the
        driver's share of packing that runs on the workers, one deployment each)."""
        return place_lanes(jobs)

    def option_rows(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Whole rows ``idx`` of the options: whether an option, its cost, its runtime."""
        p = self.problem
        assert p is not None
        return p.ok[idx], p.cost[idx], p.runtime_s[idx]

    # -- the plan's rows, written and checked
    def write(self, out_dir: str, dep: np.ndarray, lane: np.ndarray, instance: np.ndarray,
              start_s: np.ndarray, end_s: np.ndarray) -> dict[str, Any]:
        """Write this partition's rows of the plan and check them independently (the rules within
        a partition); returns the violations, the totals, and the written columns the rules across
        partitions need, read back from the file."""
        p = self.problem
        assert p is not None and p.inputs is not None
        tl = Timeline(dep, lane, start_s=start_s)
        a = assignment_table(p, tl)
        a["instance"] = instance  # numbered over the whole batch, and its lanes timed so
        a["end_s"] = end_s
        path = Path(out_dir) / part_name(self.spec.index)
        write_table_csv(a, path)
        stated = {"query_energy_j": energy_totals(a, p)["query_energy_j"], **extrapolation_totals(a, p)}
        wl, fleet, models = p.inputs
        # the table written, checked as the single-process plan checks its own (in memory)
        violations = check_plan(a, wl, fleet, models, require_all=True, totals=stated, idle=p.idle,
                                strict_range=p.strict_range)
        back = a
        code = {(d.llm, d.pool): i for i, d in enumerate(fleet.deployments)}
        pair = list(zip(back["llm"].astype(str), back["device"].astype(str)))
        at = pd.Index(wl["query_id"].astype(str)).get_indexer(back["query_id"].astype(str))
        w = token_weight(wl["input_tokens"].to_numpy()[at], wl["output_tokens"].to_numpy()[at])
        acc = np.array([fleet.llms[llm].accuracy for llm, _ in pair], dtype=float)
        return {
            "violations": [f"{path.name}: {v}" for v in violations],
            "stated": stated,
            "code": np.array([code.get(k, -1) for k in pair], dtype=np.int64),
            "instance": back["instance"].to_numpy(dtype=np.int64),
            "lane": back["lane"].to_numpy(dtype=np.int64),
            "batch_size": back["batch_size"].to_numpy(dtype=np.int64),
            "start_s": back["start_s"].to_numpy(dtype=float),
            "end_s": back["end_s"].to_numpy(dtype=float),
            "weight_sum": float(w.sum()),
            "weighted_accuracy": float(np.dot(w, acc)),
            "rows": len(back),
            "file": path.name,
        }

    def peak_rss_mb(self) -> float:
        """This process's peak resident memory [MB] (for the benchmark)."""
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rowless(D: _Dense) -> _Dense:
    """``D`` without its rows: the deployments, pools, levels and weights a fold needs."""
    out = object.__new__(_Dense)
    out.__dict__.update(D.__dict__)
    n_d = D.cost.shape[1]
    out.rows = np.zeros(0, dtype=np.int64)
    out.cost, out.run, out.ok = np.zeros((0, n_d)), np.zeros((0, n_d)), np.zeros((0, n_d), dtype=bool)
    out.lev = np.zeros(0, dtype=np.int64)
    out.w = None if D.w is None else np.zeros(0)
    return out


def _with_rows(meta: _Dense, rows: np.ndarray, parts: list[tuple], wt: float) -> _Dense:
    """``meta`` with the rows gathered from the workers (global indices ``rows``)."""
    out = object.__new__(_Dense)
    out.__dict__.update(meta.__dict__)
    out.rows = rows
    out.cost = np.concatenate([p[0] for p in parts])
    out.run = np.concatenate([p[1] for p in parts])
    out.ok = np.concatenate([p[2] for p in parts])
    out.lev = np.concatenate([p[3] for p in parts])
    out.w = None if meta.w is None else np.concatenate([p[4] for p in parts])
    out.wt = wt
    return out


# --------------------------------------------------------------------------------------------
# the workers: Ray actors or objects here
# --------------------------------------------------------------------------------------------
class _Workers:
    """Calls a method on every partition's worker (or some) and gathers the answers in order."""

    def __init__(self, workers: list[Any], ray: Any | None):
        self.workers, self.ray = workers, ray

    def all(self, method: str, *args: Any) -> list[Any]:
        return self.each(method, [args] * len(self.workers))

    def each(self, method: str, args: list[tuple | None]) -> list[Any]:
        """``method(*args[i])`` on worker i (None: not called; its answer None)."""
        if self.ray is None:
            return [None if a is None else getattr(w, method)(*a) for w, a in zip(self.workers, args)]
        refs = [None if a is None else getattr(w, method).remote(*a) for w, a in zip(self.workers, args)]
        got = self.ray.get([r for r in refs if r is not None])
        it = iter(got)
        return [None if r is None else next(it) for r in refs]


@contextlib.contextmanager
def _workers(specs: list[PartitionSpec], make_args: tuple, executor: str, address: str | None,
             cpus: int) -> Iterator[_Workers]:
    if executor == "local":
        yield _Workers([PartitionWorker(s, *make_args) for s in specs], None)
        return
    with ray_session(address, cpus, option="--distributed ray") as ray:
        # no CPU reserved per actor: more partitions than CPUs share them (each holds its memory)
        actor = ray.remote(num_cpus=0, max_restarts=0)(PartitionWorker)
        handles = [actor.options(scheduling_strategy="SPREAD").remote(s, *make_args) for s in specs]
        try:
            yield _Workers(handles, ray)
        finally:
            for h in handles:
                ray.kill(h)


def _unwrap_errors(fn: Callable[[], Any]) -> Any:
    """A worker's DataError (bad input in its partition) as this process's DataError."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - Ray wraps a worker's exception (its text has the traceback)
        cause = getattr(exc, "cause", None)
        if isinstance(cause, DataError):
            raise DataError(str(cause)) from None
        raise


# --------------------------------------------------------------------------------------------
# the driver's view of the batch for packing: a Problem whose option arrays it does not hold
# --------------------------------------------------------------------------------------------
class _RowCache:
    """Whole option rows (options, cost, runtime) of the few queries packing asks about beyond
    their chosen option, fetched from their partitions on demand."""

    def __init__(self, fetch: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]):
        self.fetch = fetch
        self.rows: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def prefetch(self, qs: np.ndarray) -> None:
        need = np.array(sorted(set(int(q) for q in qs) - set(self.rows)), dtype=np.int64)
        if len(need):
            ok, cost, run = self.fetch(need)
            for i, q in enumerate(need.tolist()):
                self.rows[q] = (ok[i], cost[i], run[i])

    def row(self, q: int, field: int) -> np.ndarray:
        if q not in self.rows:
            self.prefetch(np.array([q]))
        return self.rows[q][field]


class _Known:
    """A (query × deployment) array of which the driver holds each query's value on one deployment
    (``dep``) and, through ``cache``, the whole rows it fetched: what packing and pricing read."""

    def __init__(self, dep: np.ndarray, value: np.ndarray, cache: _RowCache, field: int, n_d: int):
        self.dep, self.value, self.cache, self.field, self.n_d = dep, value, cache, field, n_d
        self.shape = (len(dep), n_d)

    def reshape(self, *_: Any) -> _Flat:
        return _Flat(self)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, tuple):
            q, d = int(key[0]), int(key[1])
            return self.value[q] if d == self.dep[q] else self.cache.row(q, self.field)[d]
        return self.cache.row(int(key), self.field)


class _Flat:
    def __init__(self, known: _Known):
        self.k = known

    def __getitem__(self, idx: np.ndarray) -> np.ndarray:
        q, d = np.divmod(np.asarray(idx, dtype=np.int64), self.k.n_d)
        out = self.k.value[q]
        miss = np.flatnonzero(d != self.k.dep[q])
        if len(miss):
            out = out.copy()
            self.k.cache.prefetch(q[miss])
            for i in miss.tolist():
                out[i] = self.k.cache.row(int(q[i]), self.k.field)[d[i]]
        return out


def _driver_problem(meta: dict[str, Any], due_s: np.ndarray, release_s: np.ndarray, dep: np.ndarray,
                    run: np.ndarray, cost: np.ndarray, cache: _RowCache, *, idle: bool,
                    min_mean_accuracy: float | None) -> Problem:
    """The batch as packing sees it: each query's deadline and release, and its options through
    :class:`_Known` (its chosen option held here, any other fetched)."""
    n_d = len(meta["deployments"])
    queries = pd.DataFrame({"deadline_eff_s": due_s, "release_s": release_s}, copy=False)
    ok = np.ones(len(dep), dtype=bool)  # the chosen option is an option
    return Problem(
        queries=queries, deployments=meta["deployments"],
        ok=cast(Any, _Known(dep, ok, cache, 0, n_d)), cost=cast(Any, _Known(dep, cost, cache, 1, n_d)),
        energy_j=cast(Any, None), runtime_s=cast(Any, _Known(dep, run, cache, 2, n_d)),
        runnable=cast(Any, None), extrapolated=cast(Any, None), instance_cost=meta["instance_cost"],
        pools=meta["pools"], horizon_s=meta["horizon_s"], objective=meta["objective"], idle=idle,
        min_mean_accuracy=min_mean_accuracy, norms=meta["norms"],
    )


# --------------------------------------------------------------------------------------------
# the plan
# --------------------------------------------------------------------------------------------
@dataclass
class DistributedResult:
    """A distributed plan: its status, objective, bound and gap, the files written, the check's
    violations, the partitions, and the seconds of each step."""

    status: Status
    objective: float
    bound: float
    bound_source: BoundSource
    message: str
    partitions: int
    queries: int
    files: list[str]
    violations: list[str]
    timings_s: dict[str, float]
    totals: dict[str, float]
    summary_path: Path | None = None
    worker_peak_rss_mb: list[float] = dataclasses.field(default_factory=list)

    @property
    def gap(self) -> float:
        return relative_gap(self.objective, self.bound) if math.isfinite(self.objective) else math.inf

    def summary(self) -> dict[str, Any]:
        return {"status": self.status.value, "method": "decompose (distributed)", "objective": self.objective,
                "bound": self.bound, "bound_source": self.bound_source.value, "gap": self.gap, "message": self.message,
                "queries": self.queries, "partitions": self.partitions, "files": self.files,
                "check": {"ok": not self.violations, "violations": self.violations[:20]}, **self.totals,
                "timings_s": {k: round(v, 4) for k, v in self.timings_s.items()}}


class _Clock:
    def __init__(self) -> None:
        self.t = time.perf_counter()
        self.out: dict[str, float] = {}

    def mark(self, step: str) -> None:
        now = time.perf_counter()
        self.out[f"{step}_s"] = now - self.t
        self.t = now


def plan_distributed(
    workload: str | Path,
    fleet: str | Path,
    models: str | Path,
    out_dir: str | Path,
    *,
    partitions: int,
    executor: str = "ray",
    address: str | None = None,
    cpus: int = 2,
    workload_format: str | None = None,
    idle: bool = False,
    min_mean_accuracy: float | None = None,
    strict_range: bool = False,
    solver: str = "auto",
    limits: Limits | None = None,
    progress: Progress | None = None,
) -> DistributedResult:
    """Plan the workload file (CSV or Parquet) in ``partitions`` partitions on workers
    (``executor`` ``ray``: actors on a local Ray of ``cpus`` CPUs or the cluster at ``address``;
    ``local``: in this process, one after another) and write the plan to ``out_dir`` as
    ``assignment-part-NNNNN.csv`` files and ``summary.json``. See the module docstring."""
    say = progress or (lambda s: None)
    limits = limits or Limits()
    if executor not in EXECUTORS:
        raise DataError(f"--distributed {executor!r}: expected one of {', '.join(EXECUTORS)}")
    clock = _Clock()
    fl = read_fleet(fleet)  # checked here, before any worker starts
    FittedModels.load(models)
    if fl.has_power_caps:
        raise DataError(f"{fl.source}: power caps plan per time slot, which the distributed path does not do yet; "
                        "plan in one process")
    backend = get_solver(solver)
    block_rows = decompose.BLOCK_ROWS  # read now: a test may set it smaller (the workers get it from here)
    specs = split_workload(workload, partitions, fmt=workload_format, align=block_rows)
    out = Path(out_dir)
    if executor == "ray":
        _import_ray("--distributed ray")
    say(f"distributed: {sum(s.n_rows for s in specs):,} queries in {len(specs)} partitions on "
        f"{'Ray' if executor == 'ray' else 'this process'}")
    clock.mark("split")
    # the inputs read already here: a worker whose working folder differs still finds them
    make_args = (str(Path(fleet).resolve()), str(Path(models).resolve()), idle, min_mean_accuracy, strict_range,
                 block_rows)
    with _workers(specs, make_args, executor, address, cpus) as W:
        res = _unwrap_errors(lambda: _plan(W, specs, fl, out, backend, limits, clock, say, idle=idle,
                                           min_mean_accuracy=min_mean_accuracy))
        if executor == "ray":
            res.worker_peak_rss_mb = W.all("peak_rss_mb")
    return res


def _plan(W: _Workers, specs: list[PartitionSpec], fleet: Fleet, out: Path, backend: Solver, limits: Limits,
          clock: _Clock, say: Progress, *, idle: bool, min_mean_accuracy: float | None) -> DistributedResult:
    with phase(f"distributed: reading {len(specs)} partitions and building their options"):
        loaded = W.all("load")
    n_q = sum(x["n"] for x in loaded)
    _check_unique_ids(W, specs, loaded)
    offsets = np.cumsum([0] + [x["n"] for x in loaded])
    due = np.concatenate([x["due_s"] for x in loaded])
    rel = np.concatenate([x["release_s"] for x in loaded])
    w = np.concatenate([x["weight"] for x in loaded])
    unservable = pd.concat([x["unservable"] for x in loaded], ignore_index=True)
    del loaded
    meta = W.each("meta", [()] + [None] * (len(specs) - 1))[0]
    clock.mark("read_build")
    # the input is good: the folder of the plan (an earlier plan's parts must not pass for this one's)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("assignment-part-*.csv"):
        old.unlink()

    def result(status: Status, message: str, bound: float = math.nan, source: BoundSource = BoundSource.NONE,
               objective: float = math.nan, files: list[str] | None = None, violations: list[str] | None = None,
               totals: dict[str, float] | None = None) -> DistributedResult:
        r = DistributedResult(status, objective, bound, source, message, len(specs), n_q, files or [], violations or [],
                              clock.out, totals or {})
        r.summary_path = write_json(out / "summary.json", r.summary())
        return r

    if len(unservable):
        return result(Status.INFEASIBLE, f"{len(unservable)} queries have no feasible option: "
                      + "; ".join(f"{r.query_id}: {r.reason}" for r in unservable.head(10).itertuples()),
                      bound=math.inf)
    # the bound: the batch's deadline levels and accuracy target, then samples and all rows
    from .formulation import deadline_levels

    levels = deadline_levels(due, MAX_LEVELS)
    acc_rhs = (min_mean_accuracy or 0.0) * float(w.sum())
    t_bound = time.perf_counter()
    left = limits.remaining_s()
    deadline = None if left is None else t_bound + left / 2
    with phase("lagrangian: options of the partitions as dense arrays"):
        got = W.all("dense", levels, acc_rhs)
    cap = sum(g[0] for g in got)
    meta_D = got[0][1]
    del got
    cap += float((np.maximum(meta_D.inst_cost, 0) * meta_D.max_inst).sum())
    with phase("lagrangian: samples of the batch, price scales"):
        stages = [_gather_rows(W, meta_D, offsets, idx, n_q) for idx in sample_rows(n_q, (30_000, 100_000, 300_000))]
        Ds = stages[0] if stages else _gather_rows(W, meta_D, offsets, np.arange(n_q), n_q)
        scale = price_scales(Ds, float(np.median(w)))
        del Ds

    def price(lam: np.ndarray, mu: float) -> Partial:
        return Partial.join(W.all("price", lam, mu))

    theta, iters, _, converged, over_cap = maximise_bound(
        stages, dense_oracle(meta_D, price), n_q, scale, cap, rel_tol=1e-7, max_iter=300, deadline=deadline,
        refine_delta=0.002, sample_rel_tol=1e-6, say=say)
    del stages
    n_d, n_l = len(meta_D.k), len(meta_D.levels)
    lam = theta[: n_d * n_l].reshape(n_d, n_l)
    mu = float(theta[-1]) if meta_D.w is not None else 0.0
    with phase(f"lagrangian: margins of {n_q:,} queries at the best prices"):
        got = W.all("margins", lam, mu)
        bound, _, _ = _fold(meta_D, Partial.join([g[0] for g in got]), lam, mu)
        best = np.concatenate([g[1] for g in got])
        run_best = np.concatenate([g[2] for g in got])
        cost_best = np.concatenate([g[3] for g in got])
        flip = np.concatenate([g[4] for g in got])
        del got
    clock.mark("bound")
    say(f"lagrangian: bound {bound:.8g} after {iters} iterations in {time.perf_counter() - t_bound:.2f} s")
    if over_cap or cap + 1e-9 * abs(cap) < bound:
        return result(Status.INFEASIBLE, "the Lagrangian bound exceeds the cost of every assignment: no plan exists",
                      bound=bound, source=BoundSource.LAGRANGIAN)
    # the plan: fix and solve (as fix_and_solve), then pack; without deadlines once more with more freed
    state = _FixState(W, meta_D, offsets, best, run_best, cost_best, flip, due, rel, w, backend, limits, say)
    cache = _RowCache(lambda qs: _fetch_rows(W, offsets, qs))
    chosen: tuple[tuple[int, float], _Fixed, Timeline, Problem] | None = None
    size = None
    for _attempt in range(2 if n_l == 1 else 1):
        t_fix = time.perf_counter()
        fp = state.fix_and_solve(size)
        slow = time.perf_counter() - t_fix > 5.0
        if fp is not None:
            with phase(f"decompose: packing {n_q:,} queries onto {int(fp.n_inst.sum()):,} instances"):
                view = _driver_problem(meta, due, rel, fp.dep, fp.run, fp.cost, cache, idle=idle,
                                       min_mean_accuracy=min_mean_accuracy)
                tl = _pack(view, fp, cache, _placer(W))
                key = (len(tl.unplaced), plan_objective(view, tl) if not tl.unplaced else math.inf)
            if chosen is None or key < chosen[0]:
                chosen = (key, fp, tl, view)
        if (fp is None or slow or relative_gap(fp.objective, bound) <= limits.mip_rel_gap
                or fp.free_queries >= n_q or limits.expired()):
            break
        say(f"{backend.name}: {fp.message}, gap {relative_gap(fp.objective, bound):.2e}; freeing more queries")
        size = 4 * fp.free_queries
    clock.mark("solve")
    if chosen is None:
        return result(Status.NO_SOLUTION, "no plan found: the nearly tied queries left no feasible completion",
                      bound=bound, source=BoundSource.LAGRANGIAN)
    (n_unplaced, objective), fp, tl, view = chosen
    message, fp_bound = fp.message, fp.bound
    del chosen, state, best, run_best, cost_best, flip, w, fp  # the driver's memory: what the rest needs only
    plan_bound, source = (fp_bound, BoundSource.MIP) if fp_bound > bound else (bound, BoundSource.LAGRANGIAN)
    if n_unplaced:
        return result(Status.NO_SOLUTION, f"packing could not place {n_unplaced} queries within their deadlines",
                      bound=plan_bound, source=source)
    plan_bound = min(plan_bound, objective)
    # the timeline, numbered over the batch, then written and checked per partition
    with phase(f"timeline of {n_q:,} queries"):
        qs = np.arange(n_q)
        start, end = timeline_times_s(view, tl, qs)
        lanes = meta["deployments"]["lanes"].to_numpy().astype(np.int64)
        instance = _compact_instances(meta["deployments"], tl.dep, tl.instance(lanes))
        on = np.unique(tl.dep * (int(instance.max(initial=0)) + 1) + instance)
        del view, cache, due, rel
    clock.mark("schedule")
    with phase(f"writing and checking {len(specs)} partitions of the plan"):
        parts = W.each("write", [(str(out), tl.dep[a:b], tl.lane[a:b], instance[a:b], start[a:b], end[a:b])
                                 for a, b in zip(offsets[:-1], offsets[1:])])
    violations, totals = _check_across(parts, fleet, meta, on, instance, idle=idle,
                                       min_mean_accuracy=min_mean_accuracy)
    clock.mark("write_check")
    status = Status.OPTIMAL if within_gap(objective, plan_bound, limits.mip_rel_gap) \
        else Status.FEASIBLE
    files = [p["file"] for p in parts]
    if violations:  # a plan that fails the check is no plan: its files go
        status, message = Status.ERROR, "the independent check failed: " + "; ".join(violations[:5])
        for f in files:
            (out / f).unlink(missing_ok=True)
        files = []
    r = result(status, message, bound=plan_bound, source=source, objective=objective, files=files,
               violations=violations, totals=totals)
    say(f"plan: {status}, objective {objective:.6g}, gap {r.gap:.4%}, check {'ok' if not violations else 'FAILED'}")
    return r


def _check_unique_ids(W: _Workers, specs: list[PartitionSpec], loaded: list[dict[str, Any]]) -> None:
    """Every query id once in the whole file: hashes compared here, a repeated hash confirmed by
    the ids themselves."""
    h = np.concatenate([x["id_hash"] for x in loaded])
    s = np.sort(h)
    rep = np.unique(s[1:][s[1:] == s[:-1]])
    if not len(rep):
        return
    found: dict[str, list[int]] = {}
    for got in W.all("ids_of", rep):
        for qid, row in got:
            found.setdefault(qid, []).append(row)
    twice = sorted((rows for rows in found.values() if len(rows) > 1), key=min)
    if twice:
        qid = next(k for k, v in found.items() if v == twice[0])
        path = specs[0].path
        where = "rows" if specs[0].fmt == "parquet" else "data rows"
        raise DataError(f"{path}: query id {qid!r} is given twice ({where} {twice[0][0]} and {twice[0][1]}, from 0); "
                        "expected each query once")


def _gather_rows(W: _Workers, meta: _Dense, offsets: np.ndarray, idx: np.ndarray, n_q: int) -> _Dense:
    """The rows ``idx`` (sorted, of the whole batch) of the dense arrays, gathered from the
    partitions, standing for the batch (as :meth:`_Dense.sample`)."""
    cut = np.searchsorted(idx, offsets)
    args: list[tuple | None] = [(idx[a:b] - offsets[i],) if b > a else None for i, (a, b) in enumerate(zip(cut[:-1], cut[1:]))]
    got = [g for g in W.each("rows", args) if g is not None]
    return _with_rows(meta, idx, got, n_q / len(idx))


def _fetch_rows(W: _Workers, offsets: np.ndarray, qs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Whole option rows of queries ``qs`` (sorted) from their partitions."""
    cut = np.searchsorted(qs, offsets)
    args: list[tuple | None] = [(qs[a:b] - offsets[i],) if b > a else None for i, (a, b) in enumerate(zip(cut[:-1], cut[1:]))]
    got = [g for g in W.each("option_rows", args) if g is not None]
    return (np.concatenate([g[0] for g in got]), np.concatenate([g[1] for g in got]),
            np.concatenate([g[2] for g in got]))


@dataclass
class _Fixed:
    """A fixed-and-solved choice (as :class:`~energyopt.methods.decompose.FixPlan`) with each
    query's chosen option's runtime and cost."""

    dep: np.ndarray
    run: np.ndarray
    cost: np.ndarray
    n_inst: np.ndarray
    objective: float
    free_queries: int
    message: str
    bound: float


class _FixState:
    """:func:`~energyopt.methods.decompose.fix_and_solve` with the batch in partitions: the same
    steps on the driver's vectors, the workers asked for the rows it needs."""

    def __init__(self, W: _Workers, D: _Dense, offsets: np.ndarray, best: np.ndarray, run_best: np.ndarray,
                 cost_best: np.ndarray, flip: np.ndarray, due: np.ndarray, rel: np.ndarray, w: np.ndarray,
                 backend: Solver, limits: Limits, say: Progress):
        self.W, self.D, self.offsets = W, D, offsets
        self.best, self.run_best, self.cost_best, self.flip = best, run_best, cost_best, flip
        self.due, self.rel, self.w = due, rel, w
        self.backend, self.limits, self.say = backend, limits, say
        self.lev = level_of(D.levels, due).clip(0, len(D.levels) - 1)
        self.fixed_within: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None

    def _within_capacity(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Each row's option to fix it to within the pools (see ``_fix_within_capacity``)."""
        if self.fixed_within is not None:
            return self.fixed_within
        best, run, cost = self.best, self.run_best, self.cost_best  # changed in place: nothing else reads them
        must_free: list[np.ndarray] = []
        D = _lev_view(self.D, self.lev)

        def need() -> np.ndarray:
            return _instances_needed(D, best, run)

        def loss(d: int, dropped: np.ndarray) -> float:
            return float(sum(self.W.all("move_loss", d, dropped)))

        def move(d: int, dropped: np.ndarray) -> None:
            for i, (rows, dep, r, c, none) in enumerate(self.W.all("move_off", d, dropped)):
                g = rows + self.offsets[i]
                best[g], run[g], cost[g] = dep, r, c
                must_free.append(none + self.offsets[i])

        with phase(f"decompose: fixing {len(best):,} queries at the prices' choice within the pools"):
            fix_within_capacity(D, need, loss, move)
        free = np.unique(np.concatenate(must_free)) if must_free else np.zeros(0, dtype=np.int64)
        self.fixed_within = (best, run, cost, free)
        return self.fixed_within

    def fix_and_solve(self, free_size: int | None) -> _Fixed | None:
        best, run, cost, must_free = self._within_capacity()
        n_s = len(best)
        usual_size = int(np.clip(n_s // 1000, 300, 2000))
        whole_first = free_size is None and n_s <= SOLVE_WHOLE_UP_TO
        if free_size is None:
            free_size = n_s if whole_first else usual_size
        size = min(n_s, free_size)
        acc = self.D.acc
        limits = self.limits
        while True:
            free = np.sort(np.argpartition(self.flip, size - 1)[:size]) if size < n_s else np.arange(n_s)
            if len(must_free) and size < n_s:
                free = np.union1d(free, must_free)
            is_fixed = np.ones(n_s, dtype=bool)
            is_fixed[free] = False
            fixed = np.flatnonzero(is_fixed)
            fd = best[fixed]
            fixed_work = (fd, self.due[fixed], run[fixed], self.rel[fixed])
            fixed_acc = float((self.w[fixed] * acc[fd]).sum())
            with phase(f"decompose: model of {len(free):,} free queries beside {len(fixed):,} fixed"):
                sub = self._free_problem(free)
                model = build_matrix(sub, "aggregate", fixed_work=fixed_work, fixed_accuracy=fixed_acc,
                                     weight_total=float(self.w.sum()))
            cap_s = 60.0 / 4 if whole_first and size >= n_s else 60.0
            with phase("decompose: the whole batch, exactly" if size >= n_s
                       else f"decompose: sub-MILP on the {len(free):,} nearly tied queries"):
                if size >= n_s:
                    res = solve_strong(model, sub, self.backend, limits, self.say, cap_s=cap_s)
                else:
                    res = backend_solve(self.backend, model, limits, cap_s)
            if res.x is not None:
                break
            if limits.expired():
                return None
            if whole_first:
                whole_first = False
                size = min(n_s, usual_size)
                self.say(f"lagrangian: the whole batch's MILP gave no plan ({res.status}); fixing the clearly decided queries")
                continue
            if size >= n_s:
                return None
            self.say(f"lagrangian: {size} free queries left no feasible plan ({res.status}); freeing more")
            size = min(n_s, size * 4)
        dep = best.copy()
        run_q, cost_q = run.copy(), cost.copy()
        pick = np.flatnonzero(res.x[: model.n_x] > 0.5)
        sub_c = model.x_cand[pick]
        q_sub = sub.cand["q"].to_numpy()[sub_c]
        d_sub = sub.cand["d"].to_numpy()[sub_c]
        dep[free[q_sub]] = d_sub
        run_q[free[q_sub]] = sub.runtime_s[q_sub, d_sub]
        cost_q[free[q_sub]] = sub.cost[q_sub, d_sub]
        n_inst = np.zeros(len(self.D.k), dtype=np.int64)
        np.add.at(n_inst, model.u_dep, np.round(model.u_values(res.x)).astype(np.int64))
        obj = float(cost[fixed].sum()) + float(res.objective)
        whole_bound = float(res.bound) if len(free) == n_s and math.isfinite(res.bound) else -math.inf
        return _Fixed(dep, run_q, cost_q, n_inst, obj, len(free),
                      f"{len(free)} queries solved by {self.backend.name} ({res.status})", whole_bound)

    def _free_problem(self, free: np.ndarray) -> Problem:
        """The problem of the free queries, their rows gathered from the partitions in order."""
        cut = np.searchsorted(free, self.offsets)
        args: list[tuple | None] = [(free[a:b] - self.offsets[i],) if b > a else None
                                    for i, (a, b) in enumerate(zip(cut[:-1], cut[1:]))]
        subs = [s for s in self.W.each("free_problem", args) if s is not None]
        first = subs[0]
        return dataclasses.replace(
            first, queries=pd.concat([s.queries for s in subs], ignore_index=True),
            ok=np.concatenate([s.ok for s in subs]), cost=np.concatenate([s.cost for s in subs]),
            energy_j=np.concatenate([s.energy_j for s in subs]), runtime_s=np.concatenate([s.runtime_s for s in subs]),
            runnable=np.concatenate([s.runnable for s in subs]),
            extrapolated=np.concatenate([s.extrapolated for s in subs]))


def _lev_view(D: _Dense, lev: np.ndarray) -> _Dense:
    """The rowless ``D`` with every query's deadline level (what ``_instances_needed`` reads)."""
    out = object.__new__(_Dense)
    out.__dict__.update(D.__dict__)
    out.lev = lev
    out.wt = 1.0
    return out


def _placer(W: _Workers) -> Callable[[list[PlaceJob]], list[np.ndarray]]:
    """Packing's placements spread over the workers, each deployment on one worker (the largest
    first, each to the worker given the fewest queries so far); the lanes come back in order."""
    def run(jobs: list[PlaceJob]) -> list[np.ndarray]:
        k = len(W.workers)
        per: list[list[int]] = [[] for _ in range(k)]
        load = [0] * k
        for i in sorted(range(len(jobs)), key=lambda i: -len(jobs[i][0])):
            w = load.index(min(load))
            per[w].append(i)
            load[w] += len(jobs[i][0])
        got = W.each("place_lanes", [([jobs[i] for i in mine],) if mine else None for mine in per])
        out: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * len(jobs)
        for mine, lanes in zip(per, got, strict=True):
            for i, g in zip(mine, lanes or [], strict=True):
                out[i] = g
        return out

    return run


def _pack(view: Problem, fp: _Fixed, cache: _RowCache, placer: Callable[[list[PlaceJob]], list[np.ndarray]]
          ) -> Timeline:
    """:func:`~energyopt.packing.pack` on the driver's view, each deployment's placement on a
    worker (``placer``). Without release times it places first without repair, fetches the late
    queries' whole rows in one call per partition, then repairs them (what ``pack`` does in one
    go); with release times ``pack`` itself, rows fetched as repair asks."""
    if view.has_releases:
        return pack(view, fp.dep, fp.n_inst, placer=placer)
    tl = pack(view, fp.dep, fp.n_inst, repair=False, placer=placer)
    if not tl.unplaced:
        return tl
    late = list(tl.unplaced)
    cache.prefetch(np.array(late))
    run_all = np.asarray(fp.run, dtype=float).copy()
    unplaced = _repair(view, tl.dep, tl.lane, run_all, late)
    return Timeline(tl.dep, tl.lane, unplaced)


class _RowNames:
    """What a rule's message names a row of the joined parts by: its row in the plan (from 0), not
    its query id (the ids stay with the workers)."""

    @property
    def iloc(self) -> _RowNames:
        return self

    def __getitem__(self, i: int) -> str:
        return f"the plan's row {int(i)}"


def _check_across(parts: list[dict[str, Any]], fleet: Fleet, meta: dict[str, Any], on: np.ndarray,
                  instance: np.ndarray, *, idle: bool, min_mean_accuracy: float | None
                  ) -> tuple[list[str], dict[str, float]]:
    """The check's rules that couple partitions, on the columns the workers read back from the
    written files, and the plan's totals."""
    violations = [v for p in parts for v in p["violations"]]

    def joined(key: str) -> np.ndarray:  # the parts' arrays, each let go once joined
        return np.concatenate([p.pop(key) for p in parts])

    code = joined("code")
    if (code < 0).any():
        violations.append("a row names an (llm, device) that is not a deployment of the fleet")
        code = np.maximum(code, 0)
    n = len(code)
    z = np.zeros(n)
    rows = CheckedRows(
        query_ids=cast(Any, _RowNames()), assignment_row=np.arange(n), deployments=list(fleet.deployments),
        deployment_code=code, instance=joined("instance"), lane=joined("lane"), batch_size=joined("batch_size"),
        start_s=joined("start_s"), end_s=joined("end_s"),
        stated_runtime_s=z, stated_energy_j=z, stated_accuracy=z, input_tokens=z, output_tokens=z, deadline_s=z,
        release_s=z, stated_release_s=z, min_accuracy=z, model_runtime_s=z, model_energy_j=z,
        prediction_valid=np.ones(n, dtype=bool), prediction_extrapolated=np.zeros(n, dtype=bool), catalog_accuracy=z,
        context_tokens=z, kv_context_tokens=z,
        instance_idle_power_w=np.array([fleet.instance_idle_power_w(d) for d in fleet.deployments])[code],
    )
    violations += [f"across partitions: {v}" for v in instances_within_deployments_and_pools(rows, fleet)]
    violations += [f"across partitions: {v}" for v in batch_sizes_and_lanes_valid(rows)]
    violations += [f"across partitions: {v}" for v in no_overlap_on_a_lane(rows)]
    if min_mean_accuracy is not None:
        mean = sum(p["weighted_accuracy"] for p in parts) / sum(p["weight_sum"] for p in parts)
        if mean < min_mean_accuracy - 1e-9:
            violations.append(f"across partitions: token-weighted mean accuracy {mean:.4f} below the floor "
                              f"{min_mean_accuracy}")
    # totals: the queries' energy (each partition's, checked there), the idle of the instances on
    query_j = sum(p["stated"]["query_energy_j"] for p in parts)
    switched = pd.DataFrame({"d": rows.deployment_code, "i": rows.instance}).drop_duplicates().index.to_numpy()
    idle_derived = float(np.sum(idle_energy_j(rows.instance_idle_power_w[switched], fleet.horizon_s))) if idle else 0.0
    deps = meta["deployments"]
    idle_w = deps["idle_power_w"].to_numpy(dtype=float)
    M = int(instance.max(initial=0)) + 1
    idle_stated = float(np.sum(idle_energy_j(idle_w[on // M], fleet.horizon_s))) if idle else 0.0
    violations += [f"across partitions: {v}" for v in totals_match({"idle_energy_j": idle_stated},
                                                                     {"idle_energy_j": idle_derived})]
    totals = {"query_energy_j": query_j, "idle_energy_j": idle_stated, "total_energy_j": query_j + idle_stated,
              "extrapolated_queries": sum(p["stated"]["extrapolated_queries"] for p in parts),
              "extrapolated_energy_j": sum(p["stated"]["extrapolated_energy_j"] for p in parts)}
    return violations, totals
