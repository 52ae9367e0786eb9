"""Progress of long work (issue 15): the library announces its phases (energyopt.progress), the CLI
shows them live with rich on a terminal (energyopt.display), and stays quiet in a pipe or with -q."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from conftest import lognormal_workload
from test_characterize import Clock, FakeRunner

from energyopt.characterize.design import DesignPoint
from energyopt.characterize.meters import EstimateMeter
from energyopt.characterize.sweep import SweepConfig, run_sweep
from energyopt.cli import main
from energyopt.progress import listening, note, phase


class Recorder:
    """A listener that writes down what it hears."""

    def __init__(self):
        self.events: list[tuple] = []
        self.names: dict[int, str] = {}

    def begin(self, key, name, total):
        self.names[key] = name
        self.events.append(("begin", name, total))

    def advance(self, key, steps):
        self.events.append(("advance", self.names[key], steps))

    def end(self, key):
        self.events.append(("end", self.names[key]))

    def line(self, text):
        self.events.append(("line", text))

    def begun(self):
        return [e[1] for e in self.events if e[0] == "begin"]


def test_without_a_listener_phases_cost_nothing_and_show_nothing():
    with phase("x", total=3) as ph:
        ph.advance()
    note("a line")  # no listener: nothing happens, nothing fails


def test_phases_nest_end_on_errors_and_hear_lines():
    rec = Recorder()
    with listening(rec), phase("outer"):
        note("hello")
        with pytest.raises(RuntimeError), phase("inner", total=2) as ph:
            ph.advance()
            raise RuntimeError("boom")
    assert rec.events == [("begin", "outer", None), ("line", "hello"), ("begin", "inner", 2), ("advance", "inner", 1),
                          ("end", "inner"), ("end", "outer")]
    with phase("after"):  # the listener is gone with its block
        pass
    assert rec.begun() == ["outer", "inner"]


def test_a_plan_announces_its_phases_in_order(synthetic_models, synthetic_fleet):
    from energyopt.plan import plan

    rec = Recorder()
    with listening(rec):
        s = plan(lognormal_workload(30, seed=1), synthetic_fleet, synthetic_models)
    assert s.status.has_plan
    begun = rec.begun()
    assert [b.split(" ")[0] for b in begun] == ["problem:", "solve:", "packing", "independent"], begun
    assert "30 queries" in begun[1]
    ends = [e[1] for e in rec.events if e[0] == "end"]
    assert sorted(ends) == sorted(begun)  # every phase ended


def test_a_characterization_sweep_counts_its_runs(tmp_path):
    from energyopt.characterize.csvlog import RunLog

    clock = Clock()
    pts = [DesignPoint(8, 8), DesignPoint(512, 128), DesignPoint(64, 32)]
    cfg = SweepConfig(llm="m", device="cpu", points=pts, repeats=2, min_window_s=0.0, idle_seconds=1.0)
    rec = Recorder()
    with listening(rec):
        r = run_sweep(FakeRunner(clock), {"cpu": EstimateMeter(100.0, clock=clock)}, RunLog(tmp_path / "c.csv"), cfg, {},
                      progress=lambda s: None, clock=clock, sleep=clock.sleep)
    assert r.measured == 6
    assert rec.begun() == ["m on cpu: idle power", "m on cpu: runs"]
    assert ("begin", "m on cpu: runs", 6) in rec.events
    assert sum(e[2] for e in rec.events if e[0] == "advance") == 6
    assert rec.events[-1] == ("end", "m on cpu: runs")


def test_a_sweep_cut_by_its_time_budget_ends_its_phase(tmp_path):
    from energyopt.characterize.csvlog import RunLog

    clock = Clock()
    pts = [DesignPoint(8, o) for o in (100, 200, 300, 400)]
    cfg = SweepConfig(llm="m", device="cpu", points=pts, repeats=1, min_window_s=0.0, idle_seconds=0.5,
                      time_budget_s=3.5, fixed_idle_power_w={"cpu": 0.0})
    rec = Recorder()
    with listening(rec):
        r = run_sweep(FakeRunner(clock), {"cpu": EstimateMeter(50.0, clock=clock)}, RunLog(tmp_path / "c.csv"), cfg, {},
                      progress=lambda s: None, clock=clock, sleep=clock.sleep)
    assert 0 < r.measured < 4
    assert ("end", "m on cpu: runs") in rec.events


def _solve(tmp_path, synthetic_models, synthetic_fleet, *before, after=()):
    wl = tmp_path / "w.csv"
    lognormal_workload(20, seed=2).to_csv(wl, index=False)
    args = [*before, "solve", str(wl), "--fleet", str(synthetic_fleet), "--models", str(synthetic_models),
            "-o", str(tmp_path / "p"), *after]
    return CliRunner().invoke(main, args, catch_exceptions=False)


def test_no_display_where_stderr_is_not_a_terminal(tmp_path, synthetic_models, synthetic_fleet):
    r = _solve(tmp_path, synthetic_models, synthetic_fleet)
    assert r.exit_code == 0, r.output
    assert "\x1b[" not in r.stderr and "0:00:0" not in r.stderr  # clean logs in CI
    assert "plan: optimal" in r.stderr  # the progress lines as before


def test_progress_asks_for_the_display_and_q_or_no_progress_silence_it(tmp_path, synthetic_models, synthetic_fleet):
    r = _solve(tmp_path, synthetic_models, synthetic_fleet, "--progress")
    assert r.exit_code == 0, r.output
    assert "0:00:0" in r.stderr and "solve: " in r.stderr  # phase rows with their elapsed time
    assert "plan: optimal" in r.stderr and "status: optimal" in r.stdout and "\x1b[" not in r.stdout
    r = _solve(tmp_path, synthetic_models, synthetic_fleet, "--progress", after=("-q",))
    assert r.exit_code == 0 and "0:00:0" not in r.stderr
    r = _solve(tmp_path, synthetic_models, synthetic_fleet, "--no-progress")
    assert r.exit_code == 0 and "0:00:0" not in r.stderr
