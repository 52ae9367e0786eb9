"""The tables behind the report's plots, re-derived from the assignment; the files it writes."""

from __future__ import annotations

import os
import stat

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import ROOT, lognormal_workload

from energyopt.cli import main
from energyopt.plan import plan
from energyopt.report import deadline_slack, energy_by_llm_device, instance_table, timeline_blocks, write_report
from energyopt.schema import Status
from energyopt.sweep import accuracy_cost


@pytest.fixture(scope="module")
def sched(synthetic_models, synthetic_fleet):
    wl = lognormal_workload(120, seed=3, deadline_fraction=0.3, deadline_range=(100, 600))
    s = plan(wl, synthetic_fleet, synthetic_models)
    assert s.summary().status is Status.OPTIMAL
    return s


def test_energy_and_instance_tables(sched):
    a = sched.assignment
    e = energy_by_llm_device(a)
    assert e["queries"].sum() == len(a)
    assert e["energy_j"].sum() == pytest.approx(a["energy_j"].sum())
    assert e["energy_share"].sum() == pytest.approx(1.0)
    for r in e.itertuples():
        sel = a[(a["llm"] == r.llm) & (a["device"] == r.device)]
        assert r.energy_kwh == pytest.approx(sel["energy_j"].sum() / 3.6e6)
        assert r.instances == sel["instance"].nunique()
    H = sched.problem.horizon_s
    t = instance_table(a, H)
    assert t["busy_s"].sum() == pytest.approx(a["runtime_s"].sum())
    assert np.allclose(t["utilisation"], t["busy_s"] / (H * t["batch_size"])) and (t["utilisation"] <= 1 + 1e-9).all()


def test_timeline_blocks_cover_every_query(sched):
    a = sched.assignment
    full = timeline_blocks(a)
    assert len(full) == len(a) and (full["queries"] == 1).all()
    merged = timeline_blocks(a, limit=10)
    assert merged["queries"].sum() == len(a) and len(merged) < len(a)
    for lab, g in merged.groupby("label"):
        llm, rest = lab.split(" @ ")
        dev, k = rest.split(" #")
        sel = a[(a["llm"] == llm) & (a["device"] == dev) & (a["instance"] == int(k))]
        assert g["start_s"].min() == pytest.approx(sel["start_s"].min())
        assert g["end_s"].max() == pytest.approx(sel["end_s"].max())
        assert g["queries"].sum() == len(sel)
        s = g.sort_values("start_s")
        assert (s["start_s"].to_numpy()[1:] >= s["end_s"].to_numpy()[:-1] - 1e-9).all()  # bars do not overlap


def test_deadline_slack(sched):
    a = sched.assignment
    s = deadline_slack(a)
    has = a[a["deadline_s"].notna()]
    assert len(s) == len(has) > 0
    assert np.allclose(s["slack_s"].to_numpy(), (has["deadline_s"] - has["end_s"]).to_numpy())
    assert (s["slack_s"] >= -1e-6).all()  # the plan meets every deadline


def test_accuracy_cost_curve(sched):
    t = accuracy_cost(sched, steps=3)
    assert len(t) == 4
    assert t["total_energy_j"].iloc[0] == pytest.approx(sched.summary().total_energy_j)
    ok = t[np.isfinite(t["total_energy_j"])]
    assert (np.diff(ok["total_energy_j"]) >= -1e-6).all()
    for k in range(1, len(ok)):
        de = ok["total_energy_j"].iloc[k] - ok["total_energy_j"].iloc[k - 1]
        da = ok["token_weighted_mean_accuracy"].iloc[k] - ok["token_weighted_mean_accuracy"].iloc[k - 1]
        assert ok["marginal_j_per_point"].iloc[k] == pytest.approx(de / (100 * da))
    # the last floor is the most a plan can reach (every query on its most accurate option)
    assert t["min_mean_accuracy"].iloc[-1] == pytest.approx(0.6)


def test_write_report_files(sched, tmp_path):
    paths = write_report(sched, tmp_path, accuracy_cost(sched, steps=2))
    names = {p.name for p in paths}
    assert {"report.html", "energy_by_llm_device.png", "timeline.png", "utilisation.png", "pools.png", "deadline_slack.png",
            "accuracy_cost.png", "accuracy_cost.csv", "instances.csv", "busy_lanes.csv", "pools.csv"} <= names
    for p in paths:
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
    html = (tmp_path / "report" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 6


def test_solve_report_cli(tmp_path, synthetic_models, synthetic_fleet):
    w = tmp_path / "w.csv"
    lognormal_workload(30, seed=4).to_csv(w, index=False)
    old = os.umask(0o022)
    try:
        r = CliRunner().invoke(main, ["solve", str(w), "--fleet", str(synthetic_fleet), "--models", str(synthetic_models),
                                      "--out", str(tmp_path / "p"), "--report"])
    finally:
        os.umask(old)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "p" / "report" / "report.html").exists() and "wrote the report" in r.output
    # plan and report files get the umask's mode (0644 under 022), not a temporary file's 0600
    written = [f for f in (tmp_path / "p").rglob("*") if f.is_file()]
    assert len(written) > 5 and {f.name: stat.S_IMODE(f.stat().st_mode) for f in written} == {f.name: 0o644 for f in written}
    # a workload without deadlines still gets its slack plot, saying so
    assert (tmp_path / "p" / "report" / "deadline_slack.png").exists()


def test_the_report_counts_the_queries_on_extrapolated_predictions(tmp_path):
    import pandas as pd
    from conftest import inside_outside_workload, ranged_two_llm_models, two_llm_fleet

    s = plan(inside_outside_workload(), two_llm_fleet(), ranged_two_llm_models(), solver="highs")
    write_report(s, tmp_path, accuracy_cost(s, steps=1))
    html = (tmp_path / "report" / "report.html").read_text()
    assert ("<td>queries on extrapolated predictions</td><td>1 of 2, 75.0% of the queries&#x27; predicted energy: "
            "outside the token ranges their models were measured on (--strict-range refuses them)</td>") in html
    e = pd.read_csv(tmp_path / "report" / "energy_by_llm_device.csv")
    assert e[["llm", "extrapolated_queries", "extrapolated_energy_j"]].values.tolist() == [["small", 1, 300.0]]
    # without flags the table is as before
    assert "extrapolated_queries" not in energy_by_llm_device(s.assignment).columns


def test_a_new_plan_removes_an_earlier_plans_report(tmp_path, synthetic_models, synthetic_fleet):
    w = tmp_path / "w.csv"
    lognormal_workload(30, seed=4).to_csv(w, index=False)
    args = ["solve", str(w), "--fleet", str(synthetic_fleet), "--models", str(synthetic_models), "--out", str(tmp_path / "p")]
    assert CliRunner().invoke(main, [*args, "--report"]).exit_code == 0
    (tmp_path / "p" / "report" / "old_plot.png").write_bytes(b"x")  # a file only the earlier report had
    r = CliRunner().invoke(main, [*args, "--report"])
    assert r.exit_code == 0 and not (tmp_path / "p" / "report" / "old_plot.png").exists()
    assert (tmp_path / "p" / "report" / "report.html").exists()
    r = CliRunner().invoke(main, args)  # no report asked: the earlier one goes
    assert r.exit_code == 0 and not (tmp_path / "p" / "report").exists()
    mine = tmp_path / "p" / "report"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")  # not an energyopt report: kept, and said so
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0 and (mine / "notes.txt").exists() and "not an energyopt report" in r.output


def test_busy_lanes_add_up_to_the_busy_lane_time():
    from energyopt.report import busy_lanes, utilisation_by_deployment

    a = pd.DataFrame({"query_id": list("abcde"), "llm": ["m", "m", "m", "m", "n"], "device": "g",
                      "instance": [0, 0, 1, 1, 0], "lane": [0, 1, 0, 0, 0], "batch_size": [2, 2, 2, 2, 1],
                      "start_s": [0.0, 0.0, 0.0, 3.0, 1.0], "end_s": [4.0, 2.0, 3.0, 4.0, 2.5],
                      "runtime_s": [4.0, 2.0, 3.0, 1.0, 1.5], "energy_j": 1.0})
    c = busy_lanes(a, horizon_s=10.0, points=8)
    m = c[c["llm"] == "m"]
    assert set(c["label"]) == {"m @ g, batch 2", "n @ g, batch 1"} and m["lanes"].iloc[0] == 4
    # busy share x lanes x step = busy lane-seconds: 10 for m over its two instances' four lanes
    assert float((m["busy_share"] * 4 * (m["t1_s"] - m["t0_s"])).sum()) == pytest.approx(10.0)
    assert m["t1_s"].max() == pytest.approx(4.0)  # up to the makespan, not the horizon
    assert m["busy_share"].iloc[0] == pytest.approx(0.75)  # in [0, 0.5]: a, b and c run, one lane is empty
    inst = instance_table(a, 10.0)
    u = utilisation_by_deployment(inst, {"g": 5}).set_index("label")
    assert u.loc["m @ g, batch 2", "instances"] == 2 and u.loc["m @ g, batch 2", "pool_instances"] == 5
    assert u.loc["m @ g, batch 2", "utilisation_max"] == pytest.approx(6.0 / 20.0)


def test_a_batched_plan_is_drawn_per_deployment(tmp_path):
    from energyopt.report import INSTANCE_ROWS_LIMIT

    s = plan(pd.read_csv(ROOT / "examples" / "workload.csv").head(200), ROOT / "examples" / "fleet.toml", ROOT / "models")
    assert int(s.assignment["batch_size"].max()) > 1 and s.assignment["instance"].nunique() <= INSTANCE_ROWS_LIMIT
    said: list[str] = []
    paths = write_report(s, tmp_path, accuracy_cost(s, steps=2), progress=said.append)
    assert any("per deployment" in x for x in said) and (tmp_path / "report" / "timeline.png") in paths
    page = (tmp_path / "report" / "report.html").read_text()
    for fact in ("empty batch slots [J]", "idle energy [J]", "energyopt", "made at", "workload", "solver"):
        assert fact in page
    from energyopt.accounting import idle_energy_j

    on = s.assignment.drop_duplicates(["llm", "device", "instance"])
    idle_w = {"h100": 134.0, "h200": 126.0}  # the pools' idle power in examples/fleet.toml
    would = float(idle_energy_j([idle_w[d] for d in on["device"]], s.problem.horizon_s).sum())
    assert f"the {len(on)} switched-on instances would draw {would:.6g} J idle" in page
    assert "gap 0.0001, threads 2" in page and "SHA-256" in page


def test_pool_use_counts_the_devices_busy_and_switched_on():
    from energyopt.report import busy_lanes, instances_available, pool_use

    a = pd.DataFrame({"query_id": list("abcd"), "llm": ["m", "m", "m", "n"], "device": "g",
                      "instance": [0, 0, 1, 0], "lane": [0, 1, 0, 0], "batch_size": [2, 2, 2, 1],
                      "start_s": [0.0, 0.0, 0.0, 0.0], "end_s": [4.0, 4.0, 2.0, 4.0],
                      "runtime_s": [4.0, 4.0, 2.0, 4.0], "energy_j": 1.0})
    deps = pd.DataFrame({"llm": ["m", "n"], "device": "g", "batch_size": [2, 1], "devices_per_instance": [2, 1],
                         "max_instances": [10, 1], "pool_count": 7})
    pools = pd.DataFrame({"pool": ["g", "idle"], "count": [7, 3]})
    assert instances_available(deps) == {("m", "g", 2): 3, ("n", "g", 1): 1}  # 7 devices // 2 per instance; a cap of 1
    t = pool_use(busy_lanes(a, 10.0, points=4), deps, pools)
    m = t[t["label"] == "m @ g, batch 2"].sort_values("t0_s")
    assert (m["on_devices"] == 4).all()  # two instances of two devices
    # [0, 1]: three of four lanes busy = 3 devices; [2, 4]: two of four lanes = 2 devices
    assert list(m["busy_devices"]) == pytest.approx([3.0, 3.0, 2.0, 2.0])
    n = t[t["label"] == "n @ g, batch 1"]
    assert list(n["busy_devices"]) == pytest.approx([1.0] * 4) and (n["pool_devices"] == 7).all()
    idle = t[t["pool"] == "idle"]
    assert len(idle) == 1 and idle["label"].iloc[0] == "(nothing planned)" and idle["pool_devices"].iloc[0] == 3


def test_a_dense_stretch_of_short_queries_reads_as_busy():
    from energyopt.report import busy_lanes

    n = 100_000  # back to back on one lane, each far shorter than a step of the curve
    ends = np.linspace(0.0, 50.0, n + 1)
    a = pd.DataFrame({"query_id": [f"q{i}" for i in range(n)], "llm": "m", "device": "g", "instance": 0, "lane": 0,
                      "batch_size": 1, "start_s": ends[:-1], "end_s": ends[1:], "runtime_s": np.diff(ends), "energy_j": 1.0})
    c = busy_lanes(a, horizon_s=100.0, points=50)
    assert c["busy_share"].to_numpy() == pytest.approx(1.0)


SIGNALS = "start_s,carbon_g_per_kwh,price_per_kwh\n0,180,0.21\n120,90,0.15\n240,60,0.12\n360,150,0.3\n480,200,0.35\n600,100,0.2\n"


@pytest.fixture(scope="module")
def signalled(sched, tmp_path_factory):
    import dataclasses

    from energyopt.signals import read_signals

    p = tmp_path_factory.mktemp("sig") / "signals.csv"
    p.write_text(SIGNALS)
    return dataclasses.replace(sched, signals=read_signals(p))


def test_slot_power_and_summary_come_from_the_slot_table(signalled):
    from energyopt.report import slot_power, slot_summary

    slots = signalled.slot_table()
    power, per_slot = slot_power(slots), slot_summary(slots)
    # average power x slot length is the slot's energy; the slots' energies add up to the plan's
    assert (power["power_w"] * (power["slot_end_s"] - power["slot_start_s"])).sum() == pytest.approx(
        signalled.summary().total_energy_j)
    assert per_slot["energy_kwh"].sum() == pytest.approx(slots["energy_kwh"].sum())
    assert per_slot["kg_co2e"].sum() == pytest.approx(signalled.summary().signals["total_kg_co2e"])
    assert per_slot["cost"].sum() == pytest.approx(signalled.summary().signals["total_cost"])
    first = per_slot.iloc[0]
    assert first["carbon_g_per_kwh"] == pytest.approx(180.0) and first["slot_end_s"] == 120.0


def test_the_report_draws_the_plan_against_its_signals_only_when_it_has_them(sched, signalled, tmp_path):
    curve = accuracy_cost(sched, steps=1)
    paths = write_report(signalled, tmp_path / "with", curve)
    d = tmp_path / "with" / "report"
    assert {d / "signals.png", d / "slot_power.csv", d / "slot_totals.csv"} <= set(paths)
    assert (d / "signals.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (d / "signals.png").stat().st_size > 5000
    page = (d / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 7 and 'alt="signals"' in page
    assert "energy, carbon and cost per time slot" in page and "slot_totals.csv" in page
    assert "<td>carbon [kgCO2e]</td>" in page and "<td>cost [currency]</td>" in page and "signals.csv: 6 slots" in page
    totals = pd.read_csv(d / "slot_totals.csv")
    assert totals["kg_co2e"].sum() == pytest.approx(signalled.summary().signals["total_kg_co2e"])
    write_report(sched, tmp_path / "without", curve)
    d0 = tmp_path / "without" / "report"
    assert not (d0 / "signals.png").exists() and not (d0 / "slot_totals.csv").exists()
    page0 = (d0 / "report.html").read_text()
    assert "signals" not in page0 and "kgCO2e" not in page0


def test_solve_report_with_signals_cli(tmp_path, synthetic_models, synthetic_fleet):
    w, sig = tmp_path / "w.csv", tmp_path / "s.csv"
    lognormal_workload(30, seed=4).to_csv(w, index=False)
    sig.write_text(SIGNALS)
    r = CliRunner().invoke(main, ["solve", str(w), "--fleet", str(synthetic_fleet), "--models", str(synthetic_models),
                                  "--out", str(tmp_path / "p"), "--report", "--signals", str(sig), "--idle"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "p" / "report" / "signals.png").exists()
    assert 'alt="signals"' in (tmp_path / "p" / "report" / "report.html").read_text()
    # with idle counted, every slot of the horizon draws the switched-on instances' idle power
    power = pd.read_csv(tmp_path / "p" / "report" / "slot_power.csv")
    assert sorted(power["slot_start_s"].unique()) == [0, 120, 240, 360, 480]


def test_every_axis_of_accuracy_gives_it_in_one_unit():
    """Accuracy is a fraction (0-1) on every figure: each axis label that names it carries
    report.ACCURACY_UNIT (one figure gave percent, another 0-1; the study's none)."""
    import re

    from conftest import ROOT

    labels = []
    for f in sorted((ROOT / "energyopt").rglob("*.py")):
        for m in re.finditer(r"set_[xy]label\((.*)\)", f.read_text()):
            if "accuracy" in m.group(1):
                labels.append((f.name, m.group(1)))
    assert len(labels) >= 3, labels  # the report's curve, the sweep's and the study's
    assert all("ACCURACY_UNIT" in text for _, text in labels), labels
