"""compare --objective carbon|cost: the optimal rows planned per slot for the least kgCO2e (cost)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import TWO_LLM_MODELS, make_models, two_llm_fleet

import energyopt.compare as cm
from energyopt.cli import main
from energyopt.compare import compare
from energyopt.signals import Signals

# three 400-second slots, the middle one clean, then dirty slots for routing rules that run long
CARBON = [400.0, 50.0, 300.0] + [500.0] * 30
PRICE = [0.3, 0.1, 0.2] + [0.4] * 30


def _signals() -> Signals:
    start = np.arange(len(CARBON)) * 400.0
    return Signals(start, start + 400.0, np.asarray(CARBON), np.asarray(PRICE))


def _workload(n_q: int = 8) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return pd.DataFrame({"query_id": [f"q{i}" for i in range(n_q)], "input_tokens": rng.integers(1, 50, n_q),
                         "output_tokens": rng.integers(50, 400, n_q), "min_accuracy": 0.0,
                         "deadline_s": np.full(n_q, np.nan)})


@pytest.fixture(scope="module")
def instance():
    return _workload(), two_llm_fleet(horizon_s=1200.0), make_models(TWO_LLM_MODELS)


@pytest.mark.parametrize("objective, col", [("carbon", "kg_co2e"), ("cost", "cost")])
def test_compare_plans_for_carbon_at_each_baselines_accuracy(instance, monkeypatch, objective, col):
    wl, fleet, models = instance
    planned, packed = [], []
    real_plan, real_choice = cm.plan, cm.schedule_choice
    monkeypatch.setattr(cm, "plan", lambda *a, **kw: planned.append(real_plan(*a, **kw)) or planned[-1])
    monkeypatch.setattr(cm, "schedule_choice", lambda *a, **kw: packed.append(real_choice(*a, **kw)) or packed[-1])
    t = compare(wl, fleet, models, signals=_signals(), objective=objective, solver="highs").set_index("method")
    # every row checked: the plans (the optimal one, one per baseline) and the routing rules
    assert len(planned) == len(t) and len(packed) == len(t) - 1
    for s in planned + packed:
        assert s.status.has_plan and not s.check_violations, s.check_violations
    assert (t["minimised"] == col).all()
    assert t.loc["optimal", col] == pytest.approx(planned[0].objective, rel=1e-6)
    better = 0
    for _name, row in t.drop(index="optimal").iterrows():
        assert row[f"optimal_same_acc_{col}"] <= row[col] * (1 + 1e-9)
        assert row["saved"] == pytest.approx(1 - row[f"optimal_same_acc_{col}"] / row[col])
        # against the energy plan at the baseline's accuracy, priced under the same signals
        blind = real_plan(wl, fleet, models, signals=_signals(), solver="highs",
                          min_mean_accuracy=min(row["accuracy"] - 1e-9, 1.0))
        blind_val = float(blind.slot_table()[col].sum())
        assert row[f"optimal_same_acc_{col}"] <= blind_val * (1 + row["gap"] + 1e-9)
        better += row[f"optimal_same_acc_{col}"] < blind_val * (1 - 1e-3)
    assert better >= 1  # somewhere planning for carbon (cost) beats planning for energy


def test_compare_energy_default_has_no_minimised_column(instance):
    wl, fleet, models = instance
    t = compare(wl, fleet, models, signals=_signals(), equal_accuracy=False, solver="highs")
    assert "minimised" not in t.columns


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_compare_cli_objective_carbon(instance, tmp_path):
    wl, fleet, models = instance
    # the shared synthetic inputs would do too; the two-LLM instance written as files
    from conftest import write_two_llm_inputs

    wl_p, fleet_p, models_p = write_two_llm_inputs(tmp_path, wl, models)
    (tmp_path / "s.csv").write_text("start_s,carbon_g_per_kwh\n" + "".join(
        f"{400 * k},{c}\n" for k, c in enumerate(CARBON)))
    base = ("compare", wl_p, "--fleet", fleet_p, "--models", models_p, "--objective", "carbon")
    r = run(*base)
    assert r.exit_code == 2 and "--objective carbon: give --signals FILE" in r.output
    assert "optimal" not in r.output and len(r.output.strip().splitlines()) == 1
    r = run(*base, "--signals", tmp_path / "s.csv", "-o", tmp_path / "out")
    assert r.exit_code == 0, r.output
    assert "minimised: kg_co2e" in r.output
    csv = pd.read_csv(tmp_path / "out" / "compare.csv")
    assert (csv["minimised"] == "kg_co2e").all() and csv["saved"].iloc[1:].notna().any()
    r = run(*base[:-1], "cost", "--signals", tmp_path / "s.csv")  # no price column
    assert r.exit_code == 2 and "price_per_kwh" in r.output
