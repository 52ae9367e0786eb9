"""Plans per time slot (--objective carbon|cost, power caps): against brute force, checked, and their errors."""

from __future__ import annotations

import dataclasses
import itertools
import json

import numpy as np
import pandas as pd
import pytest
from conftest import TWO_LLM_MODELS, make_models, two_llm_fleet
from oracles import slotted_brute_force

from energyopt.check import check_plan
from energyopt.errors import DataError
from energyopt.fleet import fleet_from_dict
from energyopt.methods.instances import option_patterns
from energyopt.methods.slotted import (
    _choose_least,
    _instance_master,
    _Slots,
    _View,
    lower_envelope,
    window_envelopes,
)
from energyopt.plan import plan
from energyopt.signals import Signals


def _signals(carbon, slot_s=10.0, price=None) -> Signals:
    n = len(carbon)
    start = np.arange(n) * slot_s
    return Signals(start, start + slot_s, np.asarray(carbon, dtype=float),
                   None if price is None else np.asarray(price, dtype=float))


def _fleet(cap_w: float | None, horizon_s: float = 30.0):
    fl = two_llm_fleet(horizon_s)
    if cap_w is None:
        return fl
    pools = dict(fl.pools)
    pools["g"] = dataclasses.replace(pools["g"], power_cap_w=cap_w)
    return dataclasses.replace(fl, pools=pools)


def _workload(rng, n_q: int) -> pd.DataFrame:
    return pd.DataFrame({"query_id": [f"q{i}" for i in range(n_q)], "input_tokens": rng.integers(1, 50, n_q),
                         "output_tokens": rng.integers(50, 400, n_q), "min_accuracy": rng.choice([0.0, 0.5], n_q),
                         "deadline_s": np.full(n_q, np.nan)})


@pytest.mark.parametrize("seed", range(12))
def test_slotted_plan_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    carbon = rng.uniform(50, 400, 3)
    cap = None if seed % 3 == 0 else float(rng.uniform(20, 120))
    idle = bool(seed % 2)
    fl = _fleet(cap)
    wl = _workload(rng, 4)
    models = make_models(TWO_LLM_MODELS)
    s = plan(wl, fl, models, objective="carbon", signals=_signals(carbon), idle=idle)
    p = s.problem
    assert p.slots is not None
    price_d = p.slots.price_per_j[[p.slots.pools.index(x) for x in p.deployments["device"]]]
    best = slotted_brute_force(p, price_d, p.slots.bounds_s, {} if cap is None else {"g": cap})
    if not np.isfinite(best):
        assert not s.status.has_plan
        return
    assert s.bound <= best * (1 + 1e-7) + 1e-12  # a valid bound
    if s.status.has_plan:
        assert not s.check_violations
        assert s.objective >= best * (1 - 1e-7) - 1e-12  # an in-slot plan is no better than the best one
        # the reported gap covers the distance to the true optimum (whole queries in lumpy slots can leave one)
        assert (s.objective - best) / s.objective <= s.gap + 1e-9
        # the objective is the plan's kgCO2e, priced per slot independently
        assert s.objective == pytest.approx(float(s.slot_table()["kg_co2e"].sum()), rel=1e-9)


def _accuracy(s) -> float:
    a = s.assignment
    w = a["query_id"].map(dict(zip(s.problem.queries["query_id"], s.problem.queries["weight"]))).to_numpy(float)
    return float(np.dot(w, a["accuracy"]) / w.sum())


@pytest.mark.parametrize("seed", range(12))
def test_slotted_accuracy_floor_against_brute_force(seed):
    """A token-weighted accuracy floor that binds (between the carbon plan's accuracy and the
    most reachable): the bound stays valid, the plan meets the floor (the checker re-derives it)
    and its gap covers the distance to the brute-force optimum under the floor."""
    rng = np.random.default_rng(100 + seed)
    carbon = rng.uniform(50, 400, 3)
    cap = None if seed % 3 == 0 else float(rng.uniform(40, 160))
    idle = bool(seed % 2)
    wl = _workload(rng, 4)
    wl["min_accuracy"] = 0.0
    models = make_models(TWO_LLM_MODELS)
    free = plan(wl, _fleet(cap), models, objective="carbon", signals=_signals(carbon), idle=idle)
    if not free.status.has_plan:
        return
    reach = free.problem.max_mean_accuracy()
    floor = _accuracy(free) + float(rng.uniform(0.3, 1.0)) * (reach - _accuracy(free))
    s = plan(wl, _fleet(cap), models, objective="carbon", signals=_signals(carbon), idle=idle, min_mean_accuracy=floor)
    p = s.problem
    assert p.slots is not None and p.min_mean_accuracy == floor
    price_d = p.slots.price_per_j[[p.slots.pools.index(x) for x in p.deployments["device"]]]
    best = slotted_brute_force(p, price_d, p.slots.bounds_s, {} if cap is None else {"g": cap}, min_mean_accuracy=floor)
    if not np.isfinite(best):
        assert not s.status.has_plan
        return
    unfloored = slotted_brute_force(p, price_d, p.slots.bounds_s, {} if cap is None else {"g": cap})
    assert s.bound <= best * (1 + 1e-7) + 1e-12  # a valid bound
    assert s.status.has_plan, s.message
    assert not s.check_violations
    assert _accuracy(s) >= floor - 1e-9
    assert s.objective >= best * (1 - 1e-7) - 1e-12
    assert (s.objective - best) / s.objective <= s.gap + 1e-9
    assert s.objective == pytest.approx(float(s.slot_table()["kg_co2e"].sum()), rel=1e-9)
    if best > unfloored * (1 + 1e-6):  # the floor binds: the bound rose above the optimum without it
        assert s.bound > unfloored * (1 + 1e-9) or s.gap > 0


def test_accuracy_floor_moves_work_to_the_accurate_llm_and_costs_carbon():
    """With a floor above the carbon plan's accuracy, queries move to the accurate LLM: the plan
    meets the floor, checked, with a small gap, and costs more kgCO2e than the plan without it;
    a floor above what the fleet reaches is infeasible, with the reason."""
    rng = np.random.default_rng(7)
    wl = _workload(rng, 30)
    wl["min_accuracy"] = 0.0
    models = make_models(TWO_LLM_MODELS)
    sig = _signals([400.0, 50.0, 300.0], slot_s=400.0)
    free = plan(wl, _fleet(None, horizon_s=1200.0), models, objective="carbon", signals=sig)
    reach = free.problem.max_mean_accuracy()
    floor = (_accuracy(free) + reach) / 2
    s = plan(wl, _fleet(None, horizon_s=1200.0), models, objective="carbon", signals=sig, min_mean_accuracy=floor)
    assert s.status.has_plan and not s.check_violations, s.message
    assert _accuracy(s) >= floor - 1e-9 and s.objective > free.objective
    assert s.gap <= 0.05
    over = plan(wl, _fleet(None, horizon_s=1200.0), models, objective="carbon", signals=sig,
                min_mean_accuracy=min(reach + 0.01, 1.0))
    assert not over.status.has_plan and "can reach at most" in over.message


def test_sweep_min_mean_accuracy_for_carbon():
    """``sweep --vary min-mean-accuracy --objective carbon``: each floor planned per slot, met and
    checked, its kgCO2e rising with the floor (to within the gaps)."""
    from energyopt.sweep import sweep

    rng = np.random.default_rng(8)
    wl = _workload(rng, 20)
    wl["min_accuracy"] = 0.0
    sig = _signals([400.0, 50.0, 300.0], slot_s=400.0)
    t = sweep(wl, _fleet(None, horizon_s=1200.0), make_models(TWO_LLM_MODELS), "min-mean-accuracy", None,
              objective="carbon", signals=sig, baselines=False)
    opt = t[t["method"] == "optimal"]
    assert len(opt) >= 3 and (opt["status"].isin(["optimal", "feasible"])).all()
    floors = opt["value"].to_numpy(dtype=float)[1:]
    assert (opt["token_weighted_mean_accuracy"].to_numpy()[1:] >= floors - 1e-9).all()
    kg = opt["kg_co2e"].to_numpy(dtype=float)[1:]
    gap = opt["gap"].to_numpy(dtype=float)[1:]
    assert np.all(kg[1:] >= kg[:-1] * (1 - gap[1:] - 1e-9))


def test_carbon_moves_work_to_the_clean_slot_and_the_energy_plan_does_not():
    wl = _workload(np.random.default_rng(0), 6)
    wl["min_accuracy"] = 0.0
    models = make_models(TWO_LLM_MODELS)
    sig = _signals([400.0, 50.0, 300.0])
    s = plan(wl, _fleet(None), models, objective="carbon", signals=sig)
    assert s.status.has_plan and not s.check_violations
    a = s.assignment
    assert (a["start_s"] >= 10).all() and (a["end_s"] <= 20 + 1e-9).all()
    blind = plan(wl, _fleet(None), models, signals=sig)
    assert s.objective < float(blind.slot_table()["kg_co2e"].sum())
    assert s.gap <= 1e-6


def test_power_cap_binds_and_the_checker_names_the_slot():
    wl = _workload(np.random.default_rng(1), 6)
    wl["min_accuracy"] = 0.0
    models = make_models(TWO_LLM_MODELS)
    sig = _signals([400.0, 50.0, 300.0])
    free = plan(wl, _fleet(None), models, objective="carbon", signals=sig)
    peak = free.slot_table().query("device == 'g'").groupby("slot")["energy_j"].sum().max() / 10.0
    cap = 0.6 * peak
    s = plan(wl, _fleet(cap), models, objective="carbon", signals=sig)
    assert s.status.has_plan and not s.check_violations
    per_slot = s.slot_table().query("device == 'g'").groupby("slot")["energy_j"].sum() / 10.0
    assert per_slot.max() <= cap * (1 + 1e-9)
    # the checker re-derives the cap from the assignment: the uncapped plan breaks it
    wl2, fl2, fm2 = s.problem.inputs
    bad = check_plan(free.assignment, wl2, fl2, fm2, cap_bounds_s=s.problem.slots.bounds_s)
    assert any("pool g draws" in v and "over its power_cap_w" in v and "slot 1" in v for v in bad)


def test_a_cap_too_low_names_the_pool_slot_and_shortfall():
    wl = _workload(np.random.default_rng(2), 6)
    wl["min_accuracy"] = 0.7  # only big: on g or the CPU; the CPU pool capped too
    fl = _fleet(1e-3)
    pools = dict(fl.pools)
    pools["c"] = dataclasses.replace(pools["c"], power_cap_w=1e-3)
    fl = dataclasses.replace(fl, pools=pools)
    s = plan(wl, fl, make_models(TWO_LLM_MODELS), objective="carbon", signals=_signals([100.0, 50.0, 300.0]))
    assert not s.status.has_plan
    assert "power cap of pool" in s.message and "W short in slot" in s.message


def test_energy_objective_with_caps_and_no_signals_uses_hours():
    fl = _fleet(1e9, horizon_s=7200.0)
    wl = _workload(np.random.default_rng(3), 5)
    s = plan(wl, fl, make_models(TWO_LLM_MODELS))
    assert s.problem.slots is not None and s.problem.slots.n_slots == 2
    assert s.status.has_plan and not s.check_violations


def test_errors_before_solving():
    wl = _workload(np.random.default_rng(4), 3)
    models = make_models(TWO_LLM_MODELS)
    with pytest.raises(DataError, match="--objective carbon: give --signals"):
        plan(wl, _fleet(None), models, objective="carbon")
    with pytest.raises(DataError, match="needs a price_per_kwh column"):
        plan(wl, _fleet(None), models, objective="cost", signals=_signals([1.0, 2.0, 3.0]))
    with pytest.raises(DataError, match="got 'tradeoff': the trade-off weighs energy against accuracy"):
        plan(wl, _fleet(50.0), models, objective="tradeoff", signals=_signals([1.0, 2.0, 3.0]))
    with pytest.raises(DataError, match="formulation exact does not plan time slots"):
        plan(wl, _fleet(None), models, objective="carbon", signals=_signals([1.0, 2.0, 3.0]), formulation="exact")


def test_cost_objective_uses_the_price():
    wl = _workload(np.random.default_rng(5), 4)
    s = plan(wl, _fleet(None), make_models(TWO_LLM_MODELS), objective="cost",
             signals=_signals([100.0, 100.0, 100.0], price=[0.3, 0.1, 0.2]))
    assert s.status.has_plan and not s.check_violations
    assert ((s.assignment["start_s"] >= 10) & (s.assignment["end_s"] <= 20 + 1e-9)).all()
    assert s.objective == pytest.approx(float(s.slot_table()["cost"].sum()), rel=1e-9)


def test_fleet_power_cap_key():
    doc = {"horizon_s": 10, "pools": {"g": {"kind": "gpu", "count": 1, "memory_gb": 80, "idle_power_w": 1,
                                              "power_cap_w": -5}},
           "llms": {"a": {"accuracy": 0.5, "accuracy_source": "t", "params_b": 1}},
           "deployments": [{"llm": "a", "pool": "g"}]}
    with pytest.raises(DataError, match=r"pools\.g\.power_cap_w must be a number of watts > 0, got -5"):
        fleet_from_dict(doc)
    doc["pools"]["g"]["power_cap_w"] = 300
    assert fleet_from_dict(doc).pools["g"].power_cap_w == 300.0


def test_lower_envelope_against_evaluation():
    rng = np.random.default_rng(0)
    for _ in range(50):
        a, b = rng.uniform(0, 5, 7), rng.choice([0.0, 0.5, 1.0, 2.0], 7)
        a[rng.random(7) < 0.2] = np.inf
        env = lower_envelope(a, b)
        if not np.isfinite(a).any():
            assert env is None
            continue
        assert env is not None
        br, ln = env
        for rho in rng.uniform(0, 10, 20):
            k = ln[np.searchsorted(br, rho, side="right")] if len(br) else ln[0]
            assert a[k] + rho * b[k] == pytest.approx(np.min(a + rho * b), abs=1e-9)


def test_explain_names_the_slot_and_the_cap(tmp_path):
    from energyopt.explain import explain_plan_dir

    wl = _workload(np.random.default_rng(1), 6)
    wl["min_accuracy"] = 0.0
    models = make_models(TWO_LLM_MODELS)
    sig_csv = tmp_path / "signals.csv"
    sig_csv.write_text("start_s,carbon_g_per_kwh\n0,400\n10,50\n20,300\n")
    free = plan(wl, _fleet(None), models, objective="carbon", signals=sig_csv)
    peak = free.slot_table().query("device == 'g'").groupby("slot")["energy_j"].sum().max() / 10.0
    fl = _fleet(0.6 * peak)
    s = plan(wl, fl, models, objective="carbon", signals=sig_csv)
    assert s.status.has_plan
    s.write(tmp_path / "plan")
    a = s.assignment
    outside = a[(a["device"] == "g") & ((a["start_s"] < 10) | (a["start_s"] >= 20))]  # the cap kept it out of slot 1
    assert len(outside)
    e = explain_plan_dir(tmp_path / "plan", str(outside["query_id"].iloc[0]), workload=wl, fleet=fl, models=models)
    text = " ".join(e.notes)
    assert "it runs in slot " in text and "00 gCO2e/kWh" in text
    assert "the cleanest slot its window allows on g is slot 1" in text and "cap: pool g draws" in text


def test_idle_draw_over_the_cap_is_named():
    wl = _workload(np.random.default_rng(6), 3)
    wl["min_accuracy"] = 0.7  # big on g (idle 50 W per device) or the CPU (10 W)
    fl = _fleet(20.0)
    pools = dict(fl.pools)
    pools["c"] = dataclasses.replace(pools["c"], power_cap_w=5.0)
    fl = dataclasses.replace(fl, pools=pools)
    s = plan(wl, fl, make_models(TWO_LLM_MODELS), objective="carbon", signals=_signals([100.0, 50.0, 300.0]),
             idle=True)
    assert not s.status.has_plan
    assert "alone reaches its power_cap_w" in s.message and "W over" in s.message


def test_cli_solve_objective_carbon(tmp_path):
    from click.testing import CliRunner
    from conftest import ROOT

    from energyopt.cli import main

    def run(*args):
        return CliRunner().invoke(main, [str(a) for a in args])

    wl = ROOT / "examples" / "workload.csv"
    r = run("solve", wl, "--objective", "carbon", "--out", tmp_path / "a")
    assert r.exit_code == 2 and "--objective carbon: give --signals FILE with a carbon_g_per_kwh column" in r.output
    price_only = tmp_path / "p.csv"
    price_only.write_text("start_s,price_per_kwh\n0,0.2\n1800,0.1\n")
    r = run("solve", wl, "--objective", "carbon", "--signals", price_only, "--out", tmp_path / "b")
    assert r.exit_code == 2 and "needs a carbon_g_per_kwh column" in r.output
    assert not (tmp_path / "b" / "assignment.csv").exists()
    r = run("compare", wl, "--objective", "carbon")
    assert r.exit_code == 2 and "--objective carbon: give --signals FILE with a carbon_g_per_kwh column" in r.output
    sig = ROOT / "data" / "signals" / "neso_gb_national_intensity_2023-01-01_07.csv"
    r = run("solve", wl, "--objective", "carbon", "--signals", sig, "--signals-start", "2023-01-02T17:00:00Z",
            "--out", tmp_path / "c", "--quiet")
    assert r.exit_code == 0, r.output
    summary = json.loads((tmp_path / "c" / "summary.json").read_text())
    assert summary["objective"] == "carbon" and summary["check"]["ok"] is True
    assert summary["objective_value"] == pytest.approx(summary["signals"]["total_kg_co2e"], rel=1e-9)


def test_a_pool_without_deployments_does_not_break_planning_per_slot():
    """A fleet pool that nothing is deployed on (its instance arrays empty) plans like one without it."""
    fl = _fleet(60.0)
    fl = dataclasses.replace(fl, deployments=[d for d in fl.deployments if d.pool != "c"])
    wl = _workload(np.random.default_rng(3), 4)
    s = plan(wl, fl, make_models(TWO_LLM_MODELS), objective="carbon", signals=_signals([100.0, 300.0, 200.0]))
    assert s.status.has_plan and not s.check_violations


def test_window_envelopes_against_evaluation():
    rng = np.random.default_rng(1)
    for _ in range(300):
        S = int(rng.integers(1, 10))
        a = rng.uniform(0, 5, S)
        b = rng.choice([0.0, 0.5, 1.0, 2.0, 3.3], S) * rng.choice([0.0, 1.0])
        a[rng.random(S) < 0.2] = np.inf
        lo = rng.integers(0, S, 4)
        hi = np.minimum(lo + rng.integers(0, S, 4), S - 1)
        first, multi = window_envelopes(a, b, lo, hi)
        envs = {w: (br, ln) for w, br, ln in multi}
        for w in range(4):
            inside = np.full(S, np.inf)
            inside[lo[w]:hi[w] + 1] = a[lo[w]:hi[w] + 1]
            if not np.isfinite(inside).any():
                assert first[w] == -1 and w not in envs
                continue
            br, ln = envs.get(w, (np.zeros(0), np.array([first[w]])))
            assert ln[0] == first[w] and np.all(np.diff(br) > 0)
            for rho in np.r_[rng.uniform(0, 10, 10), br, 0.0]:
                k = ln[np.searchsorted(br, rho, side="right")]
                assert lo[w] <= k <= hi[w]
                assert inside[k] + rho * b[k] == pytest.approx(np.min(inside + rho * b), abs=1e-9)


def _allowed_vectors(T, patterns) -> list[np.ndarray]:
    """Every instance vector of 0-2 instances per deployment that the fleet allows: devices per
    pool, instances per fleet deployment, an instance for each option pattern."""
    out = []
    for cand in itertools.product(*[range(0, 3) for _ in range(T.n_d)]):
        nn = np.array(cand)
        if any(int((T.k[ds] * nn[ds]).sum()) > cnt for cnt, ds in T.pools):
            continue
        if any(nn[m].sum() > T.max_inst[m[0]] for m in T.groups) or any(not nn[p].any() for p in patterns):
            continue
        out.append(nn)
    return out


def _master_case(seed: int):
    """A seeded generator, the slots of a tiny carbon plan and its queries' option patterns."""
    rng = np.random.default_rng(seed)
    wl = _workload(rng, 5)
    s = plan(wl, _fleet(None), make_models(TWO_LLM_MODELS), objective="carbon", signals=_signals([100.0, 50.0, 300.0]))
    T = _Slots(s.problem)
    return rng, T, option_patterns(T.ok[np.flatnonzero(T.ok.any(axis=1))])


@pytest.mark.parametrize("seed", range(6))
def test_instance_master_against_enumeration(seed):
    """The master's value is the least over every instance vector the fleet allows (devices per
    pool, an instance for each query's options) of the largest cut, as enumeration finds it."""
    rng, T, patterns = _master_case(seed)
    T.cuts = [(float(rng.uniform(1, 3)), rng.uniform(-0.5, 1.0, T.n_d)) for _ in range(int(rng.integers(1, 6)))]
    value, n = _instance_master(T, patterns)
    best = min(max(al - g @ nn for al, g in T.cuts) for nn in _allowed_vectors(T, patterns))
    assert n is not None
    assert value <= best + 1e-12  # a bound: never above the least
    assert value >= best - 1e-4 * abs(best)  # and the least, but for the solver's tolerance
    assert max(al - g @ n for al, g in T.cuts) == pytest.approx(best, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_instance_master_near_picks_the_nearest_of_the_tied_vectors(seed):
    """Cuts that price no instance of some deployments leave many vectors tied at the least value:
    with ``near`` the master names, among those, one nearest to it (by enumeration), so that an
    instance of an unpriced pool does not make a new vector each round; its value is unchanged."""
    rng, T, patterns = _master_case(seed)
    free = rng.random(T.n_d) < 0.5  # deployments no cut prices: their instances tie
    T.cuts = [(float(rng.uniform(1, 3)), np.where(free, 0.0, rng.uniform(0.0, 1.0, T.n_d)))
              for _ in range(int(rng.integers(1, 4)))]
    value, n0 = _instance_master(T, patterns)
    allowed = _allowed_vectors(T, patterns)
    least = min(max(al - g @ nn for al, g in T.cuts) for nn in allowed)
    tied = [nn for nn in allowed if max(al - g @ nn for al, g in T.cuts) <= least + 1e-6 * abs(least)]
    others = [nn for nn in allowed if not any(np.array_equal(nn, t) for t in tied)]
    for near in tied[:: max(len(tied) // 4, 1)] + others[:: max(len(others) // 4, 1)]:
        value_n, n = _instance_master(T, patterns, near=near)
        assert n is not None and value_n == value
        assert max(al - g @ n for al, g in T.cuts) == pytest.approx(least, rel=1e-6, abs=1e-9)
        assert int(np.abs(n - near).sum()) == min(int(np.abs(t - near).sum()) for t in tied)


def test_choose_least_against_every_cell():
    """The least priced (deployment, slot) of each row through the envelopes (the deployments the
    prices leave alone kept per view), for all rows and for a subset, as pricing every cell finds it."""
    rng = np.random.default_rng(3)
    wl = _workload(rng, 40)
    wl["deadline_s"] = np.where(rng.random(40) < 0.4, rng.uniform(5.0, 30.0, 40), np.nan)
    s = plan(wl, _fleet(60.0), make_models(TWO_LLM_MODELS), objective="carbon",
             signals=_signals([100.0, 50.0, 300.0]))
    T = _Slots(s.problem)
    rows = np.flatnonzero(T.ok.any(axis=1))
    V = _View(T, rows)
    for trial in range(6):
        lam = np.where(rng.random((T.n_d, T.S)) < 0.5, 0.0, rng.uniform(0, 1e-9, (T.n_d, T.S)))
        lam[rng.random(T.n_d) < 0.5] = 0.0  # whole deployments left alone
        a = T.a0.copy()
        if trial % 2:
            a[rng.random((T.n_d, T.S)) < 0.3] = np.inf  # closed cells
        # every cell of the row's bound window on every option
        cost = np.full((len(rows), T.n_d, T.S), np.inf)
        for i, q in enumerate(rows):
            for d in np.flatnonzero(T.ok[q]):
                ks = np.arange(T.lo_b[q], T.hi_b[q] + 1)
                cost[i, d, ks] = T.E[q, d] * a[d, ks] + T.R[q, d] * lam[d, ks]
        per_d = cost.min(axis=2)
        for pos in (None, np.sort(rng.choice(len(rows), 15, replace=False))):
            sel = np.arange(len(rows)) if pos is None else pos
            best, v, second, kk = _choose_least(T, V, a, lam, pos)
            want = np.sort(per_d[sel], axis=1)
            np.testing.assert_allclose(v, want[:, 0], rtol=1e-12)
            np.testing.assert_allclose(second, want[:, 1], rtol=1e-12)
            fin = np.isfinite(v)
            np.testing.assert_allclose(cost[sel[fin], best[fin], kk[fin]], v[fin], rtol=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_instance_search_runs_where_the_samples_prices_did_not_converge(seed, monkeypatch):
    """Where the samples' bundle stops before it converges (1,000,000 queries did), the instance
    search still runs (it was skipped, which left the relaxation's mix of instances in the gap);
    the bound stays valid and the gap covers the distance to the brute-force optimum."""
    from energyopt.methods import slotted

    orig = slotted.slot_bound
    monkeypatch.setattr(slotted, "SAMPLE_ITERATIONS", 1)
    monkeypatch.setattr(slotted, "slot_bound", lambda problem, **kw: orig(problem, **{**kw, "samples": (2,)}))
    rng = np.random.default_rng(seed)
    carbon = rng.uniform(50, 400, 3)
    said: list[str] = []
    s = plan(_workload(rng, 5), _fleet(None), make_models(TWO_LLM_MODELS), objective="carbon",
             signals=_signals(carbon), progress=said.append)
    assert any("prices from a sample of 2 queries" in m for m in said)
    assert any("instance master round" in m for m in said)
    p = s.problem
    assert p.slots is not None
    price_d = p.slots.price_per_j[[p.slots.pools.index(x) for x in p.deployments["device"]]]
    best = slotted_brute_force(p, price_d, p.slots.bounds_s, {})
    if not np.isfinite(best):
        assert not s.status.has_plan
        return
    assert s.bound <= best * (1 + 1e-7) + 1e-12
    if s.status.has_plan:
        assert not s.check_violations
        assert (s.objective - best) / s.objective <= s.gap + 1e-9
