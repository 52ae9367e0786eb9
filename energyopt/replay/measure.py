"""Measured energy of each step and each query of a replay, from a cumulative energy counter.

An energy counter (NVML's total-energy counter on a GPU) is read every few milliseconds by a
:class:`CounterSampler` thread; the counter itself moves only when the driver updates it (about
every 100 ms on an H100/H200), so each new value is taken at the first read that shows it
(:func:`counter_knots`) and energy between knots is interpolated linearly (constant power between
updates): :func:`energy_at`. A step's energy is the interpolated energy between the end of the step
before it and its own end (the steps of a run follow each other on the device, so the steps'
energies add up to the run's). A query is charged its prefill and its share of each decode step
it took part in. A decode step costs a part that every slot shares (reading the weights for the
whole batch) and a part that grows with each running query's context (attention): the two are
fitted over the run's decode steps from their durations on the device's clock
(:func:`step_cost_split`), and each step's energy is split the same way: 1/b of the fixed part per
slot (b the batch size, as the plan charges each query 1/b of its batch) and the rest in
proportion to each query's context. The fixed shares of slots with no query (a lane that has
finished while others run) are the instance's padding energy. Queries and padding add up to the
instance's energy.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..characterize.engine import EngineLog

__all__ = ["CounterSampler", "counter_knots", "energy_at", "attribute_queries", "InstanceMeasurement"]


def counter_knots(times_s: np.ndarray, energy_j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The reads at which the counter showed a new value (and the first read), as (time, energy)."""
    t = np.asarray(times_s, dtype=float)
    e = np.asarray(energy_j, dtype=float)
    if t.size == 0:
        raise ValueError("no counter reads")
    if np.any(np.diff(t) < 0) or np.any(np.diff(e) < 0):
        raise ValueError("counter reads must be in time order and the counter must not go back")
    keep = np.concatenate([[True], np.diff(e) > 0])
    keep[-1] = True  # the last read bounds the curve
    return t[keep], e[keep]


def energy_at(knots: tuple[np.ndarray, np.ndarray], t_s: np.ndarray | float) -> np.ndarray:
    """Cumulative energy [J] at times ``t_s`` (linear between knots; the ends held beyond them)."""
    kt, ke = knots
    return np.interp(np.asarray(t_s, dtype=float), kt, ke)


@dataclass
class InstanceMeasurement:
    """One instance's replay: per query (in the engine's order) and the whole run."""

    queries: pd.DataFrame  # lane, measured_start_s, measured_end_s, measured_runtime_s, measured_energy_j
    energy_j: float  # the counter over the run
    makespan_s: float  # from the run's start to its last step's end
    padding_energy_j: float  # decode steps' shares of slots with no query
    steps: pd.DataFrame  # step, prefill, running, end_s, duration_s, energy_j, context_tokens
    n_steps: int
    decode_steps: int
    mean_active: float  # mean number of running queries per decode step
    extra: dict = field(default_factory=dict)


def decode_span(log: EngineLog) -> tuple[np.ndarray, np.ndarray]:
    """Per query, its first and last decode step numbered over decode steps alone (0 and -1, an
    empty span, for a query whose prefill yields its only token)."""
    ordinal = np.cumsum(~log.step_is_prefill) - 1  # decode step number of each step
    has = log.first_step >= 0
    first = np.where(has, ordinal[np.maximum(log.first_step, 0)], 0)
    last = np.where(has, ordinal[np.maximum(log.last_step, 0)], -1)
    return first, last


def decode_contexts(log: EngineLog) -> tuple[np.ndarray, np.ndarray]:
    """Per decode step: the running queries' summed attention length [tokens] and, per query, the
    offset that gives its own length at decode step ``k`` (numbered over decode steps alone) as
    ``offset + k``. A query's j-th decode step (j from 0) attends to its prompt and j + 1 tokens."""
    n_dec = int(np.sum(~log.step_is_prefill))
    has = log.first_step >= 0
    first, last = decode_span(log)
    offset = log.input_tokens + 1 - first
    # sum over running queries of (offset + k): difference arrays of the offsets and of the counts
    d_off = np.zeros(n_dec + 1)
    d_cnt = np.zeros(n_dec + 1)
    np.add.at(d_off, first[has], offset[has])
    np.add.at(d_off, last[has] + 1, -offset[has])
    np.add.at(d_cnt, first[has], 1.0)
    np.add.at(d_cnt, last[has] + 1, -1.0)
    k = np.arange(n_dec)
    total = np.cumsum(d_off)[:n_dec] + k * np.cumsum(d_cnt)[:n_dec]
    return total, offset


def step_cost_split(duration_s: np.ndarray, context_tokens: np.ndarray) -> tuple[float, float]:
    """Least-squares fit of decode steps' durations as ``fixed + per_token × context`` (both ≥ 0):
    the part of a step every slot shares (weights) and the part each query's own tokens add
    (attention). Durations come from the device's clock, exact where the energy counter is coarse."""
    x = np.asarray(context_tokens, dtype=float)
    y = np.asarray(duration_s, dtype=float)
    if y.size < 3 or np.ptp(x) <= 0:
        return float(max(np.mean(y), 0.0)) if y.size else 1.0, 0.0
    slope, intercept = np.polyfit(x, y, 1)
    if slope <= 0:
        return float(max(np.mean(y), 1e-12)), 0.0
    if intercept <= 0:
        return 1e-12, float(np.sum(x * y) / np.sum(x * x))
    return float(intercept), float(slope)


def attribute_queries(log: EngineLog, knots: tuple[np.ndarray, np.ndarray]) -> InstanceMeasurement:
    ends = np.asarray(log.step_end_s, dtype=float)
    starts = np.concatenate([[log.t0_s], ends[:-1]]) if ends.size else np.empty(0)
    step_e = energy_at(knots, ends) - energy_at(knots, starts) if ends.size else np.empty(0)
    decode = ~log.step_is_prefill
    n_q = log.prefill_step.size
    # a decode step's energy is split as its time is: a fixed part in equal shares per slot
    # (padded slots' shares are the padding) and a part in proportion to each query's context
    ctx_sum, offset = decode_contexts(log)
    e_dec = step_e[decode]
    active = log.step_active[decode].astype(float)
    fixed, per_token = step_cost_split((ends - starts)[decode], ctx_sum)
    denom = fixed + per_token * ctx_sum
    unit = np.divide(e_dec, denom, out=np.zeros_like(e_dec), where=denom > 0)  # J per unit of step cost
    k = np.arange(e_dec.size, dtype=float)
    c0 = np.concatenate([[0.0], np.cumsum(unit)])
    c1 = np.concatenate([[0.0], np.cumsum(unit * k)])
    padding = float(np.sum(unit * fixed / log.slots * (log.slots - active)))
    has_decode = log.first_step >= 0
    f, last = decode_span(log)
    s0 = c0[last + 1] - c0[f]
    s1 = c1[last + 1] - c1[f]
    e_q = np.where(has_decode, fixed / log.slots * s0 + per_token * (offset * s0 + s1), 0.0)
    e_q = e_q + (step_e[log.prefill_step] if n_q else 0.0)
    start_q = starts[log.prefill_step] if n_q else np.empty(0)
    end_q = np.where(has_decode, ends[np.maximum(log.last_step, 0)], ends[log.prefill_step]) if n_q else np.empty(0)
    queries = pd.DataFrame({
        "lane": log.lane,
        "measured_start_s": start_q - log.t0_s,
        "measured_end_s": end_q - log.t0_s,
        "measured_runtime_s": end_q - start_q,
        "measured_energy_j": e_q,
        "prefill_step": log.prefill_step, "first_decode_step": log.first_step, "last_decode_step": log.last_step,
    })
    ctx_all = np.zeros(ends.size, dtype=np.int64)
    ctx_all[decode] = np.round(ctx_sum).astype(np.int64)
    ctx_all[log.step_is_prefill] = log.input_tokens[np.argsort(log.prefill_step)] if n_q else 0
    steps = pd.DataFrame({"step": np.arange(ends.size), "prefill": log.step_is_prefill, "running": log.step_active,
                          "end_s": ends - log.t0_s, "duration_s": ends - starts, "energy_j": step_e,
                          "context_tokens": ctx_all})
    total = float(energy_at(knots, ends[-1]) - energy_at(knots, log.t0_s)) if ends.size else 0.0
    makespan = float(ends[-1] - log.t0_s) if ends.size else 0.0
    n_dec = int(decode.sum())
    mean_active = float(active.mean()) if n_dec else 0.0
    return InstanceMeasurement(queries, total, makespan, padding, steps, int(ends.size), n_dec, mean_active,
                               {"step_fixed_s": fixed, "step_per_token_s": per_token})


class CounterSampler:
    """Reads ``read_j`` every ``interval_s`` on a thread, from ``with`` until the block ends, with
    ``margin_s`` of reads before and after so that knots bracket the measured window."""

    def __init__(self, read_j: Callable[[], float], interval_s: float = 0.005, margin_s: float = 0.3,
                 clock: Callable[[], float] = time.perf_counter, sleep: Callable[[float], None] = time.sleep):
        self.read_j = read_j
        self.interval_s = interval_s
        self.margin_s = margin_s
        self.clock = clock
        self.sleep = sleep
        self.times: list[float] = []
        self.values: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                v = self.read_j()
                self.times.append(self.clock())
                self.values.append(v)
                self.sleep(self.interval_s)
        except BaseException as exc:  # re-raised by __exit__ in the measuring thread
            self.error = exc

    def __enter__(self) -> CounterSampler:
        self._thread = threading.Thread(target=self._loop, name="energy-counter", daemon=True)
        self._thread.start()
        self.sleep(self.margin_s)
        return self

    def __exit__(self, *exc: object) -> None:
        self.sleep(self.margin_s)
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        if self.error is not None and exc[0] is None:
            raise RuntimeError(f"energy counter: {self.error}") from self.error

    def knots(self) -> tuple[np.ndarray, np.ndarray]:
        return counter_knots(np.array(self.times), np.array(self.values))
