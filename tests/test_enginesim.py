"""The engine simulation (energyopt.enginesim) against the engine's own scheduling run step by step."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oracles import engine_timeline_by_steps

from energyopt.enginesim import prefill_and_step_s, simulate_engine


@st.composite
def instances(draw):
    slots = draw(st.integers(1, 5))
    n = draw(st.integers(0, 14))
    lane = np.array(draw(st.lists(st.integers(0, slots - 1), min_size=n, max_size=n)), dtype=np.int64)
    steps = np.array(draw(st.lists(st.integers(0, 30), min_size=n, max_size=n)), dtype=np.int64)
    pre = np.array(draw(st.lists(st.floats(0.001, 0.2), min_size=n, max_size=n)))
    stp = np.array(draw(st.lists(st.floats(0.001, 0.05), min_size=n, max_size=n)))
    return lane, slots, pre, stp, steps


@settings(max_examples=150, deadline=None)
@given(instances())
def test_event_simulation_equals_the_engine_step_by_step(inst):
    lane, slots, pre, stp, steps = inst
    sim = simulate_engine(lane, slots, pre, stp, steps)
    start, end, makespan, n_steps, empty = engine_timeline_by_steps(lane, slots, pre, stp, steps)
    assert sim.start_s.tolist() == pytest.approx(start.tolist(), abs=1e-9)
    assert sim.end_s.tolist() == pytest.approx(end.tolist(), abs=1e-9)
    assert sim.makespan_s == pytest.approx(makespan, abs=1e-9)
    assert sim.decode_steps == n_steps
    assert sim.empty_slot_s == pytest.approx(empty, abs=1e-9)


def test_one_slot_is_the_lane_model():
    rng = np.random.default_rng(3)
    tout = rng.integers(1, 40, size=12)
    one = rng.uniform(0.01, 0.05, size=12)
    runtime = one + (tout - 1) * rng.uniform(0.005, 0.02, size=12)
    pre, stp = prefill_and_step_s(runtime, one, tout, 1)
    sim = simulate_engine(np.zeros(12, dtype=np.int64), 1, pre, stp, tout - 1)
    assert sim.end_s.tolist() == pytest.approx(np.cumsum(runtime).tolist())
    assert sim.makespan_s == pytest.approx(runtime.sum()) and sim.empty_slot_s == 0.0


def test_prefill_and_step_split_the_runtime():
    pre, stp = prefill_and_step_s(np.array([1.0, 0.4]), np.array([0.4, 0.4]), np.array([7, 1]), 4)
    assert pre.tolist() == pytest.approx([0.1, 0.1]) and stp.tolist() == pytest.approx([0.1, 0.0])


def test_lanes_outside_the_slots_are_refused():
    with pytest.raises(ValueError, match="0..1"):
        simulate_engine(np.array([2]), 2, np.array([0.1]), np.array([0.1]), np.array([3]))
