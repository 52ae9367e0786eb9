"""The data contracts as data: column specs, the names derived from them, the readers reading them,
and README's "Data formats" table holding every column with its unit."""

from __future__ import annotations

import dataclasses
import importlib
import re
from pathlib import Path

import pandas as pd
import pytest

from energyopt import schema
from energyopt.errors import DataError
from energyopt.io import read_characterization, read_workload
from energyopt.schema import (
    ASSIGNMENT_SPEC,
    CHAR_SPEC,
    SUMMARY_EXTRAPOLATION_SPEC,
    SWEEP_SPEC,
    WORKLOAD_SPEC,
    ColumnSpec,
    names,
    optional_names,
    required_names,
    spec_of,
)

README = Path(__file__).parent.parent / "README.md"

#: each spec and how the first cell of its row in README's "Data formats" table begins
SPECS = {
    "characterization": (CHAR_SPEC, "characterization CSV"),
    "workload": (WORKLOAD_SPEC, "workload CSV or JSONL"),
    "assignment": (ASSIGNMENT_SPEC, "`assignment.csv`"),
    "sweep": (SWEEP_SPEC, "`sweep.csv`"),
    "summary-extrapolation": (SUMMARY_EXTRAPOLATION_SPEC, "`summary.json`"),
}

#: (spec, column) that README's table does not yet show with its unit: the README lines to change.
#: Strict: once README lists one, its case passes, and the entry must go.
README_GAPS: dict[tuple[str, str], str] = {}


def test_derived_names_keep_their_values():
    """The names every module imports keep the values they had before the specs."""
    assert schema.CHAR_REQUIRED == ("llm", "device", "input_tokens", "output_tokens", "batch_size", "runtime_s", "energy_j")
    assert schema.CHAR_OPTIONAL_NUMERIC == ("energy_per_query_j", "gpu_energy_j", "cpu_energy_j", "idle_power_w", "num_devices")
    assert schema.CHAR_OPTIONAL_SIGNED == ("above_idle_energy_j",)
    assert schema.TARGETS == ("energy_j", "runtime_s") and schema.TARGET_UNITS == {"energy_j": "J", "runtime_s": "s"}
    assert schema.WORKLOAD_REQUIRED == ("query_id", "input_tokens", "output_tokens")
    assert schema.WORKLOAD_OPTIONAL == ("min_accuracy", "deadline_s", "release_s")
    assert schema.ASSIGNMENT_COLUMNS == ("query_id", "llm", "device", "instance", "lane", "batch_size", "start_s", "end_s",
                                         "runtime_s", "energy_j", "accuracy", "deadline_s", "release_s",
                                         "engine_start_s", "engine_end_s")
    # plans made before release times lack release_s, before engine timing the engine columns
    assert schema.ASSIGNMENT_REQUIRED == schema.ASSIGNMENT_COLUMNS[:-3]
    assert names(WORKLOAD_SPEC) == required_names(WORKLOAD_SPEC) + optional_names(WORKLOAD_SPEC)


def test_sweep_columns_match_the_sweep_module():
    sweep = importlib.import_module("energyopt.sweep")  # energyopt.sweep is the function

    assert tuple(sweep.SWEEP_COLUMNS) == schema.SWEEP_COLUMNS == names(SWEEP_SPEC)


def test_characterization_spec_matches_the_harness_columns():
    from energyopt.characterize.csvlog import ROW_COLUMNS

    assert names(CHAR_SPEC) == ROW_COLUMNS


@pytest.mark.parametrize("spec", [s for s, _ in SPECS.values()], ids=list(SPECS))
def test_specs_are_well_formed(spec):
    assert len(set(names(spec))) == len(spec)
    for c in spec:
        assert c.description and c.dtype in schema.DTYPES
        unit_in_name = {"_s": "s", "_j": "J", "_w": "W", "_kwh": "kWh"}
        for suffix, unit in unit_in_name.items():
            if c.name.endswith(suffix) and c.is_numeric:
                assert c.unit == unit, f"{c.name}: the name says [{unit}], the spec [{c.unit}]"


def test_column_spec_is_frozen_and_checked():
    c = spec_of(CHAR_SPEC, "runtime_s")
    assert c.label == "runtime_s [s]" and spec_of(CHAR_SPEC, "llm").label == "llm"
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.unit = "ms"  # type: ignore[misc]
    with pytest.raises(ValueError, match="dtype 'float' is not one of"):
        ColumnSpec("x", "float", "", True, "x")
    with pytest.raises(ValueError, match="only numeric columns have bounds"):
        ColumnSpec("x", "str", "", True, "x", minimum=0)
    with pytest.raises(ValueError, match="only text columns have choices"):
        ColumnSpec("x", "int64", "", True, "x", choices=("a",))
    with pytest.raises(KeyError):
        spec_of(CHAR_SPEC, "nope")


def test_readers_return_the_spec_dtypes(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text("llm,device,input_tokens,output_tokens,batch_size,runtime_s,energy_j,idle_power_w,split\n"
                 "m,d,10,20,1,0.5,100,,\n")
    df = read_characterization(p)
    for col in df.columns:
        want = spec_of(CHAR_SPEC, col).dtype
        if want == "str":
            assert pd.api.types.is_string_dtype(df[col]) or df[col].dtype == object, col
        else:
            assert str(df[col].dtype) == want, col
    w = tmp_path / "w.csv"
    w.write_text("query_id,input_tokens,output_tokens\nq,3,4\n")
    wl = read_workload(w)
    assert [str(wl[c.name].dtype) for c in WORKLOAD_SPEC if c.is_numeric] == [c.dtype for c in WORKLOAD_SPEC if c.is_numeric]


@pytest.mark.parametrize(
    "reader, text, match",
    [
        (read_characterization, "llm,device,input_tokens,output_tokens,batch_size,runtime_s,energy_j\nm,d,1,2,1,-0.5,3\n",
         r"line 2, column runtime_s: expected a positive number \[s\], got '-0\.5'"),
        (read_characterization,
         "llm,device,input_tokens,output_tokens,batch_size,runtime_s,energy_j,idle_power_w\nm,d,1,2,1,0.5,3,-4\n",
         r"line 2, column idle_power_w: expected a number >= 0 \[W\], got '-4'"),
        (read_workload, "query_id,input_tokens,output_tokens,deadline_s\n1,2,3,0\n",
         r"line 2, column deadline_s: expected a positive number \[s\], got '0'"),
        (read_workload, "query_id,input_tokens,output_tokens\n1,0,3\n",
         r"line 2, column input_tokens: expected a positive number, got '0'"),
    ],
)
def test_reader_messages_carry_the_unit(tmp_path, reader, text, match):
    p = tmp_path / "f.csv"
    p.write_text(text)
    with pytest.raises(DataError, match=match):
        reader(p)


def _data_formats_rows() -> dict[str, str]:
    """README's "Data formats" table: first cell -> the cell of columns and units."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Data formats\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and not set(cells[0]) <= set("-"):
            rows[cells[0]] = cells[2]
    return rows


def listed_with_unit(cell: str, column: ColumnSpec) -> bool:
    """Whether ``cell`` lists ``column`` by name and, if it has a unit, gives the unit in brackets
    right after it or after a group of names it belongs to (`` `a`, `b` [J] ``)."""
    for m in re.finditer(rf"`{re.escape(column.name)}`", cell):
        if not column.unit:
            return True
        after = cell[m.end():]
        group = re.match(r"(?:\s*,\s*`[^`]+`)*\s*\[([^\]]*)\]", after)
        if group and re.match(rf"{re.escape(column.unit)}(?:$|[\s;,])", group.group(1)):
            return True
    return False


def test_the_unit_check_itself():
    c = spec_of(CHAR_SPEC, "gpu_energy_j")
    assert listed_with_unit("`gpu_energy_j` [J]", c)
    assert listed_with_unit("`gpu_energy_j`, `cpu_energy_j` [J], `x`", c)
    assert not listed_with_unit("`gpu_energy_j`, `idle_power_w` [W]", c)
    assert not listed_with_unit("`gpu_energy_j`; `cpu_energy_j` [J]", c)
    assert not listed_with_unit("`gpu_energy_jx` [J]", c)
    assert listed_with_unit("`deadline_s` [s from the batch start; empty: none]", spec_of(WORKLOAD_SPEC, "deadline_s"))
    assert not listed_with_unit("`total_s` [seconds]", spec_of(SWEEP_SPEC, "total_s"))
    assert listed_with_unit("`llm`", spec_of(CHAR_SPEC, "llm"))


@pytest.mark.parametrize(
    "table, column",
    [
        pytest.param(table, c.name, marks=pytest.mark.xfail(strict=True, reason=README_GAPS[(table, c.name)]))
        if (table, c.name) in README_GAPS else (table, c.name)
        for table, (spec, _) in SPECS.items()
        for c in spec
    ],
)
def test_readme_data_formats_list_every_column_with_its_unit(table, column):
    spec, row = SPECS[table]
    cells = [cell for first, cell in _data_formats_rows().items() if first.startswith(row)]
    assert len(cells) == 1, f"README's Data formats table should have one row that begins {row!r}"
    c = spec_of(spec, column)
    assert listed_with_unit(cells[0], c), f"README's {row} row should list `{c.name}`" + (f" [{c.unit}]" if c.unit else "")


def test_the_summary_extrapolation_keys_are_what_a_summary_holds():
    import dataclasses as dc

    from energyopt.check import EXTRAPOLATION_KEYS
    from energyopt.schedule import Summary

    fields = {f.name for f in dc.fields(Summary)}
    assert set(schema.SUMMARY_EXTRAPOLATION_KEYS) <= fields and EXTRAPOLATION_KEYS == schema.SUMMARY_EXTRAPOLATION_KEYS


def _bound_text(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() else f"{x:g}"


@pytest.mark.parametrize("column", [c.name for c in WORKLOAD_SPEC if c.minimum is not None and c.maximum is not None])
def test_readme_workload_row_states_the_accepted_range(column):
    """README's workload row gives each column bounded on both sides its range as the spec has it
    (a whole number above an exclusive minimum starts one higher): `input_tokens` (1–10,000,000),
    `output_tokens` (0–10,000,000; ...), `min_accuracy` (0–1)."""
    c = spec_of(WORKLOAD_SPEC, column)
    assert c.minimum is not None and c.maximum is not None
    low = c.minimum + 1 if c.exclusive_minimum and c.dtype == "int64" else c.minimum
    cells = [cell for first, cell in _data_formats_rows().items() if first.startswith(SPECS["workload"][1])]
    expected = f"`{c.name}` ({_bound_text(low)}–{_bound_text(c.maximum)}"
    assert expected in cells[0], f"README's workload row should state {expected})"
