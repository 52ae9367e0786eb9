"""Conventions users expect of a command line (issue 15): `-o` for `--out` everywhere, `--json` for
machine-readable output, `compare --out`, `-v`/`--log-file` and help text on every option."""

from __future__ import annotations

import click
from click.testing import CliRunner
from conftest import DATA, lognormal_workload

from energyopt.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _options(cmd: click.Command) -> list[click.Option]:
    return [p for p in cmd.params if isinstance(p, click.Option)]


def test_every_out_option_has_the_short_form_o():
    with_out = []
    for name, cmd in main.commands.items():
        for p in _options(cmd):
            if "--out" in p.opts:
                assert "-o" in p.opts, f"{name} --out has no -o"
                with_out.append(name)
    assert {"solve", "compare", "sweep", "fit", "characterize", "replay"} <= set(with_out)


def test_o_writes_where_out_does(tmp_path, synthetic_models, synthetic_fleet):
    r = run("fit", DATA / "synthetic_characterization.csv", "-o", tmp_path / "m")
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "m").glob("*.json"))) == 4
    wl = tmp_path / "w.csv"
    lognormal_workload(20, seed=2).to_csv(wl, index=False)
    r = run("solve", wl, "--fleet", synthetic_fleet, "--models", synthetic_models, "-o", tmp_path / "p")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "p" / "assignment.csv").is_file() and (tmp_path / "p" / "summary.json").is_file()


def test_compare_out_writes_the_table_as_csv_and_json(tmp_path, synthetic_models, synthetic_fleet):
    import json

    import pandas as pd

    wl = tmp_path / "w.csv"
    lognormal_workload(30, seed=4).to_csv(wl, index=False)
    r = run("compare", wl, "--fleet", synthetic_fleet, "--models", synthetic_models, "-o", tmp_path / "c")
    assert r.exit_code == 0, r.output
    csv = pd.read_csv(tmp_path / "c" / "compare.csv")
    rows = json.loads((tmp_path / "c" / "compare.json").read_text())
    assert list(csv["method"]) == [row["method"] for row in rows]
    assert rows[0]["method"] == "optimal" and rows[0]["status"] == "optimal"
    assert {"energy_kwh", "accuracy", "saved", "gap"} <= set(rows[0]) and rows[0]["saved"] is None
    assert csv["energy_kwh"].iloc[0] == rows[0]["energy_kwh"]
    assert f"wrote {tmp_path / 'c' / 'compare.csv'}" in r.stdout
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["compare.csv", "compare.json"]  # no temporaries


def test_compare_without_out_writes_nothing(tmp_path, synthetic_models, synthetic_fleet, monkeypatch):
    monkeypatch.chdir(tmp_path)
    wl = tmp_path / "w.csv"
    lognormal_workload(10, seed=4).to_csv(wl, index=False)
    r = run("compare", wl, "--fleet", synthetic_fleet, "--models", synthetic_models, "--no-equal-accuracy")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.csv"]


def test_compare_checks_its_out_before_solving(tmp_path, synthetic_models, synthetic_fleet, monkeypatch):
    import importlib

    compare_m = importlib.import_module("energyopt.compare")

    def never(*a, **k):
        raise AssertionError("solved before the output was checked")

    monkeypatch.setattr(compare_m, "compare", never)
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    wl = tmp_path / "w.csv"
    lognormal_workload(10, seed=4).to_csv(wl, index=False)
    r = run("compare", wl, "--fleet", synthetic_fleet, "--models", synthetic_models, "--out", a_file / "c")
    assert r.exit_code == 2 and r.output.count("\n") == 1
    assert r.output.startswith("error: --out ") and "cannot write there" in r.output


def test_compare_out_is_written_when_the_optimal_plan_has_none(tmp_path, synthetic_models, synthetic_fleet, monkeypatch):
    import json

    from test_cli import _time_out_without_a_plan

    _time_out_without_a_plan(monkeypatch)
    wl = tmp_path / "w.csv"
    lognormal_workload(20, seed=3).to_csv(wl, index=False)
    r = run("compare", wl, "--fleet", synthetic_fleet, "--models", synthetic_models, "--solver", "highs",
            "--formulation", "exact", "--time-limit", "5", "--no-equal-accuracy", "-o", tmp_path / "c")
    assert r.exit_code == 3, r.output
    rows = json.loads((tmp_path / "c" / "compare.json").read_text())
    assert rows[0]["status"] == "no_solution" and rows[0]["energy_kwh"] is None
