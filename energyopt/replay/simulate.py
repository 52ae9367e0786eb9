"""The replay engine's timeline of one instance, simulated from the models instead of measured.

The plan times each lane on its own: a query at batch size b takes the models' runtime at b,
which was measured with b identical queries (b prefills, then the decode steps of the whole
batch). The engine that replays the plan (:func:`~energyopt.characterize.engine.run_lanes`)
differs in two ways the lane model cannot see: every prefill of a refilled slot stalls every
other slot (so a long query waits for the prefills of the other lanes' many short ones, not for
b prefills of its own length), and the instance's last steps run with few slots busy. This module
runs the engine's own scheduling (:func:`run_lanes`) on a virtual clock instead:

* a prefill of query q takes ``prefill_s = runtime_b(τin, 1) / b`` (the models' runtime at one
  output token is the batch's b prefills);
* a decode step takes the mean over the running queries of
  ``step_s = (runtime_b(τin, τout) − runtime_b(τin, 1)) / (τout − 1)``, the step time of a full
  batch of that query (steps of a nearly empty instance are taken as full-batch steps);
* the padding is each decode step's empty slots times its time times the models' power of an
  empty slot (:meth:`~energyopt.modelstore.FittedModels.empty_slot_power_w`).

The queries' energies stay the plan's. The replay prints this beside the plan and the measurement
(README: "Replaying a plan on a GPU").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..characterize.engine import run_lanes
from ..errors import DataError
from ..modelstore import FittedModels
from .lanes import InstanceRun

__all__ = ["SimulatedInstance", "prefill_and_step_s", "simulate_instance", "simulate_with_models"]


@dataclass(frozen=True)
class SimulatedInstance:
    """An instance's simulated timeline: per query of ``run.rows`` (in that order) its start (its
    prefill's start) and end [s from the instance's start], and the instance's makespan [s],
    decode steps and empty slot-seconds of its decode steps."""

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
    runtimes at its output tokens and at one output token (see the module's docstring)."""
    tout = np.asarray(output_tokens, dtype=np.int64)
    one = np.asarray(runtime_one_token_s, dtype=float)
    prefill_s = np.maximum(one, 0.0) / batch_size
    decode_s = np.maximum(np.asarray(runtime_s, dtype=float) - one, 0.0)
    step_s = np.where(tout > 1, decode_s / np.maximum(tout - 1, 1), 0.0)
    return prefill_s, step_s


def simulate_instance(run: InstanceRun, prefill_s: np.ndarray, step_s: np.ndarray) -> SimulatedInstance:
    """The engine's timeline of ``run`` (lanes in the plan's order) on a virtual clock, with each
    query's (row of ``run.rows``) ``prefill_s`` and ``step_s``."""
    b = run.batch_size
    lanes: list[list[tuple[int, int]]] = [[] for _ in range(b)]
    rows_of: list[list[int]] = [[] for _ in range(b)]
    for i, (lane, tin, tout) in enumerate(zip(run.rows["lane"], run.rows["input_tokens"], run.rows["output_tokens"])):
        lanes[int(lane)].append((int(tin), int(tout)))
        rows_of[int(lane)].append(i)
    n = len(run.rows)
    start = np.full(n, np.nan)
    end = np.full(n, np.nan)
    clock = 0.0
    taken = [0] * b
    current: dict[int, int] = {}  # slot -> its running query's row
    empty_slot_s = 0.0
    decode_steps = 0

    def finish(slot: int) -> None:
        if slot in current:
            end[current.pop(slot)] = clock

    def prefill(slot: int, _input_tokens: int) -> None:
        nonlocal clock
        finish(slot)  # a query of one output token ends with its prefill: its slot prefills the next
        i = rows_of[slot][taken[slot]]
        taken[slot] += 1
        start[i] = clock
        clock += float(prefill_s[i])
        current[slot] = i

    def decode() -> None:
        nonlocal clock, empty_slot_s, decode_steps
        running = list(current.values())  # a query of one output token has left its slot already
        dt = float(np.mean(step_s[running])) if running else 0.0
        clock += dt
        empty_slot_s += (b - len(running)) * dt
        decode_steps += 1

    # run_lanes ends a query at the decode step that gives its last token and then prefills the
    # slot's next query or releases the slot: both call finish() at that step's end
    run_lanes(lanes, b, prefill, decode, finish, lambda: None)
    return SimulatedInstance(start, end, float(clock), decode_steps, float(empty_slot_s))


def simulate_with_models(run: InstanceRun, models: FittedModels) -> SimulatedInstance | None:
    """:func:`simulate_instance` with each query's times from ``models`` at the instance's batch
    size; None where the models cannot predict them."""
    r, b = run.rows, run.batch_size
    tin = r["input_tokens"].to_numpy(dtype=np.int64)
    tout = r["output_tokens"].to_numpy(dtype=np.int64)
    try:
        full = models.predict(run.llm, run.device, tin, tout, b)["runtime_s"].to_numpy(dtype=float)
        one = models.predict(run.llm, run.device, tin, np.ones_like(tin), b)["runtime_s"].to_numpy(dtype=float)
    except (DataError, KeyError):
        return None
    prefill_s, step_s = prefill_and_step_s(full, one, tout, b)
    return simulate_instance(run, prefill_s, step_s)
