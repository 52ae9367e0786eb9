"""accounting.py: each formula against numbers computed by hand, and the EDF test against an
enumeration of every order."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oracles import edf_feasible_by_permutations

from energyopt import accounting as acc


def test_j_to_kwh_uses_3_6_megajoules_per_kwh():
    assert acc.J_PER_KWH == 3.6e6
    assert acc.j_to_kwh(3.6e6) == 1.0
    assert acc.j_to_kwh(900_000) == 0.25
    assert acc.j_to_kwh(0) == 0.0


def test_above_idle_energy_subtracts_idle_power_times_runtime():
    # 100 J over 2 s at 30 W idle: 100 − 60 = 40 J above idle
    assert float(acc.above_idle_energy_j(100.0, 2.0, 30.0)) == pytest.approx(40.0)


def test_above_idle_energy_is_zero_where_idle_exceeds_the_energy():
    # 50 J over 2 s at 30 W: idle alone would be 60 J; never negative
    assert float(acc.above_idle_energy_j(50.0, 2.0, 30.0)) == 0.0


def test_above_idle_energy_broadcasts_a_row_of_idle_powers_over_a_matrix():
    e = np.array([[100.0, 100.0], [10.0, 10.0]])
    r = np.array([[1.0, 2.0], [1.0, 1.0]])
    idle = np.array([[20.0, 40.0]])
    assert acc.above_idle_energy_j(e, r, idle).tolist() == [[80.0, 20.0], [0.0, 0.0]]


def test_query_energy_cost_is_all_energy_without_idle_and_above_idle_with_it():
    e, r, idle = np.array([100.0, 10.0]), np.array([2.0, 1.0]), np.array([30.0, 30.0])
    assert acc.query_energy_cost_j(e, r, idle, idle=False).tolist() == [100.0, 10.0]
    assert acc.query_energy_cost_j(e, r, idle, idle=True).tolist() == [40.0, 0.0]


def test_idle_energy_is_power_times_horizon():
    assert float(acc.idle_energy_j(70.0, 3600.0)) == 252_000.0
    assert acc.idle_energy_j([10.0, 0.0, 2.5], 4.0).tolist() == [40.0, 0.0, 10.0]


def test_relative_gap_is_the_distance_over_the_objective():
    assert acc.relative_gap(100.0, 90.0) == pytest.approx(0.1)
    assert acc.relative_gap(100.0, 100.0) == 0.0


def test_relative_gap_is_zero_where_the_bound_exceeds_the_objective():
    assert acc.relative_gap(100.0, 100.5) == 0.0


def test_relative_gap_of_a_negative_objective_divides_by_its_magnitude():
    # trade-off objectives are negative: objective −10, bound −11 → 1/10
    assert acc.relative_gap(-10.0, -11.0) == pytest.approx(0.1)


def test_relative_gap_of_a_zero_objective_divides_by_a_tiny_floor():
    assert acc.relative_gap(0.0, 0.0) == 0.0
    assert acc.relative_gap(0.0, -1.0) == pytest.approx(1e12)


@pytest.mark.parametrize("objective, bound", [(math.nan, 1.0), (1.0, math.nan), (1.0, -math.inf), (math.inf, 1.0),
                                              (1.0, math.inf), (-math.inf, -math.inf)])
def test_relative_gap_is_inf_where_objective_or_bound_is_not_finite(objective, bound):
    assert acc.relative_gap(objective, bound) == math.inf


def test_effective_deadline_is_the_horizon_for_nan_and_later_deadlines():
    got = acc.effective_deadline_s([np.nan, 5.0, 20.0, 10.0], 10.0)
    assert got.tolist() == [10.0, 5.0, 10.0, 10.0]


def test_effective_deadline_of_no_queries_is_empty():
    assert acc.effective_deadline_s(np.zeros(0), 10.0).shape == (0,)


def test_token_weight_is_input_plus_output_tokens():
    assert acc.token_weight([10, 500], [5, 100]).tolist() == [15.0, 600.0]


def test_weighted_mean_accuracy_weighs_by_tokens():
    # (1·0.5 + 3·0.7) / 4 = 0.65
    assert acc.weighted_mean_accuracy([1.0, 3.0], [0.5, 0.7]) == pytest.approx(0.65)


def test_weighted_mean_accuracy_of_no_queries_or_no_weight_is_nan():
    assert math.isnan(acc.weighted_mean_accuracy([], []))
    assert math.isnan(acc.weighted_mean_accuracy([0.0, 0.0], [0.5, 0.7]))


def test_edf_end_orders_by_due_time_then_shorter_first():
    order, end = acc.edf_end_s([3.0, 1.0, 2.0, 1.0], [5.0, 9.0, 5.0, 5.0])
    # due 5: runtimes 3 (q0), 2 (q2), 1 (q3) → shorter first: q3, q2, q0; then q1 (due 9)
    assert order.tolist() == [3, 2, 0, 1]
    assert end.tolist() == [1.0, 3.0, 6.0, 7.0]


def test_edf_feasible_on_hand_cases():
    assert acc.edf_feasible([1.0, 1.0], [1.0, 2.0])
    assert not acc.edf_feasible([1.0, 1.0], [1.0, 1.5])
    assert acc.edf_feasible([], [])  # an empty lane is always in time
    # the order given is not the order run: due 2 before due 1 in the input still fits
    assert acc.edf_feasible([1.0, 1.0], [2.0, 1.0])


def test_edf_feasible_after_effective_deadline_treats_nan_as_the_horizon():
    due = acc.effective_deadline_s([np.nan, np.nan], 10.0)
    assert acc.edf_feasible([4.0, 6.0], due)
    assert not acc.edf_feasible([4.0, 6.5], due)


def test_edf_feasible_allows_the_absolute_tolerance_and_no_more():
    assert acc.EDF_ABS_TOL_S == 1e-9
    assert acc.edf_feasible([1.0], [1.0 - 0.5e-9])
    assert not acc.edf_feasible([1.0], [1.0 - 2e-9])


def test_edf_feasible_allows_the_relative_tolerance_on_large_times():
    # 1e6 s due 5e-7 s early: beyond the 1e-9 s absolute tolerance but within 1e-12 relative
    assert acc.EDF_REL_TOL == 1e-12
    assert acc.edf_feasible([1e6], [1e6 - 5e-7])
    assert not acc.edf_feasible([1e6], [1e6 - 5e-6])


@settings(max_examples=25, deadline=None, database=None)
@given(st.lists(st.tuples(st.floats(0.01, 5.0), st.floats(0.01, 12.0)), min_size=1, max_size=6))
def test_property_edf_feasible_agrees_with_trying_every_order(jobs):
    runs, dues = zip(*jobs)
    assert acc.edf_feasible(runs, dues) == edf_feasible_by_permutations(runs, dues, acc.EDF_ABS_TOL_S, acc.EDF_REL_TOL)
