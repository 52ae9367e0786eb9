"""Sweeps: each point is the plan it claims to be, the fronts move the right way, bad input is refused."""

from __future__ import annotations

import os
import stat

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import lognormal_workload

from energyopt.cli import main
from energyopt.errors import DataError
from energyopt.inputs import load_inputs
from energyopt.methods.baselines import baseline_choice
from energyopt.plan import plan, schedule_choice
from energyopt.schema import Status
from energyopt.sweep import pareto_mask, sweep


def test_pareto_mask():
    e = np.array([1.0, 2.0, 2.0, 3.0, np.nan, 1.5])
    m = np.array([0.5, 0.6, 0.55, 0.6, 0.9, 0.5])
    # 0: best energy; 1: more accuracy; 2: dominated by 1; 3: dominated by 1; 4: no value; 5: dominated by 0
    assert pareto_mask(e, m).tolist() == [True, True, False, False, False, False]


@pytest.fixture(scope="module")
def inputs(synthetic_models, synthetic_fleet):
    wl = lognormal_workload(60, seed=5, deadline_fraction=0.3, deadline_range=(100, 600))
    return load_inputs(wl, synthetic_fleet, synthetic_models)


def test_accuracy_sweep_points_are_the_plans(inputs):
    wl, fl, fm = inputs
    said: list[str] = []
    t = sweep(wl, fl, fm, "min-mean-accuracy", [0.45, 0.5, 0.55, 0.99], progress=said.append)
    opt = t[t["method"] == "optimal"].reset_index(drop=True)
    # the infeasible point's reason is shortened at a word, not cut inside one
    why = [s for s in said if s.startswith("[4/4] min-mean-accuracy = 0.99: infeasible")][0]
    message = plan(wl, fl, fm, min_mean_accuracy=0.99).message
    shown = why.split(" (", 1)[1].removesuffix(")")
    assert shown == message or (shown.endswith(" ...") and message.startswith(shown.removesuffix(" ...") + " "))
    assert opt["value"].tolist() == [0.45, 0.5, 0.55, 0.99]
    # each point equals an independent plan at that floor
    for _, r in opt.iloc[:3].iterrows():
        s = plan(wl, fl, fm, min_mean_accuracy=r["value"]).summary()
        assert Status(r["status"]) is s.status and r["total_energy_j"] == pytest.approx(s.total_energy_j, rel=1e-9)
        assert r["token_weighted_mean_accuracy"] >= r["value"] - 1e-9
    ok = opt.iloc[:3]
    assert np.all(np.diff(ok["total_energy_j"]) >= -1e-6 * ok["total_energy_j"].iloc[:-1])  # more accuracy costs
    # 0.99 is above every LLM's accuracy: no plan, kept as a row
    assert Status(opt.loc[3, "status"]) is Status.INFEASIBLE and np.isnan(opt.loc[3, "total_energy_j"])
    assert ok["pareto"].all() and not opt.loc[3, "pareto"]
    # baselines are planned as compare plans them: packed, priced and checked
    base = t[t["method"] != "optimal"].set_index("method")
    problem = plan(wl, fl, fm).problem
    r = schedule_choice(problem, baseline_choice(problem, "round-robin")).summary()
    assert base.loc["round-robin", "total_energy_j"] == pytest.approx(r.total_energy_j)
    assert base.loc["round-robin", "deadlines_met"] == r.deadlines_met


def test_default_accuracy_series_starts_at_the_unconstrained_plan(inputs):
    wl, fl, fm = inputs
    t = sweep(wl, fl, fm, "min-mean-accuracy", baselines=False)
    first = t.iloc[0]
    assert np.isnan(first["value"])
    s = plan(wl, fl, fm).summary()
    assert first["total_energy_j"] == pytest.approx(s.total_energy_j, rel=1e-9)
    assert len(t) == 7 and t["value"].iloc[1] > s.token_weighted_mean_accuracy


def test_zeta_and_deadline_sweeps_move_the_right_way(inputs):
    wl, fl, fm = inputs
    z = sweep(wl, fl, fm, "zeta", [0.0, 1.0], baselines=False).set_index("value")
    assert z.loc[1.0, "total_energy_j"] <= z.loc[0.0, "total_energy_j"] + 1e-6
    assert z.loc[0.0, "token_weighted_mean_accuracy"] >= z.loc[1.0, "token_weighted_mean_accuracy"] - 1e-12
    d = sweep(wl, fl, fm, "deadline-scale", [0.5, 1.0, 4.0]).reset_index(drop=True)
    opt = d[d["method"] == "optimal"]
    ok = opt[np.isfinite(opt["total_energy_j"])]
    # looser deadlines never cost more (up to the plans' gap of 1e-4)
    assert len(ok) >= 2 and np.all(np.diff(ok["total_energy_j"]) <= 1e-4 * ok["total_energy_j"].iloc[:-1])
    assert (d.loc[d["method"] != "optimal", "value"] == 1.0).all()


def test_a_long_reason_is_shortened_at_a_word():
    from energyopt.sweep import short_reason

    long = "the pool h200 is short by 3.5 instance-hours: " + "deadline " * 40
    out = short_reason(long)
    assert len(out) <= 160 and out.endswith(" ...") and long.startswith(out.removesuffix(" ...") + " ")
    assert short_reason("no plan: horizon") == "no plan: horizon"


def test_sweep_refuses_bad_requests(inputs):
    wl, fl, fm = inputs
    with pytest.raises(DataError, match="no query has a deadline_s"):
        sweep(wl.assign(deadline_s=np.nan), fl, fm, "deadline-scale")
    with pytest.raises(DataError, match="outside"):
        sweep(wl, fl, fm, "zeta", [1.5])
    with pytest.raises(DataError, match="must be > 0"):
        sweep(wl, fl, fm, "deadline-scale", [0.0])
    with pytest.raises(DataError, match="--vary must be one of"):
        sweep(wl, fl, fm, "horizon")


def test_sweep_cli_writes_csv_and_png(tmp_path, synthetic_models, synthetic_fleet):
    w = tmp_path / "w.csv"
    lognormal_workload(40, seed=1).to_csv(w, index=False)
    args = [str(w), "--fleet", str(synthetic_fleet), "--models", str(synthetic_models)]
    old = os.umask(0o022)
    try:
        r = CliRunner().invoke(main, ["sweep", *args, "--vary", "zeta", "--values", "0,0.5,1", "--out", str(tmp_path / "s")])
    finally:
        os.umask(old)
    assert r.exit_code == 0, r.output
    for f in ("sweep.csv", "sweep.png"):  # the umask's mode, not a temporary file's 0600
        assert stat.S_IMODE((tmp_path / "s" / f).stat().st_mode) == 0o644, f
    t = pd.read_csv(tmp_path / "s" / "sweep.csv")
    assert (t["method"] == "optimal").sum() == 3 and "round-robin" in set(t["method"])
    assert (tmp_path / "s" / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = CliRunner().invoke(main, ["sweep", *args, "--vary", "zeta", "--values", "0,x", "--out", str(tmp_path / "b")])
    assert bad.exit_code == 2 and "--values" in bad.output and not (tmp_path / "b").exists()
    bad = CliRunner().invoke(main, ["sweep", *args, "--vary", "deadline-scale", "--out", str(tmp_path / "c")])
    assert bad.exit_code == 2 and bad.output.count("error:") == 1 and not (tmp_path / "c").exists()


def test_sweep_rows_count_the_deadlines_met_on_the_engine(inputs):
    # batched instances: the row's engine count is the plan's summary's; none batched: empty
    from pathlib import Path

    from energyopt.modelstore import FittedModels

    ex = Path(__file__).parent.parent / "examples" / "replay"
    models = FittedModels.load(ex / "models-engine")
    w = pd.read_csv(ex / "workload.csv")
    t = sweep(w, ex / "fleet-batched.toml", models, "deadline-scale", [1.0], baselines=False)
    s = plan(w, ex / "fleet-batched.toml", models).summary()
    assert s.engine_deadlines_met is not None and s.queries_with_deadline > 0
    assert t["engine_deadlines_met"].tolist() == [s.engine_deadlines_met]
    assert t["deadlines_met"].tolist() == [s.deadlines_met]
    wl, fl, fm = inputs
    z = sweep(wl, fl, fm, "zeta", [1.0], baselines=False)
    assert plan(wl, fl, fm, objective="tradeoff", zeta=1.0).summary().engine_deadlines_met is None
    assert z["engine_deadlines_met"].isna().all()
