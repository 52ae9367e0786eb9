"""The day-long example: a seeded batch planned on the default fleet for a 24-hour window, priced on
the shipped NESO series; it writes outside the repository and its figures re-derive from its files."""

from __future__ import annotations

import importlib.util
import json

import pandas as pd
import pytest
from conftest import ROOT


@pytest.fixture(scope="module")
def day():
    spec = importlib.util.spec_from_file_location("day_long", ROOT / "examples" / "day-long" / "day_long.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_workload_is_seeded_with_deadlines_within_the_day(day):
    a, b = day.make_workload(500, seed=2), day.make_workload(500, seed=2)
    pd.testing.assert_frame_equal(a, b)
    d = a["deadline_s"].dropna()
    assert 0.1 < len(d) / len(a) < 0.3 and d.min() >= 3600 and d.max() <= 86400


def test_hourly_starts_are_the_ones_the_series_covers_for_a_day(day):
    starts = day.hourly_starts(day.SERIES, 86400.0)
    # the series runs from 2022-12-31 23:30 to 2023-01-08 00:00 UTC: whole hours from 1 January 00:00
    # to 7 January 00:00
    assert starts[0] == "2023-01-01T00:00:00Z" and starts[-1] == "2023-01-07T00:00:00Z" and len(starts) == 145


def test_the_example_runs_and_prints_kwh_and_kgco2e(day, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["day_long.py", "--out", str(tmp_path), "--n", "300"])
    day.main()
    out = capsys.readouterr().out
    assert "kWh" in out and "kgCO2e" in out and "carbon-blind" in out
    summary = json.loads((tmp_path / "plan" / "summary.json").read_text())
    sig = summary["signals"]
    assert summary["status"] == "optimal" and summary["check"]["ok"] and summary["queries"] == 300
    assert sig["batch_start"] == "2023-01-02T17:00:00Z" and sig["total_cost"] is None
    assert f"{sig['total_kg_co2e']:.4g} kgCO2e" in out
    slots = pd.read_csv(tmp_path / "plan" / "slots.csv")
    assert slots["kg_co2e"].sum() == pytest.approx(sig["total_kg_co2e"])
    starts = pd.read_csv(tmp_path / "starts.csv").set_index("batch_start")
    # the start the plan was made at prices it as solve does; every start the same energy
    assert starts.loc["2023-01-02T17:00:00Z", "kg_co2e"] == pytest.approx(sig["total_kg_co2e"])
    assert starts["energy_kwh"].to_numpy() == pytest.approx(sig["total_energy_kwh"])
    assert starts["kg_co2e"].min() < sig["total_kg_co2e"]
