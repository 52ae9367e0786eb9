"""The CLI through click's CliRunner: outputs, exit codes, one-line errors, no partial files."""

from __future__ import annotations

import json
import os
import stat

import pandas as pd
from click.testing import CliRunner
from conftest import DATA, ROOT, lognormal_workload

from energyopt.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_fit_models_predict(tmp_path):
    old = os.umask(0o022)
    try:
        r = run("fit", DATA / "synthetic_characterization.csv", "--out", tmp_path)
    finally:
        os.umask(old)
    assert r.exit_code == 0, r.output
    files = sorted(tmp_path.iterdir())  # the model files, no temporary beside them, mode 0644 under umask 022
    assert len(files) == 4 and all(f.suffix == ".json" and stat.S_IMODE(f.stat().st_mode) == 0o644 for f in files)
    assert "big-llm" in r.output and "wrote 4 model file(s)" in r.output
    r = run("models", "--models", tmp_path)
    assert r.exit_code == 0 and "8-4096 x 8-1024" in r.output
    r = run("predict", "--models", tmp_path, "--llm", "big-llm", "--device", "gpu-a",
            "--input-tokens", 1000, "--output-tokens", 130)
    assert r.exit_code == 0 and "energy_j=" in r.output


def test_fit_gate_writes_nothing(tmp_path):
    r = run("fit", DATA / "synthetic_characterization.csv", "--out", tmp_path / "m", "--min-r2", "1.0")
    assert r.exit_code == 2 and r.output.count("error:") == 1 and "cross-validated R² below 1.0" in r.output
    assert not (tmp_path / "m").exists()


def test_solve_writes_plan(tmp_path, synthetic_models, synthetic_fleet):
    wl = tmp_path / "w.csv"
    lognormal_workload(80, seed=2, deadline_fraction=0.2).to_csv(wl, index=False)
    r = run("solve", wl, "--fleet", synthetic_fleet, "--models", synthetic_models, "--out", tmp_path / "p")
    assert r.exit_code == 0, r.output
    a = pd.read_csv(tmp_path / "p" / "assignment.csv")
    assert len(a) == 80 and list(a.columns) == ["query_id", "llm", "device", "instance", "lane", "batch_size", "start_s", "end_s",
                                                "runtime_s", "energy_j", "accuracy", "deadline_s", "release_s",
                                                "engine_start_s", "engine_end_s"]
    s = json.loads((tmp_path / "p" / "summary.json").read_text())
    assert s["status"] == "optimal" and s["check"]["ok"] and s["gap"] <= 1e-4


def test_solve_default_example(tmp_path):
    r = run("solve", ROOT / "examples" / "workload.csv", "--out", tmp_path / "p", "--quiet")
    assert r.exit_code == 0, r.output
    assert "status: optimal" in r.output


def test_bad_input_one_line_exit_2_no_files(tmp_path, synthetic_models, synthetic_fleet):
    wl = tmp_path / "w.csv"
    wl.write_text("query_id,input_tokens,output_tokens\n1,5,5\n1,6,6\n")
    r = run("solve", wl, "--fleet", synthetic_fleet, "--models", synthetic_models, "--out", tmp_path / "p")
    assert r.exit_code == 2 and r.output.strip().count("\n") == 0
    assert "duplicate id '1'" in r.output and not (tmp_path / "p").exists()
    r = run("solve", tmp_path / "missing.csv", "--fleet", synthetic_fleet, "--models", synthetic_models)
    assert r.exit_code == 2 and "file not found" in r.output
    bad_fleet = tmp_path / "f.toml"
    bad_fleet.write_text("horizon_s = ")
    r = run("solve", ROOT / "examples" / "workload.csv", "--fleet", bad_fleet, "--out", tmp_path / "p")
    assert r.exit_code == 2 and "malformed TOML" in r.output and not (tmp_path / "p").exists()


def test_deployment_without_model(tmp_path, synthetic_models):
    f = tmp_path / "f.toml"
    big_on_a, other_on_a = 'llm = "big-llm"\npool = "gpu-a"', 'llm = "other"\npool = "gpu-a"'
    fleet = (DATA / "fleet_synthetic.toml").read_text().replace(big_on_a, other_on_a)
    f.write_text(fleet + '\n[llms.other]\naccuracy = 0.3\naccuracy_source = "t"\nparams_b = 1\n')
    r = run("solve", ROOT / "examples" / "workload.csv", "--fleet", f, "--models", synthetic_models, "--out", tmp_path / "p")
    assert r.exit_code == 2 and "no fitted model for deployment(s) other@gpu-a" in r.output


def test_infeasible_exit_1_with_reasons(tmp_path, synthetic_models, synthetic_fleet):
    wl = tmp_path / "w.csv"
    pd.DataFrame({"query_id": ["a", "b"], "input_tokens": [100, 100], "output_tokens": [1000, 10],
                  "min_accuracy": [0.9, 0], "deadline_s": [None, 0.01]}).to_csv(wl, index=False)
    r = run("solve", wl, "--fleet", synthetic_fleet, "--models", synthetic_models, "--out", tmp_path / "p")
    assert r.exit_code == 1
    assert "query a: needs accuracy >= 0.9" in r.output and "query b: fastest accurate-enough option" in r.output
    doc = json.loads((tmp_path / "p" / "summary.json").read_text())
    assert doc["status"] == "infeasible"
    assert not (tmp_path / "p" / "assignment.csv").exists()
    # honest without a plan: no energy, the workload's one deadline counted, nothing checked, no "inf" strings
    assert doc["total_energy_j"] is None and doc["queries_with_deadline"] == 1
    assert doc["check"]["ok"] is None and doc["check"]["checked"] is False
    assert doc["gap"] is None and doc["gap_infinite"] is True and doc["bound_infinite"] in (1, -1, 0)
    assert doc["settings"]["solver"] == "auto" and doc["input_sha256"]["workload"] and doc["energyopt_version"]


def test_compare_and_solvers(tmp_path, synthetic_models, synthetic_fleet):
    wl = tmp_path / "w.csv"
    lognormal_workload(40, seed=4).to_csv(wl, index=False)
    r = run("compare", wl, "--fleet", synthetic_fleet, "--models", synthetic_models)
    assert r.exit_code == 0, r.output
    for name in ("optimal", "round-robin", "random", "most-accurate-fastest", "fastest", "only:big-llm"):
        assert name in r.output
    r = run("solvers")
    assert "highs" in r.output and "cpsat" in r.output


def _time_out_without_a_plan(monkeypatch):
    """The HiGHS backend stops at its time limit before finding any plan."""
    import math

    from energyopt.schema import BoundSource, Status, Termination
    from energyopt.solvers.base import SolveResult
    from energyopt.solvers.highs import HighsSolver

    def timed_out(self, model, **kw):
        return SolveResult(Status.NO_SOLUTION, None, math.nan, -math.inf, BoundSource.NONE, "highs", 0.01,
                           "time limit reached", termination=Termination.TIME_LIMIT)

    monkeypatch.setattr(HighsSolver, "solve", timed_out)
    # the LP that methods/strong.py solves in this process is HiGHS too: it stops as well
    from types import SimpleNamespace

    from energyopt.methods import strong

    monkeypatch.setattr(strong, "_lp", lambda model, time_limit_s: SimpleNamespace(status=1, x=None, fun=None))


def test_no_plan_within_the_limits_exits_3_not_1(tmp_path, synthetic_models, synthetic_fleet, monkeypatch):
    _time_out_without_a_plan(monkeypatch)
    wl = tmp_path / "w.csv"
    lognormal_workload(20, seed=3).to_csv(wl, index=False)
    r = run("solve", wl, "--fleet", synthetic_fleet, "--models", synthetic_models, "--solver", "highs",
            "--formulation", "exact", "--time-limit", "5", "--out", tmp_path / "p")
    assert r.exit_code == 3, r.output
    doc = json.loads((tmp_path / "p" / "summary.json").read_text())
    assert doc["status"] == "no_solution" and doc["termination"] == "time_limit" and doc["total_energy_j"] is None
    assert doc["bound"] is None and doc["bound_infinite"] == -1 and doc["settings"]["time_limit_s"] == 5
    assert not (tmp_path / "p" / "assignment.csv").exists()


def test_exit_codes_are_documented_in_solve_help_and_the_readme():
    help_text = run("solve", "--help").output
    for code, words in (("0", "a plan"), ("1", "no plan exists"), ("2", "bad input"), ("3", "within the limits"),
                        ("130", "interrupted"), ("143", "terminated")):
        assert any(line.split()[:1] == [code] and words in line for line in help_text.splitlines()), (code, help_text)
    readme = (ROOT / "README.md").read_text()
    line = next(p for p in readme.split("\n\n") if p.startswith("Exit codes:"))
    for words in ("0 a plan", "1 no plan exists", "2 bad input", "3 no plan within the limits", "130", "143"):
        assert words in " ".join(line.split()), words


def test_compare_without_an_optimal_plan_exits_like_solve(tmp_path, synthetic_models, synthetic_fleet, monkeypatch):
    _time_out_without_a_plan(monkeypatch)
    wl = tmp_path / "w.csv"
    lognormal_workload(20, seed=3).to_csv(wl, index=False)
    r = run("compare", wl, "--fleet", synthetic_fleet, "--models", synthetic_models, "--solver", "highs",
            "--formulation", "exact", "--time-limit", "5", "--no-equal-accuracy")
    assert r.exit_code == 3, r.output
    assert "round-robin" in r.output  # the table is still printed


def test_an_unwritable_out_fails_with_exit_2_before_any_solving(tmp_path, synthetic_models, synthetic_fleet, monkeypatch):
    import importlib

    def never(*a, **k):
        raise AssertionError("solved or fitted before the output was checked")

    # modules that bind `plan` when first imported are imported before the patch (else, first
    # imported inside it, they would keep `never` for the rest of the session)
    for name in ("energyopt.sweep", "energyopt.compare", "energyopt.report"):
        importlib.import_module(name)
    # the modules (the facade's energyopt.plan and energyopt.sweep are the functions)
    plan_m, sweep_m, fit_m = (importlib.import_module(f"energyopt.{m}") for m in ("plan", "sweep", "fit"))
    monkeypatch.setattr(plan_m, "plan", never)
    monkeypatch.setattr(sweep_m, "sweep", never)
    monkeypatch.setattr(fit_m, "fit_models", never)
    wl = tmp_path / "w.csv"
    lognormal_workload(10, seed=3).to_csv(wl, index=False)
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    args = [wl, "--fleet", synthetic_fleet, "--models", synthetic_models]
    out = a_file / "plan"  # (an --out that is a file itself is click's usage error, exit 2 too)
    for r in (run("solve", *args, "--out", out), run("sweep", *args, "--vary", "zeta", "--out", out),
              run("fit", DATA / "synthetic_characterization.csv", "--out", out)):
        assert r.exit_code == 2, r.output
        assert r.output.count("\n") == 1 and r.output.startswith("error: --out ") and "cannot write there" in r.output
    monkeypatch.setattr(importlib.import_module("energyopt.characterize.orchestrate"), "characterize", never)
    r = run("characterize", "--llm", "qwen2.5-0.5b", "--device", "cpu", "--out", a_file / "m.csv")
    assert r.exit_code == 2 and r.output.count("\n") == 1 and r.output.startswith("error: --out ")
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "report").write_text("x")
    r = run("solve", *args, "--out", tmp_path / "p", "--report")
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "is not a directory" in r.output
    # the check leaves nothing behind: a fit whose gate fails still writes no folder
    monkeypatch.undo()
    r = run("fit", DATA / "synthetic_characterization.csv", "--out", tmp_path / "new" / "m", "--min-r2", "1.0")
    assert r.exit_code == 2 and not (tmp_path / "new").exists()


# --- predictions outside the measured token ranges ------------------------------------------------
#
# conftest.ranged_two_llm_models: every model measured on 8-512 input and 8-256 output tokens; q0
# (10 + 100 tokens) inside, q1 (600 + 300) outside every one. Both go to small@g: 100 J and 300 J.

OUTSIDE_LINE = ("1 of 2 queries (75.0% of the queries' predicted energy) rest on predictions outside the token ranges "
                "their models were measured on; --strict-range refuses them")


def _ranged_inputs(tmp_path, models=None):
    from conftest import inside_outside_workload, ranged_two_llm_models, write_two_llm_inputs

    wl, fl, md = write_two_llm_inputs(tmp_path / "in", inside_outside_workload(), models or ranged_two_llm_models())
    return [wl, "--fleet", fl, "--models", md, "--solver", "highs"]


def test_solve_says_how_many_queries_rest_on_extrapolated_predictions(tmp_path):
    r = run("solve", *_ranged_inputs(tmp_path), "--out", tmp_path / "p")
    assert r.exit_code == 0, r.output
    assert r.output.count(OUTSIDE_LINE) == 1
    doc = json.loads((tmp_path / "p" / "summary.json").read_text())
    assert doc["extrapolated_queries"] == 1 and doc["extrapolated_energy_j"] == 300.0
    assert doc["by_llm_device"][0]["extrapolated_queries"] == 1 and doc["settings"]["strict_range"] is False
    r = run("solve", *_ranged_inputs(tmp_path), "--out", tmp_path / "p", "--quiet")  # not silenced by --quiet
    assert r.exit_code == 0 and r.output.splitlines()[1] == OUTSIDE_LINE
    from conftest import ranged_two_llm_models, with_measured_ranges

    wide = with_measured_ranges(ranged_two_llm_models(), (8, 1024), (8, 512))
    r = run("solve", *_ranged_inputs(tmp_path / "wide", wide), "--out", tmp_path / "w")
    assert r.exit_code == 0 and "rest on predictions outside" not in r.output  # none: no line
    assert json.loads((tmp_path / "w" / "summary.json").read_text())["extrapolated_queries"] == 0


def test_solve_strict_range_is_infeasible_with_the_ranges_when_a_query_has_no_measured_option(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "assignment.csv").write_text("stale")
    r = run("solve", *_ranged_inputs(tmp_path), "--out", tmp_path / "p", "--strict-range")
    reason = ("600 input and 300 output tokens lie outside the token ranges measured for every accurate-enough "
              "option (input 8-512 and output 8-256 for small/g, big/g and 1 more); --strict-range refuses "
              "extrapolated predictions")
    assert r.exit_code == 1, r.output
    assert f"status: infeasible: 1 queries have no feasible option: query q1: {reason}" in r.output
    doc = json.loads((tmp_path / "p" / "summary.json").read_text())
    assert doc["status"] == "infeasible" and doc["unservable"] == [{"query_id": "q1", "reason": reason}]
    assert doc["settings"]["strict_range"] is True and doc["extrapolated_energy_j"] is None
    assert not (tmp_path / "p" / "assignment.csv").exists()


def test_compare_and_sweep_take_strict_range(tmp_path):
    args = _ranged_inputs(tmp_path)
    assert run("compare", *args, "--no-equal-accuracy").exit_code == 0
    r = run("compare", *args, "--no-equal-accuracy", "--strict-range")
    assert r.exit_code == 1 and "infeasible" in r.output, r.output
    r = run("sweep", *args, "--vary", "zeta", "--values", "0.5", "--no-baselines", "--strict-range",
            "--out", tmp_path / "s")
    assert r.exit_code == 0, r.output
    assert pd.read_csv(tmp_path / "s" / "sweep.csv")["status"].tolist() == ["infeasible"]


def test_explain_says_when_the_planned_option_is_extrapolated_and_strict_range_rules_such_options_out(tmp_path):
    from conftest import ranged_two_llm_models, with_measured_ranges

    r = run("solve", *_ranged_inputs(tmp_path), "--out", tmp_path / "p", "-q")
    assert r.exit_code == 0, r.output
    r = run("explain", tmp_path / "p", "q1")
    assert r.exit_code == 0, r.output
    assert ("its planned option is extrapolated: 600 input tokens are outside the 8-512 and 300 output tokens are "
            "outside the 8-256 measured for small on g") in r.output
    assert "extrapolated" not in run("explain", tmp_path / "p", "q0").output
    # big@c measured up to 1024 x 512: under --strict-range q1 goes there, the other two are ruled out
    wide_c = with_measured_ranges(ranged_two_llm_models(), (8, 1024), (8, 512), pairs=[("big", "c")])
    r = run("solve", *_ranged_inputs(tmp_path / "c", wide_c), "--out", tmp_path / "s", "-q", "--strict-range")
    assert r.exit_code == 0, r.output
    d = json.loads(run("explain", tmp_path / "s", "q1", "--json").output)
    assert d["query"]["extrapolated"] is False and (d["query"]["llm"], d["query"]["device"]) == ("big", "c")
    verdicts = {(o["llm"], o["device"]): (o["verdict"], o["extrapolated"], o["reasons"]) for o in d["options"]}
    assert verdicts[("big", "c")][:2] == ("chosen", False)
    assert verdicts[("small", "g")] == (
        "ruled out", True, "range: 600 input tokens are outside the 8-512 and 300 output tokens are outside the 8-256 "
        "measured for small on g (--strict-range refuses extrapolated predictions)")


def test_solve_report_leaves_the_report_its_time_of_the_limit(tmp_path, synthetic_models, synthetic_fleet, monkeypatch):
    import importlib

    from energyopt.report import REPORT_WRITE_S, report_reserve_s

    assert report_reserve_s(None) == 0.0 and report_reserve_s(60.0) == REPORT_WRITE_S and report_reserve_s(4.0) == 2.0
    plan_module, sweep_module = importlib.import_module("energyopt.plan"), importlib.import_module("energyopt.sweep")
    seen: dict[str, float] = {}
    real_plan, real_curve = plan_module.plan, sweep_module.accuracy_cost

    def plan(*args, limits, **kwargs):
        seen["plan"] = limits.time_limit_s
        return real_plan(*args, limits=limits, **kwargs)

    def accuracy_cost(*args, limits, **kwargs):
        seen["curve"] = limits.time_limit_s
        return real_curve(*args, limits=limits, **kwargs)

    monkeypatch.setattr(plan_module, "plan", plan)
    monkeypatch.setattr(sweep_module, "accuracy_cost", accuracy_cost)
    wl = tmp_path / "w.csv"
    lognormal_workload(20, seed=3).to_csv(wl, index=False)
    r = run("solve", wl, "--fleet", synthetic_fleet, "--models", synthetic_models, "--time-limit", "30", "--report",
            "--out", tmp_path / "p")
    assert r.exit_code == 0, r.output
    assert seen == {"plan": 30.0 - REPORT_WRITE_S, "curve": 30.0 - REPORT_WRITE_S}
    # the summary records the limit asked for
    assert json.loads((tmp_path / "p" / "summary.json").read_text())["settings"]["time_limit_s"] == 30.0


def test_solve_names_the_options_dropped_where_a_model_predicts_zero_or_less(tmp_path):
    """A model predicting 0 s (or a negative energy) drops its options (a plan never counts them
    free): solve says how many and where, with a plan, without one and under --quiet."""
    from conftest import TWO_LLM_MODELS, make_models

    broken = {**TWO_LLM_MODELS, ("big", "c"): ((0, 0, 2.0, 0), (0, 0, 0, 0))}  # big on the CPU: 0 s for every query
    args = _ranged_inputs(tmp_path, make_models(broken))
    line = ("2 options dropped, where their models predict <= 0 J or s (outside the models' valid domain): "
            "big@c (2)")
    r = run("solve", *args, "--out", tmp_path / "p", "--quiet")
    assert r.exit_code == 0 and r.output.splitlines()[-1] == line, r.output
    assert json.loads((tmp_path / "p" / "summary.json").read_text())["excluded_invalid_predictions"] == 2
    r = run("solve", *args, "--out", tmp_path / "p", "--min-mean-accuracy", "0.9")  # no plan: still said
    assert r.exit_code == 1 and r.output.splitlines()[-1] == line, r.output
    r = run("solve", *_ranged_inputs(tmp_path / "fine", make_models(TWO_LLM_MODELS)), "--out", tmp_path / "q")
    assert r.exit_code == 0 and "options dropped" not in r.output


def test_a_negative_seed_and_a_model_coefficient_of_1e308_are_bad_input_not_tracebacks(tmp_path, synthetic_models,
                                                                                        synthetic_fleet):
    import shutil

    wl = tmp_path / "w.csv"
    lognormal_workload(10, seed=3).to_csv(wl, index=False)
    args = [wl, "--fleet", synthetic_fleet, "--models", synthetic_models]
    for cmd in (("compare",), ("sweep", "--vary", "zeta", "--out", tmp_path / "s")):
        r = run(*cmd, *args, "--seed", "-1")
        assert r.exit_code == 2 and "Invalid value for '--seed': -1 is not in the range x>=0" in r.output, r.output
    models = tmp_path / "models"
    shutil.copytree(synthetic_models, models)
    first = sorted(models.glob("*.json"))[0]
    doc = json.loads(first.read_text())
    doc["energy_j"]["coefficients"][next(iter(doc["energy_j"]["coefficients"]))] = 1e308
    first.write_text(json.dumps(doc))
    r = run("solve", wl, "--fleet", synthetic_fleet, "--models", models, "--out", tmp_path / "p")
    assert r.exit_code == 2 and r.output.count("\n") == 1, r.output
    assert r.output.startswith(f"error: {first}: key energy_j.coefficients.") and "is 1e+308" in r.output
    assert not (tmp_path / "p").exists()


def test_the_process_ends_without_teardown_yet_loses_no_output(tmp_path):
    """Run as its own process (python -m energyopt.cli), a command ends without the interpreter's
    teardown (0.1-0.2 s after scipy.optimize is loaded): the exit code, every line on stdout
    through a pipe, and the log file (closed by its exit handler) must all be there."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    log = tmp_path / "log.txt"
    proc = subprocess.run([sys.executable, "-m", "energyopt.cli", "--log-file", str(log), "solve", "examples/workload.csv",
                           "-o", "-"], cwd=root, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(root)})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1001 and lines[0].startswith('"query_id",')
    assert "solve ended after" in log.read_text()
    bad = subprocess.run([sys.executable, "-m", "energyopt.cli", "solve", str(tmp_path / "none.csv")], cwd=root,
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(root)})
    assert bad.returncode == 2 and bad.stderr.startswith("error: ")
