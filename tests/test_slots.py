"""Per-slot accounting: the vectorised split of energy over time slots against brute force (second
by second, and query by query and slot by slot over a real plan), and ``solve --signals``."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import ROOT, lognormal_workload

import energyopt
from energyopt.accounting import J_PER_KWH, slot_energy_j
from energyopt.cli import main
from energyopt.signals import read_signals
from energyopt.slots import slot_table, slot_totals

SHIPPED = ROOT / "data" / "signals" / "neso_gb_national_intensity_2023-01-01_07.csv"


def per_second(bounds, start, end, energy, group, n_groups):
    """Brute force on whole seconds: each second of [start, end) gets energy / (end - start), in the
    slot holding that second (an interval of no length: all of it in the slot holding its start)."""
    out = np.zeros((n_groups, len(bounds) - 1))
    for s, e, en, g in zip(start, end, energy, group, strict=True):
        for t in range(int(s), int(e)) if e > s else [int(s)]:
            k = int(np.searchsorted(bounds, t, side="right")) - 1
            out[g, k] += en / (e - s) if e > s else en
    return out


@pytest.mark.parametrize("seed", range(6))
def test_slot_energy_matches_second_by_second_integration(seed):
    rng = np.random.default_rng(seed)
    bounds = np.concatenate([[0], np.cumsum(rng.integers(1, 9, rng.integers(1, 8)))]).astype(float)
    n = 40
    start = rng.integers(0, int(bounds[-1]), n).astype(float)
    end = np.minimum(start + rng.integers(0, 15, n), bounds[-1])  # some of no length, many straddling boundaries
    energy = rng.uniform(0, 100, n)
    group = rng.integers(0, 3, n)
    got = slot_energy_j(bounds, start, end, energy, group, 3)
    np.testing.assert_allclose(got, per_second(bounds, start, end, energy, group, 3), rtol=1e-12, atol=1e-9)
    assert got.sum() == pytest.approx(energy.sum())


def test_a_query_straddling_a_boundary_is_split_by_overlap():
    # 10 J over [5, 15) s: slots [0, 10) and [10, 20) get 5 J each; 30 J over [8, 38) spans four slots
    got = slot_energy_j([0, 10, 20, 30, 40], [5, 8], [15, 38], [10, 30])
    np.testing.assert_allclose(got, [[5 + 2, 5 + 10, 10, 8]])


def test_edges_a_boundary_end_and_no_length_and_outside():
    np.testing.assert_allclose(slot_energy_j([0, 10, 20], [0, 10], [10, 10], [4, 6]), [[4, 6]])  # [0,10) only in slot 0
    assert slot_energy_j([0, 10], [], [], []).shape == (1, 1)
    with pytest.raises(ValueError, match="outside the slots"):
        slot_energy_j([0, 10], [5], [11], [1])
    with pytest.raises(ValueError, match="ends before it starts"):
        slot_energy_j([0, 10], [5], [4], [1])


def test_a_million_queries_over_48_slots_in_well_under_a_few_seconds():
    rng = np.random.default_rng(0)
    n = 1_000_000
    bounds = np.arange(49) * 1800.0
    start = rng.uniform(0, bounds[-1] - 600, n)
    end = start + rng.uniform(0, 600, n)
    energy = rng.uniform(1, 1000, n)
    group = rng.integers(0, 20, n)
    t0 = time.perf_counter()
    got = slot_energy_j(bounds, start, end, energy, group, 20)
    elapsed = time.perf_counter() - t0
    assert got.sum() == pytest.approx(energy.sum(), rel=1e-9)
    assert elapsed < 2.0, elapsed


@pytest.fixture(scope="module")
def plan_with_idle(synthetic_models, synthetic_fleet):
    wl = lognormal_workload(60, seed=5, deadline_fraction=0.3)
    return energyopt.plan(wl, synthetic_fleet, synthetic_models, idle=True, solver="highs")


def brute_table(sched, bounds):
    """Query by query and slot by slot: each query's charged energy times its overlap with each
    slot over its runtime; each switched-on instance's idle power times the slot's overlap with the
    horizon. Keyed by (slot, llm, device)."""
    p = sched.problem
    idle_w = dict(zip(zip(p.deployments["llm"], p.deployments["device"]), p.deployments["idle_power_w"]))
    out: dict[tuple[int, str, str], float] = {}
    a = sched.assignment
    for r in a.itertuples():
        w = idle_w[(r.llm, r.device)]
        charged = max(r.energy_j - w / r.batch_size * r.runtime_s, 0.0)
        for k in range(len(bounds) - 1):
            overlap = max(0.0, min(r.end_s, bounds[k + 1]) - max(r.start_s, bounds[k]))
            if overlap > 0:
                out[(k, r.llm, r.device)] = out.get((k, r.llm, r.device), 0.0) + charged * overlap / r.runtime_s
    for r in a.drop_duplicates(["llm", "device", "instance"]).itertuples():
        for k in range(len(bounds) - 1):
            overlap = max(0.0, min(p.horizon_s, bounds[k + 1]) - max(0.0, bounds[k]))
            if overlap > 0:
                out[(k, r.llm, r.device)] = out.get((k, r.llm, r.device), 0.0) + idle_w[(r.llm, r.device)] * overlap
    return out


def test_slot_table_of_a_plan_matches_brute_force_and_its_total_energy(tmp_path, plan_with_idle):
    sched = plan_with_idle
    assert sched.status.has_plan and sched.problem.idle
    f = tmp_path / "s.csv"  # 7 s slots: queries straddle boundaries; carbon and price rise with the slot
    f.write_text("start_s,carbon_g_per_kwh,price_per_kwh\n" + "".join(f"{7 * k},{100 + k},{0.01 * k}\n" for k in range(90)))
    sig = read_signals(f)
    table = slot_table(sched.assignment, sig, idle_power_w=dict(zip(zip(sched.problem.deployments["llm"],
                       sched.problem.deployments["device"]), sched.problem.deployments["idle_power_w"])),
                       horizon_s=sched.problem.horizon_s, idle=True)
    brute = brute_table(sched, sig.bounds_s())
    got = {(int(r.slot), r.llm, r.device): r.energy_j for r in table.itertuples()}
    assert got.keys() == {k for k, v in brute.items() if v > 0}
    for k, v in brute.items():
        assert got[k] == pytest.approx(v, rel=1e-9, abs=1e-9), k
    totals = slot_totals(table)
    assert totals["total_energy_j"] == pytest.approx(sched.energy_totals()["total_energy_j"], rel=1e-12)
    carbon = 100 + table["slot"].to_numpy()
    assert totals["total_kg_co2e"] == pytest.approx(float((table["energy_j"] / J_PER_KWH * carbon / 1000).sum()))
    assert totals["total_cost"] == pytest.approx(float((table["energy_j"] / J_PER_KWH * 0.01 * table["slot"]).sum()))
    assert table["idle_energy_j"].sum() == pytest.approx(sched.energy_totals()["idle_energy_j"])


def test_without_idle_the_table_spreads_all_predicted_energy(synthetic_models, synthetic_fleet, tmp_path):
    wl = lognormal_workload(30, seed=1)
    f = tmp_path / "s.csv"
    f.write_text("start_s,carbon_g_per_kwh\n0,100\n300,200\n")
    sched = energyopt.plan(wl, synthetic_fleet, synthetic_models, solver="highs", signals=f)
    table = sched.slot_table()
    assert (table["idle_energy_j"] == 0).all() and "price_per_kwh" not in table.columns
    assert table["energy_j"].sum() == pytest.approx(sched.assignment["energy_j"].sum())
    s = sched.summary().to_dict()["signals"]
    assert s["total_kg_co2e"] == pytest.approx(float(table["kg_co2e"].sum())) and s["total_cost"] is None


def test_per_pool_series_price_each_pool_by_its_own(synthetic_models, synthetic_fleet, tmp_path):
    wl = lognormal_workload(40, seed=3)
    f = tmp_path / "s.csv"
    f.write_text("pool,start_s,carbon_g_per_kwh\ngpu-a,0,100\ngpu-a,600,100\ngpu-b,0,400\ngpu-b,300,500\n")
    sched = energyopt.plan(wl, synthetic_fleet, synthetic_models, solver="highs", signals=f)
    table = sched.slot_table()
    assert set(table.loc[table["device"] == "gpu-a", "carbon_g_per_kwh"]) <= {100.0}
    assert set(table.loc[table["device"] == "gpu-b", "carbon_g_per_kwh"]) <= {400.0, 500.0}
    assert table["energy_j"].sum() == pytest.approx(sched.assignment["energy_j"].sum())


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_solve_with_signals_writes_slots_csv_and_the_summary_fields(tmp_path, synthetic_models, synthetic_fleet):
    wl = tmp_path / "w.csv"
    lognormal_workload(40, seed=2).to_csv(wl, index=False)
    out = tmp_path / "p"
    r = run("solve", wl, "--fleet", synthetic_fleet, "--models", synthetic_models, "--idle", "-o", out,
            "--signals", SHIPPED, "--signals-start", "2023-01-02T17:00:00Z")
    assert r.exit_code == 0, r.output
    assert "kgCO2e (mean 203.0 g/kWh)" in r.output and "the objective is unchanged" in r.output
    assert f"and {out / 'slots.csv'}" in r.output
    s = json.loads((out / "summary.json").read_text())["signals"]
    slots = pd.read_csv(out / "slots.csv")
    assert s["total_energy_kwh"] == pytest.approx(json.loads((out / "summary.json").read_text())["total_energy_kwh"])
    assert s["total_kg_co2e"] == pytest.approx(slots["kg_co2e"].sum()) and s["slots"] == 1
    assert s["batch_start"] == "2023-01-02T17:00:00Z" and s["slot_s"] == 1800 and s["total_cost"] is None
    assert list(slots.columns) == ["slot", "slot_start_s", "slot_end_s", "llm", "device", "query_energy_j",
                                   "idle_energy_j", "energy_j", "energy_kwh", "carbon_g_per_kwh", "kg_co2e"]
    assert set(slots["carbon_g_per_kwh"]) == {203.0}  # 17:00-17:30 on 2 January 2023, the file's `actual`
    # the same plan without signals: summary.json has no signals section, and the old slots.csv goes
    r = run("solve", wl, "--fleet", synthetic_fleet, "--models", synthetic_models, "--idle", "-o", out)
    assert r.exit_code == 0, r.output
    assert "signals" not in json.loads((out / "summary.json").read_text()) and not (out / "slots.csv").exists()
    assert "signals:" not in r.output


def test_a_plan_without_signals_is_unchanged(tmp_path, synthetic_models, synthetic_fleet):
    wl = lognormal_workload(30, seed=4)
    a = energyopt.plan(wl, synthetic_fleet, synthetic_models, solver="highs")
    b = energyopt.plan(wl, synthetic_fleet, synthetic_models, solver="highs", signals=SHIPPED)
    pd.testing.assert_frame_equal(a.assignment, b.assignment)
    assert a.objective == b.objective and a.signals is None
    assert "signals" not in a.summary().to_dict() and a.write(tmp_path / "a")[-1].name == "summary.json"
    with pytest.raises(ValueError, match="no signals"):
        a.slot_table()


def test_bad_signals_stop_solve_before_solving_with_exit_2(tmp_path, synthetic_models, synthetic_fleet, monkeypatch):
    import importlib

    plan_module = importlib.import_module("energyopt.plan")

    def no_solving(*a, **k):
        raise AssertionError("solved")

    monkeypatch.setattr(plan_module, "plan_problem", no_solving)
    wl = tmp_path / "w.csv"
    lognormal_workload(5).to_csv(wl, index=False)
    short = tmp_path / "s.csv"
    short.write_text("start_s,carbon_g_per_kwh\n0,1\n100,2\n")
    out = tmp_path / "p"
    r = run("solve", wl, "--fleet", synthetic_fleet, "--models", synthetic_models, "-o", out, "--signals", short)
    assert r.exit_code == 2 and "ends at 200 s, 400 s short of the fleet's horizon_s" in r.output
    assert not out.exists()
    r = run("solve", wl, "--fleet", synthetic_fleet, "--models", synthetic_models, "-o", out, "--signals-start", "2023")
    assert r.exit_code == 2 and "--signals-start: give --signals FILE too" in r.output


def test_without_a_plan_the_summary_names_the_signals_and_no_slots_csv_is_left(tmp_path, synthetic_models,
                                                                               synthetic_fleet):
    wl = tmp_path / "w.csv"
    w = lognormal_workload(5)
    w["min_accuracy"] = 0.99  # no LLM of the fleet is that accurate: no plan
    w.to_csv(wl, index=False)
    out = tmp_path / "p"
    out.mkdir()
    (out / "slots.csv").write_text("an earlier run's\n")
    r = run("solve", wl, "--fleet", synthetic_fleet, "--models", synthetic_models, "-o", out, "--signals", SHIPPED)
    assert r.exit_code == 1, r.output
    s = json.loads((out / "summary.json").read_text())["signals"]
    assert s["file"] == str(SHIPPED.resolve()) and "total_kg_co2e" not in s and not (out / "slots.csv").exists()
