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
    assert {"solve", "sweep", "fit", "characterize", "replay"} <= set(with_out)


def test_o_writes_where_out_does(tmp_path, synthetic_models, synthetic_fleet):
    r = run("fit", DATA / "synthetic_characterization.csv", "-o", tmp_path / "m")
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "m").glob("*.json"))) == 4
    wl = tmp_path / "w.csv"
    lognormal_workload(20, seed=2).to_csv(wl, index=False)
    r = run("solve", wl, "--fleet", synthetic_fleet, "--models", synthetic_models, "-o", tmp_path / "p")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "p" / "assignment.csv").is_file() and (tmp_path / "p" / "summary.json").is_file()
