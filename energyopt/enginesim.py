"""A batched instance's timeline as a continuous-batching engine runs it, simulated from per-query
prefill and decode-step times: the check of a plan's lane timing.

The plan times each lane of a batched instance on its own: a query at batch size b takes the
models' runtime at b, measured with b identical queries (b prefills of its length, then the
batch's decode steps). An engine that serves the lanes as slots (``energyopt replay``: the
engine of :func:`energyopt.characterize.engine.run_lanes`) differs in what the lane model cannot
see: every prefill of a refilled slot stalls every slot, so a long query waits for the prefills
of the other lanes' queries, not for b prefills of its own length. This module follows the
engine's scheduling exactly, event by event:

* every slot prefills its lane's first query, in slot order, one after another; a query whose
  prefill yields its only token ends with it and its slot prefills the lane's next query;
* then each decode step advances every running query by one token and takes the running
  queries' mean ``step_s`` (a full batch's step at each query's context); a query ends with the
  step that gives its last token (``steps`` = output tokens − 1 decode steps), and after that
  step the slots whose query ended prefill their lanes' next queries, in slot order.

Between two query ends the running set is fixed, so the steps in between are advanced at once:
the cost is O(queries × log b), not one iteration per decode step.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .modelstore import FittedModels

__all__ = ["EngineTimeline", "simulate_engine", "prefill_and_step_s", "simulate_with_models", "simulate_rows",
           "engine_timing_applies", "ENGINE_TIMING_MAX_QUERIES"]


#: above this many batched queries a plan keeps the lane model's timing alone (the simulation, about
#: 8 µs per query, once in the plan and once in the check, is then left out of both)
ENGINE_TIMING_MAX_QUERIES = 200_000


def engine_timing_applies(batch_size: np.ndarray, release_s: np.ndarray, *, slotted: bool) -> bool:
    """Whether a plan's batched instances are timed as the engine runs them (:func:`simulate_rows`)
    as well as by the lane model: some query is batched, at most :data:`ENGINE_TIMING_MAX_QUERIES`
    are, every query is released at t = 0 (the engine runs a lane's queries back to back; with
    release times the plan does not), and the plan is not made per time slot (its lanes run inside
    slots). The planner and the checker decide by this one rule."""
    batched = int(np.count_nonzero(np.asarray(batch_size) > 1))
    rel = np.asarray(release_s, dtype=float)
    return (0 < batched <= ENGINE_TIMING_MAX_QUERIES and not slotted
            and not bool(np.any(np.nan_to_num(rel) > 0)))


@dataclass(frozen=True)
class EngineTimeline:
    """Per query (the rows given to :func:`simulate_engine`) its start (its prefill's start) and
    end (the end of the step that gives its last token) [s from the instance's start], and the
    instance's makespan [s], decode steps and empty slot-seconds over its decode steps."""

    start_s: np.ndarray
    end_s: np.ndarray
    makespan_s: float
    decode_steps: int
    empty_slot_s: float

    def padding_energy_j(self, slot_power_w: float) -> float:
        """The empty slots' energy [J] at ``slot_power_w`` [W] per empty slot."""
        return self.empty_slot_s * slot_power_w


def prefill_and_step_s(runtime_s: np.ndarray, runtime_one_token_s: np.ndarray, output_tokens: np.ndarray,
                       batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Each query's prefill time and decode-step time [s] at ``batch_size`` from the models'
    runtimes at its output tokens and at one output token: the runtime at one output token is
    the batch's b prefills, so a prefill is 1/b of it, and the rest of the runtime is spread over
    the query's output tokens − 1 decode steps."""
    tout = np.asarray(output_tokens, dtype=np.int64)
    one = np.maximum(np.asarray(runtime_one_token_s, dtype=float), 0.0)
    prefill_s = one / batch_size
    decode_s = np.maximum(np.asarray(runtime_s, dtype=float) - one, 0.0)
    step_s = np.where(tout > 1, decode_s / np.maximum(tout - 1, 1), 0.0)
    return prefill_s, step_s


def simulate_engine(lane: np.ndarray, slots: int, prefill_s: np.ndarray, step_s: np.ndarray,
                    steps: np.ndarray) -> EngineTimeline:
    """The engine's timeline of one instance of ``slots`` slots. Row i is a query on lane
    ``lane[i]`` (0 ≤ lane < slots); the rows of a lane are in the order the lane runs them. Each
    query takes ``prefill_s[i]`` to prefill and ``steps[i]`` decode steps (its output tokens − 1;
    0 for a query whose prefill gives its only token)."""
    lane = np.asarray(lane, dtype=np.int64)
    n = lane.size
    # plain lists: the loop below reads and writes one element at a time
    pre: list[float] = np.asarray(prefill_s, dtype=float).tolist()
    stp: list[float] = np.asarray(step_s, dtype=float).tolist()
    k_steps: list[int] = np.asarray(steps, dtype=np.int64).tolist()
    if n and (lane.min() < 0 or lane.max() >= slots):
        raise ValueError(f"lanes must lie in 0..{slots - 1}")
    order = np.argsort(lane, kind="stable")
    bounds = np.searchsorted(lane[order], np.arange(slots + 1))
    queue = [order[bounds[s]:bounds[s + 1]].tolist() for s in range(slots)]
    taken = [0] * slots
    start = [0.0] * n
    end = [0.0] * n
    clock = 0.0
    step_k = 0  # decode steps done
    running: dict[int, int] = {}  # slot -> its query
    step_sum = 0.0  # of the running queries' step_s
    due: list[tuple[int, int]] = []  # (the decode step count at which it ends, slot)
    empty_slot_s = 0.0

    def fill(slot: int) -> None:
        """Prefill the slot's lane's next queries until one needs decode steps (or none is left)."""
        nonlocal clock, step_sum
        q = queue[slot]
        while taken[slot] < len(q):
            i = q[taken[slot]]
            taken[slot] += 1
            start[i] = clock
            clock += pre[i]
            if k_steps[i] <= 0:
                end[i] = clock
                continue
            running[slot] = i
            step_sum += stp[i]
            heapq.heappush(due, (step_k + k_steps[i], slot))
            return

    for slot in range(slots):
        fill(slot)
    while due:
        k_end = due[0][0]
        gap = k_end - step_k
        dt = step_sum / len(running)
        clock += gap * dt
        empty_slot_s += gap * (slots - len(running)) * dt
        step_k = k_end
        ended = []
        while due and due[0][0] == k_end:
            ended.append(heapq.heappop(due)[1])
        for slot in ended:  # each ends with this step, before any refill's prefill
            i = running.pop(slot)
            end[i] = clock
            step_sum -= stp[i]
        if not running:
            step_sum = 0.0  # no drift from the running sum
        for slot in sorted(ended):
            fill(slot)
    return EngineTimeline(np.array(start), np.array(end), float(clock), int(step_k), float(empty_slot_s))


def _step_times_s(models: FittedModels, llm: str, device: str, batch_size: int, input_tokens: np.ndarray,
                  output_tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Each query's prefill and decode-step times [s] and decode steps at ``batch_size``
    (:func:`prefill_and_step_s`; a prefill-only request, 0 output tokens, yields one token). None
    where the models cannot predict them."""
    tin = np.asarray(input_tokens, dtype=np.int64)
    tout = np.maximum(np.asarray(output_tokens, dtype=np.int64), 1)
    b = int(batch_size)
    try:
        full = models.predict(llm, device, tin, tout, b)["runtime_s"].to_numpy(dtype=float)
        one = models.predict(llm, device, tin, np.ones_like(tin), b)["runtime_s"].to_numpy(dtype=float)
    except (KeyError, ValueError):  # a DataError is a ValueError: the models cannot say
        return None
    prefill_s, step_s = prefill_and_step_s(full, one, tout, b)
    return prefill_s, step_s, tout - 1


def simulate_with_models(models: FittedModels, llm: str, device: str, batch_size: int, lane: np.ndarray,
                         input_tokens: np.ndarray, output_tokens: np.ndarray) -> EngineTimeline | None:
    """:func:`simulate_engine` of one instance of ``llm`` on ``device`` at ``batch_size``, each
    query's times from ``models`` (:func:`prefill_and_step_s`; a prefill-only request, 0 output
    tokens, yields one token). Rows as for :func:`simulate_engine`. None where the models cannot
    predict them."""
    times = _step_times_s(models, llm, device, batch_size, input_tokens, output_tokens)
    if times is None:
        return None
    return simulate_engine(lane, int(batch_size), *times)


def simulate_rows(models: FittedModels, llm: np.ndarray, device: np.ndarray, batch_size: np.ndarray,
                  instance: np.ndarray, lane: np.ndarray, lane_start_s: np.ndarray, input_tokens: np.ndarray,
                  output_tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Each row's start and end [s] when every batched instance of a plan (rows with batch size
    above 1, grouped by LLM, device, batch size and instance) runs on a continuous-batching engine
    from t = 0 (:func:`simulate_with_models`), each lane's queries in the order of ``lane_start_s``
    (their start in the plan's lane timing). Rows at batch size 1 are NaN (the lane model is the
    engine there). None where the models cannot say for some instance."""
    n = len(lane)
    start = np.full(n, np.nan)
    end = np.full(n, np.nan)
    b = np.asarray(batch_size, dtype=np.int64)
    rows = np.flatnonzero(b > 1)
    if rows.size == 0:
        return start, end
    llm_a = np.asarray(llm, dtype=object)
    dev_a = np.asarray(device, dtype=object)
    keys = np.char.add(np.char.add(llm_a[rows].astype(str), "\x00"), dev_a[rows].astype(str))
    _, key_code = np.unique(keys, return_inverse=True)
    inst = np.asarray(instance, dtype=np.int64)[rows]
    ln = np.asarray(lane, dtype=np.int64)[rows]
    # instances in (LLM and device, batch size, instance) order; within each, lane by lane in lane order
    order = np.lexsort((np.asarray(lane_start_s, dtype=float)[rows], ln, inst, b[rows], key_code))
    r = rows[order]
    kind = np.stack([key_code[order], b[r]], axis=1)  # (LLM and device, batch size)
    group = np.column_stack([kind, inst[order]])
    kind_cuts = np.flatnonzero(np.any(np.diff(kind, axis=0) != 0, axis=1)) + 1
    tin = np.asarray(input_tokens, dtype=np.int64)
    tout = np.asarray(output_tokens, dtype=np.int64)
    lane_a = np.asarray(lane, dtype=np.int64)
    for lo, hi in zip(np.r_[0, kind_cuts], np.r_[kind_cuts, len(r)]):
        g = r[lo:hi]  # the rows of one (LLM, device, batch size): their times predicted at once
        times = _step_times_s(models, str(llm_a[g[0]]), str(dev_a[g[0]]), int(b[g[0]]), tin[g], tout[g])
        if times is None:
            return None
        pre, stp, steps = times
        cuts = np.flatnonzero(np.diff(group[lo:hi, 2]) != 0) + 1
        for a0, a1 in zip(np.r_[0, cuts], np.r_[cuts, len(g)]):  # one instance
            sim = simulate_engine(lane_a[g[a0:a1]], int(b[g[0]]), pre[a0:a1], stp[a0:a1], steps[a0:a1])
            start[g[a0:a1]] = sim.start_s
            end[g[a0:a1]] = sim.end_s
    return start, end
