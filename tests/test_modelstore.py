"""Model files (models/*.json): strict reading, one-line errors naming the file and the key."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

from energyopt.errors import DataError
from energyopt.modelstore import FittedModels

SHIPPED = ROOT / "models" / "mistral-7b__h200.json"  # batched: by_batch_size, candidates, measurement, provenance


def with_file(tmp_path: Path, edit: Callable[[dict], object] | None = None, *, text: str | None = None) -> Path:
    """A models folder holding the shipped Mistral-7B/H200 file, edited by ``edit`` (or replaced by ``text``)."""
    doc = json.loads(SHIPPED.read_text())
    if edit is not None:
        edit(doc)
    (tmp_path / SHIPPED.name).write_text(json.dumps(doc) if text is None else text)
    return tmp_path


def test_the_shipped_file_loads_unchanged(tmp_path):
    fm = FittedModels.load(with_file(tmp_path))
    assert ("mistral-7b", "h200") in fm and fm.get("mistral-7b", "h200")["energy_j"].by_batch_size[8]["n_points"] == 12


def test_every_key_a_model_file_is_saved_with_is_known(tmp_path):
    """What FittedModels.save writes, the loader reads back: the known keys come from the writer."""
    fm = FittedModels.load(ROOT / "models")
    fm.save(tmp_path)
    again = FittedModels.load(tmp_path)
    assert again.pairs() == fm.pairs()


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda d: d.update(provenence=d.pop("provenance")), r"unknown key provenence; did you mean provenance\?"),
        (lambda d: d["energy_j"].update(cv_r3=0.9), r"unknown key energy_j\.cv_r3; did you mean cv_r2\?"),
        (lambda d: d["energy_j"]["coefficients"].update({"tout^3": 1e-6}),  # not among its features: a term dropped
         r"unknown key energy_j\.coefficients\.tout\^3; did you mean tout\^2\?"),
        (lambda d: d["energy_j"]["by_batch_size"]["8"].update(cv_r22=1.0),
         r"unknown key energy_j\.by_batch_size\.8\.cv_r22; did you mean cv_r2\?"),
        (lambda d: d["energy_j"]["candidates"]["batch"].update(cv_scor=1.0),
         r"unknown key energy_j\.candidates\.batch\.cv_scor; did you mean cv_score\?"),
        (lambda d: d["energy_j"].update(outliers=[{"input_tokens": 8, "output_tokens": 8, "batch_size": 1, "measurd": 3.0}]),
         r"unknown key energy_j\.outliers\[0\]\.measurd; did you mean measured\?"),
        (lambda d: d["measurement"].update(gpu_nam="H200"), r"unknown key measurement\.gpu_nam; did you mean gpu_name\?"),
        (lambda d: d["provenance"].update(fited_at="today"), r"unknown key provenance\.fited_at; did you mean fitted_at\?"),
    ],
)
def test_an_unknown_key_at_any_level_is_an_error_with_a_did_you_mean(tmp_path, edit, match):
    """An unknown key was ignored: a misspelt coefficient dropped a term of the model silently."""
    with pytest.raises(DataError, match=r"mistral-7b__h200\.json: " + match):
        FittedModels.load(with_file(tmp_path, edit))


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda d: d["energy_j"].update(intercept=True), r"key energy_j\.intercept must be a number, got true"),
        (lambda d: d["energy_j"]["coefficients"].update(tin="0.1"),
         r"key energy_j\.coefficients\.tin must be a number, got '0\.1'"),
        (lambda d: d["energy_j"].update(n_samples="5"), r"key energy_j\.n_samples must be a whole number >= 0, got '5'"),
        (lambda d: d["energy_j"].update(input_tokens_range=["a", 5]),
         r"key energy_j\.input_tokens_range must be \[smallest, largest\]"),
        (lambda d: d["energy_j"].update(n_holdout=1e400), r"key energy_j\.n_holdout must be a whole number"),
        (lambda d: d["energy_j"].update(unit="kJ"), r"key energy_j\.unit must be 'J' \(what energy_j is in\), got 'kJ'"),
        (lambda d: d["runtime_s"].update(features=["tin", "tin"]), r"key runtime_s\.features lists a feature twice"),
        (lambda d: d["runtime_s"].update(features=[["tin"]]), r"key runtime_s\.features must be a list of feature names"),
        (lambda d: d["runtime_s"].update(candidates=[]), r"key runtime_s\.candidates must be a JSON object, got a JSON array"),
        (lambda d: d["energy_j"]["by_batch_size"].update({"0": {}}), r"key energy_j\.by_batch_size\.0 must be a batch size"),
        (lambda d: d.update(format_version=True), r"key format_version is true; expected 1"),
        (lambda d: d.update(llm=7), r"key llm must be text, got 7"),
        (lambda d: d["measurement"].update(idle_power_w="lots"), r"key measurement\.idle_power_w must be a number or null"),
        (lambda d: d["energy_j"]["coefficients"].update(tout=1e308),
         r"key energy_j\.coefficients\.tout is 1e\+308; a coefficient above 1e\+09 in size makes no prediction"),
        (lambda d: d["runtime_s"].update(intercept=-2e9), r"key runtime_s\.intercept is -2e\+09; a coefficient above"),
    ],
)
def test_a_value_of_the_wrong_type_is_an_error_naming_the_key(tmp_path, edit, match):
    with pytest.raises(DataError, match=r"mistral-7b__h200\.json: " + match):
        FittedModels.load(with_file(tmp_path, edit))


def test_a_byte_order_mark_is_accepted(tmp_path):
    (tmp_path / SHIPPED.name).write_bytes(b"\xef\xbb\xbf" + SHIPPED.read_bytes())
    assert ("mistral-7b", "h200") in FittedModels.load(tmp_path)


def test_a_published_model_file_loads_with_its_nulls(tmp_path):
    shutil.copy(ROOT / "models" / "llama-2-7b__a100.json", tmp_path)
    m = FittedModels.load(tmp_path).get("llama-2-7b", "a100")["energy_j"]
    assert m.origin == "published" and m.metrics.cv_r2 != m.metrics.cv_r2  # NaN: the source printed none


@pytest.mark.parametrize(
    "content, match",
    [
        (json.dumps([{"llm": f"m{i}"} for i in range(500)]).encode(), r"expected a JSON object, got a JSON array$"),
        (b'{"llm": "' + b"x" * 10000 + b'"', r"line 1: not valid JSON"),
        (bytes(range(256)) * 8, r"line 2: expected UTF-8 text, got the byte 0x80"),
        (b"[" * 100000 + b"]" * 100000, r"not valid JSON"),
        (b'{"format_version": 1' + b"0" * 5000 + b"}", r"not valid JSON \(Exceeds the limit"),
    ],
)
def test_a_file_that_is_no_model_gives_a_short_line(tmp_path, content, match):
    """A JSON array, a long value, random bytes, deep nesting, a 5,000-digit number: one short line."""
    (tmp_path / "x.json").write_bytes(content)
    with pytest.raises(DataError, match=match) as err:
        FittedModels.load(tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and len(msg) < len(str(tmp_path)) + 200, msg


OLDER = ROOT / "examples" / "replay" / "models"  # the models the replay's plans were made from, before the knee forms


def test_a_model_file_of_the_older_forms_still_loads_and_predicts_what_its_coefficients_say():
    doc = json.loads((OLDER / "qwen2.5-0.5b__h200.json").read_text())["runtime_s"]
    assert doc["form"] == "latency_compute"
    fm = FittedModels.load(OLDER)
    x, y, b = 248.0, 139.0, 64.0
    terms = {"b*tin": b * x, "b*tin^2": b * x * x, "tout": y, "b*tout": b * y, "b*tin*tout": b * x * y,
             "b*tout^2": b * y * y}
    want = doc["intercept"] + sum(c * terms[f] for f, c in doc["coefficients"].items())
    got = fm.predict("qwen2.5-0.5b", "h200", [248], [139], batch_size=64)["runtime_s"].iloc[0]
    assert got == pytest.approx(want, rel=1e-12)


def test_predict_matrix_is_predict_per_pair_at_each_batch_size():
    # the shipped models on the shipped fleet's deployments, several at each of three batch sizes
    import numpy as np

    from energyopt.fleet import read_fleet

    deps = read_fleet(ROOT / "examples" / "fleet.toml").deployments_table()
    fm = FittedModels.load(ROOT / "models")
    pairs, sizes = list(zip(deps["llm"], deps["device"])), deps["batch_size"].tolist()
    assert len(set(sizes)) > 1
    rng = np.random.default_rng(4)
    tin, tout = rng.integers(1, 6000, 300), rng.integers(1, 1500, 300)
    energy, runtime, valid = fm.predict_matrix(pairs, tin, tout, sizes)
    assert energy.shape == (300, len(pairs)) and energy.flags["C_CONTIGUOUS"] and valid.flags["C_CONTIGUOUS"]
    for j, ((llm, dev), b) in enumerate(zip(pairs, sizes)):
        p = fm.predict(llm, dev, tin, tout, b)
        assert energy[:, j] == pytest.approx(np.maximum(p["energy_j"].to_numpy(), 0.0), rel=1e-12)
        assert runtime[:, j] == pytest.approx(np.maximum(p["runtime_s"].to_numpy(), 0.0), rel=1e-12)
        assert (valid[:, j] == ((p["energy_j"] > 0) & (p["runtime_s"] > 0)).to_numpy()).all()


def test_separable_features_are_a_token_feature_times_a_factor_of_the_batch_size():
    # predict_matrix computes each token feature once for every batch size: every entry of the
    # table must equal the feature it stands for, at several batch sizes and token counts
    import numpy as np

    from energyopt.modelstore import FEATURES, SEPARABLE_FEATURES

    x, y = np.array([1.0, 7.0, 700.0, 5000.0]), np.array([1.0, 3.0, 300.0, 2000.0])
    for f, (base, factor) in SEPARABLE_FEATURES.items():
        for b in (1, 2, 8, 64, 128):
            want = np.broadcast_to(FEATURES[f](x, y, np.float64(b)), x.shape)
            got = np.broadcast_to(FEATURES[base](x, y, np.float64(1)), x.shape) * factor(float(b))
            assert got == pytest.approx(want, rel=1e-14), (f, b)
    assert not {"relu(b*tin-4096)", "relu(b*tin-4096)/b"} & set(SEPARABLE_FEATURES)  # a knee of b·τin is not


def test_a_prediction_too_large_to_be_one_is_an_error_naming_the_model_and_the_query():
    """Coefficients within the file's bounds can still predict beyond any query's joules at the
    largest token counts (or overflow): predict and predict_matrix name the model and the query
    instead of handing a solver an infinite or swamping cost."""
    from conftest import make_models

    models = make_models({("m", "d"): ((0, 0, 0, 1e6), (0, 0, 0.01, 0))})  # 1e6 J per input x output token
    tin, tout = np.array([10, 5_000_000]), np.array([10, 5_000_000])
    msg = (r"the energy_j model of m on d predicts 2\.5e\+19 at 5000000 x 5000000 tokens, batch size 1: "
           r"not a number within ±1e\+18")
    with pytest.raises(DataError, match=msg):
        models.predict_matrix([("m", "d")], tin, tout)
    with pytest.raises(DataError, match=msg):
        models.predict("m", "d", tin, tout)
    e, _, valid = models.predict_matrix([("m", "d")], tin[:1], tout[:1])  # a query the model can price
    assert e[0, 0] == 1e8 and valid[0, 0]
