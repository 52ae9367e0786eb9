"""Site power caps: pools grouped under one power_cap_w (fleet [sites.NAME]), read with one-line
errors, planned against brute force, re-derived by the checker, named by the planner and explain."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import ONE_LLM_FLEET_TOML, TWO_LLM_MODELS, make_models, short_workload, two_llm_fleet
from conftest import write_fleet_toml as write
from oracles import slotted_brute_force

from energyopt.caps import cap_rows, site_members, site_power_w
from energyopt.check import check_plan
from energyopt.cli import main
from energyopt.errors import DataError
from energyopt.fleet import Site, read_fleet
from energyopt.plan import plan
from energyopt.signals import Signals

#: the one-LLM fleet with a second pool (h) and both in site hall under 900 W
GOOD = ONE_LLM_FLEET_TOML.replace("[llms.m]", """[pools.h]
kind = "gpu"
count = 1
memory_gb = 40
idle_power_w = 50
[llms.m]""") + """[sites.hall]
pools = ["g", "h"]
power_cap_w = 900
"""


def test_a_site_groups_pools_under_one_cap(tmp_path):
    f = read_fleet(write(tmp_path, GOOD))
    assert f.sites == {"hall": Site("hall", ("g", "h"), 900.0)}
    assert f.has_power_caps and all(p.power_cap_w is None for p in f.pools.values())
    assert not read_fleet(write(tmp_path, GOOD.split("[sites.hall]")[0])).has_power_caps


@pytest.mark.parametrize(
    "old, new, match",
    [
        ('pools = ["g", "h"]', 'pools = ["g", "x"]', r"f\.toml: key sites\.hall\.pools: unknown device pool 'x'; "
                                                       r"\[pools\] defines g, h"),
        ('pools = ["g", "h"]', 'pools = ["g", "g"]', r"key sites\.hall\.pools: pool g is listed twice"),
        ('power_cap_w = 900', 'power_cap_w = 900\n[sites.yard]\npools = ["h"]\npower_cap_w = 5',
         r"key sites\.yard\.pools: pool h is listed in site hall too; expected each pool in one site at most"),
        ('power_cap_w = 900', 'power_cap_w = 0', r"key sites\.hall\.power_cap_w must be a number of watts > 0, got 0"),
        ('power_cap_w = 900', 'power_cap_w = -3.5', r"key sites\.hall\.power_cap_w must be a number of watts > 0"),
        ('power_cap_w = 900', 'power_cap_w = "900"', r"sites\.hall\.power_cap_w must be a number of watts > 0, got '900'"),
        ('power_cap_w = 900', 'power_cap_w = true', r"sites\.hall\.power_cap_w must be a number of watts > 0, got True"),
        ('power_cap_w = 900', 'power_cap_w = nan', r"key sites\.hall\.power_cap_w must be a finite number"),
        ('power_cap_w = 900', '', r"key sites\.hall\.power_cap_w is missing; expected the watts"),
        ('power_cap_w = 900', 'power_cap_w = 900\npower_cap = 3', r"unknown key sites\.hall\.power_cap; did you mean"),
        ('pools = ["g", "h"]', 'pool = ["g", "h"]', r"unknown key sites\.hall\.pool; did you mean pools\?"),
        ('pools = ["g", "h"]', 'pools = []', r"key sites\.hall\.pools is empty; expected the names of the pools"),
        ('pools = ["g", "h"]', 'pools = "g"', r"key sites\.hall\.pools must be list, got 'g'"),
        ('pools = ["g", "h"]', 'pools = [1]', r"key sites\.hall\.pools must hold pool names \(strings\), got 1"),
        ('[sites.hall]', '[sites]\nhall = 3\n[sites.x]', r"key sites\.hall must be a table"),
    ],
)
def test_site_errors_name_file_key_and_what_was_expected(tmp_path, old, new, match):
    text = GOOD.replace(old, new)
    assert text != GOOD
    with pytest.raises(DataError, match=match) as e:
        read_fleet(write(tmp_path, text))
    assert "\n" not in str(e.value) and len(str(e.value)) < 400


def test_sites_must_be_tables(tmp_path):
    with pytest.raises(DataError, match=r"f\.toml: key <top>\.sites must be dict, got 3"):
        read_fleet(write(tmp_path, "sites = 3\n" + GOOD.split("[sites.hall]")[0]))


@pytest.mark.parametrize("seed", range(30))
def test_fuzzed_sites_tables_give_one_line_errors_or_a_fleet(tmp_path, seed):
    """Random site tables: either a fleet whose sites hold what the file says, or a one-line DataError."""
    rng = np.random.default_rng(seed)
    values = ['["g"]', '["g", "h"]', '["h", "q"]', '[]', '3', '"g"', '["g", "g"]', '[true]', '["h"]']
    caps = ["1", "0", "-1", "2.5e3", '"x"', "inf", "[1]", "false"]
    lines = []
    for i in range(int(rng.integers(1, 4))):
        lines.append(f"[sites.s{i}]")
        if rng.random() < 0.9:
            lines.append(f"pools = {values[int(rng.integers(len(values)))]}")
        if rng.random() < 0.9:
            lines.append(f"power_cap_w = {caps[int(rng.integers(len(caps)))]}")
        if rng.random() < 0.1:
            lines.append("colour = 1")
    text = GOOD.split("[sites.hall]")[0] + "\n".join(lines) + "\n"
    try:
        f = read_fleet(write(tmp_path, text))
    except DataError as e:
        assert "\n" not in str(e) and str(tmp_path / "f.toml") in str(e)
        return
    seen = [p for s in f.sites.values() for p in s.pools]
    assert len(seen) == len(set(seen)) and set(seen) <= {"g", "h"}
    assert all(s.power_cap_w > 0 and s.pools for s in f.sites.values())


def test_cli_names_the_site_error_with_exit_2(tmp_path):
    from conftest import ROOT

    text = (ROOT / "examples" / "fleet.toml").read_text() + '\n[sites.hall]\npools = ["h100", "h300"]\npower_cap_w = 1\n'
    fl = write(tmp_path, text)
    r = CliRunner().invoke(main, ["solve", str(ROOT / "examples" / "workload.csv"), "--fleet", str(fl),
                                  "--out", str(tmp_path / "out")])
    assert r.exit_code == 2, r.output
    assert "sites.hall.pools: unknown device pool 'h300'" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "out").exists()


def test_site_power_is_the_sum_of_its_pools():
    sites = {"a": Site("a", ("x", "z"), 10.0), "b": Site("b", ("y",), 5.0)}
    m = site_members(sites, ["x", "y", "z"])
    assert m.tolist() == [[1, 0, 1], [0, 1, 0]]
    power = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    assert site_power_w(power, m).tolist() == [[6.0, 8.0], [3.0, 4.0]]
    labels, rows, cap = cap_rows(["x", "y", "z"], np.array([np.inf, 7.0, np.inf]), ["a", "b"], m, np.array([10.0, 5.0]))
    assert labels == ["pool x", "pool y", "pool z", "site a", "site b"]
    assert rows.shape == (5, 3) and cap.tolist()[1:] == [7.0, np.inf, 10.0, 5.0]


# --- planning -------------------------------------------------------------------------------


def _signals(carbon, slot_s=10.0) -> Signals:
    start = np.arange(len(carbon)) * slot_s
    return Signals(start, start + slot_s, np.asarray(carbon, dtype=float), None)


def _fleet(site_cap_w: float | None, pool_cap_w: float | None = None, horizon_s: float = 30.0):
    """The two-LLM fleet (small and big on GPUs g, big on a CPU c) with g and c in one site."""
    fl = two_llm_fleet(horizon_s)
    if pool_cap_w is not None:
        fl = dataclasses.replace(fl, pools={**fl.pools, "g": dataclasses.replace(fl.pools["g"], power_cap_w=pool_cap_w)})
    if site_cap_w is None:
        return fl
    return dataclasses.replace(fl, sites={"hall": Site("hall", ("g", "c"), float(site_cap_w))})


_workload = short_workload


def _site_w(s, pools=("g", "c")) -> pd.Series:
    t = s.slot_table()
    return t[t["device"].isin(pools)].groupby("slot")["energy_j"].sum() / 10.0


@pytest.mark.parametrize("seed", range(10))
def test_site_capped_plan_against_brute_force(seed):
    rng = np.random.default_rng(100 + seed)
    carbon = rng.uniform(50, 400, 3)
    idle = bool(seed % 2)
    wl = _workload(rng, 4)
    models = make_models(TWO_LLM_MODELS)
    free = plan(wl, _fleet(None), models, objective="carbon", signals=_signals(carbon), idle=idle)
    site_cap = float(_site_w(free).max()) * rng.uniform(0.4, 0.95)  # the site cap binds
    pool_cap = None if seed % 3 else site_cap * 2  # a looser pool cap beside it, sometimes
    s = plan(wl, _fleet(site_cap, pool_cap), models, objective="carbon", signals=_signals(carbon), idle=idle)
    p = s.problem
    price_d = p.slots.price_per_j[[p.slots.pools.index(x) for x in p.deployments["device"]]]
    caps = {("g", "c"): site_cap, **({} if pool_cap is None else {"g": pool_cap})}
    best = slotted_brute_force(p, price_d, p.slots.bounds_s, caps)
    if not np.isfinite(best):
        assert not s.status.has_plan
        return
    _against_brute_force(s, best, site_cap, idle)


def _against_brute_force(s, best: float, site_cap: float, idle: bool = False) -> None:
    """The plan's bound is at most the optimum; a plan keeps the site cap (without idle: its
    queries' draw), passes the check and its gap covers its distance to the optimum."""
    assert s.bound <= best * (1 + 1e-7) + 1e-12
    if s.status.has_plan:
        assert not s.check_violations
        assert _site_w(s).max() <= site_cap * (1 + 1e-9) + (0 if not idle else np.inf)
        assert s.objective >= best * (1 - 1e-7) - 1e-12
        assert (s.objective - best) / s.objective <= s.gap + 1e-9


def test_only_the_site_cap_binds_and_moves_work_to_another_slot():
    """Each pool alone may draw what the uncapped plan draws; the site cap on both does not let
    them draw it together in the clean slot: the plan moves work to another slot, the checker
    re-derives the site's power, and the uncapped plan breaks the site cap."""
    wl = _workload(np.random.default_rng(1), 6)
    wl["min_accuracy"] = 0.0
    models = make_models(TWO_LLM_MODELS)
    sig = _signals([400.0, 50.0, 300.0])
    free = plan(wl, _fleet(None), models, objective="carbon", signals=sig)
    peak = float(_site_w(free).max())
    assert set(free.assignment["start_s"] // 10) == {1.0}  # all in the clean slot without the cap
    per_pool = free.slot_table().groupby(["device", "slot"])["energy_j"].sum() / 10.0
    cap = 0.6 * peak
    fl = _fleet(cap)
    fl = dataclasses.replace(fl, pools={n: dataclasses.replace(pl, power_cap_w=float(per_pool.get(n, pd.Series([1.0])).max()) + 1)
                                        for n, pl in fl.pools.items()})  # each pool's own cap holds the free plan
    s = plan(wl, fl, models, objective="carbon", signals=sig)
    assert s.status.has_plan and not s.check_violations
    assert _site_w(s).max() <= cap * (1 + 1e-9)
    assert (s.assignment["start_s"] // 10 != 1).any()  # work moved out of the clean slot
    assert s.objective > free.objective
    wl2, fl2, fm2 = s.problem.inputs
    bad = check_plan(free.assignment, wl2, fl2, fm2, cap_bounds_s=s.problem.slots.bounds_s)
    assert len(bad) == 1 and "site hall draws" in bad[0] and "over its power_cap_w of" in bad[0] and "slot 1" in bad[0]
    assert not any("pool" in v for v in bad)


def test_the_checker_catches_a_plan_over_a_site_cap_by_the_excess():
    wl = _workload(np.random.default_rng(3), 5)
    wl["min_accuracy"] = 0.0
    models = make_models(TWO_LLM_MODELS)
    s = plan(wl, _fleet(None), models, objective="carbon", signals=_signals([100.0, 50.0, 300.0]))
    w = _site_w(s)
    k = int(w.idxmax())
    fl = _fleet(float(w.max()) - 7.0)
    bad = check_plan(s.assignment, *s.problem.inputs[:1], fl, s.problem.inputs[2],
                     cap_bounds_s=s.problem.slots.bounds_s)
    assert len(bad) == 1
    assert f"site hall draws {w.max():,.1f} W in slot {k}" in bad[0] and "7.0 W over its power_cap_w" in bad[0]
    assert not check_plan(s.assignment, s.problem.inputs[0], _fleet(float(w.max()) + 1e-3), s.problem.inputs[2],
                          cap_bounds_s=s.problem.slots.bounds_s)


def test_a_site_cap_too_low_names_the_site_slot_and_shortfall():
    wl = _workload(np.random.default_rng(2), 6)
    wl["min_accuracy"] = 0.7  # only big: on g or the CPU, both in the site
    s = plan(wl, _fleet(1e-3), make_models(TWO_LLM_MODELS), objective="carbon", signals=_signals([100.0, 50.0, 300.0]))
    assert not s.status.has_plan
    assert "the power cap of site hall (0.001 W) is" in s.message and "W short in slot" in s.message, s.message


def test_idle_draw_over_a_site_cap_is_named():
    wl = _workload(np.random.default_rng(6), 3)
    wl["min_accuracy"] = 0.7
    s = plan(wl, _fleet(5.0), make_models(TWO_LLM_MODELS), objective="carbon", signals=_signals([100.0, 50.0, 300.0]),
             idle=True)
    assert not s.status.has_plan
    assert "site hall's instances" in s.message and "alone reaches its power_cap_w (5 W)" in s.message, s.message


def test_explain_names_the_site_cap(tmp_path, uncapped_carbon_plan):
    from energyopt.explain import explain_plan_dir

    u = uncapped_carbon_plan
    wl, models = u.workload, u.models
    fl = _fleet(0.6 * float(_site_w(u.free).max()))
    s = plan(wl, fl, models, objective="carbon", signals=u.signals_csv)
    assert s.status.has_plan
    s.write(tmp_path / "plan")
    a = s.assignment
    outside = a[(a["start_s"] < 10) | (a["start_s"] >= 20)]
    assert len(outside)
    e = explain_plan_dir(tmp_path / "plan", str(outside["query_id"].iloc[0]), workload=wl, fleet=fl, models=models)
    text = " ".join(e.notes)
    assert "cap: site hall (g, c) draws about" in text and "of its power_cap_w" in text, text


def test_report_tables_and_draws_each_sites_power_per_slot(tmp_path, uncapped_carbon_plan):
    from energyopt.report import plot_signals, site_power, slot_power

    u = uncapped_carbon_plan
    sig = _signals([400.0, 50.0, 300.0])  # THREE_SLOTS_CSV's slots, as signals built in memory
    cap = 0.6 * float(_site_w(u.free).max())
    s = plan(u.workload, _fleet(cap), u.models, objective="carbon", signals=sig)
    power = slot_power(s.slot_table())
    t = site_power(power, s.problem.inputs[1].sites)
    assert list(t["site"].unique()) == ["hall"] and len(t) == power["slot_start_s"].nunique()
    assert t["power_w"].tolist() == pytest.approx(_site_w(s).sort_index().tolist())  # the slots with work, in order
    assert (t["power_cap_w"] == cap).all() and t["power_w"].max() <= cap * (1 + 1e-9)
    assert plot_signals(power, sig, 30.0, tmp_path / "signals.png", sites=t).stat().st_size > 0
    assert site_power(power, {}).empty


def test_power_cap_sweep_over_a_site(tmp_path):
    from energyopt.sweep import point_inputs, sweep

    wl = _workload(np.random.default_rng(1), 6)
    wl["min_accuracy"] = 0.0
    models = make_models(TWO_LLM_MODELS)
    sig = _signals([400.0, 50.0, 300.0])
    fl = _fleet(1e6)
    _, f = point_inputs(wl, fl, "power-cap", 75.0, site="hall")
    assert f.sites["hall"].power_cap_w == 75.0 and fl.sites["hall"].power_cap_w == 1e6
    free = plan(wl, fl, models, objective="carbon", signals=sig)
    peak = float(_site_w(free).max())
    t = sweep(wl, fl, models, "power-cap", [2 * peak, 0.6 * peak], objective="carbon", signals=sig, site="hall",
              baselines=False)
    assert t["value"].tolist() == [2 * peak, 0.6 * peak]
    assert t["kg_co2e"].iloc[0] == pytest.approx(free.objective, rel=1e-9)
    assert t["kg_co2e"].iloc[1] > t["kg_co2e"].iloc[0]  # the binding site cap costs carbon
    with pytest.raises(DataError, match=r"--site 'yard': no such site; expected one of the fleet's \[sites\] \(hall\)"):
        sweep(wl, fl, models, "power-cap", [10.0], signals=sig, site="yard")
    with pytest.raises(DataError, match="--pool NAME and --site NAME: give one"):
        sweep(wl, fl, models, "power-cap", [10.0], signals=sig, site="hall", pool="g")
    with pytest.raises(DataError, match=r"--pool NAME \(or --site NAME\): give it with --vary power-cap"):
        sweep(wl, fl, models, "deadline-window", [1.0], signals=sig, site="hall")
    from conftest import ROOT

    sig_csv = tmp_path / "signals.csv"
    sig_csv.write_text("start_s,carbon_g_per_kwh\n0,400\n600,50\n")
    fl_toml = write(tmp_path, (ROOT / "examples" / "fleet.toml").read_text()
                    + '\n[sites.hall]\npools = ["h100", "h200"]\npower_cap_w = 1e6\n')
    r = CliRunner().invoke(main, ["sweep", str(ROOT / "examples" / "workload.csv"), "--fleet", str(fl_toml), "--vary",
                                  "power-cap", "--site", "nope", "--values", "10", "--objective", "carbon", "--signals",
                                  str(sig_csv), "--out", str(tmp_path / "s")])
    assert r.exit_code == 2 and "--site 'nope': no such site" in r.output and "(hall)" in r.output, r.output


@pytest.mark.parametrize("seed", range(6))
def test_site_capped_plan_with_an_accuracy_floor_against_brute_force(seed):
    # the floor's local pass (slotted._improve) keeps within the site's cap, not only the pools'
    rng = np.random.default_rng(300 + seed)
    carbon = rng.uniform(50, 400, 3)
    wl = _workload(rng, 4)
    models = make_models(TWO_LLM_MODELS)
    free = plan(wl, _fleet(None), models, objective="carbon", signals=_signals(carbon))
    site_cap = float(_site_w(free).max()) * rng.uniform(0.5, 0.95)
    floor = float(rng.uniform(0.45, 0.7))
    s = plan(wl, _fleet(site_cap), models, objective="carbon", signals=_signals(carbon), min_mean_accuracy=floor)
    p = s.problem
    price_d = p.slots.price_per_j[[p.slots.pools.index(x) for x in p.deployments["device"]]]
    best = slotted_brute_force(p, price_d, p.slots.bounds_s, {("g", "c"): site_cap}, min_mean_accuracy=floor)
    if not np.isfinite(best):
        assert not s.status.has_plan
        return
    _against_brute_force(s, best, site_cap)
