"""Readers: canonical columns and one-line errors naming file, line and column."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from energyopt.errors import DataError
from energyopt.io import read_characterization, read_workload

HEADER = "llm,device,input_tokens,output_tokens,batch_size,runtime_s,energy_j\n"
ROW = "m,d,10,20,1,0.5,100\n"


def write(tmp_path: Path, text: str, name: str = "c.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_reads_valid_characterization_with_aliases(tmp_path):
    p = write(tmp_path, "Model,device,tokens_in,output_tokens,batch_size,runtime,energy,gpu_name\nm,d,10,20,1,0.5,100,H100\n")
    df = read_characterization(p)
    assert list(df.columns[:7]) == ["llm", "device", "input_tokens", "output_tokens", "batch_size", "runtime_s", "energy_j"]
    assert df["input_tokens"].dtype.kind == "i" and df.loc[0, "gpu_name"] == "H100"


@pytest.mark.parametrize(
    "text, match",
    [
        ("llm,device,input_tokens\nm,d,1\n", r"c\.csv: missing column\(s\) output_tokens, batch_size, runtime_s, energy_j"),
        (HEADER + "m,d,ten,20,1,0.5,100\n", r"c\.csv: line 2, column input_tokens: expected a number, got 'ten'"),
        (HEADER + ROW + "m,d,10,0,1,0.5,100\n", r"line 3, column output_tokens: expected a positive number"),
        (HEADER + "m,d,10,20,1,-1,100\n", r"line 2, column runtime_s: expected a positive number"),
        (HEADER + "m,d,10,20,1,0.5,\n", r"line 2, column energy_j: value is missing"),
        (HEADER + "m,d,10,20,1,0.5,nan\n", r"line 2, column energy_j: value is missing|expected a positive number"),
        (HEADER + "m,d,10.5,20,1,0.5,100\n", r"line 2, column input_tokens: expected a whole number"),
        (HEADER + ROW + ROW, r"line 3 duplicates line 2 exactly"),
        (HEADER, r"no data rows"),
        ("", r"file is empty"),
        (HEADER + ",d,10,20,1,0.5,100\n", r"line 2, column llm: value is missing"),
        (HEADER.strip() + ",split\n" + ROW.strip() + ",design\nm,d,11,20,1,0.5,100,test\n",
         r"line 3, column split: 'test'; expected design or holdout"),
    ],
)
def test_characterization_errors(tmp_path, text, match):
    with pytest.raises(DataError, match=match):
        read_characterization(write(tmp_path, text))


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.csv: file not found"):
        read_characterization(tmp_path / "nope.csv")


def test_workload_csv_jsonl_and_azure(tmp_path):
    a = read_workload(write(tmp_path, "query_id,input_tokens,output_tokens,min_accuracy,deadline_s\n"
                                      "1,10,5,0.5,\n2,7,3,,30\n", "w.csv"))
    assert a["query_id"].tolist() == ["1", "2"] and a["min_accuracy"].tolist() == [0.5, 0.0]
    assert a["deadline_s"].isna().tolist() == [True, False]
    lines = [{"query_id": "a", "input_tokens": 5, "output_tokens": 6},
             {"query_id": "b", "input_tokens": 1, "output_tokens": 1, "deadline_s": 9}]
    b = read_workload(write(tmp_path, "\n".join(json.dumps(x) for x in lines) + "\n", "w.jsonl"))
    assert b["deadline_s"].tolist()[1] == 9
    azure = "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,374,44\n2023-11-16 18:15:50.9951690,396,109\n"
    c = read_workload(write(tmp_path, azure, "azure.csv"))
    assert c["query_id"].tolist() == ["q0", "q1"] and c["input_tokens"].tolist() == [374, 396]


@pytest.mark.parametrize(
    "text, match",
    [
        ("query_id,input_tokens\n1,2\n", r"w\.csv: missing column\(s\) output_tokens"),
        ("query_id,input_tokens,output_tokens\n1,-2,3\n",
         r"w\.csv: line 2, column input_tokens: expected a positive number, got '-2'"),
        ("query_id,input_tokens,output_tokens\n1,x,3\n", r"line 2, column input_tokens: expected a number, got 'x'"),
        ("query_id,input_tokens,output_tokens\n1,2,3\n1,4,5\n", r"line 3, column query_id: duplicate id '1' \(first on line 2\)"),
        ("query_id,input_tokens,output_tokens,min_accuracy\n1,2,3,1.5\n",
         r"line 2, column min_accuracy: expected an accuracy in \[0, 1\]"),
        ("query_id,input_tokens,output_tokens,deadline_s\n1,2,3,-4\n", r"line 2, column deadline_s: expected a positive number"),
        ("query_id,input_tokens,output_tokens\n", r"no queries"),
    ],
)
def test_workload_errors(tmp_path, text, match):
    with pytest.raises(DataError, match=match):
        read_workload(write(tmp_path, text, "w.csv"))


@pytest.mark.parametrize(
    "text",
    [
        "query_id,input_tokens,output_tokens,min_accuracy,deadline_s\nq1,10,5,0.5,\nq2,7,3,,30\n",
        " ID , Prompt_Tokens,completion_tokens,deadline\n a ,1e2,3.0,12.5\n\"b,c\",7,3,\n",  # aliases, spaces, quotes
        "query_id,input_tokens,output_tokens,min_accuracy,note\n1,10,5,nan,hello\n2,7,3,0.6,\n3,7,3,0, padded\n",
        "output_tokens,query_id,input_tokens\n5,x,4\n",  # any column order
        "query_id,input_tokens,output_tokens\n1, 2,3\n",
        "\ufeffquery_id,input_tokens,output_tokens\nz,1,1\n",  # a byte-order mark
    ],
)
def test_fast_and_validating_workload_readers_agree(tmp_path, monkeypatch, text):
    """A clean CSV is read by pyarrow with typed columns; the result must equal the validating
    reader's, column for column and dtype for dtype."""
    import pandas as pd

    from energyopt import io

    p = write(tmp_path, text, "w.csv")
    fast = io._read_workload_csv_fast(p)
    assert fast is not None  # these files are clean: the fast reader must take them
    monkeypatch.setattr(io, "_read_workload_csv_fast", lambda p: None)
    pd.testing.assert_frame_equal(fast, read_workload(p))


@pytest.mark.parametrize(
    "text",
    [
        "query_id,input_tokens,output_tokens\n1,2.5,3\n",
        "query_id,input_tokens,output_tokens\n1,2,3\n1,4,5\n",
        "query_id,input_tokens,output_tokens\n ,2,3\n",
        "query_id,input_tokens,output_tokens,deadline_s\n1,2,3,NA\n",
        "query_id,input_tokens,output_tokens,deadline_s\n1,2,3,inf\n",
        "query_id,input_tokens,output_tokens,min_accuracy\n1,2,3,-0.1\n",
        "query_id,id,input_tokens,output_tokens\n1,2,3,4\n",
        "query_id,input_tokens,output_tokens\n1,2,3,4\n",
        "query_id,input_tokens,output_tokens\na\x00,2,3\n",  # a NUL byte: the validating reader refuses it
    ],
)
def test_fast_workload_reader_leaves_anything_unusual_to_the_validating_one(tmp_path, text):
    from energyopt import io

    assert io._read_workload_csv_fast(write(tmp_path, text, "w.csv")) is None


def test_jsonl_bad_line(tmp_path):
    with pytest.raises(DataError, match=r"w\.jsonl: line 2: not valid JSON"):
        read_workload(write(tmp_path, '{"query_id": 1, "input_tokens": 1, "output_tokens": 1}\n{oops\n', "w.jsonl"))


# --- strict readers (issue 15): nothing silently wrong --------------------------------------------

WL_HEADER = "query_id,input_tokens,output_tokens\n"


def jsonl(tmp_path: Path, *records: str) -> Path:
    return write(tmp_path, "".join(r + "\n" for r in records), "w.jsonl")


def rec(**values: object) -> str:
    """A JSONL query with the given keys (as JSON) over a valid one's."""
    base = {"query_id": "a", "input_tokens": 2, "output_tokens": 3}
    return json.dumps({**base, **values})


@pytest.mark.parametrize(
    "record, match",
    [
        (rec(input_tokens=True), r"w\.jsonl: line 2, column input_tokens: expected a number, got true$"),
        (rec(output_tokens=False), r"column output_tokens: expected a number, got false$"),
        (rec(min_accuracy=True), r"column min_accuracy: .*got true"),
        (rec(deadline_s=True), r"column deadline_s: .*got true"),
        (rec(input_tokens=[2]), r"column input_tokens: expected a number, got a JSON array"),
        (rec(input_tokens={"n": 2}), r"column input_tokens: .*got a JSON object"),
        (rec(query_id=True), r"column query_id: expected text or a number, got true"),
        ('{"query_id": "a", "input_tokens": 2, "input_tokens": 3, "output_tokens": 3}',
         r"line 2: not valid JSON \(key input_tokens appears twice"),
    ],
)
def test_jsonl_values_of_the_wrong_json_type_are_errors(tmp_path, record, match):
    """JSON's true is not the number 1: a boolean, array or object where a number belongs is an
    error, as is a key given twice (JSON would keep the last silently)."""
    with pytest.raises(DataError, match=match):
        read_workload(jsonl(tmp_path, '{"query_id": "z", "input_tokens": 1, "output_tokens": 1}', record))


def test_jsonl_numbers_as_text_still_read(tmp_path):
    wl = read_workload(jsonl(tmp_path, '{"query_id": 7, "input_tokens": "12", "output_tokens": 3.0, "deadline_s": null}'))
    assert wl["query_id"].tolist() == ["7"] and wl["input_tokens"].tolist() == [12] and wl["deadline_s"].isna().all()


@pytest.mark.parametrize(
    "name, text, match",
    [
        ("w.csv", WL_HEADER + "a,1e20,3\n", r"w\.csv: line 2, column input_tokens: expected a number <= 10,000,000, got '1e20'"),
        ("w.csv", WL_HEADER + "a,5,3\nb,2,10000001\n", r"line 3, column output_tokens: expected a number <= 10,000,000"),
        ("w.jsonl", '{"query_id": "a", "input_tokens": 1' + "0" * 30 + ', "output_tokens": 3}\n',
         r"line 1, column input_tokens: expected a number <= 10,000,000, got 1000000000"),
        ("w.jsonl", '{"query_id": "a", "input_tokens": 1' + "0" * 400 + ', "output_tokens": 3}\n',
         r"line 1, column input_tokens: expected a number <= 10,000,000, got 1000+…$"),
        ("w.jsonl", '{"query_id": "a", "input_tokens": 1e400, "output_tokens": 3}\n',
         r"line 1, column input_tokens: expected a number <= 10,000,000, got inf"),
    ],
)
def test_token_counts_too_large_to_be_real_are_errors(tmp_path, name, text, match):
    """A token count above MAX_TOKENS (10 million) is no real query: an error naming the line and
    the column and stating the cap, not a numpy warning and a negative count (1e20 cast to int64)."""
    with pytest.raises(DataError, match=match):
        read_workload(write(tmp_path, text, name))


def test_characterization_caps_token_counts_and_batch_sizes(tmp_path):
    with pytest.raises(DataError, match=r"line 2, column input_tokens: expected a number <= 10,000,000"):
        read_characterization(write(tmp_path, HEADER + "m,d,1e20,20,1,0.5,100\n"))
    with pytest.raises(DataError, match=r"line 2, column batch_size: expected a number <= 1,000,000"):
        read_characterization(write(tmp_path, HEADER + "m,d,10,20,1e19,0.5,100\n"))


def test_fast_workload_reader_leaves_huge_token_counts_to_the_validating_one(tmp_path):
    from energyopt import io

    assert io._read_workload_csv_fast(write(tmp_path, WL_HEADER + "a,1e20,3\n", "w.csv")) is None


@pytest.mark.parametrize("name, text", [
    ("w.csv", WL_HEADER + "a,5,0\nb,7,2\n"),
    ("w.csv", WL_HEADER + "a,5,0\n\"b\",7,2\n"),  # the validating reader (quotes)
    ("w.jsonl", rec(query_id="a", input_tokens=5, output_tokens=0) + "\n" + rec(query_id="b", input_tokens=7, output_tokens=2)),
])
def test_a_prefill_only_query_is_read(tmp_path, name, text):
    """0 output tokens (a prefill-only request, common in real traces) is a query, not an error."""
    wl = read_workload(write(tmp_path, text, name))
    assert wl["output_tokens"].tolist() == [0, 2] and str(wl["output_tokens"].dtype) == "int64"


def test_input_tokens_stay_at_least_1(tmp_path):
    with pytest.raises(DataError, match=r"line 2, column input_tokens: expected a positive number, got '0'"):
        read_workload(write(tmp_path, WL_HEADER + "a,0,0\n", "w.csv"))


@pytest.mark.parametrize("name, text", [
    ("w.jsonl", '\ufeff{"query_id": "a", "input_tokens": 5, "output_tokens": 2}\n'),
    ("w.csv", "\ufeffquery_id,input_tokens,output_tokens\n\"a\",5,2\n"),  # the validating reader
    ("w.csv", "\ufeffquery_id,input_tokens,output_tokens\na,5,2\n"),
])
def test_a_byte_order_mark_is_accepted(tmp_path, name, text):
    wl = read_workload(write(tmp_path, text, name))
    assert wl["query_id"].tolist() == ["a"] and list(wl.columns[:3]) == ["query_id", "input_tokens", "output_tokens"]


def test_json_object_file_accepts_a_byte_order_mark(tmp_path):
    from energyopt.io import read_json_object

    assert read_json_object(write(tmp_path, '\ufeff{"a": 1}', "x.json")) == {"a": 1}


@pytest.mark.parametrize(
    "text, match",
    [  # the bad value is on physical line 7: header, blank, a, blank, "b / c" (two lines), d
        (WL_HEADER + "\na,5,1\n\n\"b\nc\",5,1\nd,x,1\n", r"w\.csv: line 7, column input_tokens: expected a number, got 'x'"),
        (WL_HEADER + "\na,5,1\n  \n\t\nb,5,1\nd,x,1\n", r"line 7, column input_tokens"),  # no quotes: the fast layout
        (WL_HEADER + "a,5,1\r\n\r\nb,5,1\rd,x,1\r", r"line 5, column input_tokens"),  # \r\n and a lone \r end lines
        ("\n\n" + WL_HEADER + "a,5,1\na,6,1\n", r"line 5, column query_id: duplicate id 'a' \(first on line 4\)"),
        (WL_HEADER + "\"a\n\n\",5,1\nb,5,1\nb,5,1\n", r"line 6, column query_id: duplicate id 'b' \(first on line 5\)"),
    ],
)
def test_csv_errors_name_the_physical_line(tmp_path, text, match):
    """Blank lines and the extra lines of a quoted value count, as a text editor counts them."""
    with pytest.raises(DataError, match=match):
        read_workload(write(tmp_path, text, "w.csv"))


def test_characterization_errors_name_the_physical_line(tmp_path):
    with pytest.raises(DataError, match=r"c\.csv: line 5, column runtime_s: expected a positive number"):
        read_characterization(write(tmp_path, HEADER + ROW + "\n\nm,d,10,20,1,-1,100\n"))


@pytest.mark.parametrize(
    "text, match",
    [
        (WL_HEADER + "a,5,1,7\n", r"w\.csv: line 2 has 4 fields, the header has 3"),
        (WL_HEADER + "a,5,1\n\nb,5,1,7\n", r"line 4 has 4 fields, the header has 3"),
        (WL_HEADER + "a,5\n", r"line 2 has 2 fields, the header has 3"),
        (WL_HEADER + "\"a\",5,1\n\"b,c\n\",5\n", r"line 3 has 2 fields, the header has 3"),
        ("query_id,input_tokens,output_tokens,input_tokens\na,1,2,3\n", r"line 1: column 'input_tokens' appears twice"),
        ("query_id,input_tokens,output_tokens\nb,1,2\n\"a,1,2\nc,x,1\n", r"line 3: a quote opened there is never closed"),
        (WL_HEADER + "a,\x00,1\n", r"line 2: a NUL byte"),
    ],
)
def test_csv_rows_must_match_the_header(tmp_path, text, match):
    """A row with more fields than the header was read as a shifted row (its first field taken as
    the index); one with fewer was padded. Both are errors naming the line."""
    with pytest.raises(DataError, match=match):
        read_workload(write(tmp_path, text, "w.csv"))


@pytest.mark.parametrize(
    "name, content",
    [
        ("w.csv", json.dumps([{f"query_id{i}": i} for i in range(300)]).encode()),
        ("w.jsonl", json.dumps([{f"query_id{i}": i} for i in range(300)]).encode()),
        ("w.jsonl", b'{"query_id": "' + b"x" * 5000 + b'", "input_tokens": "' + b"y\\n" * 3000 + b'", "output_tokens": 1}'),
        ("w.csv", WL_HEADER.encode() + b"a" * 5000 + b"\n" + b"b" * 5000 + b",1,1\n"),
        ("w.csv", bytes(range(256)) * 20),
        ("w.jsonl", bytes(range(256)) * 20),
    ],
)
def test_error_messages_stay_short_and_on_one_line(tmp_path, name, content):
    """A JSON array, a long value or random bytes: a quoted excerpt is cut to 80 characters."""
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(DataError) as err:
        read_workload(p)
    msg = str(err.value)
    assert "\n" not in msg and "\r" not in msg and len(msg) < len(str(p)) + 260, msg


def test_a_workload_table_is_checked_and_completed_as_a_file_is():
    """The Python API takes a DataFrame: pd.read_csv's NaN floors are no floor (they made every
    query infeasible, 'needs accuracy >= nan'), and bad values are one-line errors naming the row."""
    import pandas as pd

    from energyopt.io import workload_from_frame

    w = workload_from_frame(pd.DataFrame({"query_id": [1, 2], "input_tokens": [10.0, 20.0], "output_tokens": [0, 5],
                                          "min_accuracy": [float("nan"), 0.5]}))
    assert w["query_id"].tolist() == ["1", "2"] and w["min_accuracy"].tolist() == [0.0, 0.5]
    assert w["input_tokens"].dtype == "int64" and w["deadline_s"].isna().all()
    cases = [
        ({"query_id": ["a", "a"], "input_tokens": [1, 2], "output_tokens": [1, 1]}, "row 1, column query_id: expected unique"),
        ({"query_id": ["a"], "input_tokens": [1.5], "output_tokens": [1]}, "row 0, column input_tokens: expected a whole number"),
        ({"query_id": ["a"], "input_tokens": [0], "output_tokens": [1]}, "expected a whole number from 1 to 10,000,000, got '0'"),
        ({"query_id": ["a"], "input_tokens": [5], "output_tokens": [1], "min_accuracy": [1.5]}, "expected a number in [0, 1]"),
        ({"query_id": ["a"], "input_tokens": [5], "output_tokens": [1], "deadline_s": [0.0]}, "column deadline_s"),
        ({"query_id": ["a"], "input_tokens": ["x"], "output_tokens": [1]}, "column input_tokens: expected a number"),
        ({"query_id": ["a"], "output_tokens": [1]}, "column(s) input_tokens missing"),
    ]
    for frame, message in cases:
        with pytest.raises(DataError, match=re.escape(message)):
            workload_from_frame(pd.DataFrame(frame))


@pytest.mark.parametrize("name, text", [
    ("w.csv", "query_id,input_tokens,output_tokens,deadline_s\na,10,5,3\nb,7,2,\n"),  # pyarrow's fast path
    ("w.jsonl", '{"query_id": "a", "input_tokens": 10, "output_tokens": 5}\n'
                '{"query_id": "b", "input_tokens": 7, "output_tokens": 2}\n'),  # the validating reader
])
def test_a_workload_read_is_checked_once_until_changed(tmp_path, name, text):
    """A table a reader returned is not checked again by workload_from_frame (plan() and the CLI
    pass it on: a million queries cost about 0.3 s a check), while its workload columns stay as
    read; changed in place, it is checked again and the error names the row."""
    from energyopt.io import workload_from_frame

    wl = read_workload(write(tmp_path, text, name))
    assert workload_from_frame(wl) is wl
    copy = wl.copy()
    assert workload_from_frame(copy).equals(wl)  # a copy is a table like any other: checked, same values
    wl.loc[1, "input_tokens"] = 0
    with pytest.raises(DataError, match=r"row 1, column input_tokens: expected a whole number from 1"):
        workload_from_frame(wl)
    wl.loc[1, "input_tokens"] = 7
    wl.loc[1, "query_id"] = "a"
    with pytest.raises(DataError, match=r"row 1, column query_id: expected unique query ids"):
        workload_from_frame(wl)
