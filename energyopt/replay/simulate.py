"""The engine simulation of a replayed instance (:mod:`energyopt.enginesim`), from the plan's lanes
and the models, printed beside the plan's lane model and the measurement."""

from __future__ import annotations

import numpy as np

from ..enginesim import EngineTimeline, prefill_and_step_s, simulate_engine
from ..errors import DataError
from ..modelstore import FittedModels
from .lanes import InstanceRun

__all__ = ["SimulatedInstance", "prefill_and_step_s", "simulate_instance", "simulate_with_models"]

SimulatedInstance = EngineTimeline


def simulate_instance(run: InstanceRun, prefill_s: np.ndarray, step_s: np.ndarray) -> EngineTimeline:
    """The engine's timeline of ``run`` (its rows in the engine's order: lane by lane, each lane
    in the plan's order) with each row's ``prefill_s`` and ``step_s``."""
    r = run.rows
    steps = np.maximum(r["output_tokens"].to_numpy(dtype=np.int64) - 1, 0)
    return simulate_engine(r["lane"].to_numpy(dtype=np.int64), run.batch_size, prefill_s, step_s, steps)


def simulate_with_models(run: InstanceRun, models: FittedModels) -> EngineTimeline | None:
    """:func:`simulate_instance` with each query's times from ``models`` at the instance's batch
    size (:func:`~energyopt.enginesim.prefill_and_step_s`); None where the models cannot predict them."""
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
