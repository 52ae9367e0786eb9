"""problem.py: which (query, deployment) pairs are options, what each costs (with and without
idle power, energy or trade-off), and why a query has none."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import (
    MEASURED_IN,
    MEASURED_OUT,
    inside_outside_workload,
    make_models,
    ranged_two_llm_models,
    with_measured_ranges,
    workload_of,
)
from conftest import TWO_LLM_MODELS as MODELS
from conftest import two_llm_fleet as fleet

from energyopt.errors import DataError
from energyopt.fleet import fleet_from_dict
from energyopt.problem import build_problem

SMALL_G, BIG_G, BIG_C = 0, 1, 2


FOUR = workload_of([
    (10, 100, 0.0, None),  # q0: every deployment
    (10, 100, 0.6, None),  # q1: floor 0.6, only big
    (950, 100, 0.0, None),  # q2: 1050 tokens, beyond small's context
    (10, 100, 0.0, 5.0),  # q3: big@c takes 10 s, more than its 5 s deadline
])


def test_options_follow_floor_context_and_deadline():
    p = build_problem(FOUR, fleet(), make_models(MODELS))
    assert p.ok.tolist() == [[True, True, True], [False, True, True], [False, True, True], [True, True, False]]
    assert p.n_options == 9 and p.unservable.empty and p.excluded_invalid == 0


def test_runnable_means_a_valid_model_and_a_context_that_holds_the_query():
    p = build_problem(FOUR, fleet(), make_models(MODELS))
    # floors and deadlines do not matter to runnable; small cannot hold q2's 1050 tokens
    assert p.runnable.tolist() == [[True] * 3, [True] * 3, [False, True, True], [True] * 3]


def test_an_option_must_end_within_the_horizon():
    p = build_problem(FOUR.iloc[:1], fleet(horizon_s=5.0), make_models(MODELS))
    assert p.ok.tolist() == [[True, True, False]]  # big@c's 10 s exceed the 5 s horizon
    assert p.queries["deadline_eff_s"].tolist() == [5.0]


def test_energy_costs_without_idle_are_the_predicted_energy():
    p = build_problem(FOUR, fleet(), make_models(MODELS))
    assert p.cost[0].tolist() == [100.0, 300.0, 200.0]
    assert p.cost[1, SMALL_G] == np.inf and p.cost[3, BIG_C] == np.inf
    assert p.instance_cost.tolist() == [0.0, 0.0, 0.0]


def test_energy_costs_with_idle_are_above_idle_plus_idle_per_instance():
    p = build_problem(FOUR, fleet(), make_models(MODELS), idle=True)
    # small@g 100 J − 50 W·1 s; big@g 300 J − 50 W·2 s; big@c 200 J − 10 W·10 s
    assert p.cost[0].tolist() == pytest.approx([50.0, 200.0, 100.0])
    # 50 W (GPU) and 10 W (CPU) over the 100 s horizon
    assert p.instance_cost.tolist() == pytest.approx([5000.0, 5000.0, 1000.0])


def test_idle_power_of_an_instance_counts_each_of_its_devices():
    doc = {"horizon_s": 10.0, "pools": {"g": {"kind": "gpu", "count": 2, "memory_gb": 80, "idle_power_w": 50}},
           "llms": {"m": {"accuracy": 0.5, "accuracy_source": "t", "params_b": 1}},
           "deployments": [{"llm": "m", "pool": "g", "devices_per_instance": 2}]}
    p = build_problem(FOUR.iloc[:1], fleet_from_dict(doc), make_models({("m", "g"): MODELS[("big", "g")]}), idle=True)
    assert p.instance_cost.tolist() == [2 * 50.0 * 10.0]
    assert p.cost[0, 0] == pytest.approx(300.0 - 100.0 * 2.0)


def test_tradeoff_costs_use_batch_normalisers_computed_once():
    zeta = 0.25
    p = build_problem(FOUR.iloc[:2], fleet(), make_models(MODELS), objective="tradeoff", zeta=zeta)
    # E_norm: each query's dearest option (300 J and 300 J); A_norm: Σ weights (110 + 110) × best accuracy 0.8
    assert p.norms == pytest.approx({"energy_norm_j": 600.0, "accuracy_norm": 176.0})
    want_q0 = [zeta * e / 600.0 - (1 - zeta) * 110 * a / 176.0 for e, a in ((100, 0.4), (300, 0.8), (200, 0.8))]
    assert p.cost[0].tolist() == pytest.approx(want_q0)
    assert p.cost[1, SMALL_G] == np.inf
    assert p.instance_cost.tolist() == [0.0, 0.0, 0.0]


def test_tradeoff_with_idle_scales_the_instance_cost_like_energy():
    zeta = 0.5
    p = build_problem(FOUR.iloc[:2], fleet(), make_models(MODELS), objective="tradeoff", zeta=zeta, idle=True)
    # the normaliser is the raw energy (not the energy above idle)
    assert p.norms["energy_norm_j"] == pytest.approx(600.0)
    assert p.cost[0, BIG_C] == pytest.approx(zeta * 100.0 / 600.0 - (1 - zeta) * 110 * 0.8 / 176.0)
    assert p.instance_cost.tolist() == pytest.approx([zeta * 5000 / 600, zeta * 5000 / 600, zeta * 1000 / 600])


def test_tradeoff_normalisers_leave_out_unservable_queries():
    wl = workload_of([(10, 100, 0.0, None), (10, 100, 0.95, None)])  # q1: no LLM reaches 0.95
    p = build_problem(wl, fleet(), make_models(MODELS), objective="tradeoff")
    assert p.norms == pytest.approx({"energy_norm_j": 300.0, "accuracy_norm": 110 * 0.8})


def test_cand_lists_options_by_query_in_deployment_order():
    p = build_problem(FOUR, fleet(), make_models(MODELS))
    c = p.cand
    assert list(zip(c["q"], c["d"])) == [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 1), (2, 2), (3, 0), (3, 1)]
    assert c["energy_j"].tolist()[:3] == [100.0, 300.0, 200.0]
    assert c["runtime_s"].tolist()[7:] == pytest.approx([1.0, 2.0])
    assert c["accuracy"].tolist()[:3] == [0.4, 0.8, 0.8]
    assert c["deadline_eff_s"].tolist()[7:] == [5.0, 5.0]


def test_weights_are_input_plus_output_tokens():
    p = build_problem(FOUR, fleet(), make_models(MODELS))
    assert p.queries["weight"].tolist() == [110.0, 110.0, 1050.0, 110.0]


def test_max_mean_accuracy_puts_each_query_on_its_most_accurate_option():
    # q1 only small can serve in time (deadline 1.5 s: small 1 s, big 2 s and 10 s)
    wl = workload_of([(10, 100, 0.0, None), (30, 100, 0.0, 1.5)])
    p = build_problem(wl, fleet(), make_models(MODELS))
    assert p.max_mean_accuracy() == pytest.approx((110 * 0.8 + 130 * 0.4) / 240)


def test_describe_counts_queries_options_and_exclusions():
    p = build_problem(FOUR, fleet(), make_models(MODELS))
    assert p.describe() == {"queries": 4, "deployments": 3, "options": 9, "unservable": 0,
                            "excluded_invalid_predictions": 0}


# --- why a query has no option --------------------------------------------------------------

def test_unservable_reason_accuracy_floor_above_every_llm():
    p = build_problem(workload_of([(10, 100, 0.9, None)]), fleet(), make_models(MODELS))
    assert p.unservable["reason"].tolist() == ["needs accuracy >= 0.9; the best LLM in the fleet has 0.8"]


def test_unservable_reason_tokens_exceed_every_accurate_enough_context():
    p = build_problem(workload_of([(1500, 100, 0.6, None)]), fleet(big_context=1200), make_models(MODELS))
    assert p.unservable["reason"].tolist() == ["1600 tokens exceed the context of every LLM accurate enough"]


def test_unservable_reason_every_prediction_invalid_and_counted_as_excluded():
    models = dict(MODELS)
    models[("big", "g")] = ((50.0, 0, -1.0, 0), (0, 0, 0.02, 0))  # 50 − 100 J: predicts below 0
    models[("big", "c")] = ((0, 0, 2.0, 0), (1.0, 0, -0.1, 0))  # 1 − 10 s
    p = build_problem(workload_of([(10, 100, 0.6, None)]), fleet(), make_models(models))
    assert p.unservable["reason"].tolist() == [
        "every accurate-enough option's model predicts <= 0 for this query (outside its valid domain)"]
    assert p.excluded_invalid == 2 and not p.runnable[0, BIG_G] and not p.runnable[0, BIG_C]


def test_an_invalid_prediction_is_never_an_option_even_where_others_are():
    models = dict(MODELS)
    models[("small", "g")] = ((50.0, 0, -1.0, 0), (0, 0, 0.01, 0))
    p = build_problem(FOUR.iloc[:1], fleet(), make_models(models))
    assert p.ok.tolist() == [[False, True, True]] and p.excluded_invalid == 1 and p.unservable.empty


def test_unservable_reason_deadline_names_the_fastest_option():
    p = build_problem(workload_of([(10, 100, 0.0, 0.5)]), fleet(), make_models(MODELS))
    assert p.unservable["reason"].tolist() == [
        "fastest accurate-enough option (small@g) takes 1 s, more than its deadline of 0.5 s"]


def test_unservable_reason_horizon_where_the_deadline_is_later_or_absent():
    for dl in (None, 50.0):
        p = build_problem(workload_of([(10, 100, 0.0, dl)]), fleet(horizon_s=0.5), make_models(MODELS))
        assert p.unservable["reason"].tolist() == [
            "fastest accurate-enough option (small@g) takes 1 s, more than its horizon of 0.5 s"]


def test_unservable_lists_only_the_queries_without_options():
    wl = workload_of([(10, 100, 0.0, None), (10, 100, 0.9, None), (10, 100, 0.0, None)])
    p = build_problem(wl, fleet(), make_models(MODELS))
    assert p.unservable["query_id"].tolist() == ["q1"] and p.n_queries == 3


# --- bad arguments --------------------------------------------------------------------------

@pytest.mark.parametrize("kw, match", [
    ({"objective": "power"}, "objective must be one of energy, tradeoff, got 'power'"),
    ({"zeta": 1.5}, r"zeta must be in \[0, 1\], got 1.5"),
    ({"zeta": -0.1}, r"zeta must be in \[0, 1\], got -0.1"),
    ({"min_mean_accuracy": 1.2}, r"min_mean_accuracy must be in \[0, 1\], got 1.2"),
])
def test_build_problem_refuses_bad_settings(kw, match):
    with pytest.raises(DataError, match=match):
        build_problem(FOUR, fleet(), make_models(MODELS), **kw)


def test_build_problem_refuses_an_empty_workload():
    with pytest.raises(DataError, match="the workload has no queries"):
        build_problem(FOUR.iloc[:0], fleet(), make_models(MODELS))


def test_build_problem_names_deployments_without_a_fitted_model():
    models = {k: v for k, v in MODELS.items() if k != ("big", "c")}
    with pytest.raises(DataError, match=r"no fitted model for deployment\(s\) big@c"):
        build_problem(FOUR, fleet(), make_models(models))


def test_problem_keeps_its_inputs_for_the_checker():
    fl, fm = fleet(), make_models(MODELS)
    p = build_problem(FOUR, fl, fm)
    assert p.inputs.workload is FOUR and p.inputs.fleet is fl and p.inputs.models is fm


# --- predictions outside the token ranges the models were measured on ---------------------------

OUTSIDE_ALL = ("600 input and 300 output tokens lie outside the token ranges measured for every accurate-enough "
               "option (input 8-512 and output 8-256 for small/g, big/g and 1 more); --strict-range refuses "
               "extrapolated predictions")


def test_extrapolated_flags_each_pair_outside_its_measured_ranges_and_keeps_it_an_option():
    p = build_problem(inside_outside_workload(), fleet(), ranged_two_llm_models())
    assert p.extrapolated.tolist() == [[False] * 3, [True] * 3]
    assert p.ok.all() and p.runnable.all() and p.unservable.empty and not p.strict_range
    assert p.extrapolated.dtype == bool and p.extrapolated.flags["C_CONTIGUOUS"]


def test_a_pair_is_extrapolated_where_either_target_was_not_measured():
    models = ranged_two_llm_models()
    with_measured_ranges(models, (8, 1024), (8, 512), pairs=[("big", "c")], targets=("energy_j",))
    p = build_problem(inside_outside_workload(), fleet(), models)
    assert p.extrapolated[1].tolist() == [True, True, True]  # big/c's runtime model still stops at 512 x 256
    with_measured_ranges(models, (8, 1024), (8, 512), pairs=[("big", "c")], targets=("runtime_s",))
    p = build_problem(inside_outside_workload(), fleet(), models)
    assert p.extrapolated[1].tolist() == [True, True, False]


def test_the_range_bounds_are_measured_points_themselves():
    wl = workload_of([(8, 8, 0.0, None), (512, 256, 0.0, None), (7, 8, 0.0, None), (8, 257, 0.0, None)])
    p = build_problem(wl, fleet(), ranged_two_llm_models())
    assert p.extrapolated[:, 0].tolist() == [False, False, True, True]


def test_strict_range_makes_a_query_outside_every_range_unservable_with_the_ranges():
    p = build_problem(inside_outside_workload(), fleet(), ranged_two_llm_models(), strict_range=True)
    assert p.strict_range and p.ok.tolist() == [[True] * 3, [False] * 3]
    assert p.runnable.tolist() == p.ok.tolist()  # routing rules skip them too
    assert p.unservable.to_dict("records") == [{"query_id": "q1", "reason": OUTSIDE_ALL}]
    assert p.excluded_invalid == 0  # extrapolated is not invalid


def test_strict_range_keeps_the_options_inside_their_ranges():
    models = with_measured_ranges(ranged_two_llm_models(), (8, 1024), (8, 512), pairs=[("big", "c")])
    p = build_problem(inside_outside_workload(), fleet(), models, strict_range=True)
    assert p.ok[1].tolist() == [False, False, True] and p.unservable.empty
    assert p.cost[1].tolist() == [np.inf, np.inf, 600.0]


def test_strict_range_reasons_name_only_the_accurate_enough_pairs_and_judge_deadlines_on_usable_ones():
    wl = workload_of([(600, 300, 0.6, None)])  # only big is accurate enough
    p = build_problem(wl, fleet(), ranged_two_llm_models(), strict_range=True)
    assert p.unservable["reason"].tolist() == [
        "600 input and 300 output tokens lie outside the token ranges measured for every accurate-enough option "
        "(input 8-512 and output 8-256 for big/g, big/c); --strict-range refuses extrapolated predictions"]
    # in range on big/c only (30 s), which misses the 20 s deadline: the fastest usable option is named,
    # not small/g (3 s), which is faster but extrapolated
    models = with_measured_ranges(ranged_two_llm_models(), (8, 1024), (8, 512), pairs=[("big", "c")])
    p = build_problem(workload_of([(600, 300, 0.0, 20.0)]), fleet(), models, strict_range=True)
    assert p.unservable["reason"].tolist() == [
        "fastest accurate-enough option (big@c) takes 30 s, more than its deadline of 20 s"]
    assert build_problem(workload_of([(600, 300, 0.0, 20.0)]), fleet(), models).unservable.empty


def test_models_extrapolated_matrix_is_predict_flag_per_pair_at_its_batch_size():
    models = with_measured_ranges(ranged_two_llm_models(), (100, 1024), (8, 512), pairs=[("big", "c")])
    tin, tout = np.array([8, 50, 600, 600, 2000]), np.array([8, 300, 100, 300, 10])
    pairs = [("small", "g"), ("big", "g"), ("big", "c"), ("small", "g")]
    got = models.extrapolated_matrix(pairs, tin, tout, [1, 1, 1, 1])
    want = np.column_stack([models.predict(llm, dev, tin, tout)["extrapolated"].to_numpy() for llm, dev in pairs])
    assert got.tolist() == want.tolist() and got.flags["C_CONTIGUOUS"]
    assert got[:, 2].tolist() == [True, True, False, False, True]
    assert models.measured_ranges("big", "c") == ((100, 1024), (8, 512), (1, 1))
    assert models.measured_ranges("small", "g") == (MEASURED_IN, MEASURED_OUT, (1, 1))


def test_a_batch_size_outside_the_measured_ones_is_extrapolated():
    m = ranged_two_llm_models().get("small", "g")["energy_j"]
    m.batch_size_range = (1, 64)
    assert m.extrapolated([10, 10, 10], [100, 100, 100], [1, 64, 128]).tolist() == [False, False, True]
    assert m.extrapolated([10], [100]).tolist() == [False]  # no batch size given: tokens only
    models = ranged_two_llm_models()
    for t in ("energy_j", "runtime_s"):
        models.get("small", "g")[t].batch_size_range = (1, 8)
    assert models.extrapolated_matrix([("small", "g")], np.array([10]), np.array([100]), [16]).tolist() == [[True]]
    assert models.measured_ranges("small", "g")[2] == (1, 8)
