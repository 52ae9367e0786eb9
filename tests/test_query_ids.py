"""Query ids round-trip (issue 15): an id with commas, quotes, line breaks, blanks, non-ASCII
characters or the text of a missing value (NA, null, None, nan) is read from the workload (CSV or
JSONL), written to assignment.csv by pyarrow, and read back by the readers of explain, the
checker and replay as the same text."""

from __future__ import annotations

import csv
import io
import json

import pytest
from click.testing import CliRunner

from energyopt.check import check_plan
from energyopt.cli import main
from energyopt.explain import load_plan_dir
from energyopt.fleet import read_fleet
from energyopt.io import read_assignment_csv, read_workload
from energyopt.modelstore import FittedModels

IDS = ["plain", "a,b", 'say "hi"', "two\nlines", "cr\rlf", "café ☕ 東京", "NA", "null", "nan", "N/A", "None", "#hash",
       "007", "1e3", "TRUE", "-", "'single'", "tab\there", '"', ",", "x" * 300, "  padded  "]
#: what the workload reader makes of an id: surrounding blanks are not part of it
READ_AS = {"  padded  ": "padded"}


def _write(tmp_path, kind: str):
    rows = [{"query_id": q, "input_tokens": 100 + 7 * i, "output_tokens": 20 + i} for i, q in enumerate(IDS)]
    p = tmp_path / f"w.{kind}"
    if kind == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, ["query_id", "input_tokens", "output_tokens"])
        w.writeheader()
        w.writerows(rows)
        p.write_text(buf.getvalue(), encoding="utf-8")
    else:
        p.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return p


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_query_ids_round_trip_through_the_plan_and_its_readers(tmp_path, kind, synthetic_models, synthetic_fleet):
    wl_path = _write(tmp_path, kind)
    expected = [READ_AS.get(q, q) for q in IDS]
    wl = read_workload(wl_path)
    assert list(wl["query_id"]) == expected
    out = tmp_path / "plan"
    r = CliRunner().invoke(main, ["solve", str(wl_path), "--fleet", str(synthetic_fleet), "--models",
                                  str(synthetic_models), "-o", str(out), "-q"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    asg = read_assignment_csv(out / "assignment.csv")
    assert sorted(asg["query_id"]) == sorted(expected)
    # the checker reads the file itself
    assert check_plan(out / "assignment.csv", wl, read_fleet(synthetic_fleet), FittedModels.load(synthetic_models)) == []
    # explain and replay read the plan with load_plan_dir: every row matches the workload
    _, rows, _ = load_plan_dir(out)
    assert sorted(rows["query_id"]) == sorted(expected)
    for given, kept in zip(IDS, expected):  # each id as the workload file has it
        r = CliRunner().invoke(main, ["explain", str(out), given, "--json"], catch_exceptions=False)
        assert r.exit_code == 0, (given, r.output)
        assert json.loads(r.stdout)["query"]["query_id"] == kept


def test_an_assignment_that_is_not_csv_is_one_line(tmp_path):
    from energyopt.errors import DataError

    p = tmp_path / "assignment.csv"
    p.write_text('query_id,llm\n"open,m\n')
    with pytest.raises(DataError, match=r"assignment.csv: not a readable CSV \(") as e:
        read_assignment_csv(p)
    assert "\n" not in str(e.value)
