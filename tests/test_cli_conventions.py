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


# --- --json: machine-readable stdout, nothing else on it -------------------------------------------


def _json_stdout(r):
    """The command's stdout parsed as JSON (stderr apart: click 8.2+ keeps them apart in CliRunner)."""
    import json

    assert r.stdout.lstrip().startswith(("{", "[")), r.stdout
    return json.loads(r.stdout)


def test_solve_json_prints_the_summary_and_only_it(tmp_path, synthetic_models, synthetic_fleet):
    import json

    wl = tmp_path / "w.csv"
    lognormal_workload(30, seed=2, deadline_fraction=0.2).to_csv(wl, index=False)
    r = run("solve", wl, "--fleet", synthetic_fleet, "--models", synthetic_models, "-o", tmp_path / "p", "--json")
    assert r.exit_code == 0, r.output
    doc = _json_stdout(r)
    assert doc == json.loads((tmp_path / "p" / "summary.json").read_text())
    assert doc["status"] == "optimal" and doc["assigned"] == 30
    assert "wrote" not in r.stdout and "status:" not in r.stdout
    assert "plan:" in r.stderr  # progress stays on stderr


def test_solve_json_without_a_plan_still_prints_the_summary(tmp_path, synthetic_models, synthetic_fleet, monkeypatch):
    from test_cli import _time_out_without_a_plan

    _time_out_without_a_plan(monkeypatch)
    wl = tmp_path / "w.csv"
    lognormal_workload(20, seed=3).to_csv(wl, index=False)
    r = run("solve", wl, "--fleet", synthetic_fleet, "--models", synthetic_models, "--solver", "highs",
            "--formulation", "exact", "--time-limit", "5", "-o", tmp_path / "p", "--json")
    assert r.exit_code == 3, r.output
    doc = _json_stdout(r)
    assert doc["status"] == "no_solution" and doc["total_energy_j"] is None
    assert "status: no_solution" in r.stderr


def test_solve_json_keeps_the_extrapolation_warning_off_stdout(tmp_path):
    from test_cli import _ranged_inputs

    r = run("solve", *_ranged_inputs(tmp_path), "-o", tmp_path / "p", "--json", "--quiet")
    assert r.exit_code == 0, r.output
    assert _json_stdout(r)["extrapolated_queries"] == 1
    assert "rest on predictions outside" in r.stderr and "rest on" not in r.stdout


def test_compare_json_prints_the_rows(tmp_path, synthetic_models, synthetic_fleet):
    import json

    wl = tmp_path / "w.csv"
    lognormal_workload(20, seed=4).to_csv(wl, index=False)
    r = run("compare", wl, "--fleet", synthetic_fleet, "--models", synthetic_models, "--json", "-o", tmp_path / "c")
    assert r.exit_code == 0, r.output
    rows = _json_stdout(r)
    assert rows == json.loads((tmp_path / "c" / "compare.json").read_text())
    assert [row["method"] for row in rows][:2] == ["optimal", "round-robin"]
    assert "wrote" in r.stderr and "wrote" not in r.stdout


def test_models_and_predict_json(tmp_path):
    r = run("fit", DATA / "synthetic_characterization.csv", "-o", tmp_path / "m")
    assert r.exit_code == 0, r.output
    r = run("models", "--models", tmp_path / "m", "--json")
    assert r.exit_code == 0, r.output
    rows = _json_stdout(r)
    assert len(rows) == 8 and {row["target"] for row in rows} == {"energy_j", "runtime_s"}
    assert rows[0]["input_tokens_range"] == [8, 4096] and rows[0]["output_tokens_range"] == [8, 1024]
    assert 0.96 <= rows[0]["cv_r2"] <= 1
    r = run("predict", "--models", tmp_path / "m", "--llm", "big-llm", "--device", "gpu-a",
            "--input-tokens", 1000, "--output-tokens", 130, "--json")
    assert r.exit_code == 0, r.output
    p = _json_stdout(r)
    assert p["llm"] == "big-llm" and p["batch_size"] == 1 and p["extrapolated"] is False
    assert p["energy_j"] > 0 and p["runtime_s"] > 0
    r = run("predict", "--models", tmp_path / "m", "--llm", "big-llm", "--device", "gpu-a",
            "--input-tokens", 100000, "--output-tokens", 130, "--json")
    assert r.exit_code == 0 and _json_stdout(r)["extrapolated"] is True and "warning:" in r.stderr


def test_models_json_on_the_shipped_models_parses():
    rows = _json_stdout(run("models", "--json"))
    assert rows and all(set(row) >= {"llm", "device", "target", "form", "input_tokens_range"} for row in rows)


# --- -v/--verbose and --log-file ------------------------------------------------------------------


def _small_solve(tmp_path, synthetic_models, synthetic_fleet):
    wl = tmp_path / "w.csv"
    lognormal_workload(15, seed=2).to_csv(wl, index=False)
    return ["solve", wl, "--fleet", synthetic_fleet, "--models", synthetic_models, "-o", tmp_path / "p"]


def test_without_v_progress_lines_stay_bare_on_stderr_and_no_handler_is_left(tmp_path, synthetic_models, synthetic_fleet):
    import logging

    r = run(*_small_solve(tmp_path, synthetic_models, synthetic_fleet))
    assert r.exit_code == 0, r.output
    assert any(line.startswith("problem: 15 queries") for line in r.stderr.splitlines())
    assert "INFO" not in r.stderr and "ended after" not in r.stderr
    assert logging.getLogger("energyopt").handlers == []


def test_v_logs_at_info_and_vv_at_debug_on_stderr(tmp_path, synthetic_models, synthetic_fleet):
    args = _small_solve(tmp_path, synthetic_models, synthetic_fleet)
    r = run("-v", *args, "--json")
    assert r.exit_code == 0, r.output
    assert _json_stdout(r)["status"] == "optimal"  # the log never reaches stdout
    assert "INFO energyopt.progress: problem: 15 queries" in r.stderr and "solve ended after" in r.stderr
    assert "DEBUG" not in r.stderr
    r = run("-vv", *args, "--quiet")
    assert r.exit_code == 0, r.output
    assert "DEBUG energyopt: solve: " in r.stderr and "solver=auto" in r.stderr
    assert "DEBUG energyopt.progress: problem: 15 queries" in r.stderr  # --quiet's progress, at DEBUG


def test_log_file_gets_the_same_log(tmp_path, synthetic_models, synthetic_fleet):
    log = tmp_path / "run.log"
    r = run("--log-file", log, *_small_solve(tmp_path, synthetic_models, synthetic_fleet))
    assert r.exit_code == 0, r.output
    text = log.read_text()
    assert "INFO energyopt.progress: problem: 15 queries" in text and "solve ended after" in text
    assert "DEBUG" not in text
    r = run("-vv", "--log-file", log, "models", "--models", synthetic_models)  # appended
    assert r.exit_code == 0, r.output
    text = log.read_text()
    assert "solve ended after" in text and "DEBUG energyopt: models: " in text


def test_an_unwritable_log_file_is_a_usage_error(tmp_path, synthetic_models):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    r = run("--log-file", a_file / "run.log", "models", "--models", synthetic_models)
    assert r.exit_code == 2 and "--log-file" in r.output and "cannot write there" in r.output


# --- help and README --------------------------------------------------------------------------------


def test_every_option_of_every_command_has_help_text():
    for name, cmd in [("energyopt", main), *sorted(main.commands.items())]:
        for p in _options(cmd):
            assert p.help and p.help.strip(), f"{name} {'/'.join(p.opts)} has no help text"
        r = run(*([] if cmd is main else [name]), "--help")
        assert r.exit_code == 0, r.output


def test_the_typical_session_of_the_help_runs_as_written(tmp_path, monkeypatch):
    """Each command of `energyopt --help`'s typical session, run from the source tree's top as
    written (the plan into plan/ there: here a temporary copy of examples/); compare, minutes on the
    full example, is run on its first 40 queries."""
    import shlex
    import shutil

    from conftest import ROOT

    lines = run("--help").output.split("Typical session:")[1].split("Options:")[0].strip().splitlines()
    commands = [shlex.split(line.split("#")[0]) for line in lines]
    assert [c[1] for c in commands] == ["solve", "explain", "compare", "models", "predict"]
    (tmp_path / "examples").mkdir()
    shutil.copy(ROOT / "examples" / "workload.csv", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    for argv in commands:
        if argv[1] == "compare":
            short = tmp_path / "examples" / "short.csv"
            short.write_text("".join((tmp_path / "examples" / "workload.csv").read_text().splitlines(True)[:41]))
            argv = [a.replace("workload.csv", "short.csv") for a in argv]
        r = run(*argv[1:])
        assert r.exit_code == 0, (argv, r.output)
    assert (tmp_path / "plan" / "assignment.csv").is_file()


def test_characterize_help_lists_the_catalog():
    from energyopt.characterize.catalog import CATALOG

    text = " ".join(run("characterize", "--help").output.split())
    assert all(name in text for name in CATALOG if name != "tiny-test")


def test_the_readme_names_the_conventions():
    from conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    for words in ("`-o`", "`--json`", "compare.csv", "compare.json", "`energyopt -v COMMAND`", "--log-file"):
        assert words in readme, words
    table = [line for line in readme.splitlines() if line.startswith("| `energyopt ")]
    for cmd in ("solve", "compare", "models", "predict"):
        assert any(f"energyopt {cmd} " in line and "--json" in line for line in table), cmd


def test_threads_reach_the_plan_and_are_recorded(tmp_path, synthetic_models, synthetic_fleet, monkeypatch):
    import importlib
    import json

    plan_module = importlib.import_module("energyopt.plan")  # the module (the facade's energyopt.plan is the function)

    seen: list[int] = []
    real = plan_module._plan_problem

    def spy(problem, *, limits, **kw):
        seen.append(limits.threads)
        return real(problem, limits=limits, **kw)

    monkeypatch.setattr(plan_module, "_plan_problem", spy)
    wl = tmp_path / "w.csv"
    lognormal_workload(12, seed=2).to_csv(wl, index=False)
    base = [wl, "--fleet", synthetic_fleet, "--models", synthetic_models]
    r = run("solve", *base, "--threads", "1", "-o", tmp_path / "p", "-q")
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "p" / "summary.json").read_text())["settings"]["threads"] == 1
    assert run("compare", *base, "--threads", "3", "--no-equal-accuracy").exit_code == 0
    assert run("sweep", *base, "--vary", "zeta", "--values", "0.5", "--no-baselines", "--threads", "4",
               "-o", tmp_path / "s").exit_code == 0
    assert seen[0] == 1 and 3 in seen and 4 in seen
    r = run("solve", *base, "--threads", "0")
    assert r.exit_code == 2 and "--threads" in r.output


def test_predict_refuses_a_published_model_that_predicts_a_negative_value():
    """The paper's Llama-2-7B coefficients go negative at 64 x 1 tokens: no 0.00 with exit 0."""
    r = run("predict", "--llm", "llama-2-7b", "--device", "a100", "--input-tokens", 64, "--output-tokens", 1)
    assert r.exit_code == 2 and r.stdout == ""
    assert "predict energy_j=-215" in r.stderr and "outside the models' valid domain" in r.stderr
    r = run("predict", "--llm", "llama-2-7b", "--device", "a100", "--input-tokens", 8, "--output-tokens", 1)
    assert r.exit_code == 0 and "energy_j=0.70" in r.stdout


# --- `-`: the workload from stdin, the assignment (or the summary) to stdout -----------------------


def run_in(stdin: bytes, *args):
    return CliRunner().invoke(main, [str(a) for a in args], input=stdin, catch_exceptions=False)


def test_solve_reads_the_workload_from_stdin_as_from_the_file(tmp_path, synthetic_models, synthetic_fleet):
    import hashlib
    import json

    import pandas as pd

    wl = tmp_path / "w.csv"
    lognormal_workload(25, seed=5, deadline_fraction=0.3).to_csv(wl, index=False)
    common = ("--fleet", synthetic_fleet, "--models", synthetic_models)
    r = run("solve", wl, *common, "-o", tmp_path / "file")
    assert r.exit_code == 0, r.output
    r = run_in(wl.read_bytes(), "solve", "-", *common, "-o", tmp_path / "stdin")
    assert r.exit_code == 0, r.output
    a, b = (pd.read_csv(tmp_path / d / "assignment.csv") for d in ("file", "stdin"))
    pd.testing.assert_frame_equal(a, b)
    s = json.loads((tmp_path / "stdin" / "summary.json").read_text())
    assert s["inputs"]["workload"] is None  # nothing to re-read; explain then asks for --workload
    assert s["input_sha256"]["workload"] == hashlib.sha256(wl.read_bytes()).hexdigest()


def test_stdin_jsonl_is_sniffed_and_errors_name_stdin_and_the_physical_line(tmp_path, synthetic_models, synthetic_fleet):
    common = ("--fleet", synthetic_fleet, "--models", synthetic_models, "-o", tmp_path / "p")
    bad_out = ("--fleet", synthetic_fleet, "--models", synthetic_models, "-o", tmp_path / "bad")
    good = (b'{"query_id": "a", "input_tokens": 100, "output_tokens": 20}\n\n'
            b'{"query_id": "b", "input_tokens": 50, "output_tokens": 9}\n')
    r = run_in(good, "solve", "-", *common)
    assert r.exit_code == 0, r.output
    bad = good + b'\n{"query_id": "c", "input_tokens": true, "output_tokens": 9}\n'
    r = run_in(bad, "solve", "-", *bad_out)
    assert r.exit_code == 2
    assert r.stderr.strip() == "error: <stdin>: line 5, column input_tokens: expected a number, got true"
    csv_text = b'query_id,input_tokens,output_tokens\n"multi\nline",10,5\n\nq2,x,5\n'
    r = run_in(csv_text, "solve", "-", *bad_out)
    assert r.exit_code == 2 and r.stderr.startswith("error: <stdin>: line 5, column input_tokens"), r.stderr
    r = run_in(good, "solve", "-", *bad_out, "--workload-format", "csv")  # told CSV: no CSV header there
    assert r.exit_code == 2 and "<stdin>" in r.stderr and "missing column" in r.stderr
    r = run_in(b"", "solve", "-", *bad_out)
    assert r.exit_code == 2 and "<stdin>: no input" in r.stderr
    assert not (tmp_path / "bad").exists()  # bad input: nothing written


def test_workload_format_overrides_the_suffix(tmp_path, synthetic_models, synthetic_fleet):
    wl = tmp_path / "w.txt"
    wl.write_text('{"query_id": "a", "input_tokens": 100, "output_tokens": 20}\n')
    common = ("--fleet", synthetic_fleet, "--models", synthetic_models, "-o", tmp_path / "p")
    assert run("solve", wl, *common).exit_code == 2  # read as CSV by its suffix
    r = run("solve", wl, *common, "--workload-format", "jsonl")
    assert r.exit_code == 0, r.output


def test_solve_o_dash_prints_the_assignment_and_writes_nothing(tmp_path, synthetic_models, synthetic_fleet, monkeypatch):
    import io

    import pandas as pd

    monkeypatch.chdir(tmp_path)
    wl = tmp_path / "w.csv"
    lognormal_workload(20, seed=6).to_csv(wl, index=False)
    common = ("--fleet", synthetic_fleet, "--models", synthetic_models)
    r = run("solve", wl, *common, "-o", "-")
    assert r.exit_code == 0, r.output
    asg = pd.read_csv(io.StringIO(r.stdout), dtype={"query_id": str})
    assert sorted(asg["query_id"]) == sorted(f"q{i}" for i in range(20))
    assert "status: optimal" in r.stderr and "wrote" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.csv"]  # no folder named -, no plan/
    r = run("solve", wl, *common, "-o", "-", "--json")
    assert r.exit_code == 0, r.output
    assert _json_stdout(r)["assigned"] == 20
    r = run("solve", wl, *common, "-o", "-", "--report")
    assert r.exit_code == 2 and "--report" in r.stderr


def test_solve_o_dash_without_a_plan_prints_nothing_on_stdout(tmp_path, synthetic_models, synthetic_fleet, monkeypatch):
    from test_cli import _time_out_without_a_plan

    _time_out_without_a_plan(monkeypatch)
    monkeypatch.chdir(tmp_path)
    wl = tmp_path / "w.csv"
    lognormal_workload(20, seed=3).to_csv(wl, index=False)
    r = run("solve", wl, "--fleet", synthetic_fleet, "--models", synthetic_models, "--solver", "highs",
            "--formulation", "exact", "--time-limit", "5", "-o", "-")
    assert r.exit_code == 3, r.output
    assert r.stdout == "" and "status: no_solution" in r.stderr


# --- `-` for explain/replay --workload and fit DATA; `-o -` only where one stream is written -------


def test_explain_reads_the_workload_from_stdin_and_checks_its_sha256(tmp_path, synthetic_models, synthetic_fleet):
    import json

    wl = tmp_path / "w.csv"
    lognormal_workload(15, seed=9, deadline_fraction=0.3).to_csv(wl, index=False)
    data = wl.read_bytes()
    r = run_in(data, "solve", "-", "--fleet", synthetic_fleet, "--models", synthetic_models, "-o", tmp_path / "p")
    assert r.exit_code == 0, r.output
    r = run("explain", tmp_path / "p", "q3", "--json")  # made from stdin: no path recorded
    assert r.exit_code == 2 and "give --workload (a file, or - for standard input)" in r.stderr
    from_file = run("explain", tmp_path / "p", "q3", "--json", "--workload", wl)
    assert from_file.exit_code == 0, from_file.output
    from_stdin = run_in(data, "explain", tmp_path / "p", "q3", "--json", "--workload", "-")
    assert from_stdin.exit_code == 0, from_stdin.output
    assert json.loads(from_stdin.stdout) == json.loads(from_file.stdout)
    # other bytes (one query's output tokens changed; then only a line ending added): refused, one line
    lines = data.decode().splitlines(keepends=True)
    q3 = lines[4].split(",")
    q3[2] = str(int(q3[2]) + 1)
    for other in ("".join(lines[:4] + [",".join(q3)] + lines[5:]).encode(), data + b"\n"):
        r = run_in(other, "explain", tmp_path / "p", "q3", "--workload", "-")
        assert r.exit_code == 2 and r.stdout == ""
        msg = r.stderr.strip()
        assert "\n" not in msg and msg.startswith("error: <stdin>: SHA-256 ") and "input_sha256.workload" in msg, msg
    # a plan made from a file records the file's hash: the same bytes on stdin pass, others do not
    r = run("solve", wl, "--fleet", synthetic_fleet, "--models", synthetic_models, "-o", tmp_path / "f")
    assert r.exit_code == 0, r.output
    assert run_in(data, "explain", tmp_path / "f", "q3", "--workload", "-").exit_code == 0
    r = run_in(data + b"\n", "explain", tmp_path / "f", "q3", "--workload", "-")
    assert r.exit_code == 2 and "SHA-256" in r.stderr


def test_replay_reads_the_workload_from_stdin_and_refuses_other_bytes(tmp_path):
    from conftest import ROOT

    plan = ROOT / "examples" / "replay" / "plan-batched"
    data = (ROOT / "examples/replay/workload.csv").read_bytes()
    args = ("replay", plan, "--workload", "-", "--fleet", ROOT / "examples/replay/fleet-batched.toml",
            "--models", ROOT / "examples/replay/models", "--out", tmp_path / "o")
    r = run_in(data, *args, "--pool", "h100")  # the plan loads: the next check (the pool) speaks
    assert r.exit_code == 2 and "--pool 'h100': the plan has no query there" in r.stderr, r.output
    r = run_in(data.replace(b"\n", b"\r\n"), *args)
    assert r.exit_code == 2 and r.stderr.startswith("error: <stdin>: SHA-256 ") and r.stderr.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_fit_reads_one_characterization_csv_from_stdin(tmp_path):
    import json

    src = DATA / "synthetic_characterization.csv"
    assert run("fit", src, "-o", tmp_path / "file").exit_code == 0
    r = run_in(src.read_bytes(), "fit", "-", "-o", tmp_path / "stdin")
    assert r.exit_code == 0, r.output
    names = sorted(p.name for p in (tmp_path / "file").glob("*.json"))
    assert len(names) == 4 and names == sorted(p.name for p in (tmp_path / "stdin").glob("*.json"))
    for n in names:
        a, b = (json.loads((tmp_path / d / n).read_text()) for d in ("file", "stdin"))
        assert (a["energy_j"], a["runtime_s"]) == (b["energy_j"], b["runtime_s"])
        assert b["provenance"]["sources"] == ["<stdin>"]
    # errors name <stdin> and the physical line (the blank line counts)
    lines = src.read_text().splitlines(keepends=True)
    bad = "".join(lines[:3] + ["\n", lines[3].replace("small-llm,gpu-a,8,", "small-llm,gpu-a,x,", 1)] + lines[4:])
    r = run_in(bad.encode(), "fit", "-", "-o", tmp_path / "bad")
    assert r.exit_code == 2 and r.stderr.startswith("error: <stdin>: line 5, column input_tokens"), r.stderr
    r = run_in(b"", "fit", "-", "-o", tmp_path / "bad")
    assert r.exit_code == 2 and "<stdin>: no input" in r.stderr
    r = run_in(src.read_bytes(), "fit", "-", "-", "-o", tmp_path / "bad")
    assert r.exit_code == 2 and "- (standard input) can be given once" in r.stderr
    assert not (tmp_path / "bad").exists()


def test_o_dash_is_refused_where_a_folder_or_a_resumed_file_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    wl = tmp_path / "w.csv"
    lognormal_workload(5, seed=1).to_csv(wl, index=False)
    for args in (("fit", DATA / "synthetic_characterization.csv"), ("sweep", wl, "--vary", "zeta"), ("compare", wl)):
        r = run(*args, "-o", "-")
        assert r.exit_code == 2 and r.stdout == "", (args, r.output)
        assert r.stderr.strip().startswith("error: --out -: this command writes a folder of files"), (args, r.stderr)
    r = run("characterize", "--llm", "tiny", "--dry-run", "-o", "-")
    assert r.exit_code == 2 and "--out -: characterize appends to its CSV and resumes" in r.stderr, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.csv"]  # no file or folder named -


def test_help_says_where_dash_is_taken():
    def help_of(*cmd):
        r = run(*cmd, "--help")
        assert r.exit_code == 0
        return " ".join(r.stdout.split())

    assert "- reads it from stdin" in help_of("explain") and "- reads it from stdin" in help_of("replay")
    assert "- reads one from stdin" in help_of("fit")
    assert "a file, not -" in help_of("characterize")
    assert "- writes no files" in help_of("solve")


def test_a_missing_library_is_one_line_and_exit_2_but_a_missing_module_of_ours_is_a_bug():
    # seen on a Ray node whose virtual environment could not see the machine's numpy: a traceback
    from energyopt.cli import friendly_errors

    @click.command()
    @click.argument("what")
    @friendly_errors
    def probe_cmd(what: str) -> None:
        raise ModuleNotFoundError(f"No module named {what!r}", name=what)

    r = CliRunner().invoke(probe_cmd, ["numpy.linalg"])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert r.output.count("\n") == 1 and "no module 'numpy'" in r.output and "pip install energyopt" in r.output
    r = CliRunner().invoke(probe_cmd, ["energyopt.nothing"])
    assert isinstance(r.exception, ModuleNotFoundError)  # not hidden as the environment's fault
