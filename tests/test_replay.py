"""Replay of a plan, without a GPU: lanes from a plan, the counter's interpolation, the energy
attribution, the predicted-vs-measured tables, the engine on a tiny model and the Triton kernel in
Triton's interpreter (both where installed), and the command's errors."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from energyopt.accounting import padding_energy_j
from energyopt.characterize.engine import EngineLog, capacity_tokens, run_lanes
from energyopt.cli import main
from energyopt.errors import DataError
from energyopt.replay.compare import instance_table, query_table, relative_error, totals
from energyopt.replay.lanes import instance_runs
from energyopt.replay.measure import (
    CounterSampler,
    attribute_queries,
    counter_knots,
    decode_contexts,
    energy_at,
    step_cost_split,
)

ROOT = Path(__file__).resolve().parents[1]


def _assignment() -> tuple[pd.DataFrame, pd.DataFrame]:
    asg = pd.DataFrame({
        "query_id": ["a", "b", "c", "d", "e"], "llm": "m", "device": ["g", "g", "g", "g", "h"],
        "instance": [0, 0, 0, 0, 0], "lane": [0, 1, 0, 1, 0], "batch_size": [2, 2, 2, 2, 1],
        "start_s": [0.0, 0.0, 1.0, 2.0, 0.0], "end_s": [1.0, 2.0, 2.0, 3.0, 1.0], "runtime_s": 1.0,
        "energy_j": [1.0, 2.0, 3.0, 4.0, 5.0], "accuracy": 0.5, "deadline_s": [np.nan, 1.0, np.nan, 100.0, np.nan]})
    tok = pd.DataFrame({"query_id": list("abcde"), "input_tokens": [10, 20, 5, 7, 9], "output_tokens": [30, 3, 1, 12, 4]})
    return asg, tok


def test_instance_runs_orders_lanes_by_start_and_checks_inputs():
    asg, tok = _assignment()
    runs = instance_runs(asg.sample(frac=1.0, random_state=1), tok)
    assert [(r.device, r.batch_size) for r in runs] == [("g", 2), ("h", 1)]  # largest work first
    assert runs[0].lanes == [[(10, 30), (5, 1)], [(20, 3), (7, 12)]]
    assert list(runs[0].rows["query_id"]) == ["a", "c", "b", "d"]
    assert capacity_tokens(runs[0].lanes) == 64  # 10 + 30 = 40 tokens, to a whole block
    assert [r.device for r in instance_runs(asg, tok, device="h")] == ["h"]
    with pytest.raises(DataError, match="no query on 'x'"):
        instance_runs(asg, tok, device="x")
    with pytest.raises(DataError, match="'e' of the plan is not in the workload"):
        instance_runs(asg, tok[tok.query_id != "e"])
    bad = asg.copy()
    bad.loc[0, "lane"] = 2
    with pytest.raises(DataError, match="lane 2 outside"):
        instance_runs(bad, tok)


def test_counter_knots_take_the_first_read_of_each_value_and_interpolate():
    t = np.array([0.0, 0.01, 0.02, 0.10, 0.11, 0.20, 0.25])
    e = np.array([5.0, 5.0, 5.0, 15.0, 15.0, 25.0, 25.0])
    kt, ke = counter_knots(t, e)
    assert kt.tolist() == [0.0, 0.10, 0.20, 0.25] and ke.tolist() == [5.0, 15.0, 25.0, 25.0]
    assert energy_at((kt, ke), 0.05) == pytest.approx(10.0)
    assert energy_at((kt, ke), [0.15, 1.0]).tolist() == pytest.approx([20.0, 25.0])
    with pytest.raises(ValueError, match="go back"):
        counter_knots(np.array([0.0, 1.0]), np.array([2.0, 1.0]))


def _log(steps: list[tuple[bool, int, float]], prefill, first, last, tin, slots: int) -> EngineLog:
    return EngineLog(0.0, np.array([s[2] for s in steps]), np.array([s[0] for s in steps]),
                     np.array([s[1] for s in steps]), np.array(prefill), np.array(first), np.array(last),
                     np.zeros(len(prefill), dtype=np.int64), np.array(tin), slots)


def test_attribution_adds_up_and_follows_contexts():
    # two slots: q0 (prompt 10) prefill, q1 (prompt 100) prefill, 3 decode steps of both, then
    # q1 alone for 2 steps (q0's slot padded); constant power 100 W and step time = 1 ms + 1 µs/token
    fixed, per_token = 1e-3, 1e-6
    steps, t = [], 0.0
    t += 0.002
    steps.append((True, 1, t))
    t += 0.003
    steps.append((True, 1, t))
    ctx = []
    for j in range(5):
        s = (11 + j if j < 3 else 0) + 101 + j
        ctx.append(s)
        t += fixed + per_token * s
        steps.append((False, 2 if j < 3 else 1, t))
    log = _log(steps, [0, 1], [2, 2], [4, 6], [10, 100], slots=2)
    total, offset = decode_contexts(log)
    assert total.tolist() == ctx and offset.tolist() == [11, 101]
    f, c = step_cost_split(np.diff([steps[1][2]] + [s[2] for s in steps[2:]]), total)
    assert f == pytest.approx(fixed, rel=1e-6) and c == pytest.approx(per_token, rel=1e-6)
    knots = (np.array([0.0, 1.0]), np.array([0.0, 100.0]))
    m = attribute_queries(log, knots)
    assert m.energy_j == pytest.approx(100.0 * t)
    assert m.queries["measured_energy_j"].sum() + m.padding_energy_j == pytest.approx(m.energy_j)
    # q1 (longer context) is charged more of the shared steps than q0; the padding is the fixed
    # half of the two steps q0's slot sat empty
    e0, e1 = m.queries["measured_energy_j"]
    assert e1 > e0 > 100.0 * 0.002
    assert m.padding_energy_j == pytest.approx(100.0 * fixed / 2 * 2)
    assert m.queries["measured_end_s"].tolist() == pytest.approx([steps[4][2], t])
    assert m.decode_steps == 5 and m.mean_active == pytest.approx(8 / 5)
    assert m.steps["energy_j"].sum() == pytest.approx(m.energy_j)


def test_step_cost_split_degenerate_cases():
    assert step_cost_split(np.array([0.01, 0.01]), np.array([5.0, 9.0])) == (0.01, 0.0)  # too few steps
    f, c = step_cost_split(np.array([0.02, 0.01, 0.0]), np.array([1.0, 2.0, 3.0]))  # time falls with context
    assert c == 0.0 and f == pytest.approx(0.01)


def test_tables_and_totals():
    asg, tok = _assignment()
    run = instance_runs(asg, tok, device="g")[0]
    log = run_lanes(run.lanes, 2, lambda s, n: None, lambda: None, lambda s: None, lambda: None)
    log.step_end_s = 0.01 * np.arange(1, log.step_is_prefill.size + 1)
    m = attribute_queries(log, (np.array([0.0, 10.0]), np.array([0.0, 1000.0])))
    qt = query_table(run, m)
    assert list(qt["query_id"]) == ["a", "c", "b", "d"]
    assert qt["deadline_met_measured"].tolist() == [pd.NA, pd.NA, True, True]  # empty where no deadline
    it = instance_table(run, m, setup_s=1.5)
    busy = float(run.rows["runtime_s"].sum())
    assert it["predicted_padding_energy_j"] == pytest.approx(padding_energy_j(10 / busy, 2, 3.0, busy))
    assert it["predicted_energy_j"] == pytest.approx(10.0 + it["predicted_padding_energy_j"])
    assert it["measured_energy_j"] == pytest.approx(m.energy_j)
    tot = totals(qt, pd.DataFrame([it]))
    assert tot["queries"] == 4 and tot["deadlines_met_measured"] == 2 and tot["queries_with_deadline"] == 2
    assert tot["energy_error"] == pytest.approx((m.energy_j - it["predicted_energy_j"]) / m.energy_j)
    assert relative_error(0.0, 1.0).tolist() != relative_error(0.0, 1.0).tolist()  # NaN where nothing was measured
    assert np.isnan(tot["simulated_makespan_s"]) and np.isnan(tot["simulated_energy_j"])  # not simulated: NaN, not 0
    from energyopt.replay.simulate import simulate_instance

    sim = simulate_instance(run, np.full(4, 0.01), np.full(4, 0.01))
    qs = query_table(run, m, sim)
    assert qs["simulated_end_s"].tolist() == pytest.approx(sim.end_s.tolist())
    assert qs["simulated_runtime_error"].tolist() == pytest.approx(
        relative_error(qs["measured_runtime_s"], sim.end_s - sim.start_s).tolist())
    its = instance_table(run, m, setup_s=1.5, sim=sim)
    assert its["simulated_makespan_s"] == pytest.approx(sim.makespan_s)
    assert its["simulated_energy_j"] == pytest.approx(10.0 + sim.padding_energy_j(10 / busy))
    tots = totals(qs, pd.DataFrame([its]))
    assert tots["simulated_makespan_error"] == pytest.approx((m.makespan_s - sim.makespan_s) / m.makespan_s)
    # a plan that states engine times predicts them: its start and end, the makespan and the padding
    from dataclasses import replace

    eng = replace(run, rows=run.rows.assign(engine_start_s=sim.start_s, engine_end_s=sim.end_s))
    qe = query_table(eng, m, sim)
    assert qe["predicted_end_s"].tolist() == pytest.approx(sim.end_s.tolist())
    assert qe["predicted_runtime_s"].tolist() == pytest.approx((sim.end_s - sim.start_s).tolist())
    ie = instance_table(eng, m, setup_s=1.5, sim=sim)
    assert ie["predicted_makespan_s"] == pytest.approx(sim.makespan_s)
    assert ie["predicted_energy_j"] == pytest.approx(its["simulated_energy_j"])
    half = replace(run, rows=run.rows.assign(engine_start_s=[0.0, np.nan, 0.0, 0.0], engine_end_s=1.0))
    assert query_table(half, m)["predicted_end_s"].tolist() == run.rows["end_s"].tolist()  # not every row: lane times


def test_padding_energy_is_the_empty_lane_time():
    assert padding_energy_j(10.0, 4, 3.0, 7.0) == pytest.approx(50.0)
    assert padding_energy_j(10.0, 1, 3.0, 3.0) == 0.0
    assert padding_energy_j(10.0, 2, 1.0, 5.0) == 0.0  # never negative


def test_counter_sampler_reads_on_a_thread_and_reraises():
    clock = {"t": 0.0}

    def read() -> float:
        clock["t"] += 0.001
        return clock["t"] * 100.0

    with CounterSampler(read, interval_s=0.001, margin_s=0.01) as s:
        time.sleep(0.01)
    kt, ke = s.knots()
    assert kt.size >= 3 and np.all(np.diff(ke) > 0)

    def broken() -> float:
        raise OSError("counter gone")

    with pytest.raises(RuntimeError, match="counter gone"), CounterSampler(broken, 0.001, 0.01):
        time.sleep(0.01)


def _tiny_runner():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from energyopt.characterize.catalog import ArchSpec
    from energyopt.characterize.runner import HFRunner

    spec = ArchSpec("tiny", "llama", dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                          num_attention_heads=8, num_key_value_heads=2, vocab_size=500,
                                          max_position_embeddings=512), "test", 0.001)
    return HFRunner(spec, device="cpu", dtype="fp32", cuda_graphs=False)


def test_engine_slots_match_transformers_own_decoding():
    """Three queries of different prompt lengths in three slots produce, token for token, what
    transformers' own cache and attention produce for each alone."""
    torch = pytest.importorskip("torch")
    from transformers import DynamicCache

    from energyopt.characterize.engine import SlotEngine

    r = _tiny_runner()
    r.gen.manual_seed(0)
    prompt = torch.randint(100, 499, (1, 128), generator=r.gen)
    lens, n_out = [10, 37, 5], 12

    def alone(n: int) -> list[int]:
        cache, toks = DynamicCache(config=r.model.config), []
        with torch.inference_mode():
            out = r.model(input_ids=prompt[:, :n], past_key_values=cache, use_cache=True)
            for _ in range(n_out):
                t = out.logits[:, -1:].argmax(-1)
                toks.append(int(t))
                out = r.model(input_ids=t, past_key_values=cache, use_cache=True)
        return toks

    want = [alone(n) for n in lens]
    r.gen.manual_seed(0)
    eng = SlotEngine(r, slots=3, capacity=128)
    assert torch.equal(eng.prompt, prompt)
    got: list[list[int]] = [[] for _ in lens]
    for s, n in enumerate(lens):
        eng.prefill(s, n)
        got[s].append(int(eng.tok[s]))
    for _ in range(n_out - 1):
        eng.decode()
        for s in range(3):
            got[s].append(int(eng.tok[s]))
    assert got == want


def test_run_lanes_follows_the_lanes():
    calls: list[tuple] = []
    log = run_lanes([[(10, 5), (20, 1), (7, 3)], [(30, 8)], []], 3, lambda s, n: calls.append(("prefill", s, n)),
                    lambda: calls.append(("decode",)), lambda s: calls.append(("release", s)), lambda: None)
    assert calls[:4] == [("prefill", 0, 10), ("prefill", 1, 30), ("release", 2), ("decode",)]
    assert ("release", 0) in calls and ("release", 1) in calls
    assert log.prefill_step.tolist() == [0, 6, 7, 1]
    assert log.first_step.tolist() == [2, -1, 8, 2] and log.last_step.tolist() == [5, -1, 9, 10]
    assert log.step_active[~log.step_is_prefill].tolist() == [2, 2, 2, 2, 2, 2, 1]


def test_engine_run_log_follows_the_lanes():
    pytest.importorskip("torch")
    from energyopt.characterize.engine import SlotEngine

    eng = SlotEngine(_tiny_runner(), slots=3, capacity=64)
    log = eng.run([[(10, 5), (20, 1), (7, 3)], [(30, 8)], []])
    # lane 0: prefill a, 4 decodes, prefill b (1 token: done), prefill c, 2 decodes; lane 1: 7 decodes
    assert log.prefill_step.tolist() == [0, 6, 7, 1]
    assert log.first_step.tolist() == [2, -1, 8, 2] and log.last_step.tolist() == [5, -1, 9, 10]
    assert log.step_active[~log.step_is_prefill].tolist() == [2, 2, 2, 2, 2, 2, 1]
    assert np.all(np.diff(log.step_end_s) >= 0)
    with pytest.raises(ValueError, match="4 lanes for 3 slots"):
        eng.run([[], [], [], []])
    # a refill after a decode step waits for the device (a serving engine reads the ended query's
    # token); prefills back to back and decode steps do not
    calls: list[str] = []
    sync, pre, dec = eng.synchronize, eng.prefill, eng.decode
    eng.synchronize = lambda: (calls.append("sync"), sync())[1]
    eng.prefill = lambda slot, n: (calls.append("prefill"), pre(slot, n))[1]
    eng.decode = lambda: (calls.append("decode"), dec())[1]
    eng.run([[(10, 3), (20, 1), (7, 2)], [(30, 2)]])
    # the run's start, a and d back to back, two steps (d ends, then a), the refill b: it waits for
    # the device before anything of its own (logged inside it) and c follows it at once; the run's end
    assert calls == ["sync", "prefill", "prefill", "decode", "decode", "prefill", "sync", "prefill", "decode", "sync"]


def test_replay_runs_end_to_end_on_a_cpu_with_a_clock_meter():
    pytest.importorskip("torch")
    from energyopt.characterize.catalog import ArchSpec
    from energyopt.characterize.runner import HFRunner
    from energyopt.replay.run import replay_runs

    asg, tok = _assignment()
    asg["llm"] = "tiny"
    spec = ArchSpec("tiny", "llama", dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                          num_attention_heads=8, num_key_value_heads=2, vocab_size=500,
                                          max_position_embeddings=512), "test", 0.001)
    t0 = time.perf_counter()
    lines: list[str] = []
    from energyopt.replay.simulate import simulate_instance

    def simulate(run):  # every prefill 1 ms, every step 2 ms
        return simulate_instance(run, np.full(len(run.rows), 0.001), np.full(len(run.rows), 0.002))

    t = replay_runs(instance_runs(asg, tok), lambda llm: HFRunner(spec, device="cpu", dtype="fp32", cuda_graphs=False),
                    lambda: 100.0 * (time.perf_counter() - t0), margin_s=0.02, progress=lines.append, simulate=simulate)
    assert len(t.queries) == 5 and len(t.instances) == 2 and len(lines) == 4
    assert "by the engine simulation" in lines[1] and t.totals["simulated_makespan_s"] > 0
    g = t.instances.set_index("device")
    # g: 4 prefills, and a's 29 decode steps span all of the instance's (b and d run beside them)
    assert g.loc["g", "simulated_makespan_s"] == pytest.approx(4 * 0.001 + 29 * 0.002)
    assert t.queries["simulated_end_s"].notna().all()
    for inst in t.instances.itertuples():
        assert inst.measured_energy_j == pytest.approx(100.0 * inst.measured_makespan_s, rel=0.05)
        q = t.queries[(t.queries.device == inst.device)]
        assert q["measured_energy_j"].sum() + inst.measured_padding_energy_j == pytest.approx(inst.measured_energy_j)
    assert set(t.steps["device"]) == {"g", "h"}


@pytest.mark.skipif(not (os.environ.get("ENERGYOPT_TEST_TRITON") or __import__("importlib").util.find_spec("triton")),
                    reason="triton not installed")
def test_triton_kernel_matches_the_reference_in_the_interpreter():
    pytest.importorskip("torch")
    code = """
import torch
from energyopt.characterize.attention import ragged_decode_reference, ragged_decode_triton
torch.manual_seed(0)
for b, heads, kvh, d, cap in [(3, 8, 2, 16, 200), (2, 14, 2, 64, 130), (4, 4, 4, 32, 64)]:
    q = torch.randn(b, heads, d); k = torch.randn(b, kvh, cap, d); v = torch.randn(b, kvh, cap, d)
    lengths = torch.tensor([0, cap, 1, 33][:b])
    ref = ragged_decode_reference(q, k, v, lengths, d ** -0.5)
    for splits in (1, 3, None):
        out = ragged_decode_triton(q, k, v, lengths, d ** -0.5, splits=splits)
        assert float((out - ref).abs().max()) < 1e-5, (b, heads, splits)
print("ok")
"""
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


def test_replay_command_refuses_bad_input_before_running(tmp_path):
    runner = CliRunner()
    r = runner.invoke(main, ["replay", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "summary.json: not found" in r.output
    plan = ROOT / "examples" / "replay" / "plan-batched"
    args = ["replay", str(plan), "--workload", str(ROOT / "examples/replay/workload.csv"),
            "--fleet", str(ROOT / "examples/replay/fleet-batched.toml"),
            "--models", str(ROOT / "examples/replay/models")]  # the models the plan was made from
    r = runner.invoke(main, args + ["--pool", "h100", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "--pool 'h100': the plan has no query there (it uses h200)" in r.output
    (tmp_path / "file").write_text("x")
    r = runner.invoke(main, args + ["--out", str(tmp_path / "file")])
    assert r.exit_code == 2 and "file" in r.output
    assert not (tmp_path / "o").exists()


def test_engine_runner_measures_identical_queries_through_the_engine(tmp_path):
    """characterize --decode-attention ragged: the sweep's runner interface on the replay's engine."""
    pytest.importorskip("torch")
    from energyopt.characterize.csvlog import RunLog
    from energyopt.characterize.design import DesignPoint
    from energyopt.characterize.engine import EngineRunner
    from energyopt.characterize.meters import EstimateMeter
    from energyopt.characterize.sweep import SweepConfig, run_sweep
    from energyopt.io import read_characterization

    runner = EngineRunner(_tiny_runner())
    assert runner.decode_attention == "ragged" and runner.decode_loop == "eager" and runner.kv.layers == 2
    runner.prepare(20, 5, 3)
    engine = runner._engine
    calls = {"prefill": 0, "decode": 0}

    def counting(name, act):
        def counted(*a):
            calls[name] += 1
            return act(*a)
        return counted

    for name in calls:  # the measured run holds the batch's own work only: no warm-up prefill or steps
        setattr(engine, name, counting(name, getattr(engine, name)))
    runner.run(20, 5, 3)
    assert calls == {"prefill": 3, "decode": 4}
    assert runner._key == (3, 64)
    log = RunLog(tmp_path / "rows.csv")
    cfg = SweepConfig(llm="tiny", device="cpu", points=[DesignPoint(16, 4, "design", 1), DesignPoint(16, 4, "design", 4)],
                      repeats=1, min_window_s=0.0, warmup_runs=1, idle_seconds=0.0, fixed_idle_power_w={"cpu": 0.0})
    res = run_sweep(runner, {"cpu": EstimateMeter(10.0)}, log, cfg, {"dtype": "fp32"}, progress=lambda s: None)
    rows = read_characterization(tmp_path / "rows.csv")
    assert res.measured == 2 and set(rows["decode_attention"]) == {"ragged"} and set(rows["batch_size"]) == {1, 4}
    assert log.decode_attentions() == {"ragged"}


def test_characterize_refuses_a_file_of_another_engine(tmp_path):
    from energyopt.characterize.orchestrate import characterize

    out = tmp_path / "rows.csv"
    src = (ROOT / "data" / "h200-batch.csv").read_text().splitlines()
    out.write_text("\n".join(src[:3]) + "\n")
    with pytest.raises(DataError, match="measured with --decode-attention grouped.*new file"):
        characterize(llms=["tinyllama-1.1b"], model_dir=None, device="cpu", gpu_index=0, points="8x8", holdout=0,
                     repeats=1, min_window_s=0.1, max_input_tokens=64, max_output_tokens=64, dtype=None,
                     device_name=None, threads=1, cpu_power_w=10.0, cpu_idle_w=0.0, time_budget_s=None,
                     idle_seconds=1.0, out_csv=out, progress=lambda s: None, decode_attention="ragged")


def _sim_run(lanes_rows):
    """An InstanceRun of b = len(lanes_rows) lanes of (query_id, output_tokens)."""
    from energyopt.replay.lanes import InstanceRun

    rows = [{"query_id": q, "lane": lane, "input_tokens": 10, "output_tokens": o, "start_s": 0.0}
            for lane, qs in enumerate(lanes_rows) for q, o in qs]
    return InstanceRun("m", "g", 0, len(lanes_rows), pd.DataFrame(rows))


def test_engine_simulation_follows_the_engine_by_hand():
    from energyopt.replay.simulate import simulate_instance

    # lane 0: a (3 tokens: prefill 1 s, steps of 0.1 s), then c (1 token: prefill 0.5 s);
    # lane 1: b (2 tokens: prefill 2 s, steps of 0.3 s). a and b prefill (0-1, 1-3), one step of
    # both (mean 0.2 s: b ends at 3.2), one of a alone (a ends at 3.3, one slot empty for 0.1 s),
    # then c's prefill, which is its only token (3.3-3.8)
    run = _sim_run([[("a", 3), ("c", 1)], [("b", 2)]])
    sim = simulate_instance(run, np.array([1.0, 0.5, 2.0]), np.array([0.1, 0.0, 0.3]))
    assert sim.start_s.tolist() == pytest.approx([0.0, 3.3, 1.0])
    assert sim.end_s.tolist() == pytest.approx([3.3, 3.8, 3.2])
    assert sim.makespan_s == pytest.approx(3.8) and sim.decode_steps == 2
    assert sim.empty_slot_s == pytest.approx(0.1) and sim.padding_energy_j(50.0) == pytest.approx(5.0)


def test_engine_simulation_charges_every_slot_for_every_prefill():
    # b = 4 lanes: one long query, three lanes of short ones. The lane model gives the long query
    # its own runtime at b = 4 (4 prefills of its length); the engine stalls it for every prefill
    # of the others, so the simulated makespan is the long query's steps plus all prefills
    from energyopt.replay.simulate import simulate_instance

    run = _sim_run([[("long", 101)]] + [[(f"s{k}{j}", 11) for j in range(5)] for k in range(3)])
    prefill = np.full(16, 0.2)
    step = np.full(16, 0.01)
    sim = simulate_instance(run, prefill, step)
    assert sim.makespan_s == pytest.approx(16 * 0.2 + 100 * 0.01)
    lane_model_long_s = 4 * 0.2 + 100 * 0.01
    assert sim.end_s[0] > 2 * lane_model_long_s
