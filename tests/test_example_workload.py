"""The shipped example's deadlines bind (issue 15): without them the plan is cheaper, so a sweep
over the deadline scale on examples/workload.csv is not flat; the file is what its generator makes."""

from __future__ import annotations

import sys

import pandas as pd
from conftest import ROOT

from energyopt.plan import plan

FLEET, MODELS = ROOT / "examples" / "fleet.toml", ROOT / "models"


def test_the_example_is_what_make_workload_makes():
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from make_workload import EXAMPLE_DEADLINE_RANGE, make
    finally:
        sys.path.remove(str(ROOT / "examples"))
    shipped = pd.read_csv(ROOT / "examples" / "workload.csv", dtype={"query_id": str})
    made = make(1000, seed=0, deadline_range=EXAMPLE_DEADLINE_RANGE)
    pd.testing.assert_frame_equal(shipped, made, check_dtype=False)


def test_the_example_deadlines_bind():
    wl = pd.read_csv(ROOT / "examples" / "workload.csv")
    with_dl = plan(wl, FLEET, MODELS).summary()
    free = plan(wl.assign(deadline_s=float("nan")), FLEET, MODELS).summary()
    assert with_dl.status.has_plan and free.status.has_plan
    assert with_dl.deadlines_met == with_dl.queries_with_deadline == 206
    # the deadlines cost energy: loosening them (a larger deadline scale) lowers it
    assert free.total_energy_j < with_dl.total_energy_j * (1 - 1e-3)


def test_the_readme_shows_what_solve_prints_on_the_example(tmp_path, monkeypatch):
    """README's "In a nutshell" block is `energyopt solve examples/workload.csv` as it prints today,
    line for line, but for the backend's seconds."""
    import re

    from click.testing import CliRunner

    from energyopt.cli import main

    readme = (ROOT / "README.md").read_text()
    block = readme.split("$ energyopt solve examples/workload.csv\n", 1)[1].split("```", 1)[0].splitlines()
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, ["solve", str(ROOT / "examples" / "workload.csv")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    printed = [line.replace(f"{ROOT / 'examples'}/", "examples/") for line in r.output.splitlines()]

    def seconds_out(lines: list[str]) -> list[str]:
        return [re.sub(r"optimal in [0-9.]+ s", "optimal in _ s", line) for line in lines]

    assert seconds_out(printed) == seconds_out(block)
