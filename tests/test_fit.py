"""Fits: coefficient recovery, form selection, the R² gate, non-negativity, JSON round trip."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from energyopt.errors import DataError, FitError
from energyopt.fit import fit_models
from energyopt.modelstore import FittedModels


def table(fn, noise=0.02, seed=0, llm="m", device="d", repeats=2):
    rng = np.random.default_rng(seed)
    rows = []
    for x in (8, 32, 128, 512, 1024, 2048, 4096):
        for y in (8, 32, 128, 512, 1024):
            for _ in range(repeats):
                rt = fn(x, y) * rng.lognormal(0, noise)
                rows.append(dict(llm=llm, device=device, input_tokens=x, output_tokens=y, batch_size=1,
                                 runtime_s=rt, energy_j=300 * rt))
    return pd.DataFrame(rows)


def test_recovers_known_coefficients_and_form():
    truth = (0.05, 2e-5, 0.02, 3e-7, 0.0)
    df = table(lambda x, y: truth[0] + truth[1] * x + truth[2] * y + truth[3] * x * y, noise=0.01)
    m = fit_models(df).get("m", "d")["runtime_s"]
    assert m.form == "paper+c"
    np.testing.assert_allclose(m.coefficients, truth[:4], rtol=0.15, atol=2e-3)
    assert m.metrics.cv_r2 > 0.99 and m.metrics.cv_median_rel_error < 0.02


def test_selects_quadratic_output_form_when_true():
    df = table(lambda x, y: 0.05 + 0.02 * y + 2e-5 * y * y + 1e-7 * x * y, noise=0.005)
    assert fit_models(df).get("m", "d")["runtime_s"].form in ("quad_out", "full_quad")


def test_predictions_never_negative():
    df = table(lambda x, y: 0.02 * y + 1e-7 * x * y)
    fm = fit_models(df)
    p = fm.predict("m", "d", [1, 4096, 100000], [1, 8, 1])
    assert (p["energy_j"] >= 0).all() and (p["runtime_s"] >= 0).all()
    assert p["extrapolated"].tolist() == [True, False, True]


def test_gate_lists_every_failing_pair():
    rng = np.random.default_rng(1)
    df = pd.concat([table(lambda x, y: 0.02 * y, llm="good"),
                    table(lambda x, y: rng.uniform(0.1, 10), noise=0.0, llm="bad")])
    with pytest.raises(FitError, match=r"bad/d/energy_j.*bad/d/runtime_s") as e:
        fit_models(df, min_r2=0.96)
    assert "good" not in str(e.value) and e.value.models is not None


def test_holdout_rows_are_not_fitted_but_scored():
    fn = lambda x, y: 0.05 + 0.02 * y + 1e-6 * x * y  # noqa: E731
    df = table(fn, noise=0.01)
    df["split"] = "design"
    hold = pd.DataFrame([dict(llm="m", device="d", input_tokens=x, output_tokens=y, batch_size=1, split="holdout",
                              runtime_s=fn(x, y) * k, energy_j=300 * fn(x, y) * k)
                         for (x, y), k in zip([(300, 70), (1500, 200), (3000, 40)], (1.0, 1.1, 1.3))])
    m = fit_models(pd.concat([df, hold], ignore_index=True)).get("m", "d")["runtime_s"]
    assert m.metrics.n_samples == len(df) and m.metrics.n_holdout == 3
    # the fit tracks the design rows, so the held-back errors are the planted 0%, 10% and 30%
    assert m.metrics.holdout_median_rel_error == pytest.approx(0.1 / 1.1, abs=0.02)
    assert m.metrics.holdout_max_rel_error == pytest.approx(0.3 / 1.3, abs=0.02)
    assert np.isnan(fit_models(df).get("m", "d")["runtime_s"].metrics.holdout_median_rel_error)


def test_too_few_points():
    df = table(lambda x, y: 0.02 * y).query("input_tokens == 8 and output_tokens <= 32")
    with pytest.raises(FitError, match=r"only 2 distinct .* points; 5-fold"):
        fit_models(df)


def test_json_round_trip(tmp_path):
    fm = fit_models(table(lambda x, y: 0.05 + 0.02 * y))
    fm.save(tmp_path)
    back = FittedModels.load(tmp_path)
    a = fm.predict("m", "d", [10, 2000], [5, 700])
    b = back.predict("m", "d", [10, 2000], [5, 700])
    pd.testing.assert_frame_equal(a, b)
    doc = json.loads((tmp_path / "m__d.json").read_text())
    assert doc["provenance"]["training_data"].startswith("sha256:") and doc["energy_j"]["unit"] == "J"


def test_load_validation(tmp_path):
    fit_models(table(lambda x, y: 0.05 + 0.02 * y)).save(tmp_path)
    f = tmp_path / "m__d.json"
    doc = json.loads(f.read_text())
    doc["runtime_s"]["coefficients"]["tout"] = -1.0
    f.write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"m__d\.json: key runtime_s\.coefficients must be >= 0"):
        FittedModels.load(tmp_path)
    f.write_text("{not json")
    with pytest.raises(DataError, match=r"m__d\.json: line 1: not valid JSON"):
        FittedModels.load(tmp_path)
    with pytest.raises(DataError, match=r"models directory not found"):
        FittedModels.load(tmp_path / "missing")


def test_published_negative_predictions_marked_invalid():
    from conftest import make_models

    fm = make_models({("p", "a100"): ((0.0, -3.89, 31.5, 0.0427), (0.0, -0.01, 0.0835, 0.000107))})
    fm.models[("p", "a100")]["energy_j"].origin = "published"
    p = fm.predict("p", "a100", [100, 4000], [200, 8])
    assert p["valid"].tolist() == [True, False]
    assert p["energy_j"].iloc[1] == 0.0


def test_shipped_models_load_and_pass_gate():
    """The shipped fits pass the R² gate, their cross-validated median error is within 10%, and
    they predict the held-back points (measured off the design, never fitted) within a median 10%."""
    from conftest import ROOT

    fm = FittedModels.load(ROOT / "models")
    fitted = [(llm, dev, m) for (llm, dev), t in fm.models.items() for m in t.values() if m.origin == "fitted"]
    assert len({(llm, dev) for llm, dev, _ in fitted}) >= 12
    for llm, dev, m in fitted:
        assert m.metrics.cv_r2 >= 0.96, (llm, dev, m.target)
        assert m.metrics.n_holdout >= 6 and m.metrics.holdout_median_rel_error <= 0.10, (llm, dev, m.target)
        assert m.metrics.cv_median_rel_error <= 0.10, (llm, dev, m.target)


# --- batch sizes, outliers, near-zero points, KV cache off -------------------------------------------


def batch_table(sizes=(1, 8, 32, 64, 128), noise=0.02, seed=0):
    """Whole-batch runs of b identical queries: a decode step takes 8 ms for the weights plus
    2e-6 s per token of context per query; power 300 W + 1 W per query; prefill 1e-4 s per token
    per query. energy_j is the batch's, runtime_s each query's latency (the batch's)."""
    rng = np.random.default_rng(seed)
    rows = []
    for b in sizes:
        for x in (8, 128, 512, 1024, 2048):
            for y in (8, 64, 256, 512):
                steps = 0.008 * y + 2e-6 * b * (x * y + y * y / 2)
                runtime = (1e-4 * b * x + steps) * rng.lognormal(0, noise)
                energy = (300 + b) * runtime
                rows.append(dict(llm="m", device="d", input_tokens=x, output_tokens=y, batch_size=b,
                                 runtime_s=runtime, energy_j=energy, energy_per_query_j=energy / b))
    return pd.DataFrame(rows)


def test_batch_sizes_are_fitted_gated_per_size_and_a_held_back_size_is_predicted():
    df = batch_table()
    fm = fit_models(df, holdout_batch_sizes=[64])
    e, r = fm.get("m", "d")["energy_j"], fm.get("m", "d")["runtime_s"]
    assert e.form == "batch_power" and r.form in ("latency", "latency+")
    assert e.batch_size_range == (1, 128) and set(e.by_batch_size) == {1, 8, 32, 64, 128}
    assert e.by_batch_size[64]["held_back"] and e.by_batch_size[64]["median_rel_error"] < 0.10
    assert r.by_batch_size[64]["median_rel_error"] < 0.10
    for b in (1, 8, 32, 128):
        assert e.by_batch_size[b]["cv_r2"] > 0.96 and r.by_batch_size[b]["cv_r2"] > 0.96
    # energy per query falls with the batch size; latency grows
    p = {b: fm.predict("m", "d", [512], [256], batch_size=b).iloc[0] for b in (1, 64)}
    assert p[64]["energy_j"] == pytest.approx(364 * 26.30 / 64, rel=0.05)  # 4.9x less than at batch size 1
    assert p[1]["energy_j"] == pytest.approx(301 * 2.427, rel=0.05) and p[64]["runtime_s"] > p[1]["runtime_s"]
    t = fm.table()
    assert t["batch_sizes"].tolist() == ["1-128", "1-128"] and (t["held_back_batch_err"] < 0.10).all()


def test_the_gate_holds_per_batch_size():
    df = batch_table(sizes=(1, 8, 32))
    wild = df["batch_size"] == 32  # noise of a factor ~2 at one batch size only
    df.loc[wild, "runtime_s"] *= np.random.default_rng(5).lognormal(0, 0.6, int(wild.sum()))
    with pytest.raises(FitError, match=r"m/d/runtime_s at batch size 32 \(CV R² "):
        fit_models(df, min_r2=0.96)


def test_holding_back_the_only_other_batch_size_is_refused():
    with pytest.raises(FitError, match="measured at one batch size only"):
        fit_models(batch_table(sizes=(1, 8)), holdout_batch_sizes=[8])


def test_a_run_ten_times_slow_is_reported_and_not_fitted():
    df = table(lambda x, y: 0.05 + 2e-5 * x + 0.02 * y, noise=0.01, repeats=1)
    clean = fit_models(df).get("m", "d")["runtime_s"]
    slow = df.copy()
    at = (slow["input_tokens"] == 8) & (slow["output_tokens"] == 8)
    slow.loc[at, ["runtime_s", "energy_j"]] *= 10  # a warm-up run
    m = fit_models(slow).get("m", "d")["runtime_s"]
    assert [(o["input_tokens"], o["output_tokens"]) for o in m.outliers] == [(8, 8)]
    assert m.metrics.n_points == len(df) - 1
    p = m.predict([8, 2048], [8, 512])
    assert p == pytest.approx(clean.predict([8, 2048], [8, 512]), rel=0.05)


def test_a_near_zero_measurement_does_not_drag_a_relative_fit():
    df = table(lambda x, y: 0.05 + 2e-5 * x + 0.02 * y, noise=0.01, repeats=1)
    bad = df.copy()
    at = (bad["input_tokens"] == 4096) & (bad["output_tokens"] == 1024)
    bad.loc[at, ["runtime_s", "energy_j"]] = [1e-6, 3e-4]  # a run that lost its work
    m = fit_models(bad).get("m", "d")["runtime_s"]
    assert [(o["input_tokens"], o["output_tokens"]) for o in m.outliers] == [(4096, 1024)]
    assert m.predict([512], [512])[0] == pytest.approx(0.05 + 2e-5 * 512 + 0.02 * 512, rel=0.05)


def test_kv_cache_off_data_is_fittable():
    # without a KV cache each output token re-reads the whole context: cost grows with τout³ and τin·τout²
    df = table(lambda x, y: 0.05 + 1e-4 * x * y + 1e-5 * x * y * y / 1000 + 2e-8 * y ** 3, noise=0.01)
    m = fit_models(df).get("m", "d")["runtime_s"]
    assert m.form == "kv_off" and m.metrics.cv_median_rel_error < 0.03


def knee_table(noise=0.02, seed=1):
    """A small LLM at batch sizes: a decode step costs 3 ms of launches; the batch's prefill costs
    nothing beyond that until the batch holds 16k prompt tokens, then 2 µs per token (compute-bound);
    decode attention over the batch's context grows with log b (a latency-bound kernel); the
    device draws 150 W + 2 W per query."""
    rng = np.random.default_rng(seed)
    rows = []
    for b in (1, 8, 32, 64, 128):
        for x in (8, 32, 128, 512, 1024, 2048):
            for y in (8, 32, 256, 512):
                runtime = (0.01 + 0.003 * y + 2e-6 * max(b * x - 16384, 0) + 3e-7 * np.log(b) * x * y
                           + 2e-7 * b * y * y / 100) * rng.lognormal(0, noise)
                energy = (150 + 2 * b) * runtime
                rows.append(dict(llm="m", device="d", input_tokens=x, output_tokens=y, batch_size=b,
                                 runtime_s=runtime, energy_j=energy, energy_per_query_j=energy / b))
    return pd.DataFrame(rows)


def test_a_prefill_knee_and_a_saturating_decode_attention_are_fitted_and_the_knee_is_chosen_by_cv():
    fm = fit_models(knee_table(), holdout_batch_sizes=[64])
    r = fm.get("m", "d")["runtime_s"]
    assert r.form == "latency_knee16k" and "relu(b*tin-16384)" in r.features
    assert r.candidates["latency_knee16k"]["cv_score"] < 0.5 * r.candidates["latency_compute"]["cv_score"]
    for b in (1, 8, 32, 128):
        assert r.by_batch_size[b]["cv_r2"] > 0.99
    assert r.by_batch_size[64]["held_back"] and r.by_batch_size[64]["median_rel_error"] < 0.03
    # at batch 1, 2048 prompt tokens cost no more than 8 (below the knee); at batch 128 they cost 0.5 s more
    p = {(b, x): fm.predict("m", "d", [x], [8], batch_size=b)["runtime_s"].iloc[0] for b in (1, 128) for x in (8, 2048)}
    assert p[(1, 2048)] == pytest.approx(p[(1, 8)], rel=0.05)
    assert p[(128, 2048)] - p[(128, 8)] == pytest.approx(2e-6 * (128 * 2048 - 16384), rel=0.1)
    e = fm.get("m", "d")["energy_j"]
    assert e.form.startswith("batch_knee") and e.by_batch_size[64]["median_rel_error"] < 0.05


def test_the_knee_features_are_those_of_a_batch_size_given_as_one_number():
    """Planning computes each feature once per batch size (b a scalar): the same values as per row."""
    from energyopt.modelstore import ENGINE_KNEES_TOKENS, FEATURES, PREFILL_KNEES_TOKENS

    x, y = np.array([8.0, 512.0, 2048.0]), np.array([8.0, 64.0, 256.0])
    for k in PREFILL_KNEES_TOKENS:
        for f in (f"relu(b*tin-{k})", f"relu(b*tin-{k})/b", "log(b)*tin*tout", "log(b)*tout^2"):
            assert FEATURES[f](x, y, np.float64(32)) == pytest.approx(FEATURES[f](x, y, np.full(3, 32.0)))
            assert (FEATURES[f](x, y, np.float64(1)) >= 0).all()
    assert FEATURES["relu(b*tin-16384)"](x, y, np.float64(8)).tolist() == [0.0, 0.0, 8 * 2048 - 16384]
    for k in ENGINE_KNEES_TOKENS:
        for f in (f"relu(tin-{k})", f"b*relu(tin-{k})"):
            assert np.broadcast_to(FEATURES[f](x, y, np.float64(32)), 3) == pytest.approx(FEATURES[f](x, y, np.full(3, 32.0)))
    assert FEATURES["b*relu(tin-1024)"](x, y, np.float64(8)).tolist() == [0.0, 0.0, 8 * (2048 - 1024)]
    assert FEATURES["relu(tin-512)"](x, y, np.float64(8)).tolist() == [0.0, 0.0, 2048 - 512]


def engine_table(decode_attention, noise=0.02, seed=2, host_bound=False):
    """An engine that prefills each query on its own (energyopt replay's): 25 ms of launches per
    query's prefill plus 0.2 µs per prompt token, then decode steps of 7 ms + 2 µs per query of the
    batch; the device draws 300 W. ``host_bound``: a prefill takes the longer of the host's 25 ms
    of launches and the device's 25 µs per prompt token (a small model: the knee at 1,024 tokens)."""
    rng = np.random.default_rng(seed)
    rows = []
    for b in (1, 8, 32):
        for x in (8, 128, 1024, 2048, 4096) if host_bound else (8, 128, 1024, 4096):
            for y in (8, 32, 256, 1024):
                prefill_s = max(0.025, 2.5e-5 * x) if host_bound else 0.025 + 2e-7 * x
                runtime = (b * prefill_s + y * (0.007 + 2e-6 * b)) * rng.lognormal(0, noise)
                rows.append(dict(llm="m", device="d", input_tokens=x, output_tokens=y, batch_size=b,
                                 runtime_s=runtime, energy_j=300 * runtime, energy_per_query_j=300 * runtime / b,
                                 decode_attention=decode_attention))
    return pd.DataFrame(rows)


def test_rows_of_the_replay_engine_get_a_fixed_cost_per_query_prefill_and_no_point_is_an_outlier_for_lacking_it():
    fm = fit_models(engine_table("ragged"))
    r, e = fm.get("m", "d")["runtime_s"], fm.get("m", "d")["energy_j"]
    assert r.form.startswith("latency_engine") and "b" in r.features and not r.outliers
    assert e.form == "batch_engine" and not e.outliers
    assert r.metrics.cv_median_rel_error < 0.03 and e.metrics.cv_median_rel_error < 0.03
    # the harness's rows (one prefill of the whole batch) are not offered the engine's forms
    other = fit_models(engine_table("grouped"), min_r2=0.0).get("m", "d")["runtime_s"]
    assert not any(name.startswith("latency_engine") for name in other.candidates)


def test_an_engine_whose_prefill_is_host_bound_below_a_prompt_length_gets_that_knee():
    fm = fit_models(engine_table("ragged", noise=0.01, host_bound=True))
    r, e = fm.get("m", "d")["runtime_s"], fm.get("m", "d")["energy_j"]
    assert r.form == "latency_engine_knee1024" and "b*relu(tin-1024)" in r.features
    assert e.form == "batch_engine_knee1024" and "relu(tin-1024)" in e.features
    assert r.metrics.cv_median_rel_error < 0.02 and e.metrics.cv_median_rel_error < 0.02
    # without the knee the engine's forms miss the bend
    plain = fit_models(engine_table("ragged", noise=0.01, host_bound=True), min_r2=0.0).get("m", "d")["runtime_s"]
    assert plain.candidates["latency_engine"]["cv_score"] > 4 * plain.candidates["latency_engine_knee1024"]["cv_score"]
