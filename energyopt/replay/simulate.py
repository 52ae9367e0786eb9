"""The engine simulation of a replayed instance (:mod:`energyopt.enginesim`), from the plan's lanes
and the models, printed beside the plan's lane model and the measurement."""

from __future__ import annotations

import numpy as np

from .. import enginesim
from ..enginesim import EngineTimeline, simulate_engine
from ..modelstore import FittedModels
from .lanes import InstanceRun

__all__ = ["simulate_instance", "simulate_with_models"]


def simulate_instance(run: InstanceRun, prefill_s: np.ndarray, step_s: np.ndarray) -> EngineTimeline:
    """The engine's timeline of ``run`` (its rows in the engine's order: lane by lane, each lane
    in the plan's order) with each row's ``prefill_s`` and ``step_s``."""
    r = run.rows
    steps = np.maximum(r["output_tokens"].to_numpy(dtype=np.int64) - 1, 0)
    return simulate_engine(r["lane"].to_numpy(dtype=np.int64), run.batch_size, prefill_s, step_s, steps)


def simulate_with_models(run: InstanceRun, models: FittedModels) -> EngineTimeline | None:
    """The engine's timeline of ``run`` with each query's times from ``models`` at the instance's
    batch size (:func:`energyopt.enginesim.simulate_with_models`); None where they cannot say."""
    r = run.rows
    return enginesim.simulate_with_models(models, run.llm, run.device, run.batch_size, r["lane"].to_numpy(),
                                          r["input_tokens"].to_numpy(), r["output_tokens"].to_numpy())
