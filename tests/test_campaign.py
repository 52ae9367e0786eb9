"""Characterization campaigns (energyopt/campaign.py): the file's checks, dry runs merged into one
CSV per device kind (every row once, after a killed task and a resumed run), and tasks dispatched
to the nodes of a local Ray cluster that offer their device kind."""

from __future__ import annotations

import collections
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from energyopt.campaign import TaskSpec, TaskStatus, read_campaign, run_campaign, run_task
from energyopt.characterize.catalog import get_spec
from energyopt.characterize.csvlog import RunLog, run_key
from energyopt.characterize.design import fit_context
from energyopt.characterize.orchestrate import make_points
from energyopt.cli import main
from energyopt.errors import DataError
from energyopt.io import read_characterization

ROOT = Path(__file__).parent.parent

SMALL = '''name = "small"
llms = ["qwen2.5-0.5b", "tinyllama-1.1b"]
batch_sizes = [1, 4]
points = "8x8,64x16,256x32"
holdout = 1
repeats = 2
min_window_s = 0.0
idle_seconds = 0.5
max_input_tokens = 512
max_output_tokens = 64
{extra}
[devices.h200]
[devices.h100]
llms = ["qwen2.5-0.5b"]
'''


def write_campaign(d: Path, extra: str = "", text: str = SMALL) -> Path:
    p = d / "campaign.toml"
    p.write_text(text.format(extra=extra))
    return p


def expected_keys(campaign_path: Path) -> set[tuple]:
    """Every row the campaign should hold, from the design alone."""
    c = read_campaign(campaign_path)
    keys = set()
    for kind, o in c.kinds.items():
        for llm in o["llms"]:
            pts = make_points(o["points"], o["holdout"], o["max_input_tokens"], o["max_output_tokens"], o["batch_sizes"])
            for p in fit_context(pts, get_spec(llm).context_tokens):
                for rep in range(o["repeats"]):
                    keys.add((llm, kind, p.input_tokens, p.output_tokens, p.split, rep, p.batch_size))
    return keys


def assert_every_row_once(out: Path, campaign_path: Path) -> None:
    rows = [r for kind in ("h200", "h100") for r in RunLog(out / f"{kind}.csv").rows()]
    counts = collections.Counter(run_key(r) for r in rows)
    assert [k for k, n in counts.items() if n > 1] == []
    assert set(counts) == expected_keys(campaign_path)
    for kind in ("h200", "h100"):
        df = read_characterization(out / f"{kind}.csv")
        assert set(df["device"]) == {kind} and set(df["energy_source"]) == {"dry_run"}
        assert df["host"].notna().all() and df["measured_at"].notna().all()


# ---- the campaign file's checks: one line naming the file and the key ----

@pytest.mark.parametrize(("text", "match"), [
    ('lms = ["qwen2.5-0.5b"]\n[devices.h200]\n', r"unknown top-level key lms; did you mean llms\?"),
    ('llms = ["qwen2.5-0.5b"]\n[devices.h200]\nresorce = "x"\n', r"unknown key devices\.h200\.resorce; did you mean resource\?"),
    ('llms = ["qwen-0.5b"]\n[devices.h200]\n', r"key llms\[0\]: unknown LLM 'qwen-0.5b'; did you mean qwen2.5-0.5b\?"),
    ('llms = ["qwen2.5-0.5b"]\nbatch_sizes = [1, 0]\n[devices.h200]\n', r"key batch_sizes\[1\] must be a whole number from 1"),
    ('llms = ["qwen2.5-0.5b"]\nbatch_sizes = [8, 8]\n[devices.h200]\n', r"key batch_sizes lists a batch size twice"),
    ('llms = ["qwen2.5-0.5b"]\npoints = 3\n[devices.h200]\n', r"key points must be at least 6 points"),
    ('llms = ["qwen2.5-0.5b"]\npoints = "512-128"\n[devices.h200]\n', r"key points: '512-128' is not INPUTxOUTPUT"),
    ('llms = ["qwen2.5-0.5b"]\nrepeats = 0\n[devices.h200]\n', r"key repeats must be >= 1, got 0"),
    ('llms = ["qwen2.5-0.5b"]\nsplit = "gpu"\n[devices.h200]\n', r"key split must be one of llm, batch_size"),
    ('llms = ["qwen2.5-0.5b"]\n[devices.h200]\ndevice = "tpu"\n', r"key devices\.h200\.device must be one of cuda, cpu"),
    ('llms = ["qwen2.5-0.5b"]\n[devices.h200]\nnum_gpus = "1"\n', r"key devices\.h200\.num_gpus must be number, got '1'"),
    ('llms = ["qwen2.5-0.5b"]\n', r"key devices must hold a table per device kind"),
    ('[devices.h200]\n', r"key llms is missing"),
    ('llms = ["qwen2.5-0.5b"\n', r"malformed TOML"),
])
def test_campaign_file_errors_name_the_file_and_key(tmp_path, text, match):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(DataError, match=match) as info:
        read_campaign(p)
    assert "\n" not in str(info.value) and str(p) in str(info.value)


def test_the_shipped_example_reads_and_its_tasks_ask_for_their_kind():
    c = read_campaign(ROOT / "examples" / "campaign" / "campaign.toml")
    assert {(t.llm, t.kind) for t in c.tasks} >= {("mistral-7b", "h200"), ("mistral-7b", "h100")}
    h200 = next(t for t in c.tasks if t.kind == "h200")
    assert h200.ray_options() == {"num_cpus": 1, "num_gpus": 1.0, "resources": {"nvidia-h200": 1}}
    assert h200.batch_sizes == (1, 8, 32, 64, 128) and h200.options["gpu_label"] == "h200"
    assert len({t.task_key for t in c.tasks}) == len(c.tasks)


def test_cli_errors_are_one_line_exit_2_and_write_nothing(tmp_path):
    p = write_campaign(tmp_path, extra="holdot = 2")
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["characterize", "--campaign", str(p), "--dry-run", "--out", str(out)])
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and "unknown top-level key holdot; did you mean holdout?" in r.stderr
    assert not out.exists()
    p = write_campaign(tmp_path)
    r = CliRunner().invoke(main, ["characterize", "--campaign", str(p), "--points", "12", "--out", str(out)])
    assert r.exit_code == 2 and r.stderr == "error: --campaign: give --points in the campaign file, not on the command line\n"
    r = CliRunner().invoke(main, ["characterize", "--llm", "tiny-test", "--executor", "ray", "--out", str(tmp_path / "c.csv")])
    assert r.exit_code == 2 and r.stderr == "error: --executor: only with --campaign\n"
    r = CliRunner().invoke(main, ["characterize", "--campaign", str(p), "--address", "auto", "--out", str(out)])
    assert r.exit_code == 2 and r.stderr == "error: --address: only with --executor ray\n"


# ---- dry runs on the local executor ----

def test_dry_run_campaign_merges_every_row_once_and_a_rerun_runs_nothing(tmp_path):
    p = write_campaign(tmp_path)
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["characterize", "--campaign", str(p), "--dry-run", "--workers", "2", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "campaign small: 3 tasks: 3 complete" in r.stdout
    assert_every_row_once(out, p)
    tasks = list(csvrows(out / "campaign.csv"))
    assert [(t["llm"], t["device"], t["status"], t["node"]) for t in tasks] == [
        ("qwen2.5-0.5b", "h200", "complete", "local"), ("tinyllama-1.1b", "h200", "complete", "local"),
        ("qwen2.5-0.5b", "h100", "complete", "local")]
    assert all(int(t["rows"]) == int(t["measured"]) > 0 for t in tasks)
    before = {k: (out / f"{k}.csv").read_bytes() for k in ("h200", "h100")}
    r2 = CliRunner().invoke(main, ["characterize", "--campaign", str(p), "--dry-run", "--out", str(out)])
    assert r2.exit_code == 0 and "3 complete already, 0 to run" in r2.stderr
    assert before == {k: (out / f"{k}.csv").read_bytes() for k in ("h200", "h100")}
    # a driver killed before it merged: the parts' rows are merged at the next start, each once
    (out / "h200.csv").unlink()
    (out / "campaign.csv").unlink()
    r4 = CliRunner().invoke(main, ["characterize", "--campaign", str(p), "--dry-run", "--out", str(out)])
    assert r4.exit_code == 0 and r4.stderr.count("merged 16 rows left in") == 2  # 4 points x 2 batch sizes x 2 repeats
    assert_every_row_once(out, p)
    assert all(t["measured"] == "0" for t in csvrows(out / "campaign.csv"))
    # a merged file and its parts removed by hand: their tasks run again, though campaign.csv says complete
    (out / "h100.csv").unlink()
    shutil.rmtree(out / "parts" / "h100")
    r5 = CliRunner().invoke(main, ["characterize", "--campaign", str(p), "--dry-run", "--out", str(out)])
    assert r5.exit_code == 0 and "2 complete already, 1 to run" in r5.stderr
    assert_every_row_once(out, p)
    # measurements never go into a dry run's files
    r3 = CliRunner().invoke(main, ["characterize", "--campaign", str(p), "--out", str(out)])
    assert r3.exit_code == 2 and "holds dry-run rows; write measurements to another --out" in r3.stderr


def csvrows(path: Path):
    import csv

    with path.open(newline="") as fh:
        yield from csv.DictReader(fh)


def test_time_budget_leaves_partial_tasks_that_re_runs_finish(tmp_path):
    # a budget of 1 virtual second, windows of 0.3 s: each run measures a few points and says so
    p = write_campaign(tmp_path, extra="time_budget_s = 1\nsplit = \"batch_size\"",
                       text=SMALL.replace("min_window_s = 0.0", "min_window_s = 0.3"))
    c = read_campaign(p, dry_run=True)
    assert len(c.tasks) == 6  # (qwen, tinyllama) x (1, 4) on h200, qwen x (1, 4) on h100
    out = tmp_path / "out"
    runs = 0
    while True:
        rows = run_campaign(c, out, workers=1)
        runs += 1
        if all(r["status"] == TaskStatus.COMPLETE.value for r in rows):
            break
        assert runs < 20
        partial = [r for r in rows if r["status"] == TaskStatus.PARTIAL.value]
        assert all("time budget of 1 s reached" in r["reason"] for r in partial)
    assert runs > 2
    assert_every_row_once(out, p)


def _dies_after_3_rows(spec: TaskSpec, out_dir: str) -> dict:
    """Task 0's worker process dies after writing 3 rows, on its first attempt."""
    marker = Path(out_dir) / "killed"
    if spec.index == 0 and not marker.exists():
        marker.write_text("")
        written = []
        original = RunLog.append_many

        def append_then_die(self, rows):
            original(self, rows)
            written.extend(rows)
            if len(written) >= 3:
                os._exit(1)

        RunLog.append_many = append_then_die  # this worker process dies with it
    return run_task(spec, out_dir)


def test_local_killed_task_is_retried_and_resumes_its_part(tmp_path):
    p = write_campaign(tmp_path)
    c = read_campaign(p, dry_run=True)
    out = tmp_path / "out"
    rows = run_campaign(c, out, workers=1, task=_dies_after_3_rows, retries=1)
    assert (out / "killed").exists()
    assert [r["status"] for r in rows] == ["complete"] * 3 and rows[0]["attempts"] == 2
    assert rows[0]["measured"] == rows[0]["rows"] - 3  # the retry resumed the part: 3 rows kept
    assert_every_row_once(out, p)


def _raises_after_3_rows(spec: TaskSpec, out_dir: str) -> dict:
    """Task 0 raises after writing 3 rows, on every attempt."""
    if spec.index != 0:
        return run_task(spec, out_dir)
    written = []
    original = RunLog.append_many

    def append_then_raise(self, rows):
        original(self, rows)
        written.extend(rows)
        if len(written) >= 3:
            raise RuntimeError("the GPU fell off the bus")

    RunLog.append_many = append_then_raise
    try:
        return run_task(spec, out_dir)
    finally:
        RunLog.append_many = original


def test_a_task_that_fails_every_attempt_keeps_its_rows_and_a_re_run_completes_it(tmp_path):
    p = write_campaign(tmp_path)
    c = read_campaign(p, dry_run=True)
    out = tmp_path / "out"
    rows = run_campaign(c, out, workers=1, task=_raises_after_3_rows, retries=1)
    assert [r["status"] for r in rows] == ["failed", "complete", "complete"]
    assert rows[0]["attempts"] == 2 and rows[0]["reason"] == "RuntimeError: the GPU fell off the bus"
    assert rows[0]["rows"] == 6  # 3 rows an attempt, the second resuming the first's part: none lost
    r = CliRunner().invoke(main, ["characterize", "--campaign", str(p), "--dry-run", "--out", str(out)])
    assert r.exit_code == 0 and "2 complete already, 1 to run" in r.stderr
    assert_every_row_once(out, p)
    r = CliRunner().invoke(main, ["characterize", "--campaign", str(p), "--dry-run", "--out", str(tmp_path / "o2")])
    assert r.exit_code == 0


# ---- Ray: a local cluster of 2 nodes, one with a (fake) H200, one with an H100 ----

@pytest.fixture(scope="module")
def two_node_ray():
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    temp_dir = tempfile.mkdtemp(prefix="eo-ray-")  # short: Ray's socket paths must fit 107 bytes
    old = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = temp_dir  # its session files (and address file) there, removed at the end
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "num_gpus": 1, "resources": {"nvidia-h200": 1}, "include_dashboard": False})
    cluster.add_node(num_cpus=1, num_gpus=1, resources={"nvidia-h100": 1})
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray's workers need not import the tests
    kinds = {n["NodeID"]: {k for k in n["Resources"] if k.startswith("nvidia-")} for n in ray.nodes() if n["Alive"]}
    yield ray, kinds
    ray.shutdown()
    cluster.shutdown()
    if old is None:
        os.environ.pop("RAY_TMPDIR", None)
    else:
        os.environ["RAY_TMPDIR"] = old
    shutil.rmtree(temp_dir, ignore_errors=True)


def test_ray_tasks_run_on_nodes_of_their_kind_and_survive_a_killed_worker(tmp_path, two_node_ray):
    ray, kinds = two_node_ray
    assert sorted(map(sorted, kinds.values())) == [["nvidia-h100"], ["nvidia-h200"]]
    p = write_campaign(tmp_path)
    c = read_campaign(p, dry_run=True)
    out = tmp_path / "out"
    rows = run_campaign(c, out, executor="ray", task=_dies_after_3_rows, retries=2)
    assert (out / "killed").exists()
    assert [r["status"] for r in rows] == ["complete"] * 3 and rows[0]["attempts"] == 2
    for r in rows:  # each task ran on the node that offers its kind
        assert kinds[r["node"]] == {f"nvidia-{r['device']}"}, r
    assert_every_row_once(out, p)
    assert {p.name for p in (out / "parts" / "h200").glob("*.csv")} == {
        f"{t.llm}__{t.task_key}.csv" for t in c.tasks if t.kind == "h200"}


def test_ray_a_kind_no_node_offers_is_an_error_before_any_task_runs(tmp_path, two_node_ray):
    p = write_campaign(tmp_path, text=SMALL + "[devices.a100]\n")
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"no node of the Ray cluster offers CPU=1, GPU=1, nvidia-a100=1 for task 3 "
                                         r"\(qwen2.5-0.5b on a100, .*ray start --resources '\{\"nvidia-a100\": 1\}'"):
        run_campaign(read_campaign(p, dry_run=True), out, executor="ray")
    assert not (out / "campaign.csv").exists() and not (out / "h200.csv").exists()


def test_dry_run_of_one_llm_without_a_campaign(tmp_path):
    out = tmp_path / "c.csv"
    r = CliRunner().invoke(main, ["characterize", "--llm", "qwen2.5-0.5b", "--dry-run", "--points", "8x8,512x64",
                                  "--holdout", "0", "--repeats", "1", "--batch-sizes", "1,8", "--out", str(out)])
    assert r.exit_code == 0, r.output
    df = read_characterization(out)
    assert len(df) == 4 and set(df["energy_source"]) == {"dry_run"} and set(df["decode_loop"]) == {"dry_run"}
    assert set(df["gpu_name"]) == {"dry run"} and set(df["batch_size"]) == {1, 8}
    assert (df["energy_j"] > df["idle_power_w"] * df["runtime_s"]).all()  # busy power above idle


def test_fit_refuses_dry_run_rows(tmp_path):
    from energyopt.errors import FitError
    from energyopt.fit import fit_models

    out = tmp_path / "c.csv"
    r = CliRunner().invoke(main, ["characterize", "--llm", "qwen2.5-0.5b", "--dry-run", "--points", "6",
                                  "--holdout", "0", "--repeats", "1", "--out", str(out)])
    assert r.exit_code == 0, r.output
    with pytest.raises(FitError, match=r"6 rows are a dry run's \(energy_source=dry_run"):
        fit_models(read_characterization(out))
