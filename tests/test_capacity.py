"""methods/capacity.py: the device-seconds check never refuses a batch that has a plan (brute
force on tiny random instances), and names the pools, the time and the shortfall."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import TWO_LLM_MODELS, make_models, random_instance, two_llm_fleet, workload_of
from oracles import brute_force_optimum

from energyopt.methods.capacity import capacity_shortfall
from energyopt.plan import plan
from energyopt.problem import build_problem
from energyopt.schema import Status


def test_the_check_never_refuses_a_batch_with_a_plan():
    refused = 0
    for seed in range(150):
        wl, fleet, models, kw = random_instance(5000 + seed, n_q=5)
        problem = build_problem(wl, fleet, models, **kw)
        if not problem.unservable.empty:
            continue
        short = capacity_shortfall(problem)
        if short is not None:
            refused += 1
            assert math.isinf(brute_force_optimum(problem)), (seed, short)
            assert short.needed_device_s > short.available_device_s
    assert refused > 0  # the random instances do include batches the check refuses


def test_the_horizon_binding_all_pools_is_named_with_the_shortfall():
    # 400 one-second queries (small@g: 1 s; big@g 2 s; big@c 10 s); 2 GPUs and 1 CPU for 100 s: 300 device-seconds
    p = build_problem(workload_of([(10, 100, 0.0, None)] * 400), two_llm_fleet(), make_models(TWO_LLM_MODELS))
    short = capacity_shortfall(p)
    assert short is not None and short.at_horizon and short.time_s == 100.0 and set(short.pools) == {"g", "c"}
    assert short.needed_device_s == pytest.approx(400.0) and short.available_device_s == pytest.approx(300.0)
    assert "short by 100 device-seconds" in short.message() and "the horizon (100 s)" in short.message()
    # only the horizon binds (no query has a deadline): the remedy asked for is not a deadline's
    assert "lengthen the horizon" in short.message() and "deadline" not in short.message()
    assert "= 100 instance-seconds of 1-device instances" in short.message()
    s = plan(workload_of([(10, 100, 0.0, None)] * 400), two_llm_fleet(), make_models(TWO_LLM_MODELS))
    assert s.status is Status.INFEASIBLE and "short by 100 device-seconds" in s.message


def test_a_deadline_binding_one_pool_is_named():
    # accuracy 0.6: only big (g: 2 s, c: 10 s); twenty due by 10 s: 40 device-s of g or 200 of c, vs 20 + 10
    p = build_problem(workload_of([(10, 100, 0.6, 10.0)] * 20), two_llm_fleet(), make_models(TWO_LLM_MODELS))
    short = capacity_shortfall(p)
    assert short is not None and not short.at_horizon and short.time_s == 10.0
    assert "the deadline 10 s" in short.message()


def test_only_deadlines_binding_blames_the_deadline_level_not_the_horizon():
    # 20 one-second queries due by 5 s (small@g 1 s; big@c takes 10 s, too slow): 20 device-s of pool g, whose
    # 2 GPUs offer 10 by 5 s; the same 20 device-s fit 200 by the horizon, so only the deadline binds
    p = build_problem(workload_of([(10, 100, 0.0, 5.0)] * 20), two_llm_fleet(), make_models(TWO_LLM_MODELS))
    short = capacity_shortfall(p)
    assert short is not None and not short.at_horizon and short.time_s == 5.0 and short.pools == ("g",)
    assert short.needed_device_s == pytest.approx(20.0) and short.available_device_s == pytest.approx(10.0)
    msg = short.message()
    assert "by the deadline 5 s the 20 queries" in msg and "short by 10 device-seconds" in msg
    assert "on g, the only pool they can run on, and 2 g devices offer 10" in msg
    assert "relax the deadlines due by 5 s" in msg and "lengthen the horizon" not in msg


def test_the_horizon_is_named_where_it_binds_even_if_a_deadline_level_is_short_too():
    # 310 one-second queries without deadlines and 20 due by 5 s (on g only): 330 device-s against 300 by the
    # horizon (short by 30), and 20 against 10 of g by 5 s (short by 10); more devices or time are needed
    # whatever the deadlines, so the horizon is the reason given
    rows = [(10, 100, 0.0, None)] * 310 + [(10, 100, 0.0, 5.0)] * 20
    p = build_problem(workload_of(rows), two_llm_fleet(), make_models(TWO_LLM_MODELS))
    short = capacity_shortfall(p)
    assert short is not None and short.at_horizon and short.queries == 330
    assert short.shortfall_device_s == pytest.approx(30.0)
    assert "by the horizon (100 s)" in short.message() and "deadline" not in short.message()


def test_the_whole_fleet_is_named_with_its_devices():
    # accuracy 0.6: only big (g: 2 s, c: 10 s); 160 queries need at least 160 × 2 = 320 device-s of g + c
    # (each at its least: big@g), against 3 devices × 100 s
    p = build_problem(workload_of([(10, 100, 0.6, None)] * 160), two_llm_fleet(), make_models(TWO_LLM_MODELS))
    short = capacity_shortfall(p)
    assert short is not None and short.at_horizon and short.shortfall_device_s == pytest.approx(20.0)
    assert "2 g + 1 c devices offer 300" in short.message()


def test_a_batch_that_fits_passes():
    p = build_problem(workload_of([(10, 100, 0.0, None)] * 50), two_llm_fleet(), make_models(TWO_LLM_MODELS))
    assert capacity_shortfall(p) is None


def test_a_batch_proven_infeasible_is_answered_without_importing_the_solver(tmp_path):
    """The example batch on the default fleet cut to a 10 s horizon: the capacity check proves it
    infeasible, and `energyopt solve` says so (exit 1) before the default backend's library
    (scipy.optimize) is imported."""
    root = Path(__file__).resolve().parents[1]
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(re.sub(r"^horizon_s = .*$", "horizon_s = 10", (root / "examples" / "fleet.toml").read_text(),
                            flags=re.M))
    code = textwrap.dedent(f"""
        import runpy, sys
        sys.argv = ["energyopt", "solve", "examples/workload.csv", "--fleet", {str(fleet)!r}, "-o", {str(tmp_path / "p")!r}]
        try:
            runpy.run_module("energyopt.cli", run_name="__main__")
        except SystemExit as exc:
            print("exit:", exc.code)
        print("scipy.optimize loaded:", "scipy.optimize" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(root)}).stdout
    assert "status: infeasible: capacity: by the horizon (10 s)" in out and "lengthen the horizon" in out
    assert "exit: 1" in out and "scipy.optimize loaded: False" in out
