"""compare with --signals: every row priced per time slot by the slots module, as solve prices its plan."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import lognormal_workload

from energyopt.cli import main
from energyopt.compare import compare
from energyopt.methods.baselines import baseline_choice
from energyopt.plan import plan, schedule_choice
from energyopt.signals import read_signals
from energyopt.slots import slot_totals

# 120-second slots over the synthetic fleet's 600 s horizon, and on for a week (baselines packed
# without deadlines may run past the horizon)
SIGNALS = "start_s,carbon_g_per_kwh,price_per_kwh\n" + "".join(
    f"{120 * k},{(180, 90, 60, 150, 200)[k % 5]},{(0.21, 0.15, -0.02, 0.3, 0.35)[k % 5]}\n" for k in range(7 * 720))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, synthetic_models, synthetic_fleet):
    d = tmp_path_factory.mktemp("cmp")
    (d / "s.csv").write_text(SIGNALS)
    (d / "short.csv").write_text("start_s,carbon_g_per_kwh\n0,100\n100,50\n")
    lognormal_workload(40, seed=4).to_csv(d / "w.csv", index=False)
    return d / "w.csv", synthetic_fleet, synthetic_models, d


def test_compare_prices_every_row_per_slot_like_solve(inputs):
    wl, fleet, models, d = inputs
    t = compare(wl, fleet, models, signals=d / "s.csv", seed=1, solver="highs").set_index("method")
    assert {"kg_co2e", "cost", "optimal_same_acc_kg_co2e", "optimal_same_acc_cost"} <= set(t.columns)
    opt = plan(wl, fleet, models, signals=d / "s.csv", solver="highs")
    sig = opt.summary().signals
    assert t.loc["optimal", "kg_co2e"] == pytest.approx(sig["total_kg_co2e"])
    assert t.loc["optimal", "cost"] == pytest.approx(sig["total_cost"])
    signals = read_signals(d / "s.csv")
    for name in ("round-robin", "random", "fastest"):
        b = dataclasses.replace(schedule_choice(opt.problem, baseline_choice(opt.problem, name, seed=1)),
                                signals=signals)
        totals = slot_totals(b.slot_table())
        assert t.loc[name, "kg_co2e"] == pytest.approx(totals["total_kg_co2e"])
        assert t.loc[name, "cost"] == pytest.approx(totals["total_cost"])
        assert totals["total_energy_kwh"] == pytest.approx(t.loc[name, "energy_kwh"])
        # the plan at the baseline's accuracy is priced too
        assert np.isfinite(t.loc[name, "optimal_same_acc_kg_co2e"])


def test_compare_without_signals_has_no_carbon_or_cost_columns(inputs):
    wl, fleet, models, _ = inputs
    t = compare(wl, fleet, models, equal_accuracy=False)
    assert not {"kg_co2e", "cost", "optimal_same_acc_kg_co2e"} & set(t.columns)


def test_a_row_that_runs_past_the_series_is_not_priced_and_said_so(inputs, monkeypatch):
    wl, fleet, models, d = inputs
    import energyopt.compare as cm

    real = cm.schedule_choice

    def past_the_end(problem, choice, **kw):  # a routing rule whose last query ends after the series
        s = real(problem, choice, **kw)
        a = s.assignment.copy()
        a.loc[a.index[-1], "end_s"] = 1e9
        return dataclasses.replace(s, assignment=a)

    monkeypatch.setattr(cm, "schedule_choice", past_the_end)
    said: list[str] = []
    t = compare(wl, fleet, models, signals=d / "s.csv", equal_accuracy=False, progress=said.append).set_index("method")
    assert np.isfinite(t.loc["optimal", "kg_co2e"]) and np.isnan(t.loc["round-robin", "kg_co2e"])
    assert any(x.startswith("round-robin: not priced per slot:") and "short of" in x for x in said)


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_compare_cli_signals(inputs):
    wl, fleet, models, d = inputs
    base = ("compare", wl, "--fleet", fleet, "--models", models, "--no-equal-accuracy")
    r = run(*base, "--signals", d / "s.csv", "-o", d / "out")
    assert r.exit_code == 0, r.output
    head = r.output.splitlines()[0]
    assert "kg_co2e" in head and "cost" in head and "planned for the objective" in r.output
    import pandas as pd

    csv = pd.read_csv(d / "out" / "compare.csv")
    assert csv["kg_co2e"].notna().all() and csv["cost"].notna().all()
    assert "kg_co2e" not in run(*base).output
    # bad input: one line, exit 2, before anything is solved
    r = run(*base, "--signals-start", "2023-01-01T00:00:00Z")
    assert r.exit_code == 2 and "--signals-start: give --signals FILE too" in r.output
    r = run(*base, "--signals", d / "short.csv")
    assert r.exit_code == 2 and "short.csv" in r.output and "short of" in r.output
    assert "optimal" not in r.output
