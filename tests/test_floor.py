"""methods/floor.py: a mean-accuracy floor no plan meets, proven by the most accuracy a relaxation
allows, against brute force on tiny random instances: every ceiling is at least the most accuracy
of any plan, a floor just above that most is out of reach and one just below is not, and a
remembered ceiling decides a later floor of the same rows (only of the same rows)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import TWO_LLM_MODELS, make_models, random_instance, two_llm_fleet, workload_of
from oracles import brute_force_optimum

from energyopt.fleet import fleet_from_dict
from energyopt.formulation import build_matrix
from energyopt.methods import Limits, floor, strong
from energyopt.methods.strong import machine_columns, remembered_cuts, solve_strong
from energyopt.plan import plan
from energyopt.problem import build_problem
from energyopt.schema import Status
from energyopt.solvers import get_solver

#: how far from the brute-force most accuracy the floors just above and just below it are
STEP = 1e-3


def _most_accuracy(wl, fleet, models, kw) -> float:
    """The most token-weighted mean accuracy of any plan, by brute force (-inf: no plan at all):
    the trade-off at ζ = 0 minimises −Σ w·acc / A_norm, and instances cost nothing there."""
    kw = {k: v for k, v in kw.items() if k not in ("objective", "zeta", "min_mean_accuracy")}
    p = build_problem(wl, fleet, models, objective="tradeoff", zeta=0.0, **kw)
    if not p.unservable.empty:
        return -math.inf
    opt = brute_force_optimum(p)
    if math.isinf(opt):
        return -math.inf
    served = p.queries["weight"].to_numpy(dtype=float)
    return -opt * p.norms["accuracy_norm"] / served.sum()


def _instances(first_seed: int, n: int):
    """(seed, workload, fleet, models, kw without objective or floor, brute-force most accuracy) of
    the random instances that have a plan."""
    for seed in range(first_seed, first_seed + n):
        wl, fleet, models, kw = random_instance(seed)
        best = _most_accuracy(wl, fleet, models, kw)
        if math.isfinite(best):
            yield seed, wl, fleet, models, {k: v for k, v in kw.items() if k != "min_mean_accuracy"}, best


def _row_of(problem, model):
    fr = floor.floor_row(model, problem)
    assert fr is not None and fr.weight_total is not None
    return fr


@pytest.mark.parametrize("kind", ["exact", "aggregate"])
def test_every_ceiling_is_at_least_the_brute_force_most_and_proves_a_floor_just_above_it_often(kind):
    proven = checked = 0
    backend = get_solver("highs")
    for seed, wl, fleet, models, kw, best in _instances(9000, 50):
        if best + STEP > 1:
            continue
        p = build_problem(wl, fleet, models, min_mean_accuracy=best + STEP, **kw)
        model = build_matrix(p, kind)
        fr = _row_of(p, model)
        with remembered_cuts():
            lp = floor.lp_ceiling(model, fr, Limits())
            relaxed = floor.relaxation_ceiling(model, fr, backend, Limits(), None, lambda s: None)
        for c in (lp, relaxed):  # valid: no plan's accuracy is above a ceiling
            assert fr.mean(c.at_most) >= best - 1e-7, (seed, c)
        assert relaxed.reached <= relaxed.at_most + 1e-6 * fr.rhs, seed
        proven += floor.out_of_reach(fr, relaxed) is not None
        checked += 1
    assert checked >= 20 and proven >= checked // 3, (checked, proven)


@pytest.mark.parametrize("kind", ["exact", "aggregate"])
def test_solve_strong_calls_a_floor_just_above_the_brute_force_most_infeasible_and_just_below_feasible(
        kind, monkeypatch):
    """With every step allowed on tiny batches (COUNTS_MIN_QUERIES 0): the floor just below the most
    is never called out of reach, and its bound stays under the brute-force optimum; just above it,
    the exact model is infeasible, and the floor module says why on some instances."""
    monkeypatch.setattr(strong, "COUNTS_MIN_QUERIES", 0)
    backend = get_solver("highs")
    said = checked = 0
    for seed, wl, fleet, models, kw, best in _instances(9100, 100):
        for target in (best - STEP, best + STEP):
            if not 0 <= target <= 1:
                continue
            p = build_problem(wl, fleet, models, min_mean_accuracy=target, **kw)
            with remembered_cuts():
                res = solve_strong(build_matrix(p, kind), p, backend, Limits(mip_rel_gap=0.0))
            if target < best:
                opt = brute_force_optimum(p)
                assert math.isfinite(opt), seed
                assert res.status is not Status.INFEASIBLE, (seed, target, res.reason)
                assert res.bound <= opt + 1e-6 * max(1.0, abs(opt)), seed
            elif kind == "exact":
                assert res.status is Status.INFEASIBLE, (seed, target)
            said += "can reach at most" in res.reason
            checked += 1
    assert checked >= 40 and said >= 5, (checked, said)


def test_a_remembered_ceiling_decides_a_later_floor_of_the_same_rows_without_solving(monkeypatch):
    """Within remembered_cuts(), the first floor's ceiling is kept: a floor above it is out of reach
    before any LP or backend runs, and a floor at or below what the relaxation reached is not tried
    again; outside the block nothing is kept."""
    monkeypatch.setattr(strong, "COUNTS_MIN_QUERIES", 0)
    backend = get_solver("highs")
    calls: list[str] = []
    done = 0
    for seed, wl, fleet, models, kw, best in _instances(9200, 40):
        if best + STEP > 1 or best - 2 * STEP < 0:
            continue
        low = build_problem(wl, fleet, models, min_mean_accuracy=best - 2 * STEP, **kw)
        high = build_problem(wl, fleet, models, min_mean_accuracy=best + STEP, **kw)
        with remembered_cuts():
            m_low = build_matrix(low, "exact")
            ceiling = floor.relaxation_ceiling(m_low, _row_of(low, m_low), backend, Limits(), None, lambda s: None)
            fr = _row_of(high, build_matrix(high, "exact"))
            if not fr.beyond(ceiling):
                continue  # the relaxation does not prove this one: nothing to remember it by
            assert floor.remembered_ceiling(fr) == ceiling  # the same rows, another floor: the same key
            with monkeypatch.context() as m:  # nothing may be solved now
                m.setattr(strong, "_strengthen", lambda *a, **k: calls.append("lp"))
                m.setattr(strong, "backend_solve", lambda *a, **k: calls.append("backend"))
                res = solve_strong(build_matrix(high, "exact"), high, backend, Limits())
            assert res.status is Status.INFEASIBLE and "can reach at most" in res.reason, seed
            # a floor under what the relaxation reached: no second search of the relaxation
            mid = build_problem(wl, fleet, models, min_mean_accuracy=best - STEP, **kw)
            m_mid = build_matrix(mid, "exact")
            fr_mid = _row_of(mid, m_mid)
            assert fr_mid.rhs <= ceiling.reached, seed
            x = np.zeros(m_mid.n_vars)  # an LP optimum that would call for a search: the floor binds (no slack)
            with monkeypatch.context() as m:
                m.setattr(floor, "relaxation_ceiling", lambda *a, **k: calls.append("relaxation"))
                assert floor.relaxation_verdict(m_mid, fr_mid, x, backend, Limits(), None, lambda s: None) is None
        assert floor.remembered_ceiling(fr) == floor.Ceiling()  # forgotten after the block
        done += 1
    assert not calls
    assert done >= 3


def test_the_key_is_the_rows_not_the_floor():
    """Two floors of one batch share a key; other deadlines, instances or accuracies do not."""
    wl = workload_of([(10, 100, 0.0, 3.0), (10, 100, 0.0, None), (20, 200, 0.0, 5.0)])
    models = make_models(TWO_LLM_MODELS)

    def key(wl, fleet=None, **kw):
        p = build_problem(wl, fleet or two_llm_fleet(), models, **kw)
        m = build_matrix(p, "aggregate")
        return floor.floor_row(m, p).key

    base = key(wl, min_mean_accuracy=0.5)
    assert key(wl, min_mean_accuracy=0.7) == base
    later = wl.assign(deadline_s=wl["deadline_s"] * 2)
    assert key(later, min_mean_accuracy=0.5) != base
    assert key(wl, fleet=two_llm_fleet(horizon_s=50.0), min_mean_accuracy=0.5) != base
    assert key(wl.assign(output_tokens=wl["output_tokens"] + 1), min_mean_accuracy=0.5) != base  # runtimes, weights


def test_plan_says_the_floor_is_out_of_reach_with_the_most_the_fleet_allows():
    """Four queries due by 2 s on two GPUs: small@g serves two each by then (1 s each), big@g one
    (2 s); serving all four takes two small instances, so the mean accuracy is 0.4 at most, though
    big alone would give 0.8: the floor 0.5 is out of reach for capacity and deadlines, and the
    answer says so in one reason, with the most."""
    wl = workload_of([(10, 100, 0.0, 2.0)] * 4)
    s = plan(wl, two_llm_fleet(), make_models(TWO_LLM_MODELS), min_mean_accuracy=0.5)
    assert s.status is Status.INFEASIBLE
    assert s.message.startswith("token-weighted mean accuracy can reach at most 0.4000 within the fleet's capacity"), \
        s.message
    assert s.message.endswith("below the floor 0.5") and ";" not in s.message
    ok = plan(wl, two_llm_fleet(), make_models(TWO_LLM_MODELS), min_mean_accuracy=0.4)
    assert ok.status is Status.OPTIMAL and ok.summary().token_weighted_mean_accuracy == pytest.approx(0.4)


def test_a_floor_above_every_query_on_its_most_accurate_option_is_answered_before_solving():
    wl = workload_of([(10, 100, 0.0, None), (10, 300, 0.0, None)])
    s = plan(wl, two_llm_fleet(), make_models(TWO_LLM_MODELS), min_mean_accuracy=0.9)
    assert s.status is Status.INFEASIBLE and s.solver == "none"
    assert s.message == ("token-weighted mean accuracy can reach at most 0.8000 (every query on its most accurate "
                         "option), below the floor 0.9")
    # within the checker's 1e-9 of the most, a floor is not called out of reach
    s = plan(wl, two_llm_fleet(), make_models(TWO_LLM_MODELS), min_mean_accuracy=0.8 + 5e-10)
    assert s.status is Status.OPTIMAL


def test_machine_columns_of_the_floor_models_match():
    """The floor's models keep the option and instance columns of the model (the cuts of strong.py
    refer to them): the ceiling model is the same model less one row and with another objective."""
    wl, fleet, models, kw = random_instance(9300)
    p = build_problem(wl, fleet, models, **{**kw, "min_mean_accuracy": 0.45})
    m = build_matrix(p, "aggregate")
    fr = floor.floor_row(m, p)
    most = floor._most_accuracy(m, fr.row)
    assert most.A.shape[0] == m.A.shape[0] - 1 and most.n_vars == m.n_vars
    assert np.array_equal(machine_columns(most, p), machine_columns(m, p))
    acc = m.A[fr.row].toarray().ravel()
    assert np.allclose(most.c, -acc)


def _half_instance_fleet():
    """Pool g of 4 GPUs: small (0.4) on one GPU, big (0.8) on two; a 100-token query takes 1 s on
    either, and the horizon is 2 s, so an instance of either runs two queries. Five queries: with
    whole instances, two big and one small serve 4, one big and two small 6 (0.56 at most), so the
    most is 0.56; the LP takes 1.5 big instances (3 GPUs, 3 queries) and one small: 0.64."""
    fleet = fleet_from_dict({
        "horizon_s": 2.0,
        "pools": {"g": {"kind": "gpu", "count": 4, "memory_gb": 80, "idle_power_w": 0.0}},
        "llms": {"small": {"accuracy": 0.4, "accuracy_source": "t", "params_b": 1},
                 "big": {"accuracy": 0.8, "accuracy_source": "t", "params_b": 1}},
        "deployments": [{"llm": "small", "pool": "g"}, {"llm": "big", "pool": "g", "devices_per_instance": 2}],
    })
    models = make_models({("small", "g"): ((0, 0, 1.0, 0), (0, 0, 0.01, 0)),
                          ("big", "g"): ((0, 0, 3.0, 0), (0, 0, 0.01, 0))})
    return workload_of([(10, 100, 0.0, None)] * 5), fleet, models


@pytest.mark.parametrize("kind", ["exact", "aggregate"])
def test_the_relaxation_proves_a_floor_the_lp_reaches(kind, monkeypatch):
    """A floor between the most with whole instances (0.56) and the LP's (0.64): solve_strong calls it
    out of reach by the relaxation with the instance counts whole, before any search for a plan;
    a floor just under 0.56 is met (brute force says 0.56 is the most)."""
    monkeypatch.setattr(strong, "COUNTS_MIN_QUERIES", 0)
    wl, fleet, models = _half_instance_fleet()
    assert _most_accuracy(wl, fleet, models, {}) == pytest.approx(0.56)
    p = build_problem(wl, fleet, models, min_mean_accuracy=0.6)
    model = build_matrix(p, kind)
    fr = _row_of(p, model)
    assert fr.mean(floor.lp_ceiling(model, fr, Limits()).at_most) == pytest.approx(0.64, abs=1e-6)
    with remembered_cuts():
        said: list[str] = []
        res = solve_strong(model, p, get_solver("highs"), Limits(mip_rel_gap=0.0), said.append)
    assert res.status is Status.INFEASIBLE
    assert res.reason == ("token-weighted mean accuracy can reach at most 0.5600 within the fleet's capacity and "
                          "deadlines (the bound of the model with its instance counts whole and its options relaxed), "
                          "below the floor 0.6")
    assert not any("whole model" in s for s in said)  # no search of the whole model
    ok = build_problem(wl, fleet, models, min_mean_accuracy=0.56 - STEP)
    res = solve_strong(build_matrix(ok, kind), ok, get_solver("highs"), Limits(mip_rel_gap=0.0))
    assert res.status is Status.OPTIMAL and res.objective == pytest.approx(brute_force_optimum(ok))


@pytest.mark.parametrize("kind", ["exact", "aggregate"])
def test_the_rounded_counts_reach_no_more_than_the_ceiling_and_often_the_floor(kind):
    """rounded_reach is the value of a point of the relaxation, so never above the relaxation's proven
    ceiling; at a floor just under the most it often reaches the floor, so that no search starts."""
    backend = get_solver("highs")
    reached = checked = 0
    for seed, wl, fleet, models, kw, best in _instances(9400, 100):
        if best - STEP < 0:
            continue
        p = build_problem(wl, fleet, models, min_mean_accuracy=best - STEP, **kw)
        model = build_matrix(p, kind)
        fr = _row_of(p, model)
        lp = strong._lp(model, None)
        assert lp.status == 0, seed  # a plan meets the floor: so does the LP
        reach = floor.rounded_reach(model, fr, np.asarray(lp.x), Limits())
        with remembered_cuts():
            ceiling = floor.relaxation_ceiling(model, fr, backend, Limits(), None, lambda s: None)
        assert reach <= ceiling.at_most + 1e-6 * fr.rhs, seed
        reached += reach >= fr.rhs
        checked += 1
    assert checked >= 30 and reached >= checked // 2, (checked, reached)


def test_a_series_searches_a_floor_above_all_its_earlier_floors_reached_before_the_lp(monkeypatch):
    """In one remembered_cuts() block: the floor 0.5 is met, and its LP's counts rounded reach it (no
    search); the floor 0.6 is above what that reached and no search was made, so the relaxation is
    searched before any LP, and proves it out of reach; a third floor, 0.58, is then decided at once."""
    monkeypatch.setattr(strong, "COUNTS_MIN_QUERIES", 0)
    wl, fleet, models = _half_instance_fleet()
    backend = get_solver("highs")
    searched: list[float] = []
    real = floor.relaxation_ceiling

    def counted(model, fr, *a, **k):
        searched.append(fr.floor)
        return real(model, fr, *a, **k)

    monkeypatch.setattr(floor, "relaxation_ceiling", counted)
    with remembered_cuts():
        low = build_problem(wl, fleet, models, min_mean_accuracy=0.5)
        res = solve_strong(build_matrix(low, "aggregate"), low, backend, Limits(mip_rel_gap=0.0))
        assert res.status is Status.OPTIMAL and searched == []
        fr = floor.floor_row(build_matrix(low, "aggregate"), low)
        assert 0.5 - 1e-9 <= floor.remembered_ceiling(fr).reached / fr.weight_total <= 0.56 + 1e-9
        lps: list[int] = []
        real_strengthen = strong._strengthen
        monkeypatch.setattr(strong, "_strengthen", lambda *a, **k: lps.append(1) or real_strengthen(*a, **k))
        for target in (0.6, 0.58):
            p = build_problem(wl, fleet, models, min_mean_accuracy=target)
            res = solve_strong(build_matrix(p, "aggregate"), p, backend, Limits(mip_rel_gap=0.0))
            assert res.status is Status.INFEASIBLE and "can reach at most 0.5600" in res.reason, target
    assert searched == [0.6] and lps == []
