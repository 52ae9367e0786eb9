"""Measurement harness logic, without a GPU: design, meters, run log, the sweep loop."""

from __future__ import annotations

import itertools

import pytest

from energyopt.characterize.csvlog import RunLog
from energyopt.characterize.design import DesignPoint, coverage_order, default_design, fit_context, holdout_design, parse_points
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
    """Runtime grows with the tokens and, more slowly, with the batch; ``no_room`` batches fail as a GPU would."""

    decode_loop = "eager"
    decode_attention = "grouped"

    def __init__(self, clock, no_room=()):
        self.clock = clock
        self.runs = []
        self.no_room = set(no_room)

    def prepare(self, i, o, b=1):
        pass

    def run(self, i, o, b=1):
        from energyopt.characterize.runner import DeviceMemoryError

        if (i, o, b) in self.no_room:
            raise DeviceMemoryError("CUDA out of memory")
        self.runs.append((i, o) if b == 1 else (i, o, b))
        self.clock.t += 0.001 * i * b / 100 + 0.01 * o * (1 + b / 64)


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
    r = run_sweep(FakeRunner(clock), {"cpu": meter}, log, cfg, {"dtype": "fp32"}, progress=lambda s: None, clock=clock,
                  sleep=clock.sleep)
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
    r = run_sweep(FakeRunner(clock), {"cpu": meter}, RunLog(path), cfg, {}, progress=lambda s: None, clock=clock,
                  sleep=clock.sleep)
    assert 0 < r.measured < 4 and r.remaining == 4 - r.measured
    with path.open("a") as fh:
        fh.write("m,cpu,8,400,1,0.1")  # a writer killed mid-row
    log = RunLog(path)
    assert len(log.done()) == r.measured
    assert path.read_text().endswith("\n")


@pytest.mark.parametrize("batch_size,attention", [(1, "sdpa"), (1, "grouped"), (3, "grouped")])
def test_runner_static_cache_matches_dynamic_cache(batch_size, attention):
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers import DynamicCache

    from energyopt.characterize.catalog import get_spec
    from energyopt.characterize.runner import HFRunner

    ref_runner = HFRunner(get_spec("tiny-test"), device="cpu", dtype="fp32", decode_attention="sdpa")
    r = HFRunner(get_spec("tiny-test"), device="cpu", dtype="fp32", decode_attention=attention)
    assert r.decode_attention == attention
    key = (batch_size, r.bucket(40 + 12, batch_size))
    g = r._capture(key[1], use_graph=False, batch_size=batch_size)
    r._graphs[key] = g
    ids = torch.randint(100, 255, (batch_size, 40))
    with torch.inference_mode():  # transformers' own attention, dynamic cache, one forward per token
        c = DynamicCache(config=ref_runner.model.config)
        out = ref_runner.model(input_ids=ids, past_key_values=c, use_cache=True)
        t = out.logits[:, -1:].argmax(-1)
        ref = [t]
        for _ in range(11):
            t = ref_runner.model(input_ids=t, past_key_values=c, use_cache=True).logits[:, -1:].argmax(-1)
            ref.append(t)
    seen = []
    step = g["step"]
    g["step"] = lambda: (seen.append(g["tok"].clone()), step())
    r.PREFILL_CHUNK_TOKENS = 16 * batch_size  # a prefill in three chunks
    r._run_graph(ids, 40, 12)
    seen.append(g["tok"].clone())
    assert torch.equal(torch.cat(seen, 1), torch.cat(ref, 1))
    r.run(20, 5, batch_size)  # the eager path on CPU


def test_grouped_attention_equals_sdpa_with_copied_heads():
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from energyopt.characterize.runner import grouped_attention_forward

    class Module:
        num_key_value_groups = 3
        is_causal = True

    gen = torch.Generator().manual_seed(0)
    b, kv, group, d, kv_len = 2, 2, 3, 16, 12
    for q_len in (1, 5):
        q = torch.randn(b, kv * group, q_len, d, generator=gen)
        k = torch.randn(b, kv, kv_len, d, generator=gen)
        v = torch.randn(b, kv, kv_len, d, generator=gen)
        pos = torch.arange(7 - q_len + 1, 8)  # the queries sit at positions ..7; the cache runs on to 12 (masked)
        mask = (torch.arange(kv_len)[None, :] <= pos[:, None]).expand(b, 1, q_len, kv_len)
        additive = torch.zeros(mask.shape).masked_fill(~mask, float("-inf"))
        want, _ = sdpa_attention_forward(Module(), q, k, v, mask, scaling=0.25)
        for m in (mask, additive):
            got, _ = grouped_attention_forward(Module(), q, k, v, m, scaling=0.25)
            assert got.shape == (b, q_len, kv * group, d)
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    nomask, _ = grouped_attention_forward(Module(), q[:, :, :1], k, v, None)
    torch.testing.assert_close(nomask, sdpa_attention_forward(Module(), q[:, :, :1], k, v, None)[0])


def test_catalog_has_required_llms():
    from energyopt.characterize.catalog import CATALOG, get_spec

    for name in ("llama-2-7b", "llama-2-13b", "llama-3-8b", "mistral-7b", "mixtral-8x7b", "falcon-7b", "tinyllama-1.1b",
                 "qwen2.5-0.5b"):
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


# --- batch sizes ---------------------------------------------------------------------------


def test_parse_batch_sizes():
    from energyopt.characterize.design import parse_batch_sizes

    assert parse_batch_sizes("1,8, 32,64,128,8") == [1, 8, 32, 64, 128]
    assert parse_batch_sizes("1") == [1]
    for bad, msg in (("0", "'0' is not a whole number >= 1"), ("8,x", "'x' is not a whole number"),
                     ("-4", "'-4' is not"), (" , ", "no batch size given"), ("100000", "above the largest")):
        with pytest.raises(DataError, match=msg):
            parse_batch_sizes(bad)


def test_design_over_batch_sizes_keeps_token_points_and_interleaves():
    from energyopt.characterize.orchestrate import make_points

    single = make_points("8", 3, 2048, 512)
    assert {p.batch_size for p in single} == {1}
    assert single == make_points("8", 3, 2048, 512, [1])  # the default is today's design
    batched = make_points("8", 3, 2048, 512, [1, 8, 64])
    assert len(batched) == 3 * len(single)
    # every batch size on the same token points (one can be held back), point by point
    for b in (1, 8, 64):
        at_b = [(p.input_tokens, p.output_tokens, p.split) for p in batched if p.batch_size == b]
        assert at_b == [(p.input_tokens, p.output_tokens, p.split) for p in single]
    assert [p.batch_size for p in batched[:6]] == [1, 8, 64, 1, 8, 64]
    assert fit_context(batched, 1024)[0].batch_size == 1 and {p.batch_size for p in fit_context(batched, 1024)} == {1, 8, 64}


def test_kv_cache_bytes_and_memory_split():
    from energyopt.characterize.catalog import get_spec
    from energyopt.characterize.memory import cache_tokens, kv_cache_bytes, kv_shape, memory_fit, split_by_memory

    llama3 = kv_shape(get_spec("llama-3-8b").config)
    assert (llama3.layers, llama3.kv_heads, llama3.head_dim) == (32, 8, 128)
    assert llama3.bytes_per_token == 32 * 8 * 128 * 2 * 2 == 131072
    assert kv_shape(get_spec("llama-2-7b").config).bytes_per_token == 524288  # no grouped KV heads
    assert kv_shape(get_spec("qwen2.5-0.5b").config).head_dim == 64
    assert kv_shape(get_spec("falcon-7b").config).kv_heads == 1  # multi-query
    assert kv_shape({"num_attention_heads": 4, "hidden_size": 64, "num_hidden_layers": 2}, 4).bytes_per_token == 1024
    assert cache_tokens(8, 8, None) == 16 and cache_tokens(8, 8, 128) == 128 and cache_tokens(2048, 512, 128) == 2560
    assert kv_cache_bytes(llama3, 64, 1000) == 64 * 1000 * 131072
    assert memory_fit(80, 10, 100) and not memory_fit(81, 10, 100)

    # Llama-2-7B on a 150 GB GPU: 128 queries of 2048 + 512 tokens need 172 GB of cache
    shape = kv_shape(get_spec("llama-2-7b").config)
    pts = [DesignPoint(2048, 512, "design", b) for b in (1, 64, 128)] + [DesignPoint(512, 128, "holdout", 128)]
    kept, skipped = split_by_memory(pts, shape, 13_500_000_000, 150_000_000_000, lambda b: 512 if b == 1 else 128)
    assert [p.batch_size for p in kept] == [1, 64, 128]
    assert [(p.input_tokens, p.batch_size) for p, _ in skipped] == [(2048, 128)]
    assert skipped[0][1] == 524288 * 128 * 2560


def test_sweep_batches_rows_resume_by_batch_size_and_out_of_memory(tmp_path):
    clock = Clock()
    meter = EstimateMeter(100.0, clock=clock)
    pts = [DesignPoint(8, 8, "design", b) for b in (1, 8)] + [DesignPoint(512, 128, "design", b) for b in (1, 8, 64)]
    path = tmp_path / "c.csv"
    cfg = SweepConfig(llm="m", device="cpu", points=pts[:2], repeats=1, min_window_s=0.5, idle_seconds=1.0,
                      fixed_idle_power_w={"cpu": 10.0})
    r = run_sweep(FakeRunner(clock), {"cpu": meter}, RunLog(path), cfg, {}, progress=lambda s: None, clock=clock,
                  sleep=clock.sleep)
    assert r.measured == 2
    # resume: the same token point at another batch size is a new run; 512x128 at batch 64 does not fit
    lines = []
    runner = FakeRunner(clock, no_room={(512, 128, 64)})
    cfg.points = pts
    r2 = run_sweep(runner, {"cpu": meter}, RunLog(path), cfg, {}, progress=lines.append, clock=clock, sleep=clock.sleep)
    assert (r2.measured, r2.skipped, r2.out_of_memory, r2.remaining) == (2, 2, 1, 0)
    assert runner.runs[-1] == (512, 128, 8) and (8, 8) not in runner.runs
    assert any("512x128 batch 64 design: skipped, out of device memory (CUDA out of memory)" in s for s in lines)
    df = read_characterization(path)
    assert sorted(df["batch_size"]) == [1, 1, 8, 8]
    row = df[(df.batch_size == 8) & (df.input_tokens == 512)].iloc[0]
    assert float(row["energy_per_query_j"]) == pytest.approx(row["energy_j"] / 8, rel=1e-5)
    assert row["energy_j"] == pytest.approx(100.0 * row["runtime_s"], rel=1e-5)  # the whole batch's
    assert set(df["decode_attention"]) == {"grouped"}
    assert RunLog(path).done() >= {("m", "cpu", 512, 128, "design", 0, 8), ("m", "cpu", 8, 8, "design", 0, 1)}


def test_runlog_resumes_an_older_layout_for_single_queries_only(tmp_path):
    from energyopt.characterize.csvlog import LEGACY_COLUMNS

    path = tmp_path / "old.csv"
    old = dict.fromkeys(LEGACY_COLUMNS, "")
    old.update(llm="m", device="h100", input_tokens="8", output_tokens="8", batch_size="", runtime_s="0.1",
               energy_j="30", split="design", repeat="0")
    path.write_text(",".join(LEGACY_COLUMNS) + "\n" + ",".join(old[c] for c in LEGACY_COLUMNS) + "\n")
    log = RunLog(path)
    assert log.legacy and log.done() == {("m", "h100", 8, 8, "design", 0, 1)}
    row = {"llm": "m", "device": "h100", "input_tokens": 32, "output_tokens": 8, "batch_size": 1, "runtime_s": 0.2,
           "energy_j": 60.0, "energy_per_query_j": 60.0, "split": "design", "repeat": 0, "decode_attention": "sdpa"}
    log.append(row)
    assert path.read_text().splitlines()[0] == ",".join(LEGACY_COLUMNS) and len(path.read_text().splitlines()) == 3
    for bad in ({"batch_size": 8}, {"decode_attention": "grouped"}):
        with pytest.raises(DataError, match="older column layout"):
            log.append({**row, **bad})
    with pytest.raises(DataError, match="existing file has columns"):
        RunLog(path, columns=("llm", "device"))


def test_cli_rejects_bad_batch_sizes_in_one_line(tmp_path):
    from click.testing import CliRunner

    from energyopt.cli import main

    res = CliRunner().invoke(main, ["characterize", "--llm", "tiny-test", "--device", "cpu", "--batch-sizes", "1,0",
                                    "--out", str(tmp_path / "c.csv")])
    assert res.exit_code == 2 and "error: --batch-sizes: '0' is not a whole number >= 1" in res.output
    assert not (tmp_path / "c.csv").exists()


def test_characterize_skips_points_without_room_and_says_so(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from energyopt.characterize import orchestrate

    # tiny-test: 512 bytes of fp32 KV cache per token, 0.43 MB of weights; give it a 1 MB device
    monkeypatch.setattr(orchestrate, "host_memory_bytes", lambda: 1_000_000)
    lines: list[str] = []
    out = tmp_path / "c.csv"
    orchestrate.characterize(
        llms=["tiny-test"], model_dir=None, device="cpu", gpu_index=0, points="8x8,16x8", holdout=0, repeats=1,
        min_window_s=0.0, max_input_tokens=64, max_output_tokens=16, dtype=None, device_name=None, threads=1,
        cpu_power_w=40.0, cpu_idle_w=0.0, time_budget_s=None, idle_seconds=0.5, out_csv=out, progress=lines.append,
        batch_sizes="1,64")
    skipped = [s for s in lines if "do not fit" in s]
    assert len(skipped) == 2 and "skipped 8x8 batch 64 (design): KV cache 0.0 GB" in skipped[0]
    assert lines[-1].startswith("tiny-test: measured 2, skipped 0, left 0, skipped for memory 2 in ")
    df = read_characterization(out)
    assert sorted(df["batch_size"]) == [1, 1]
    with pytest.raises(DataError, match="--decode-attention must be one of"):
        orchestrate.characterize(
            llms=["tiny-test"], model_dir=None, device="cpu", gpu_index=0, points="8x8", holdout=0, repeats=1,
            min_window_s=0.0, max_input_tokens=64, max_output_tokens=16, dtype=None, device_name=None, threads=1,
            cpu_power_w=40.0, cpu_idle_w=0.0, time_budget_s=None, idle_seconds=0.5, out_csv=out,
            progress=lines.append, decode_attention="flash")


def test_shipped_h200_batch_data():
    from conftest import ROOT

    df = read_characterization(ROOT / "data" / "h200-batch.csv")
    assert df["llm"].nunique() >= 5 and set(df["batch_size"]) == {1, 8, 32, 64, 128}
    assert set(df["gpu_name"]) == {"NVIDIA H200"} and df["driver"].notna().all() and df["measured_at"].notna().all()
    assert df["torch_version"].notna().all() and df["transformers_version"].notna().all()
    assert set(df["decode_attention"]) == {"grouped"} and set(df["decode_loop"]) == {"cuda_graph"}
    per_query = df["energy_per_query_j"].astype(float)
    assert (abs(per_query * df["batch_size"] - df["energy_j"]) <= 1e-4 * df["energy_j"]).all()
    for llm, rows in df.groupby("llm"):
        points = {b: set(zip(g.input_tokens, g.output_tokens, g.split)) for b, g in rows.groupby("batch_size")}
        assert len(points[1]) >= 13 and {s for _, _, s in points[1]} == {"design", "holdout"}
        # batch 64 (held back later) is measured on the same token points as the others
        assert all(points[64] == points[b] for b in (1, 8, 32)), llm
        assert points[128] <= points[1]  # only points whose KV cache does not fit are missing


def test_one_characterize_writes_a_file_at_a_time(tmp_path):
    """A second characterize into the same CSV while the first runs is refused (it would measure
    the same points again and append them twice); the lock goes when the first ends."""
    import multiprocessing as mp

    from energyopt.characterize.csvlog import exclusive_writer

    out = tmp_path / "rows.csv"
    ready, release = mp.get_context("fork").Event(), mp.get_context("fork").Event()

    def hold() -> None:
        with exclusive_writer(out):
            ready.set()
            release.wait(30)

    p = mp.get_context("fork").Process(target=hold)
    p.start()
    try:
        assert ready.wait(30)
        with pytest.raises(DataError, match=rf"another energyopt characterize \(pid {p.pid}\) is writing"), \
                exclusive_writer(out):
            pass
    finally:
        release.set()
        p.join(30)
    with exclusive_writer(out):  # free again
        assert (tmp_path / "rows.csv.lock").exists()
    assert not (tmp_path / "rows.csv.lock").exists()


class SlowFirstRunner(FakeRunner):
    """The first run of each point takes 3x as long as the next (a first prefill at a new length)."""

    def __init__(self, clock):
        super().__init__(clock)
        self.seen = set()

    def run(self, i, o, b=1):
        first = (i, o, b) not in self.seen
        self.seen.add((i, o, b))
        t = self.clock.t
        super().run(i, o, b)
        if first:
            self.clock.t += 2 * (self.clock.t - t)


def test_window_is_remeasured_when_a_slow_first_run_sized_it_short(tmp_path):
    # sized on the slow first run alone, the window of 8x8 held 3 runs, 0.24 s of the 0.5 s asked
    # (on the H200 such a window read 0 J: NVML's counter had not moved)
    clock = Clock()
    pts = [DesignPoint(8, 8), DesignPoint(8, 16)]
    cfg = SweepConfig(llm="m", device="cpu", points=pts, repeats=1, min_window_s=0.5, idle_seconds=1.0,
                      fixed_idle_power_w={"cpu": 10.0})
    run_sweep(SlowFirstRunner(clock), {"cpu": EstimateMeter(100.0, clock=clock)}, RunLog(tmp_path / "c.csv"), cfg,
              {"dtype": "fp32"}, progress=lambda s: None, clock=clock, sleep=clock.sleep)
    df = read_characterization(tmp_path / "c.csv")
    for row in df.itertuples():
        fast_s = 0.001 * row.input_tokens / 100 + 0.01 * row.output_tokens * (1 + 1 / 64)
        assert row.runtime_s == pytest.approx(fast_s)  # the slow first run is not in the window
        assert row.runtime_s * int(row.inner_runs) >= 0.5  # the window is at least min_window_s long
