"""Readers for the files users give energyopt, with validation.

Every reader returns a tidy :class:`pandas.DataFrame` with canonical column names (see
:mod:`energyopt.schema`) or raises :class:`~energyopt.errors.DataError` with a one-line message
naming the file, the line and the column, and what was expected. Line numbers count the header as
line 1, as a text editor does.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .errors import DataError
from .schema import (
    CHAR_COLUMN_ALIASES,
    CHAR_OPTIONAL_NUMERIC,
    CHAR_OPTIONAL_SIGNED,
    CHAR_REQUIRED,
    CHAR_SPEC,
    WORKLOAD_OPTIONAL,
    WORKLOAD_REQUIRED,
    WORKLOAD_SPEC,
    ColumnSpec,
    spec_of,
)

if TYPE_CHECKING:  # pyarrow is imported where a CSV is read, not when the package is
    import pyarrow as pa

__all__ = [
    "read_characterization",
    "read_workload",
    "WORKLOAD_COLUMN_ALIASES",
    "AZURE_TRACE_COLUMNS",
]

# Workload header aliases, including the public Azure LLM inference trace layout
# (TIMESTAMP,ContextTokens,GeneratedTokens).
WORKLOAD_COLUMN_ALIASES = {
    "id": "query_id",
    "request_id": "query_id",
    "prompt_tokens": "input_tokens",
    "contexttokens": "input_tokens",
    "context_tokens": "input_tokens",
    "completion_tokens": "output_tokens",
    "generatedtokens": "output_tokens",
    "generated_tokens": "output_tokens",
    "deadline": "deadline_s",
    "min_acc": "min_accuracy",
}
AZURE_TRACE_COLUMNS = ("timestamp", "contexttokens", "generatedtokens")


def _check_file(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: file not found")
    if not p.is_file():
        raise DataError(f"{p}: not a file")
    return p


def _normalise_headers(df: pd.DataFrame, aliases: Mapping[str, str], path: Path) -> pd.DataFrame:
    mapping: dict[str, str] = {}
    seen: dict[str, str] = {}
    for raw in df.columns:
        key = str(raw).strip().lower()
        canon = aliases.get(key, key)
        if canon in seen:
            raise DataError(
                f"{path}: columns {seen[canon]!r} and {raw!r} both mean {canon!r}; keep one"
            )
        seen[canon] = str(raw)
        mapping[raw] = canon
    return df.rename(columns=mapping)


def _require_columns(df: pd.DataFrame, required: Iterable[str], path: Path) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(map(str, df.columns))}"
        )


def _numeric(
    df: pd.DataFrame,
    col: str,
    path: Path,
    lines: np.ndarray,
    *,
    positive: bool = False,
    nonnegative: bool = False,
    integer: bool = False,
    allow_missing: bool = False,
    low: float | None = None,
    high: float | None = None,
    what: str | None = None,
    unit: str = "",
) -> pd.Series:
    """Parse one column as numbers; raise naming the first bad line (``lines[i]`` is row i's line).

    A value outside the accepted range is reported with the column's ``unit`` in brackets.
    """
    raw = df[col]
    try:  # a clean numeric column converts in one vectorised cast; anything else is parsed one by one
        values = raw.astype("float64")
    except (ValueError, TypeError):
        values = pd.to_numeric(raw, errors="coerce")
    missing = raw.isna().to_numpy()
    unparsed = values.isna().to_numpy() & ~missing
    blank = pd.Series(missing, index=raw.index)
    if unparsed.any():  # only these need a look at their text
        text = raw[unparsed].astype(str).str.strip().str.lower()
        blank[unparsed] = text.isin(["", "nan", "na", "n/a", "null", "none"]).to_numpy()
    bad_parse = values.isna() & ~blank
    if bad_parse.any():
        pos = int(np.flatnonzero(bad_parse.to_numpy())[0])
        raise DataError(
            f"{path}: line {lines[pos]}, column {col}: "
            f"expected a number, got {raw.iloc[pos]!r}"
        )
    if blank.any() and not allow_missing:
        pos = int(np.flatnonzero(blank.to_numpy())[0])
        raise DataError(
            f"{path}: line {lines[pos]}, column {col}: value is missing (NaN or empty)"
        )
    arr = values.to_numpy(dtype=float)
    checks = []
    if positive:
        checks.append((lambda a: ~(a > 0), "expected a positive number"))
    if nonnegative:
        checks.append((lambda a: ~(a >= 0), "expected a number >= 0"))
    if integer:
        checks.append((lambda a: np.isfinite(a) & (a != np.round(a)), "expected a whole number"))
    if low is not None or high is not None:
        lo = -math.inf if low is None else low
        hi = math.inf if high is None else high
        checks.append((lambda a: ~((a >= lo) & (a <= hi)), what or f"expected a number in [{lo}, {hi}]"))
    checks.append((lambda a: np.isinf(a), "expected a finite number"))
    present = ~blank.to_numpy()
    in_unit = f" [{unit}]" if unit else ""
    for test, msg in checks:
        with np.errstate(invalid="ignore"):
            bad = test(arr) & present
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{path}: line {lines[pos]}, column {col}: {msg}{in_unit}, got {raw.iloc[pos]!r}"
            )
    return values


def _spec_numeric(
    df: pd.DataFrame, spec: ColumnSpec, path: Path, lines: np.ndarray, *, what: str | None = None
) -> pd.Series:
    """:func:`_numeric` with the checks a column's spec states: whole numbers for ``int64``, its
    bounds, its unit in the messages; an optional column may have empty values."""
    kw: dict[str, Any] = {}
    lo, hi = spec.minimum, spec.maximum
    if lo == 0 and hi is None:  # the common bounds, with their own words
        kw["positive" if spec.exclusive_minimum else "nonnegative"] = True
    elif lo is not None or hi is not None:
        if spec.exclusive_minimum:
            raise ValueError(f"column {spec.name}: an exclusive minimum other than 0 has no check")
        kw.update(low=lo, high=hi, what=what)
    return _numeric(df, spec.name, path, lines, integer=spec.dtype == "int64", allow_missing=not spec.required,
                    unit=spec.unit, **kw)


def read_json_object(p: Path) -> dict:
    """A JSON file that must hold one object; a one-line DataError naming the file otherwise."""
    try:
        doc = json.loads(Path(p).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{p}: not valid JSON ({getattr(exc, 'msg', exc)})") from None
    if not isinstance(doc, dict):
        raise DataError(f"{p}: expected a JSON object")
    return doc


def _read_csv_strings(p: Path) -> pd.DataFrame:
    try:
        df = pd.read_csv(p, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise DataError(f"{p}: file is empty; expected a CSV header and rows") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{p}: not a readable CSV file ({first})") from None
    return df.replace({"": np.nan})


def read_characterization(path: str | Path) -> pd.DataFrame:
    """Read and validate a characterization CSV (one row per measured run).

    Columns as in :data:`~energyopt.schema.CHAR_SPEC`. Required: ``llm, device, input_tokens,
    output_tokens, batch_size, runtime_s [s], energy_j [J]``; optional numeric ``gpu_energy_j [J],
    cpu_energy_j [J], idle_power_w [W], num_devices`` (≥ 0) and ``above_idle_energy_j [J]`` (any
    sign); ``split`` is ``design`` (the default) or ``holdout``; any other column (provenance:
    ``gpu_name``, ``driver``, ``measured_at``, …) is kept as text.

    Raises :class:`DataError` for a missing file or column, a non-numeric, NaN, zero or negative
    token count, runtime or energy, and for a row that duplicates an earlier one exactly.
    """
    p = _check_file(path)
    df = _read_csv_strings(p)
    df = _normalise_headers(df, CHAR_COLUMN_ALIASES, p)
    _require_columns(df, CHAR_REQUIRED, p)
    if df.empty:
        raise DataError(f"{p}: no data rows; expected one row per measured run")
    lines = np.arange(len(df)) + 2  # the header is line 1
    for col in (c.name for c in CHAR_SPEC if c.required and c.dtype == "str"):
        blank = df[col].isna() | (df[col].astype(str).str.strip() == "")
        if blank.any():
            pos = int(np.flatnonzero(blank.to_numpy())[0])
            raise DataError(f"{p}: line {lines[pos]}, column {col}: value is missing; expected a name")
        df[col] = df[col].astype(str).str.strip()
    for spec in CHAR_SPEC:  # the required numbers, in the spec's order
        if spec.required and spec.is_numeric:
            df[spec.name] = _spec_numeric(df, spec, p, lines).astype(np.dtype(spec.dtype))
    for col in CHAR_OPTIONAL_NUMERIC + CHAR_OPTIONAL_SIGNED:  # parsed as float64, empty allowed
        if col in df.columns:
            df[col] = _spec_numeric(df, spec_of(CHAR_SPEC, col), p, lines)
    if "split" in df.columns:
        choices = spec_of(CHAR_SPEC, "split").choices
        split = df["split"].fillna("").astype(str).str.strip().replace("", choices[0])
        bad = ~split.isin(choices)
        if bad.any():
            pos = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(f"{p}: line {lines[pos]}, column split: {df['split'].iloc[pos]!r}; "
                            f"expected {' or '.join(choices)}")
        df["split"] = split
    dup = df.duplicated(keep="first")
    if dup.any():
        pos = int(np.flatnonzero(dup.to_numpy())[0])
        same = df.fillna("").astype(str).eq(df.fillna("").astype(str).iloc[pos]).all(axis=1)
        first = int(np.flatnonzero(same.to_numpy())[0])
        raise DataError(
            f"{p}: line {lines[pos]} duplicates line {lines[first]} exactly; "
            "expected each measured run once (repeats differ in runtime_s or energy_j)"
        )
    df.attrs["source"] = str(p)
    return df.reset_index(drop=True)


def _read_jsonl(p: Path) -> pd.DataFrame:
    records = []
    with p.open("r", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{p}: line {lineno}: not valid JSON ({exc.msg})") from None
            if not isinstance(rec, dict):
                raise DataError(f"{p}: line {lineno}: expected a JSON object per line")
            rec["__line__"] = lineno
            records.append(rec)
    if not records:
        raise DataError(f"{p}: file is empty; expected one JSON object per query")
    df = pd.DataFrame.from_records(records)
    return df.astype(object).where(df.notna(), np.nan)


def _read_workload_csv_fast(p: Path) -> pd.DataFrame | None:
    """A clean workload CSV read by pyarrow with typed columns (a million rows in a fraction of a
    second); None for anything unusual — a value that does not parse or fails a check, an alias
    clash, the Azure layout — which the validating reader then reads and names the problem of."""
    import pyarrow.compute as pc

    header = _csv_header(p)
    if not header or len(set(header)) != len(header):
        return None
    canon = [WORKLOAD_COLUMN_ALIASES.get(h.strip().lower(), h.strip().lower()) for h in header]
    if len(set(canon)) != len(canon) or not set(WORKLOAD_REQUIRED) <= set(canon):
        return None
    table = _read_typed_csv(p, header, canon)
    if table is None or table.num_rows == 0:
        return None
    checked_columns = (  # in this order; the first that fails its check ends the fast path
        ("query_id", lambda: _clean_query_ids(table)),
        ("input_tokens", lambda: _whole_token_counts(table, "input_tokens")),
        ("output_tokens", lambda: _whole_token_counts(table, "output_tokens")),
        ("min_accuracy", lambda: _accuracy_floors(table, canon)),
        ("deadline_s", lambda: _deadlines(table, canon)),
    )
    cols: dict[str, object] = {}
    for c, read_checked in checked_columns:
        values = read_checked()
        if values is None:
            return None
        cols[c] = values
    for c in canon:
        if c not in cols:  # other columns are kept as text, as the validating reader keeps them
            cols[c] = pc.utf8_ltrim_whitespace(table.column(c)).to_pandas()
    out = pd.DataFrame(cols)
    out.attrs["source"] = str(p)
    return out


def _csv_header(p: Path) -> list[str] | None:
    """The CSV's first row; None where it cannot be read."""
    import csv

    try:
        with p.open(newline="", encoding="utf-8-sig") as fh:
            return next(csv.reader(fh), None)
    except (OSError, UnicodeDecodeError, csv.Error):
        return None


def _read_typed_csv(p: Path, header: list[str], canon: list[str]) -> pa.Table | None:
    """The CSV as a ``pyarrow.Table`` with the spec's numeric columns as float64, the others as
    text, and the canonical column names; None where pyarrow cannot read it so."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    numeric = {c.name for c in WORKLOAD_SPEC if c.is_numeric}
    types = {raw: (pa.float64() if c in numeric else pa.string()) for raw, c in zip(header, canon)}
    options = pa_csv.ConvertOptions(column_types=types, null_values=[""], strings_can_be_null=True,
                                    quoted_strings_can_be_null=True)
    try:
        table = pa_csv.read_csv(p, convert_options=options)
    except (pa.ArrowException, OSError, ValueError):
        return None
    return table.rename_columns(canon)


def _clean_query_ids(table: Any) -> pd.Series | None:
    """The query ids with surrounding blanks removed; None where one is missing, empty or repeated."""
    import pyarrow.compute as pc

    ids = table.column("query_id")
    if ids.null_count:
        return None
    ids = pc.utf8_trim_whitespace(ids)
    if pc.any(pc.equal(pc.utf8_length(ids), 0)).as_py():
        return None
    out = ids.to_pandas()
    return out if pd.Index(out).is_unique else None


def _whole_token_counts(table: pa.Table, column: str) -> np.ndarray | None:
    """The column as int64; None unless every value is a whole number >= 1."""
    x = table.column(column).to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore"):
        if not np.all((x > 0) & np.isfinite(x) & (x == np.round(x))):
            return None
    return x.astype("int64")


def _accuracy_floors(table: pa.Table, canon: list[str]) -> np.ndarray | None:
    """The accuracy floors (0 where empty or where the column is absent); None unless all lie in [0, 1]."""
    if "min_accuracy" not in canon:
        return np.zeros(table.num_rows)
    raw = table.column("min_accuracy").to_numpy(zero_copy_only=False)
    a = np.nan_to_num(raw, nan=0.0, posinf=2.0, neginf=-1.0)
    with np.errstate(invalid="ignore"):
        if not np.all((a >= 0) & (a <= 1)):
            return None
    return a


def _deadlines(table: pa.Table, canon: list[str]) -> np.ndarray | None:
    """The deadlines [s] (NaN: none, as where the column is absent); None unless each is NaN or finite and > 0."""
    if "deadline_s" not in canon:
        return np.full(table.num_rows, np.nan)
    d = table.column("deadline_s").to_numpy(zero_copy_only=False).astype(float)
    with np.errstate(invalid="ignore"):
        if not np.all(np.isnan(d) | ((d > 0) & np.isfinite(d))):
            return None
    return d


def read_workload(path: str | Path) -> pd.DataFrame:
    """Read and validate a workload (one row per query) from CSV or JSONL.

    Columns as in :data:`~energyopt.schema.WORKLOAD_SPEC`: ``query_id`` (text), ``input_tokens``
    and ``output_tokens`` (whole numbers ≥ 1), optional ``min_accuracy`` (0–1) and ``deadline_s``
    (completion time [s] from the batch start, > 0; empty means no deadline). The public Azure
    LLM inference trace layout (``TIMESTAMP,ContextTokens,GeneratedTokens``) is accepted too: its
    rows are numbered as query ids ``q0, q1, …`` in file order.
    """
    p = _check_file(path)
    if p.suffix.lower() not in (".jsonl", ".ndjson"):
        fast = _read_workload_csv_fast(p)
        if fast is not None:
            return fast
    if p.suffix.lower() in (".jsonl", ".ndjson"):
        df = _read_jsonl(p)
        lines = df.pop("__line__").to_numpy()
    else:
        df = _read_csv_strings(p)
        lines = np.arange(len(df)) + 2
    raw_cols = {str(c).strip().lower() for c in df.columns}
    is_azure = set(AZURE_TRACE_COLUMNS) <= raw_cols and "query_id" not in raw_cols
    df = _normalise_headers(df, WORKLOAD_COLUMN_ALIASES, p)
    if is_azure:
        df.insert(0, "query_id", [f"q{i}" for i in range(len(df))])
        df = df.rename(columns={"timestamp": "arrival_timestamp"})
    _require_columns(df, WORKLOAD_REQUIRED, p)
    if df.empty:
        raise DataError(f"{p}: no queries; expected at least one row")
    df = df.reset_index(drop=True)

    def bad(mask: np.ndarray, col: str, msg: str) -> None:
        if mask.any():
            pos = int(np.flatnonzero(mask)[0])
            raise DataError(f"{p}: line {lines[pos]}, column {col}: {msg}, got {df[col].iloc[pos]!r}")

    qid = df["query_id"]
    bad((qid.isna() | (qid.astype(str).str.strip() == "")).to_numpy(), "query_id", "value is missing")
    if qid.dtype != object and pd.api.types.is_string_dtype(qid):  # a string column (CSV)
        df["query_id"] = qid.str.strip()
    else:  # objects, e.g. JSONL numbers: 7.0 -> "7"
        df["query_id"] = qid.map(lambda v: str(int(v)) if isinstance(v, float) and v.is_integer() else str(v).strip())
    ids_unique = pd.Index(df["query_id"]).is_unique
    dup = np.zeros(len(df), dtype=bool) if ids_unique else df["query_id"].duplicated(keep="first").to_numpy()
    if dup.any():
        pos = int(np.flatnonzero(dup)[0])
        first = int(np.flatnonzero((df["query_id"] == df["query_id"].iloc[pos]).to_numpy())[0])
        raise DataError(
            f"{p}: line {lines[pos]}, column query_id: duplicate id {df['query_id'].iloc[pos]!r} "
            f"(first on line {lines[first]}); expected each query once"
        )

    def num(col: str, what: str | None = None) -> pd.Series:
        spec = spec_of(WORKLOAD_SPEC, col)
        return _spec_numeric(df, spec, p, lines, what=what).astype(np.dtype(spec.dtype))

    for spec in WORKLOAD_SPEC:  # the required numbers (token counts), in the spec's order
        if spec.required and spec.is_numeric:
            df[spec.name] = num(spec.name)
    if "min_accuracy" in df.columns:
        df["min_accuracy"] = num("min_accuracy", what="expected an accuracy in [0, 1]").fillna(0.0)
    else:
        df["min_accuracy"] = 0.0
    if "deadline_s" in df.columns:
        df["deadline_s"] = num("deadline_s")
    else:
        df["deadline_s"] = np.nan
    extra = [c for c in df.columns if c not in WORKLOAD_REQUIRED + WORKLOAD_OPTIONAL]
    out = df[list(WORKLOAD_REQUIRED + WORKLOAD_OPTIONAL) + extra].copy()
    out.attrs["source"] = str(p)
    return out
