"""Progress of long work (issue 15): the library announces its phases (energyopt.progress), the CLI
shows them live with rich on a terminal (energyopt.display), and stays quiet in a pipe or with -q."""

from __future__ import annotations

import os
import re

import pytest
from click.testing import CliRunner
from conftest import lognormal_workload
from test_characterize import Clock, FakeRunner

from energyopt.characterize.design import DesignPoint
from energyopt.characterize.meters import EstimateMeter
from energyopt.characterize.sweep import SweepConfig, run_sweep
from energyopt.cli import main
from energyopt.progress import SHOW_EVERY_S, current_phase, listening, note, phase


class Recorder:
    """A listener that writes down what it hears (and, per phase begun, the phase it ran in)."""

    def __init__(self):
        self.events: list[tuple] = []
        self.names: dict[int, str] = {}
        self.parent: dict[str, str | None] = {}
        self._open: list[str] = []

    def begin(self, key, name, total):
        self.names[key] = name
        self.parent.setdefault(name, self._open[-1] if self._open else None)
        self._open.append(name)
        self.events.append(("begin", name, total))

    def advance(self, key, steps):
        self.events.append(("advance", self.names[key], steps))

    def status(self, key, text):
        self.events.append(("status", self.names[key], text))

    def end(self, key):
        self._open.remove(self.names[key])
        self.events.append(("end", self.names[key]))

    def line(self, text):
        self.events.append(("line", text))

    def begun(self):
        return [e[1] for e in self.events if e[0] == "begin"]

    def top(self):
        """The phases begun outside any other, in order."""
        return [n for n in self.begun() if self.parent[n] is None]

    def one(self, pattern):
        """The one phase begun whose name matches ``pattern`` (a regular expression)."""
        got = sorted({n for n in self.begun() if re.search(pattern, n)})
        assert len(got) == 1, (pattern, got, self.begun())
        return got[0]

    def shown(self, name):
        """The statuses shown beside the phase ``name``, in order."""
        return [e[2] for e in self.events if e[0] == "status" and e[1] == name]


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
    top = rec.top()
    assert [" ".join(b.split(" ")[:2]) for b in top] == ["problem: options", "problem: capacity", "solve: exact",
                                                         "packing 30", "pricing the", "independent check"], top
    assert "30 queries" in top[2]
    assert rec.parent[rec.one("^problem: energy and runtime of 30 queries on 4 deployments$")] == top[0]
    assert rec.parent[rec.one(r"^problem: costs of 30 × 4 options$")] == top[0]
    begun = rec.begun()
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


def test_progress_asks_for_the_display_and_q_or_no_progress_silence_it(tmp_path, synthetic_models, synthetic_fleet,
                                                                       monkeypatch):
    monkeypatch.setattr("energyopt.display.DRAW_EVERY_S", 0.0)  # each phase drawn as it begins (this solve is quick)
    r = _solve(tmp_path, synthetic_models, synthetic_fleet, "--progress")
    assert r.exit_code == 0, r.output
    assert "0:00:0" in r.stderr and "solve: " in r.stderr  # phase rows with their elapsed time
    assert "plan: optimal" in r.stderr and "status: optimal" in r.stdout and "\x1b[" not in r.stdout
    r = _solve(tmp_path, synthetic_models, synthetic_fleet, "--progress", after=("-q",))
    assert r.exit_code == 0 and "0:00:0" not in r.stderr
    r = _solve(tmp_path, synthetic_models, synthetic_fleet, "--no-progress")
    assert r.exit_code == 0 and "0:00:0" not in r.stderr


def test_a_status_is_throttled_unless_forced_and_silent_without_a_listener():
    rec = Recorder()
    with listening(rec), phase("p") as ph:
        assert current_phase() is ph and ph.heard
        for i in range(1000):  # a loop that reports every step reaches the listener at most every SHOW_EVERY_S
            ph.show(f"step {i}")
        ph.show("done", force=True)
    shown = rec.shown("p")
    assert shown[0] == "step 0" and shown[-1] == "done"
    assert len(shown) <= 2 + 1 / SHOW_EVERY_S  # 1000 calls in well under a second
    assert not current_phase().heard  # no phase now: a silent one
    current_phase().show("nobody hears this")


def test_a_forked_child_neither_shows_nor_begins_phases():
    """A solver under the watchdog runs in a forked child that inherits the listener: it must not
    touch its copy of the display (whose locks may have been copied held)."""
    rec = Recorder()
    with listening(rec), phase("parent") as ph:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child reports what it would have done
            with phase("child") as child:
                os.write(w, f"{ph.heard} {child.heard} {current_phase().heard}".encode())
            os._exit(0)
        os.close(w)
        os.waitpid(pid, 0)
        said = os.read(r, 100).decode()
        os.close(r)
    assert said == "False False False"


def _fleet_for(synthetic_fleet, horizon_s):
    import dataclasses

    from energyopt.fleet import read_fleet

    return dataclasses.replace(read_fleet(synthetic_fleet), horizon_s=horizon_s)


def test_the_decomposition_reports_its_inner_phases_bound_plan_and_gap(synthetic_models, synthetic_fleet):
    """3,000 queries (more than are solved whole): the Lagrangian, fixing, the sub-MILP on the
    nearly tied queries with the backend's row and its time limit, packing; the method's row shows
    the bound, then the best plan and its gap, which are the plan's."""
    from energyopt.plan import plan

    wl = lognormal_workload(3000, seed=5, deadline_fraction=0.2, deadline_range=(600, 6000))
    rec = Recorder()
    with listening(rec):
        s = plan(wl, _fleet_for(synthetic_fleet, 4 * 3600.0), synthetic_models, solver="highs", formulation="decompose")
    assert s.status.has_plan
    solve = rec.one("^solve: decompose with highs")
    inner = [rec.one(p) for p in ("^lagrangian: options of 3,000 queries as dense arrays$",
                                  "^lagrangian: samples of the batch", "^lagrangian: bound on all 3,000 queries$",
                                  "^lagrangian: margins of 3,000 queries", "^decompose: fixing 3,000 queries",
                                  r"^decompose: model of \d[\d,]* free queries beside \d[\d,]* fixed$",
                                  r"^decompose: sub-MILP on the \d[\d,]* nearly tied queries$",
                                  r"^decompose: packing 3,000 queries onto \d+ instances$")]
    assert all(rec.parent[n] == solve for n in inner), [rec.parent[n] for n in inner]
    assert rec.begun().index(inner[2]) < rec.begun().index(inner[6]) < rec.begun().index(inner[7])  # bound, MILP, pack
    free = int(re.search(r"the ([\d,]+) nearly", inner[6]).group(1).replace(",", ""))
    assert 300 <= free < 3000
    milp = rec.one(r"^highs: MILP, [\d,]+ integer variables free of [\d,]+, [\d,]+ rows, limit 60 s$")
    assert rec.parent[milp] == inner[6]
    assert rec.parent[rec.one("^packing: 3,000 queries in lane order$")] == inner[7]
    assert sum(e[2] for e in rec.events if e[0] == "advance" and e[1] == "packing: 3,000 queries in lane order") == 3000
    assert any(t.startswith("iteration ") and ", bound " in t for t in rec.shown(inner[2]))
    shown = rec.shown(solve)
    assert shown[0] == f"bound {s.bound:.8g}"
    assert shown[-1] == f"bound {s.bound:.8g}, best plan {s.objective:.8g}, gap {s.gap:.4%}"
    ends = [e[1] for e in rec.events if e[0] == "end"]
    assert sorted(ends) == sorted(rec.begun())


def test_the_lagrangian_reports_each_sample_it_prices_on(synthetic_models, synthetic_fleet):
    from energyopt.inputs import load_inputs
    from energyopt.methods.decompose import lagrangian_bound
    from energyopt.problem import build_problem

    wl, fl, fm = load_inputs(lognormal_workload(1500, seed=3), _fleet_for(synthetic_fleet, 4 * 3600.0), synthetic_models)
    rec = Recorder()
    with listening(rec):
        dual, _ = lagrangian_bound(build_problem(wl, fl, fm), samples=(200, 500, 1000))
    assert [n for n in rec.begun() if "sample" in n] == ["lagrangian: samples of the batch, price scales",
                                                         "lagrangian: prices on a sample of 200 queries",
                                                         "lagrangian: prices on a sample of 500 queries"]
    assert rec.begun()[-2:] == ["lagrangian: bound on all 1,500 queries",
                                "lagrangian: margins of 1,500 queries at the best prices"]


def test_an_exact_solve_shows_the_backend_row_with_its_time_limit(synthetic_models, synthetic_fleet):
    """The exact model on a batch whose LP leaves queries split: the LP's row shows its rounds of
    cuts, and each backend MILP has a row (elapsed time on a display) naming the time limit."""
    from energyopt.plan import plan

    wl = lognormal_workload(40, seed=3, deadline_fraction=0.5, deadline_range=(5, 60))
    rec = Recorder()
    with listening(rec):
        s = plan(wl, synthetic_fleet, synthetic_models, solver="highs", formulation="exact", time_limit_s=20)
    assert s.status.has_plan
    solve = rec.one("^solve: exact with highs")
    lp = rec.one(r"^LP relaxation with cuts \([\d,]+ variables, [\d,]+ rows\)$")
    assert rec.parent[lp] == solve
    assert rec.shown(lp) and all(re.fullmatch(r"round \d+: LP [-\d.e+]+, [\d,]+ cut rows", t) for t in rec.shown(lp))
    milps = [n for n in rec.begun() if n.startswith("highs: MILP, ")]
    assert milps and all(rec.parent[n] == solve and re.search(r", limit (1\d|20) s$", n) for n in milps), milps
    rec = Recorder()
    with listening(rec):  # without a time limit the row says so
        plan(wl, synthetic_fleet, synthetic_models, solver="highs", formulation="exact")
    assert any(n.startswith("highs: MILP, ") and n.endswith(", no time limit") for n in rec.begun())


@pytest.mark.parametrize("time_limit_s", [None, 20.0])
def test_cpsat_shows_its_incumbents_beside_the_backend_row(synthetic_models, synthetic_fleet, time_limit_s):
    """In this process (no time limit) and from the watchdog's child (under one), through its pipe."""
    pytest.importorskip("ortools")
    from energyopt.plan import plan

    wl = lognormal_workload(40, seed=3, deadline_fraction=0.5, deadline_range=(5, 60))
    rec = Recorder()
    with listening(rec):
        s = plan(wl, synthetic_fleet, synthetic_models, solver="cpsat", formulation="exact", time_limit_s=time_limit_s)
    assert s.status.has_plan
    milps = [n for n in rec.begun() if n.startswith("cpsat: MILP, ")]
    assert milps
    shown = [t for n in milps for t in rec.shown(n)]
    assert shown and all(re.fullmatch(r"incumbent ≈[-\d.e+]+, CP-SAT bound ≈[-\d.e+]+", t) for t in shown), shown


def test_packing_counts_its_queries_and_repair_its_late_ones(synthetic_models, synthetic_fleet):
    """Packing onto too few instances leaves late queries; repair counts them as it moves them."""
    import numpy as np

    from energyopt.inputs import load_inputs
    from energyopt.packing import REPAIR_REPORT_EVERY, pack
    from energyopt.problem import build_problem

    wl, fl, fm = load_inputs(lognormal_workload(800, seed=4, deadline_fraction=1.0, deadline_range=(20, 600)),
                             _fleet_for(synthetic_fleet, 4 * 3600.0), synthetic_models)
    p = build_problem(wl, fl, fm)
    dep = np.where(p.ok, p.cost, np.inf).argmin(axis=1)
    rec = Recorder()
    with listening(rec):
        pack(p, dep, np.ones(p.n_deployments, dtype=np.int64))
    assert rec.begun()[0] == "packing: 800 queries in lane order"
    assert sum(e[2] for e in rec.events if e[0] == "advance" and e[1] == rec.begun()[0]) == 800
    repair = rec.one(r"^repair: [\d,]+ late queries$")
    late = int(repair.split()[1].replace(",", ""))
    assert late > 0 and ("begin", repair, late) in rec.events
    steps = [e[2] for e in rec.events if e[0] == "advance" and e[1] == repair]
    assert steps == [REPAIR_REPORT_EVERY] * (late // REPAIR_REPORT_EVERY)


def test_the_display_draws_a_phase_status(tmp_path):
    """The rich display shows a phase's status beside its name (and a status after its phase ended is ignored)."""
    import io

    from energyopt.display import RichListener

    listener = RichListener(force=True)
    out = io.StringIO()
    listener.console.file = out
    with listener, listening(listener), phase("solve: something long") as ph:
        ph.show("bound 12345, best plan 12400, gap 0.4%", force=True)
        listener.progress.live.refresh()  # what the display's thread does four times a second
        text = out.getvalue()
    assert "solve: something long" in text and "bound 12345, best plan 12400, gap 0.4%" in text
    ph.show("after the end", force=True)  # the phase is gone: nothing to update, no error


@pytest.mark.parametrize("formulation", ["exact", "decompose"])
def test_no_display_for_any_method_where_stderr_is_not_a_terminal(tmp_path, synthetic_models, synthetic_fleet, formulation):
    r = _solve(tmp_path, synthetic_models, synthetic_fleet, after=("--formulation", formulation))
    assert r.exit_code == 0, r.output
    assert "\x1b[" not in r.stderr and "0:00:0" not in r.stderr
    # neither the rows' names nor their statuses (only the display shows them)
    assert "integer variables free" not in r.stderr and "best plan" not in r.stderr and "cut rows" not in r.stderr
