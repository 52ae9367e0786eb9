"""Fuzzed inputs: every reader either loads a malformed file or raises one DataError on one line.

Hypothesis mutates the shipped files (examples/workload.csv, examples/fleet.toml, models/*.json):
lines deleted, duplicated or garbled, values of the wrong type, huge, negative or not finite,
random bytes, truncation, byte-order marks, unknown keys. A reader may accept what it can read
soundly; anything else must be a :class:`DataError` whose message is one short line, never another
exception (a traceback in the CLI), a numpy warning (warnings are errors in the tests) or a dump of
the file. Derandomized, so CI sees the same examples every run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from energyopt.cli import main
from energyopt.errors import DataError
from energyopt.fleet import read_fleet
from energyopt.io import read_workload
from energyopt.modelstore import FittedModels
from energyopt.schema import MAX_TOKENS

FUZZ = settings(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

WORKLOAD_LINES = (ROOT / "examples" / "workload.csv").read_text().splitlines(keepends=True)[:25]
FLEET_LINES = (ROOT / "examples" / "fleet.toml").read_text().splitlines(keepends=True)
MODEL_FILES = sorted((ROOT / "models").glob("*.json"))

#: the longest message a reader may give, beyond the file's path
MAX_MESSAGE_CHARS = 400

# values that have broken readers: wrong types, not finite, huge, negative, empty, quotes, control characters
CSV_VALUES = ["", " ", "nan", "NaN", "inf", "-inf", "-1", "0", "1e20", "1e400", "2.5", "true", "null", '"', '""', "x" * 200,
              "\t", "1,2", "\ufeff", "é", "\x00", "10000001", "-0", "0x10", "1_000", "9" * 30, '"a\nb"', "\r"]
TOML_VALUES = ["nan", "inf", "-inf", "+nan", "-1", "0", "1e400", "1e20", '"x"', "true", "[1, 2]", "{}", '""', "[]", "1.5",
               "9223372036854775807", "[nan]", '"\\u0000"', "{ a = inf }", "1979-05-27", "[[1]]", '"' + "y" * 300 + '"']
JSON_VALUES: list[Any] = [True, False, None, [1], {"a": 1}, "12", "x" * 300, 1e308, 10**30, -5, 0, 2.5, math.nan, math.inf,
                          -math.inf, "", [], {}, 1, "\n"]
UNKNOWN_KEYS = ["idle_powr_w", "cv_r3", "extra", "", "input_token", "zz\nzz", "b" * 200]


def one_line_or_loaded(read: Callable[[], Any], path: Path) -> Any:
    """``read()``'s result, or None where it raised a DataError of one short line; any other
    exception fails the test."""
    try:
        return read()
    except DataError as exc:
        msg = str(exc)
        assert msg and "\n" not in msg and "\r" not in msg, repr(msg)
        assert len(msg) <= len(str(path)) + MAX_MESSAGE_CHARS, msg
        return None


@st.composite
def mutated_text(draw: st.DrawFn, lines: list[str], values: list[str], separator: str) -> bytes:
    """The lines with one to three mutations: a line deleted, duplicated, garbled, blanked or
    inserted; a value (the text after ``separator``, or a random field) replaced by one of ``values``;
    random bytes; a byte-order mark; the file cut short."""
    lines = list(lines)
    cut: int | None = None
    raw_bytes = b""
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["delete", "duplicate", "garble", "value", "value", "blank", "insert", "bytes", "bom", "cut"]))
        i = draw(st.integers(0, max(len(lines) - 1, 0)))
        if not lines:
            lines = [""]
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "garble":
            line = lines[i]
            a = draw(st.integers(0, len(line)))
            b = draw(st.integers(a, len(line)))
            lines[i] = line[:a] + draw(st.text(max_size=12)) + line[b:]
        elif op == "value":
            parts = lines[i].rstrip("\n").split(separator)
            k = draw(st.integers(0, len(parts) - 1))
            parts[k] = draw(st.sampled_from(values))
            lines[i] = separator.join(parts) + "\n"
        elif op == "blank":
            lines.insert(i, draw(st.sampled_from(["\n", "  \n", "\t\n", "\r\n"])))
        elif op == "insert":
            lines.insert(i, draw(st.text(max_size=40)) + "\n")
        elif op == "bytes":
            raw_bytes = draw(st.binary(min_size=1, max_size=64))
        elif op == "bom":
            lines.insert(0, "\ufeff")
        else:
            cut = draw(st.integers(0, max(sum(map(len, lines)) - 1, 0)))
    data = "".join(lines).encode("utf-8", errors="surrogatepass")
    if raw_bytes:
        at = draw(st.integers(0, len(data)))
        data = data[:at] + raw_bytes + data[at:]
    return data[:cut] if cut is not None else data


def sound_workload(wl: Any) -> None:
    assert list(wl.columns[:5]) == ["query_id", "input_tokens", "output_tokens", "min_accuracy", "deadline_s"]
    tin, tout = wl["input_tokens"].to_numpy(), wl["output_tokens"].to_numpy()
    assert tin.dtype == np.int64 and tout.dtype == np.int64 and len(wl) > 0
    assert ((tin >= 1) & (tin <= MAX_TOKENS)).all() and ((tout >= 0) & (tout <= MAX_TOKENS)).all()
    acc, dl = wl["min_accuracy"].to_numpy(float), wl["deadline_s"].to_numpy(float)
    assert ((acc >= 0) & (acc <= 1)).all() and (np.isnan(dl) | ((dl > 0) & np.isfinite(dl))).all()
    assert wl["query_id"].is_unique and all(isinstance(q, str) and q.strip() == q and q for q in wl["query_id"])
    rel = wl["release_s"].to_numpy(float)  # always there: 0 where the file gives no release
    assert (np.isfinite(rel) & (rel >= 0)).all()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@settings(FUZZ, max_examples=60)
@given(data=mutated_text(WORKLOAD_LINES, CSV_VALUES, ","))
def test_fuzzed_workload_csv_loads_soundly_or_is_one_line(folder, data):
    p = folder / "w.csv"
    p.write_bytes(data)
    wl = one_line_or_loaded(lambda: read_workload(p), p)
    if wl is not None:
        sound_workload(wl)


@settings(FUZZ, max_examples=60)
@given(data=mutated_text(WORKLOAD_LINES, CSV_VALUES + ['"q,1"', '"x""y"', ' "a"', '"\n"', '"'], ","))
def test_the_vectorised_csv_layout_agrees_with_the_csv_module(folder, data):
    """Where numpy finds a CSV's records (a million rows fast), it finds the header, the physical
    line of every row and the first row of a wrong length exactly as the csv module does."""
    from energyopt import io

    p = folder / "layout.csv"
    p.write_bytes(data)

    def outcome(read: Callable[[], Any]) -> Any:
        try:
            return read()
        except DataError as exc:
            return str(exc)

    text = outcome(lambda: io.read_text_file(p))
    if not isinstance(text, str) or "\x00" in text or not text.strip():
        return
    layout = outcome(lambda: io._csv_layout(text, p))
    if layout is None:  # a quote left open: the csv module reads such a file
        return
    by_module = outcome(lambda: io._quoted_records(text, p))
    if isinstance(layout, str) or isinstance(by_module, str):
        assert layout == by_module
    else:
        assert layout[0] == by_module[0] and layout[1].tolist() == by_module[2].tolist()


def _records() -> list[dict[str, Any]]:
    head = [line.rstrip("\n").split(",") for line in WORKLOAD_LINES]
    rows = []
    for cells in head[1:]:
        rec: dict[str, Any] = {"query_id": cells[0], "input_tokens": int(cells[1]), "output_tokens": int(cells[2])}
        if cells[3]:
            rec["min_accuracy"] = float(cells[3])
        if cells[4]:
            rec["deadline_s"] = float(cells[4])
        rows.append(rec)
    return rows


@st.composite
def mutated_jsonl(draw: st.DrawFn) -> bytes:
    """JSONL queries with values of the wrong JSON type or size, keys dropped, unknown, aliased or
    given twice; then, sometimes, the text mutated as a CSV's is."""
    records = _records()
    lines = []
    for rec in records:
        rec = dict(rec)
        if draw(st.integers(0, 9)) == 0:
            op = draw(st.sampled_from(["value", "drop", "unknown", "alias"]))
            key = draw(st.sampled_from(sorted(rec)))
            if op == "value":
                rec[key] = draw(st.sampled_from(JSON_VALUES))
            elif op == "drop":
                del rec[key]
            elif op == "unknown":
                rec[draw(st.sampled_from(UNKNOWN_KEYS))] = draw(st.sampled_from(JSON_VALUES))
            else:
                rec["prompt_tokens"] = rec.get("input_tokens", 1)
        line = json.dumps(rec)
        if draw(st.integers(0, 19)) == 0:
            line = line[:-1] + ', "input_tokens": 3}'  # a key twice
        lines.append(line + "\n")
    if draw(st.booleans()):
        return draw(mutated_text(lines, ["true", "[1]", "{}", "null", "NaN", "1e400", '"x"'], ": "))
    if draw(st.integers(0, 9)) == 0:
        return json.dumps(records).encode()  # a JSON array, not JSON lines
    return "".join(lines).encode()


@settings(FUZZ, max_examples=40)
@given(data=mutated_jsonl())
def test_fuzzed_workload_jsonl_loads_soundly_or_is_one_line(folder, data):
    p = folder / "w.jsonl"
    p.write_bytes(data)
    wl = one_line_or_loaded(lambda: read_workload(p), p)
    if wl is not None:
        sound_workload(wl)


# --- release times: a release_s column, the Azure trace's TIMESTAMP, JSONL arrival/timestamp fields ---

RELEASE_LINES = [WORKLOAD_LINES[0].rstrip("\n") + ",release_s\n"] + [
    line.rstrip("\n") + f",{1.5 * i:g}\n" for i, line in enumerate(WORKLOAD_LINES[1:])]
AZURE_LINES = ["TIMESTAMP,ContextTokens,GeneratedTokens\n"] + [
    f"2023-11-16 18:{15 + i // 60:02d}:{i % 60:02d}.{(7 ** i) % 10_000_000:07d},{100 + 37 * i},{10 + 3 * i}\n"
    for i in range(24)]
TIME_VALUES = ["2023-11-16 18:15:46.6805900", "2023-11-16T18:15:46Z", "2023-13-45 99:99:99", "18:15", "2023-11-16",
               "12.5", "-3", "1e400", "yesterday", "2023-11-16 18:15:46+02:00"]


@settings(FUZZ, max_examples=60)
@given(data=mutated_text(RELEASE_LINES, CSV_VALUES, ","))
def test_fuzzed_release_column_loads_soundly_or_is_one_line(folder, data):
    p = folder / "r.csv"
    p.write_bytes(data)
    wl = one_line_or_loaded(lambda: read_workload(p), p)
    if wl is not None:
        sound_workload(wl)


@settings(FUZZ, max_examples=60)
@given(data=mutated_text(AZURE_LINES, CSV_VALUES + TIME_VALUES, ","))
def test_fuzzed_azure_trace_loads_soundly_or_is_one_line(folder, data):
    p = folder / "azure.csv"
    p.write_bytes(data)
    wl = one_line_or_loaded(lambda: read_workload(p), p)
    if wl is not None:
        sound_workload(wl)
        assert float(wl["release_s"].min()) == 0.0  # the first arrival at 0


@st.composite
def jsonl_with_arrivals(draw: st.DrawFn) -> bytes:
    """JSONL queries with an ``arrival`` (seconds) or ``timestamp`` (date-times) field, a value of
    the wrong JSON type, a missing one or a mix of kinds now and then."""
    field = draw(st.sampled_from(["arrival", "timestamp"]))
    lines = []
    for i, rec in enumerate(_records()):
        rec = dict(rec)
        rec[field] = 3.25 * i if field == "arrival" else f"2023-11-16T18:{i // 60:02d}:{i % 60:02d}.5"
        if draw(st.integers(0, 7)) == 0:
            rec[field] = draw(st.sampled_from(JSON_VALUES + TIME_VALUES))
        if draw(st.integers(0, 15)) == 0:
            del rec[field]
        lines.append(json.dumps(rec) + "\n")
    return "".join(lines).encode()


@settings(FUZZ, max_examples=60)
@given(data=jsonl_with_arrivals())
def test_fuzzed_jsonl_arrivals_load_soundly_or_are_one_line(folder, data):
    p = folder / "arrivals.jsonl"
    p.write_bytes(data)
    wl = one_line_or_loaded(lambda: read_workload(p), p)
    if wl is not None:
        sound_workload(wl)
        assert float(wl["release_s"].min()) == 0.0


def _numbers(value: Any) -> list[float]:
    if isinstance(value, dict):
        return [x for v in value.values() for x in _numbers(v)]
    if isinstance(value, list):
        return [x for v in value for x in _numbers(v)]
    return [float(value)] if isinstance(value, float) else []


@st.composite
def mutated_fleet(draw: st.DrawFn) -> bytes:
    lines = list(FLEET_LINES)
    if draw(st.integers(0, 4)) == 0:  # an unknown key in a table
        i = draw(st.integers(0, len(lines)))
        lines.insert(i, f"{draw(st.sampled_from(['idle_powr_w', 'count2', 'batch_size', 'horizon']))} = 1\n")
    return draw(mutated_text(lines, TOML_VALUES, " = "))


@settings(FUZZ, max_examples=50)
@given(data=mutated_fleet())
def test_fuzzed_fleet_loads_soundly_or_is_one_line(folder, data):
    p = folder / "f.toml"
    p.write_bytes(data)
    fleet = one_line_or_loaded(lambda: read_fleet(p), p)
    if fleet is not None:
        numbers = [fleet.horizon_s] + [x for pool in fleet.pools.values() for x in (pool.memory_gb, pool.idle_power_w)]
        numbers += [x for m in fleet.llms.values() for x in (m.accuracy, m.params_b, m.bytes_per_param)]
        assert all(math.isfinite(x) for x in numbers) and fleet.deployments


def _paths(value: Any, at: tuple = ()) -> list[tuple]:
    """Every key path into a JSON document (the root is ``()``)."""
    out = [at]
    if isinstance(value, dict):
        out += [p for k, v in value.items() for p in _paths(v, at + (k,))]
    elif isinstance(value, list):
        out += [p for i, v in enumerate(value) for p in _paths(v, at + (i,))]
    return out


@st.composite
def mutated_model(draw: st.DrawFn) -> tuple[str, bytes]:
    """A shipped model file with one to three of its values replaced, keys dropped or added, a
    value wrapped in a list; then, sometimes, its text mutated. Or (a quarter of them) the file
    with one coefficient of a scale no measurement gives."""
    f = draw(st.sampled_from(MODEL_FILES))
    doc = json.loads(f.read_text())
    if draw(st.integers(0, 3)) == 0:  # a coefficient of a scale no measurement gives (overflowing predictions)
        target = doc[draw(st.sampled_from(["energy_j", "runtime_s"]))]
        coefs = target["coefficients"]
        key = draw(st.sampled_from(sorted(coefs) + ["intercept"]))
        (target if key == "intercept" else coefs)[key] = draw(st.sampled_from([1e308, -1e308, 1e200, 1e12, 1e9, -1e9]))
        return f.name, json.dumps(doc, indent=1).encode()
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["value", "drop", "unknown", "wrap"]))
        if not path:
            if op == "unknown" and isinstance(doc, dict):
                doc[draw(st.sampled_from(UNKNOWN_KEYS))] = 1
            continue
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        key = path[-1]
        if op == "value":
            parent[key] = draw(st.sampled_from(JSON_VALUES))
        elif op == "drop" and isinstance(parent, dict):
            del parent[key]
        elif op == "unknown" and isinstance(parent[key], dict):
            parent[key][draw(st.sampled_from(UNKNOWN_KEYS))] = draw(st.sampled_from(JSON_VALUES))
        elif op == "wrap":
            parent[key] = [parent[key]]
    text = json.dumps(doc, indent=1)
    if draw(st.integers(0, 3)) == 0:
        return f.name, draw(mutated_text(text.splitlines(keepends=True), ["true", "null", "NaN", "[]", '"x"'], ": "))
    return f.name, text.encode()


@settings(FUZZ, max_examples=50)
@given(named=mutated_model())
def test_fuzzed_model_file_loads_soundly_or_is_one_line(folder, named):
    name, data = named
    d = folder / "models"
    d.mkdir(exist_ok=True)
    for old in d.iterdir():
        old.unlink()
    (d / name).write_bytes(data)
    fm = one_line_or_loaded(lambda: FittedModels.load(d), d / name)
    if fm is not None:
        for targets in fm.models.values():
            for m in targets.values():
                assert np.isfinite(m.coefficients).all() and m.batch_size_range[0] >= 1
        # what a plan asks of them: finite predictions, or a one-line error before any solving (a
        # coefficient of 1e308 loaded, then overflowed into an infinite cost inside the solver)
        pairs = fm.pairs()
        sizes = [fm.get(*pair)["energy_j"].batch_size_range[0] for pair in pairs]
        tokens = np.array([1, 100, 4096, 10_000_000])
        got = one_line_or_loaded(lambda: fm.predict_matrix(pairs, tokens, tokens[::-1], sizes), d / name)
        if got is not None:
            assert all(np.isfinite(a).all() for a in got[:2])


# --- end to end: the CLI's exit code 2, one line, nothing written -------------------------------

GOOD_FLEET = ROOT / "examples" / "fleet.toml"
GOOD_MODELS = ROOT / "models"


def _bad_inputs(tmp_path: Path, which: str) -> tuple[Path, Path, Path, str]:
    wl = tmp_path / "w.jsonl"
    wl.write_text('{"query_id": "a", "input_tokens": 20, "output_tokens": 0}\n')  # a prefill-only query: fine
    fleet, models, expected = GOOD_FLEET, GOOD_MODELS, ""
    if which == "workload":
        wl.write_text('{"query_id": "a", "input_tokens": true, "output_tokens": 3}\n')
        expected = "line 1, column input_tokens: expected a number, got true"
    elif which == "csv":
        wl = tmp_path / "w.csv"
        wl.write_text("query_id,input_tokens,output_tokens\n\na,1e20,3\n")
        expected = "line 3, column input_tokens: expected a number <= 10,000,000"
    elif which == "fleet":
        fleet = tmp_path / "f.toml"
        fleet.write_text(GOOD_FLEET.read_text().replace("idle_power_w = 126", "idle_power_w = nan", 1))
        expected = "must be a finite number, got nan"
    elif which == "models":
        models = tmp_path / "models"
        models.mkdir()
        for f in GOOD_MODELS.glob("*.json"):
            (models / f.name).write_bytes(f.read_bytes())
        doc = json.loads((models / "mistral-7b__h200.json").read_text())
        doc["energy_j"]["coefficient"] = doc["energy_j"].pop("coefficients")
        (models / "mistral-7b__h200.json").write_text(json.dumps(doc))
        expected = "unknown key energy_j.coefficient; did you mean coefficients?"
    return wl, fleet, models, expected


@pytest.mark.parametrize("which", ["workload", "csv", "fleet", "models"])
def test_solve_with_a_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, which):
    wl, fleet, models, expected = _bad_inputs(tmp_path, which)
    out = tmp_path / "plan"
    r = CliRunner().invoke(main, ["solve", str(wl), "--fleet", str(fleet), "--models", str(models), "--out", str(out)],
                           catch_exceptions=False)
    assert r.exit_code == 2, r.output
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: ") and expected in r.stderr, r.stderr
    assert r.stdout == "" and not out.exists()


def test_solve_plans_a_prefill_only_query(tmp_path):
    wl, fleet, models, _ = _bad_inputs(tmp_path, "none")
    r = CliRunner().invoke(main, ["solve", str(wl), "--fleet", str(fleet), "--models", str(models), "--out",
                                  str(tmp_path / "plan"), "--quiet"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "plan" / "assignment.csv").exists()
