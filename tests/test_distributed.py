"""Distributed planning (energyopt/distributed.py, partitions.py): the workload read in
partitions, and the plan made on workers equal to the single-process decomposition's."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import example_make_workload, scaled_example_fleet

from energyopt.cli import main
from energyopt.distributed import _check_across, plan_distributed
from energyopt.errors import DataError
from energyopt.fleet import read_fleet
from energyopt.io import read_workload
from energyopt.methods import decompose
from energyopt.partitions import read_partition, split_workload
from energyopt.plan import plan
from energyopt.schema import Status
from energyopt.writers import write_table_csv

ROOT = Path(__file__).parent.parent
MODELS = ROOT / "models"
#: rows per block in these tests (the method's is 32,768): partitions of a small batch line up with it
BLOCK = 512


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> tuple[Path, Path]:
    """5,000 queries of the example generator (a fifth with deadlines of 10-60 s) and the default
    fleet at 5 times its pools: more than the 2,000 that the method solves whole, so the prices fix
    most queries and the MILP takes the nearly tied ones."""
    d = tmp_path_factory.mktemp("dist")
    wl = d / "workload.csv"
    example_make_workload()(5000, seed=3, deadline_fraction=0.2, deadline_range=(10.0, 60.0)).to_csv(wl, index=False)
    return wl, scaled_example_fleet(d, 5)


@pytest.fixture()
def small_blocks(monkeypatch):
    monkeypatch.setattr(decompose, "BLOCK_ROWS", BLOCK)


def _parts(out: Path, files: list[str]) -> pd.DataFrame:
    return pd.concat([pd.read_csv(out / f) for f in files], ignore_index=True)


def _single(wl: Path, fleet: Path, **kw):
    return plan(str(wl), str(fleet), str(MODELS), formulation="decompose", **kw)


def _same_as_single(res, sched, out: Path) -> None:
    assert res.status == sched.status and res.status.has_plan
    assert not res.violations
    # the same objective, bound and gap to the last bit: the bound is folded from the same blocks
    assert res.objective == sched.objective
    assert res.bound == sched.bound
    assert res.gap == sched.gap
    # the same plan, times included; a distributed plan states no engine times (an instance's
    # lanes span partitions), where the single process simulates them (5,000 queries, none moved)
    single = out.parent / "single.csv"
    write_table_csv(sched.assignment, single)  # as solve writes assignment.csv
    engine = ["engine_start_s", "engine_end_s"]
    parts = _parts(out, res.files)
    assert parts[engine].isna().all().all() and sched.assignment[engine].notna().any().any()
    pd.testing.assert_frame_equal(parts.drop(columns=engine), pd.read_csv(single).drop(columns=engine))


# --- partitions ------------------------------------------------------------------------------


def test_csv_partitions_are_the_file_in_order(batch):
    wl, _ = batch
    specs = split_workload(wl, 3, align=7)
    assert [s.n_rows % 7 for s in specs[:-1]] == [0, 0] and sum(s.n_rows for s in specs) == 5000
    got = pd.concat([read_partition(s) for s in specs], ignore_index=True)
    pd.testing.assert_frame_equal(got, read_workload(wl))


def test_parquet_partitions_are_the_file_in_order(batch, tmp_path):
    wl, _ = batch
    whole = read_workload(wl)
    pq = tmp_path / "w.parquet"
    pd.read_csv(wl).to_parquet(pq, row_group_size=700)
    specs = split_workload(pq, 4, align=512)
    assert len(specs) == 4 and specs[1].first_row == 1536
    got = pd.concat([read_partition(s) for s in specs], ignore_index=True)
    pd.testing.assert_frame_equal(got, whole, check_dtype=False)


def test_a_bad_row_in_a_later_partition_names_the_file_and_its_physical_line(tmp_path):
    lines = ["query_id,input_tokens,output_tokens", *[f"q{i},100,10" for i in range(40)]]
    lines.insert(30, "")  # a blank line: skipped, but counted in the physical lines
    lines[35] = "q33,100,-3"  # physical line 36
    p = tmp_path / "w.csv"
    p.write_text("\n".join(lines) + "\n")
    specs = split_workload(p, 2, align=8)
    assert specs[1].first_line > 2
    with pytest.raises(DataError, match=rf"^{re.escape(str(p))}: line 36, column output_tokens"):
        read_partition(specs[-1])


def test_arrival_times_are_refused(tmp_path):
    p = tmp_path / "w.csv"
    p.write_text("query_id,input_tokens,output_tokens,arrival\nq0,10,10,0\n")
    with pytest.raises(DataError, match="arrival.*release_s"):
        split_workload(p, 2)


def test_a_query_id_in_two_partitions_is_bad_input(tmp_path, small_blocks):
    rows = [f"q{i},100,10" for i in range(1200)]
    rows[1100] = "q7,100,10"
    p = tmp_path / "w.csv"
    p.write_text("query_id,input_tokens,output_tokens\n" + "\n".join(rows) + "\n")
    with pytest.raises(DataError, match=r"query id 'q7' is given twice \(data rows 7 and 1100"):
        plan_distributed(p, ROOT / "examples" / "fleet.toml", MODELS, tmp_path / "out", partitions=2, executor="local")


# --- the plan --------------------------------------------------------------------------------


def test_local_partitions_give_the_single_process_plan(batch, tmp_path, small_blocks):
    wl, fleet = batch
    sched = _single(wl, fleet, min_mean_accuracy=0.55)
    out = tmp_path / "out"
    res = plan_distributed(wl, fleet, MODELS, out, partitions=4, executor="local", min_mean_accuracy=0.55)
    assert res.partitions == 4 and len(res.files) == 4
    assert "solved by" in res.message and "5000 queries" not in res.message  # fixed and solved, not whole
    _same_as_single(res, sched, out)
    assert res.totals["total_energy_j"] == pytest.approx(sched.summary().total_energy_j, rel=1e-12)


def test_a_parquet_workload_gives_the_plan_of_its_csv(batch, tmp_path, small_blocks):
    wl, fleet = batch
    pq = tmp_path / "w.parquet"
    pd.read_csv(wl).to_parquet(pq, row_group_size=1000)
    sched = _single(wl, fleet)
    res = plan_distributed(pq, fleet, MODELS, tmp_path / "out", partitions=3, executor="local")
    _same_as_single(res, sched, tmp_path / "out")


def test_idle_energy_counts_each_instance_once_across_partitions(tmp_path, small_blocks, monkeypatch):
    """2,500 queries in 3 partitions, idle counted: the instances on are shared by the partitions,
    and their idle energy is the single plan's. (The single process then also searches whole
    instances for a tighter bound and plan, which the distributed path does not: that search is
    left out of the plan compared with.)"""
    monkeypatch.setattr(decompose, "instance_search", lambda problem, D, dual, *a, **k: dual.bound)
    wl = tmp_path / "w.csv"
    example_make_workload()(2500, seed=5, deadline_fraction=0.0).to_csv(wl, index=False)
    fleet = scaled_example_fleet(tmp_path, 3)
    sched = _single(wl, fleet, idle=True)
    out = tmp_path / "out"
    res = plan_distributed(wl, fleet, MODELS, out, partitions=3, executor="local", idle=True)
    assert len(res.files) == 3
    _same_as_single(res, sched, out)
    s = sched.summary()
    assert res.totals["idle_energy_j"] == pytest.approx(s.idle_energy_j, rel=1e-12) and s.idle_energy_j > 0
    assert res.totals["total_energy_j"] == pytest.approx(s.total_energy_j, rel=1e-12)


def test_ray_workers_give_the_single_process_plan(batch, tmp_path, small_blocks, ray_local):
    wl, fleet = batch
    sched = _single(wl, fleet, min_mean_accuracy=0.55)
    out = tmp_path / "out"
    res = plan_distributed(wl, fleet, MODELS, out, partitions=3, executor="ray", min_mean_accuracy=0.55)
    _same_as_single(res, sched, out)
    assert len(res.worker_peak_rss_mb) == 3
    # bad input in a worker's partition: one line naming the file and line, as in one process
    bad = tmp_path / "bad.csv"
    bad.write_text("query_id,input_tokens,output_tokens\n" + "\n".join(f"q{i},100,10" for i in range(1100))
                   + "\nq1100,100,x\n")
    with pytest.raises(DataError, match=rf"^{re.escape(str(bad))}: line 1102, column output_tokens[^\n]*$"):
        plan_distributed(bad, fleet, MODELS, tmp_path / "o2", partitions=2, executor="ray")


def test_the_check_across_partitions_finds_an_overlap_between_them(batch, tmp_path, small_blocks):
    wl, fleet = batch
    res = plan_distributed(wl, fleet, MODELS, tmp_path / "out", partitions=2, executor="local")
    assert res.status.has_plan
    fl = read_fleet(fleet)
    code = {(d.llm, d.pool): i for i, d in enumerate(fl.deployments)}
    tables = [pd.read_csv(tmp_path / "out" / f) for f in res.files]

    def parts(moved: bool) -> list[dict]:
        out = [{"violations": [], "stated": {"query_energy_j": 0.0, "extrapolated_queries": 0, "extrapolated_energy_j": 0.0},
                "code": np.array([code[(x, y)] for x, y in zip(a["llm"], a["device"])]),
                "instance": a["instance"].to_numpy(), "lane": a["lane"].to_numpy(), "batch_size": a["batch_size"].to_numpy(),
                "start_s": a["start_s"].to_numpy(), "end_s": a["end_s"].to_numpy(), "weight_sum": 1.0,
                "weighted_accuracy": 0.6} for a in tables]
        if moved:  # the second partition's first query onto the lane and time of the first partition's first
            for k in ("code", "instance", "lane", "batch_size", "start_s", "end_s"):
                out[1][k] = out[1][k].copy()
                out[1][k][0] = out[0][k][0]
        return out

    meta = {"deployments": pd.DataFrame({"idle_power_w": np.zeros(40)})}
    on = np.zeros(0, dtype=np.int64)
    inst = np.concatenate([a["instance"].to_numpy() for a in tables])
    assert _check_across(parts(False), fl, meta, on, inst, idle=False, min_mean_accuracy=0.6)[0] == []
    found = _check_across(parts(True), fl, meta, on, inst, idle=False, min_mean_accuracy=0.61)[0]
    assert any("overlap" in v for v in found) and any("mean accuracy" in v for v in found)


# --- the command line ------------------------------------------------------------------------


def test_solve_distributed_on_the_command_line(batch, tmp_path, small_blocks):
    wl, fleet = batch
    out = tmp_path / "plan"
    r = CliRunner().invoke(main, ["solve", str(wl), "--fleet", str(fleet), "--models", str(MODELS),
                                  "--distributed", "local", "--partitions", "2", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("status: optimal  solver: decompose, distributed over 2 partitions")
    assert sorted(p.name for p in out.iterdir()) == ["assignment-part-00000.csv", "assignment-part-00001.csv",
                                                     "summary.json"]


@pytest.mark.parametrize("args, message", [
    (["--partitions", "2"], "--partitions: only with --distributed ray|local"),
    (["--distributed", "local", "--address", "ray://h:10001"], "--address: only with --distributed ray"),
    (["--distributed", "local", "--objective", "tradeoff"], "--distributed: --objective tradeoff is not supported"),
    (["--distributed", "local", "--report"], "--distributed: --report is not supported"),
])
def test_solve_distributed_refuses_in_one_line(batch, tmp_path, args, message):
    wl, fleet = batch
    r = CliRunner().invoke(main, ["solve", str(wl), "--fleet", str(fleet), "--models", str(MODELS), *args,
                                  "-o", str(tmp_path / "o")])
    assert r.exit_code == 2 and r.stderr.startswith(f"error: {message}") and r.stderr.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_ray_missing_is_one_line_exit_2(batch, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    wl, fleet = batch
    r = CliRunner().invoke(main, ["solve", str(wl), "--fleet", str(fleet), "--models", str(MODELS),
                                  "--distributed", "ray", "-o", str(tmp_path / "o")])
    assert r.exit_code == 2
    assert r.stderr == "error: --distributed ray: Ray is not installed (pip install energyopt[ray])\n"


def test_an_infeasible_batch_exits_1_without_parts(tmp_path, small_blocks):
    p = tmp_path / "w.csv"
    p.write_text("query_id,input_tokens,output_tokens,min_accuracy\n" + "\n".join(
        f"q{i},100,10,{0.99 if i == 3 else 0}" for i in range(20)) + "\n")
    r = CliRunner().invoke(main, ["solve", str(p), "--models", str(MODELS), "--distributed", "local",
                                  "-o", str(tmp_path / "o")])
    assert r.exit_code == 1, r.output
    assert "q3" in r.stdout and sorted(x.name for x in (tmp_path / "o").iterdir()) == ["summary.json"]
    assert Status.INFEASIBLE.value in (tmp_path / "o" / "summary.json").read_text()
