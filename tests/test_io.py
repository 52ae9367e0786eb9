"""Readers: canonical columns and one-line errors naming file, line and column."""

from __future__ import annotations

import json
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
    ],
)
def test_fast_workload_reader_leaves_anything_unusual_to_the_validating_one(tmp_path, text):
    from energyopt import io

    assert io._read_workload_csv_fast(write(tmp_path, text, "w.csv")) is None


def test_jsonl_bad_line(tmp_path):
    with pytest.raises(DataError, match=r"w\.jsonl: line 2: not valid JSON"):
        read_workload(write(tmp_path, '{"query_id": 1, "input_tokens": 1, "output_tokens": 1}\n{oops\n', "w.jsonl"))
