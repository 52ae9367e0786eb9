"""Measurement harness logic, without a GPU: design, meters, run log, the sweep loop."""

from __future__ import annotations

import itertools

import pytest

from energyopt.characterize.csvlog import RunLog
from energyopt.characterize.design import (DesignPoint, coverage_order, default_design, fit_context,
                                           holdout_design, parse_points)
from energyopt.characterize.host import gpu_label
from energyopt.characterize.meters import EstimateMeter, RaplMeter, above_idle_j, counter_delta
from energyopt.characterize.sweep import SweepConfig, run_sweep
from energyopt.errors import DataError
from energyopt.io import read_characterization


def test_design_covers_range_and_thins():
    d = default_design()
    ins = {p.input_tokens for p in d}
    outs = {p.output_tokens for p in d}
    assert min(ins) == 8 and max(ins) == 4096 and min(outs) == 8 and max(outs) == 1024
    small = default_design(12)
    assert len(small) == 12 and DesignPoint(4096, 1024) in small and DesignPoint(8, 8) in small
    with pytest.raises(DataError, match="at least 6"):
        default_design(3)


def test_holdout_off_grid_and_context_clipping():
    d = default_design()
    h = holdout_design(10, exclude=d)
    assert len(h) == 10 and not {(p.input_tokens, p.output_tokens) for p in h} & {(p.input_tokens, p.output_tokens) for p in d}
    c = fit_context(d, 2048)
    assert all(p.input_tokens + p.output_tokens <= 2048 for p in c)
    assert DesignPoint(1024, 1024) in c


def test_coverage_order_spreads_first_points():
    order = coverage_order(default_design())
    first = order[:4]
    assert {(p.input_tokens, p.output_tokens) for p in first} >= {(8, 8), (4096, 1024)}


def test_parse_points():
    assert parse_points("512x128, 8X8") == [DesignPoint(8, 8), DesignPoint(512, 128)]
    with pytest.raises(DataError, match="is not INPUTxOUTPUT"):
        parse_points("512-128")


def test_counter_arithmetic():
    assert counter_delta(10, 25) == 15
    assert counter_delta(90, 5, wrap=100) == 15
    with pytest.raises(ValueError):
        counter_delta(90, 5)
    assert above_idle_j(500.0, 100.0, 2.0) == 300.0


def test_rapl_meter_handles_wraparound(tmp_path):
    dom = tmp_path / "intel-rapl:0"
    dom.mkdir()
    (dom / "name").write_text("package-0\n")
    (dom / "max_energy_range_uj").write_text("1000000\n")
    (dom / "energy_uj").write_text("900000\n")
    m = RaplMeter(tmp_path)
    (dom / "energy_uj").write_text("100000\n")  # wrapped: +200000 uJ
    assert m.read_j() == pytest.approx(0.2)


def test_gpu_label():
    assert gpu_label("NVIDIA H100 80GB HBM3") == "h100"
    assert gpu_label("NVIDIA H200") == "h200"
    assert gpu_label("NVIDIA A100-SXM4-80GB") == "a100"


class FakeRunner:
    decode_loop = "eager"

    def __init__(self, clock):
        self.clock = clock
        self.runs = []

    def prepare(self, i, o):
        pass

    def run(self, i, o):
        self.runs.append((i, o))
        self.clock.t += 0.001 * i / 100 + 0.01 * o


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t

    def sleep(self, s):
        self.t += s


def test_sweep_writes_rows_resumes_and_reads_back(tmp_path):
    clock = Clock()
    meter = EstimateMeter(100.0, clock=clock)
    pts = [DesignPoint(8, 8), DesignPoint(512, 128), DesignPoint(1024, 256, "holdout")]
    log = RunLog(tmp_path / "c.csv")
    cfg = SweepConfig(llm="m", device="cpu", points=pts, repeats=2, min_window_s=0.5, idle_seconds=1.0,
                      fixed_idle_power_w={"cpu": 10.0})
    r = run_sweep(FakeRunner(clock), {"cpu": meter}, log, cfg, {"dtype": "fp32"}, progress=lambda s: None, clock=clock, sleep=clock.sleep)
    assert r.measured == 6 and r.remaining == 0
    df = read_characterization(tmp_path / "c.csv")
    assert len(df) == 6 and set(df["split"]) == {"design", "holdout"}
    short = df[df.output_tokens == 8].iloc[0]
    assert int(short["inner_runs"]) > 1  # a short run is repeated inside one window
    assert short["energy_j"] == pytest.approx(100.0 * short["runtime_s"])
    assert short["above_idle_energy_j"] == pytest.approx(short["energy_j"] - 10.0 * short["runtime_s"])
    runner = FakeRunner(clock)
    r2 = run_sweep(runner, {"cpu": meter}, RunLog(tmp_path / "c.csv"), cfg, {"dtype": "fp32"}, progress=lambda s: None,
                   clock=clock, sleep=clock.sleep)
    assert r2.measured == 0 and r2.skipped == 6 and runner.runs == []


def test_time_budget_stops_and_torn_line_is_dropped(tmp_path):
    clock = Clock()
    meter = EstimateMeter(50.0, clock=clock)
    pts = [DesignPoint(8, o) for o in (100, 200, 300, 400)]
    cfg = SweepConfig(llm="m", device="cpu", points=pts, repeats=1, min_window_s=0.0, idle_seconds=0.5,
                      time_budget_s=3.5, fixed_idle_power_w={"cpu": 0.0})
    path = tmp_path / "c.csv"
    r = run_sweep(FakeRunner(clock), {"cpu": meter}, RunLog(path), cfg, {}, progress=lambda s: None, clock=clock, sleep=clock.sleep)
    assert 0 < r.measured < 4 and r.remaining == 4 - r.measured
    with path.open("a") as fh:
        fh.write("m,cpu,8,400,1,0.1")  # a writer killed mid-row
    log = RunLog(path)
    assert len(log.done()) == r.measured
    assert path.read_text().endswith("\n")


def test_runner_static_cache_matches_dynamic_cache():
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers import DynamicCache

    from energyopt.characterize.catalog import get_spec
    from energyopt.characterize.runner import HFRunner

    r = HFRunner(get_spec("tiny-test"), device="cpu", dtype="fp32")
    g = r._capture(r.bucket(40 + 12), use_graph=False)
    r._graphs[r.bucket(52)] = g
    ids = torch.randint(100, 255, (1, 40))
    with torch.inference_mode():
        c = DynamicCache(config=r.model.config)
        out = r.model(input_ids=ids, past_key_values=c, use_cache=True)
        t = out.logits[:, -1:].argmax(-1)
        ref = [t.item()]
        for _ in range(11):
            t = r.model(input_ids=t, past_key_values=c, use_cache=True).logits[:, -1:].argmax(-1)
            ref.append(t.item())
    seen = []
    step = g["step"]
    g["step"] = lambda: (seen.append(g["tok"].item()), step())
    r._run_graph(ids, 40, 12)
    seen.append(g["tok"].item())
    assert seen == ref
    r.run(20, 5)  # the eager path on CPU


def test_catalog_has_required_llms():
    from energyopt.characterize.catalog import CATALOG, get_spec

    for name in ("llama-2-7b", "llama-2-13b", "llama-3-8b", "mistral-7b", "mixtral-8x7b", "falcon-7b", "tinyllama-1.1b", "qwen2.5-0.5b"):
        assert name in CATALOG
    assert get_spec("falcon-7b").context_tokens == 2048
    with pytest.raises(DataError, match="unknown LLM 'gpt-9'"):
        get_spec("gpt-9")


def test_shipped_data_reads_with_provenance():
    from conftest import ROOT

    for f in ("h100.csv", "cpu-8c.csv"):
        df = read_characterization(ROOT / "data" / f)
        assert df["measured_at"].notna().all() and df["torch_version"].notna().all()
    assert set(itertools.chain(read_characterization(ROOT / "data" / "h100.csv")["gpu_name"])) == {"NVIDIA H100 80GB HBM3"}
