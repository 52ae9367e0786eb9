"""writers.py: atomic replacement, the CSV writer, JSON values."""

from __future__ import annotations

import json
import math
import os
import stat

import numpy as np
import pandas as pd
import pytest

from energyopt.schema import BoundSource, Status
from energyopt.writers import atomic_path, jsonable, write_atomic, write_json, write_table_csv


def test_jsonable_turns_numpy_enums_nan_and_inf_into_plain_json_values():
    doc = {"a": np.float64(1.5), "b": np.int64(3), "c": Status.OPTIMAL, "d": BoundSource.LAGRANGIAN,
           "e": math.nan, "f": math.inf, "g": -math.inf, "h": [np.bool_(True), None, "x"], 4: (1, 2.0)}
    assert jsonable(doc) == {"a": 1.5, "b": 3, "c": "optimal", "d": "lagrangian", "e": None, "f": "inf", "g": "-inf",
                             "h": [True, None, "x"], "4": [1, 2.0]}
    json.dumps(jsonable(doc), allow_nan=False)  # strict JSON


def test_write_json_writes_indented_json_and_returns_the_path(tmp_path):
    p = write_json(tmp_path / "sub" / "s.json", {"status": Status.INFEASIBLE, "gap": math.inf})
    assert p == tmp_path / "sub" / "s.json"
    assert json.loads(p.read_text()) == {"status": "infeasible", "gap": "inf"}


def test_atomic_path_keeps_the_old_file_when_the_write_fails(tmp_path):
    target = tmp_path / "out.txt"
    write_atomic(target, "old")
    with pytest.raises(RuntimeError, match="boom"), atomic_path(target) as tmp:
        with open(tmp, "w") as fh:
            fh.write("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # no temporary left behind


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_atomic_writes_get_the_mode_the_umask_gives_not_mkstemps_0600(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        write_atomic(tmp_path / "a.txt", "x")
        write_json(tmp_path / "b.json", {"x": 1})
        write_table_csv(pd.DataFrame({"x": [1]}), tmp_path / "c.csv")
    finally:
        os.umask(old)
    for name in ("a.txt", "b.json", "c.csv"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name


def test_write_table_csv_round_trips_floats_exactly_and_leaves_missing_values_empty(tmp_path):
    t = pd.DataFrame({"query_id": ["a", "b,c"], "x": [0.1 + 0.2, 1e-17], "deadline_s": [np.nan, 5.0]})
    write_table_csv(t, tmp_path / "t.csv")
    # floats in their shortest exact form, a missing value empty, a comma inside a quoted string
    assert (tmp_path / "t.csv").read_text().splitlines() == [
        '"query_id","x","deadline_s"', '"a",0.30000000000000004,', '"b,c",1e-17,5']
    back = pd.read_csv(tmp_path / "t.csv")
    assert back["x"].tolist() == t["x"].tolist() and back["query_id"].tolist() == ["a", "b,c"]
