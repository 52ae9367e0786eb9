"""Readers for the files users give energyopt, with validation.

Every reader returns a tidy :class:`pandas.DataFrame` with canonical column names (see
:mod:`energyopt.schema`) or raises :class:`~energyopt.errors.DataError` with a one-line message
naming the file, the line and the column, and what was expected. Line numbers are physical, as a
text editor counts them: the header is line 1, and blank lines and the extra lines of a quoted value
that spans several lines count too. A value quoted in a message is cut to
:data:`~energyopt.errors.EXCERPT_CHARS` characters. A UTF-8 byte-order mark is accepted at the start
of any text file (:func:`read_text_file`).
"""

from __future__ import annotations

import csv
import io
import json
import math
import weakref
import zlib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
import pandas as pd

from .errors import EXCERPT_CHARS, DataError, excerpt, key_text, one_line, unknown_key_hint
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
    "read_toml_document",
    "check_toml_value",
    "read_workload",
    "read_workload_stream",
    "read_assignment_csv",
    "sniff_workload_format",
    "WORKLOAD_FORMATS",
    "STDIN_NAME",
    "read_characterization_stream",
    "read_text_file",
    "read_json_object",
    "json_value_text",
    "WORKLOAD_COLUMN_ALIASES",
    "AZURE_TRACE_COLUMNS",
    "ARRIVAL_FIELDS",
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
#: fields (lower-cased headers or JSON keys) whose values are arrival times, converted to ``release_s``
#: with the first arrival at 0: date-times (ISO 8601, as the Azure trace's TIMESTAMP) or numbers of seconds
ARRIVAL_FIELDS = ("arrival", "timestamp", "arrival_time")


def _check_file(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: file not found")
    if not p.is_file():
        raise DataError(f"{p}: not a file")
    return p


def read_text_file(path: str | Path) -> str:
    """The text of a UTF-8 file without the byte-order mark(s) it may begin with; a one-line
    DataError naming the file, and the line of the first byte that is not UTF-8."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise DataError(f"{p}: cannot read it ({exc.strerror or type(exc).__name__})") from None
    try:
        return data.decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(f"{p}: line {line}: expected UTF-8 text, got the byte 0x{data[exc.start]:02x}; "
                        "is it a text file?") from None


def json_value_text(value: Any) -> str:
    """A parsed JSON value as a message shows it: ``true``, ``false``, ``null``, ``a JSON array``,
    ``a JSON object``, or a number or string quoted by :func:`~energyopt.errors.excerpt`."""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, dict)):
        return "a JSON array" if isinstance(value, list) else "a JSON object"
    return excerpt(value)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads``' object hook: a key given twice is an error (JSON would keep the last silently)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key_text(key)} appears twice in one object")
        out[key] = value
    return out


def _parse_json(text: str) -> Any:
    """``json.loads`` with duplicate keys refused; raises ValueError (JSONDecodeError for a syntax
    error, with its line) for anything that is not one JSON document."""
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _json_error(exc: ValueError) -> str:
    """A JSON parse error in a few words, on one line: ``line N: not valid JSON (why)``."""
    if isinstance(exc, json.JSONDecodeError):
        return f"line {exc.lineno}: not valid JSON ({exc.msg})"
    return f"not valid JSON ({one_line(str(exc))})"


def read_toml_document(path: str | Path, top_keys: Iterable[str] | None = None) -> dict[str, Any]:
    """A TOML file (fleet, study, campaign) parsed; one-line DataErrors naming the file: not found,
    not UTF-8, malformed, or (with ``top_keys``) a top-level key not among them, with a "did you mean"."""
    import tomllib

    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: file not found")
    text = read_text_file(p)  # UTF-8, a byte-order mark accepted
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DataError(f"{p}: malformed TOML ({one_line(str(exc))})") from None
    except RecursionError:
        raise DataError(f"{p}: malformed TOML (nested too deeply)") from None
    if top_keys is not None:
        allowed = list(top_keys)
        for key in doc:
            if key not in allowed:
                raise DataError(f"{p}: unknown top-level key {key_text(key)}{unknown_key_hint(key, allowed)}")
    return doc


def check_toml_value(value: Any, types: tuple[type, ...], where: str, p: Path,
                     choices: Iterable[str] | None = None) -> None:
    """One value of a TOML file (study, campaign) is of ``types`` (a bool only where ``bool`` is
    among them), finite, and one of ``choices`` when given; a one-line DataError naming the key otherwise."""
    if not (isinstance(value, types) and (bool in types or not isinstance(value, bool))):
        names = " or ".join("number" if t is float else t.__name__ for t in types if not (t is int and float in types))
        raise DataError(f"{p}: key {where} must be {names}, got {excerpt(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise DataError(f"{p}: key {where} must be a finite number, got {value}")
    if choices is not None and value not in (allowed := list(choices)):
        raise DataError(f"{p}: key {where} must be one of {', '.join(allowed)}, got {excerpt(value)}")


def read_json_object(p: Path) -> dict:
    """A JSON file that must hold one object; a one-line DataError naming the file otherwise."""
    text = read_text_file(p)
    try:
        doc = _parse_json(text)
    except ValueError as exc:
        raise DataError(f"{p}: {_json_error(exc)}") from None
    if not isinstance(doc, dict):
        raise DataError(f"{p}: expected a JSON object, got {json_value_text(doc)}")
    return doc


def _names_text(names: Iterable[Any], limit_chars: int = EXCERPT_CHARS) -> str:
    """Column names for a message, comma-separated and cut with an ellipsis past ``limit_chars``."""
    text = ", ".join(key_text(str(n)) for n in names)
    return text if len(text) <= limit_chars else text[: limit_chars - 1] + "…"


def _normalise_headers(df: pd.DataFrame, aliases: Mapping[str, str], path: Path) -> pd.DataFrame:
    mapping: dict[str, str] = {}
    seen: dict[str, str] = {}
    for raw in df.columns:
        key = str(raw).strip().lower()
        canon = aliases.get(key, key)
        if canon in seen:
            raise DataError(
                f"{path}: columns {excerpt(seen[canon])} and {excerpt(str(raw))} both mean {excerpt(canon)}; keep one"
            )
        seen[canon] = str(raw)
        mapping[raw] = canon
    return df.rename(columns=mapping)


def _require_columns(df: pd.DataFrame, required: Iterable[str], path: Path) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; found {_names_text(df.columns)}")


def _float_or_inf(v: Any) -> Any:
    """A Python int too large for a float as ±inf (then refused by the range checks); others as they are."""
    if type(v) is int:
        try:
            return float(v)
        except OverflowError:
            return math.inf if v > 0 else -math.inf
    return v


def _parsed_numbers(raw: pd.Series, col: str, path: Path, lines: np.ndarray) -> pd.Series:
    """A column as float64 (NaN where a value does not parse). Text (CSV) converts in one vectorised
    cast where it is clean; parsed JSON values must be numbers, text or null: a boolean, an array
    or an object is an error (JSON ``true`` is not the number 1)."""
    if raw.dtype == object:
        not_number = raw.map(lambda v: isinstance(v, (bool, np.bool_, list, dict))).to_numpy(dtype=bool)
        if not_number.any():
            pos = int(np.flatnonzero(not_number)[0])
            raise DataError(f"{path}: line {lines[pos]}, column {col}: expected a number, "
                            f"got {json_value_text(raw.iloc[pos])}")
        raw = raw.map(_float_or_inf)
    try:  # a clean numeric column converts in one vectorised cast; anything else is parsed one by one
        return raw.astype("float64")
    except (ValueError, TypeError):
        return pd.to_numeric(raw, errors="coerce")


def _plain(x: float) -> str:
    """A bound as a message states it: ``10,000,000``, ``0.5``."""
    return f"{int(x):,}" if float(x).is_integer() else f"{x:g}"


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
    at_most: float | None = None,
    what: str | None = None,
    unit: str = "",
) -> pd.Series:
    """Parse one column as numbers; raise naming the first bad line (``lines[i]`` is row i's line).

    A value outside the accepted range is reported with the column's ``unit`` in brackets.
    """
    raw = df[col]
    values = _parsed_numbers(raw, col, path, lines)
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
            f"expected a number, got {excerpt(raw.iloc[pos])}"
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
    if at_most is not None:  # before the finite check: an integer too large for a float reads as inf
        checks.append((lambda a: ~(a <= at_most), f"expected a number <= {_plain(at_most)}"))
    checks.append((lambda a: np.isinf(a), "expected a finite number"))
    present = ~blank.to_numpy()
    in_unit = f" [{unit}]" if unit else ""
    for test, msg in checks:
        with np.errstate(invalid="ignore"):
            bad = test(arr) & present
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{path}: line {lines[pos]}, column {col}: {msg}{in_unit}, got {excerpt(raw.iloc[pos])}"
            )
    return values


def _spec_numeric(
    df: pd.DataFrame, spec: ColumnSpec, path: Path, lines: np.ndarray, *, what: str | None = None
) -> pd.Series:
    """:func:`_numeric` with the checks a column's spec states: whole numbers for ``int64``, its
    bounds, its unit in the messages; an optional column may have empty values. With ``what``, the
    two bounds are one range check in those words; else a lower bound of 0 is "positive" (or ">= 0")
    and an upper bound a check of its own."""
    kw: dict[str, Any] = {}
    lo, hi = spec.minimum, spec.maximum
    if what is not None and lo is not None and hi is not None:
        if spec.exclusive_minimum:
            raise ValueError(f"column {spec.name}: an exclusive minimum in a range check has no words")
        kw.update(low=lo, high=hi, what=what)
    else:
        if lo == 0:  # the common lower bound, with its own words
            kw["positive" if spec.exclusive_minimum else "nonnegative"] = True
        elif lo is not None:
            if spec.exclusive_minimum:
                raise ValueError(f"column {spec.name}: an exclusive minimum other than 0 has no check")
            kw["low"] = lo
        kw["at_most"] = hi
    return _numeric(df, spec.name, path, lines, integer=spec.dtype == "int64", allow_missing=not spec.required,
                    unit=spec.unit, **kw)


def _csv_error(p: Path, line: int, message: str) -> DataError:
    return DataError(f"{p}: line {line}: {message}")


def _read_csv_strings(p: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """A CSV file as text columns ("" read as NaN) and each row's physical line (1-based: the header
    is line 1, and blank lines and the extra lines of a quoted value spanning several count).

    Every row must have as many fields as the header: a row with more or fewer is an error naming
    its line. pandas parses the file and :func:`_csv_layout` (vectorised) finds its records; a file
    they disagree on, or with a quote left open, is read by the ``csv`` module, which knows where
    each record starts and says what is wrong.
    """
    text = read_text_file(p)
    if not text.strip():
        raise DataError(f"{p}: file is empty; expected a CSV header and rows")
    nul = text.find("\x00")
    if nul >= 0:
        raise _csv_error(p, _line_of(text, nul), "a NUL byte; expected text (is it a binary file?)")
    layout = _csv_layout(text, p)
    if layout is not None:  # the fast way: pandas parses, numpy says where each record starts
        header, lines = layout
        try:
            df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skipinitialspace=True)
        except (pd.errors.ParserError, ValueError):
            df = None
        if df is not None and list(df.columns) == header and len(df) == len(lines):
            return df.replace({"": np.nan}), lines
    # a quote left open, or a file pandas splits otherwise: the csv module, which knows each record's line
    header, rows, lines = _quoted_records(text, p)
    df = pd.DataFrame(rows, columns=range(len(header)), dtype=str)
    df.columns = pd.Index(header)
    return df.replace({"": np.nan}), lines


def _line_of(text: str, index: int) -> int:
    """The physical line (1-based) of ``text[index]``: ``\\n``, ``\\r\\n`` and a lone ``\\r`` end a line."""
    head = text[:index]
    return head.count("\n") + head.count("\r") - head.count("\r\n") + 1


def _header_names(cells: list[str], p: Path, line: int) -> list[str]:
    """The header's column names as pandas would name them (``Unnamed: i`` for an empty one); a
    name given twice is an error (pandas would rename the second silently)."""
    names = [c if c != "" else f"Unnamed: {i}" for i, c in enumerate(cells)]
    seen: dict[str, int] = {}
    for i, name in enumerate(names, start=1):
        if name in seen:
            raise _csv_error(p, line, f"column {excerpt(name)} appears twice (fields {seen[name]} and {i}); keep one")
        seen[name] = i
    return names


def _is_blank_record(row: list[str]) -> bool:
    """A record of a blank line (empty, or spaces and tabs only), which the readers skip."""
    return not row or (len(row) == 1 and not row[0].strip(" \t"))


def _field_count_error(p: Path, line: int, fields: int, header_fields: int) -> DataError:
    return DataError(f"{p}: line {line} has {fields} field{'s' if fields != 1 else ''}, the header has "
                     f"{header_fields}; expected one value per column (quote a value that holds a comma)")


def _quoted_records(text: str, p: Path) -> tuple[list[str], list[list[str]], np.ndarray]:
    """Header, rows and each row's physical first line of a CSV text, read by the ``csv`` module
    (strict: a quote left open or a stray one is an error naming its line)."""
    reader = csv.reader(io.StringIO(text, newline=""), skipinitialspace=True, strict=True)
    header: list[str] | None = None
    rows: list[list[str]] = []
    lines: list[int] = []
    end = 0  # the last physical line read so far
    try:
        for row in reader:
            start, end = end + 1, reader.line_num
            if _is_blank_record(row):
                continue
            if header is None:
                header = _header_names(row, p, start)
            elif len(row) != len(header):
                raise _field_count_error(p, start, len(row), len(header))
            else:
                rows.append(row)
                lines.append(start)
    except csv.Error as exc:
        if str(exc) == "unexpected end of data":  # the file ended inside a quoted value
            raise _csv_error(p, end + 1, "a quote opened there is never closed") from None
        raise _csv_error(p, end + 1, f"not readable as CSV ({one_line(str(exc))})") from None
    if header is None:
        raise DataError(f"{p}: file is empty; expected a CSV header and rows")
    return header, rows, np.asarray(lines, dtype=np.int64)


def _csv_layout(text: str, p: Path) -> tuple[list[str], np.ndarray] | None:
    """Header and each row's physical line of a CSV text, found with numpy (the file may hold a
    million rows): a line end or a comma counts where an even number of quotes precedes it (outside
    a quoted value, as RFC 4180 quotes, "" included); a record of blanks is skipped. Raises naming
    the first row whose field count differs from the header's; None where a quote is left open."""
    b = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    quotes = np.flatnonzero(b == 34)
    if len(quotes) % 2:
        return None

    def unquoted(positions: np.ndarray) -> np.ndarray:
        return positions[np.searchsorted(quotes, positions) % 2 == 0] if len(quotes) else positions

    cr = np.flatnonzero(b == 13)
    lone_cr = cr[(cr + 1 >= len(b)) | (b[np.minimum(cr + 1, len(b) - 1)] != 10)]
    line_ends = np.flatnonzero(b == 10)  # the last byte of each physical line: \n, or a lone \r
    if len(lone_cr):
        line_ends = np.sort(np.concatenate([line_ends, lone_cr]))
    ends = unquoted(line_ends)  # the last byte of each record
    if not len(ends) or ends[-1] != len(b) - 1:
        ends = np.append(ends, len(b) - 1)  # the last record has no terminator
    starts = np.r_[0, ends[:-1] + 1]

    def per_record(positions: np.ndarray) -> np.ndarray:  # how many of the (sorted) positions each record holds
        return np.diff(np.searchsorted(positions, ends, side="right"), prepend=0)

    blank = per_record(np.flatnonzero((b == 32) | (b == 9) | (b == 10) | (b == 13))) == ends - starts + 1
    records = np.flatnonzero(~blank)
    fields = per_record(unquoted(np.flatnonzero(b == 44)))[records] + 1
    first_line = np.searchsorted(line_ends, starts[records]) + 1  # physical lines ended before a record, + 1
    header_text = bytes(b[starts[records[0]]: ends[records[0]] + 1]).decode("utf-8")
    cells = next(csv.reader(io.StringIO(header_text, newline=""), skipinitialspace=True), [])
    header = _header_names(cells, p, int(first_line[0]))
    wrong = np.flatnonzero(fields != fields[0])
    if len(wrong):
        i = int(wrong[0])
        raise _field_count_error(p, int(first_line[i]), int(fields[i]), int(fields[0]))
    return header, first_line[1:]


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
    df, lines = _read_csv_strings(p)
    df = _normalise_headers(df, CHAR_COLUMN_ALIASES, p)
    _require_columns(df, CHAR_REQUIRED, p)
    if df.empty:
        raise DataError(f"{p}: no data rows; expected one row per measured run")
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
            raise DataError(f"{p}: line {lines[pos]}, column split: {excerpt(df['split'].iloc[pos])}; "
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


def _read_jsonl(p: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """One JSON object per line (blank lines skipped), as a table of the parsed values, and each
    row's physical line."""
    records = []
    lines = []
    # universal newlines: a line ends at \n, \r\n or a lone \r, as in the CSV reader
    for lineno, line in enumerate(io.StringIO(read_text_file(p), newline=None), start=1):
        if not line.strip():
            continue
        try:
            rec = _parse_json(line)
        except ValueError as exc:
            why = exc.msg if isinstance(exc, json.JSONDecodeError) else one_line(str(exc))
            raise DataError(f"{p}: line {lineno}: not valid JSON ({why})") from None
        if not isinstance(rec, dict):
            raise DataError(f"{p}: line {lineno}: expected a JSON object per line, got {json_value_text(rec)}")
        records.append(rec)
        lines.append(lineno)
    if not records:
        raise DataError(f"{p}: file is empty; expected one JSON object per query")
    df = pd.DataFrame.from_records(records)
    return df.astype(object).where(df.notna(), np.nan), np.asarray(lines, dtype=np.int64)


def _read_workload_csv_fast(p: Path) -> pd.DataFrame | None:
    """A clean workload CSV read by pyarrow with typed columns (a million rows in a fraction of a
    second); None for anything unusual — a value that does not parse or fails a check, an alias
    clash, a NUL character, the Azure layout — which the validating reader then reads and names the
    problem of."""
    import pyarrow.compute as pc

    header = _csv_header(p)
    if not header or len(set(header)) != len(header):
        return None
    canon = [WORKLOAD_COLUMN_ALIASES.get(h.strip().lower(), h.strip().lower()) for h in header]
    if len(set(canon)) != len(canon) or not set(WORKLOAD_REQUIRED) <= set(canon):
        return None
    if set(ARRIVAL_FIELDS) & set(canon):  # arrival times to convert: the validating reader does it
        return None
    if _has_nul_byte(p):
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
        ("release_s", lambda: _releases(table, canon)),
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
    return _remember_checked(out)


def _has_nul_byte(p: Path) -> bool:
    """Whether the file holds a NUL byte (a binary file, which the validating reader refuses): one
    memchr over the mapped file, milliseconds for a million rows."""
    import mmap

    try:
        with p.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as m:
            return m.find(b"\x00") >= 0
    except (OSError, ValueError):  # an empty file cannot be mapped
        return True


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
    """The column as int64; None unless every value is a whole number within the spec's bounds
    (input tokens 1 to MAX_TOKENS, output tokens 0 to MAX_TOKENS)."""
    spec = spec_of(WORKLOAD_SPEC, column)
    lo, hi = spec.minimum, spec.maximum
    assert lo is not None and hi is not None, f"{column}: a token count's spec has both bounds"
    x = table.column(column).to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore"):
        above = x > lo if spec.exclusive_minimum else x >= lo
        if not np.all(above & (x <= hi) & (x == np.round(x))):  # NaN and inf fail every comparison
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


def _releases(table: pa.Table, canon: list[str]) -> np.ndarray | None:
    """The release times [s] (0 where empty, as where the column is absent); None unless each is finite and >= 0."""
    if "release_s" not in canon:
        return np.zeros(table.num_rows)
    r = np.nan_to_num(table.column("release_s").to_numpy(zero_copy_only=False).astype(float), nan=0.0,
                      posinf=-1.0, neginf=-1.0)
    return r if bool(np.all(r >= 0)) else None


def _arrival_kind(v: Any) -> str:
    """What one arrival value is: ``number`` (seconds), ``text`` (a date-time to parse), ``missing``, or
    ``other`` (a JSON boolean, array or object)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "missing"
    if isinstance(v, (bool, np.bool_, list, dict)):
        return "other"
    if isinstance(v, (int, float, np.integer, np.floating)):
        return "number"
    text = str(v).strip()
    if not text:
        return "missing"
    if "_" in text:  # Python's float() reads 1_000; no CSV number is written so
        return "text"
    try:
        float(text)
    except ValueError:
        return "text"
    return "number"


def _arrivals_s(raw: pd.Series, col: str, p: Path, lines: np.ndarray) -> np.ndarray:
    """A column of arrival times as seconds from the first arrival (so the first is at 0): every value
    a number of seconds, or every value a date-time (ISO 8601, e.g. the Azure trace's
    ``2023-11-16 18:15:46.6805900``; a time without a zone is read as UTC). A missing value, a mix of
    the two kinds, or a value that does not parse is an error naming its line and the column."""
    kinds = raw.map(_arrival_kind).to_numpy(dtype=object)
    expected = ("expected an arrival time: a date-time (ISO 8601, e.g. 2023-11-16 18:15:46.68) or a number of "
                "seconds")

    def fail(mask: np.ndarray, why: str) -> None:
        if mask.any():
            pos = int(np.flatnonzero(mask)[0])
            value = json_value_text(raw.iloc[pos]) if not isinstance(raw.iloc[pos], str) else excerpt(raw.iloc[pos])
            raise DataError(f"{p}: line {lines[pos]}, column {col}: {why}, got {value}")

    fail(kinds == "missing", f"value is missing; {expected}")
    fail(kinds == "other", expected)
    first = kinds[0]
    fail(kinds != first, f"expected {'a number of seconds' if first == 'number' else 'a date-time'} like line "
                         f"{lines[0]} (arrival times are all numbers or all date-times)")
    if first == "number":
        t = raw.map(lambda v: _float_or_inf(v) if not isinstance(v, str) else float(v)).to_numpy(dtype=float)
        fail(~np.isfinite(t), "expected a finite number of seconds")
    else:
        text = raw.astype(str).str.strip()
        try:
            stamps = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True)
        except (ValueError, TypeError, OverflowError):  # pragma: no cover - errors="coerce" turns them into NaT
            stamps = pd.Series(pd.NaT, index=text.index)
        fail(stamps.isna().to_numpy(), expected)
        t = (stamps - stamps.min()).dt.total_seconds().to_numpy(dtype=float)
    return t - t.min()


def _release_column(df: pd.DataFrame, p: Path, lines: np.ndarray) -> pd.Series:
    """``release_s`` [s] of every row: the column as given (>= 0, finite; empty: 0), or converted from the
    one arrival field (:data:`ARRIVAL_FIELDS`) with the first arrival at 0, or 0 for all."""
    given = [c for c in ("release_s", *ARRIVAL_FIELDS) if c in df.columns]
    if len(given) > 1:
        raise DataError(f"{p}: columns {' and '.join(given)} both give arrival times; expected one of them")
    if not given:
        return pd.Series(0.0, index=df.index)
    if given[0] == "release_s":
        return _spec_numeric(df, spec_of(WORKLOAD_SPEC, "release_s"), p, lines).fillna(0.0)
    return pd.Series(_arrivals_s(df[given[0]], given[0], p, lines), index=df.index)


def _query_ids(qid: pd.Series, p: Path, lines: np.ndarray) -> pd.Series:
    """The query ids as stripped text, each given once: a CSV's text, or a JSONL file's strings and
    numbers (7.0 -> "7"); a missing id, a JSON boolean, array or object is an error."""
    def first(mask: np.ndarray) -> int:
        return int(np.flatnonzero(mask)[0])

    missing = (qid.isna() | (qid.astype(str).str.strip() == "")).to_numpy()
    if missing.any():
        pos = first(missing)
        raise DataError(f"{p}: line {lines[pos]}, column query_id: value is missing, got {excerpt(qid.iloc[pos])}")
    if qid.dtype != object and pd.api.types.is_string_dtype(qid):  # a string column (CSV)
        ids = qid.str.strip()
    else:  # parsed JSON values
        wrong = qid.map(lambda v: isinstance(v, (bool, np.bool_, list, dict))).to_numpy(dtype=bool)
        if wrong.any():
            pos = first(wrong)
            raise DataError(f"{p}: line {lines[pos]}, column query_id: expected text or a number, "
                            f"got {json_value_text(qid.iloc[pos])}")
        ids = qid.map(lambda v: str(int(v)) if isinstance(v, float) and v.is_integer() else str(v).strip())
    if not pd.Index(ids).is_unique:
        pos = first(ids.duplicated(keep="first").to_numpy())
        was = first((ids == ids.iloc[pos]).to_numpy())
        raise DataError(f"{p}: line {lines[pos]}, column query_id: duplicate id {excerpt(ids.iloc[pos])} "
                        f"(first on line {lines[was]}); expected each query once")
    return ids


def _in_workload_order(df: pd.DataFrame) -> pd.DataFrame:
    """The workload's columns in the spec's order, any others after them."""
    extra = [c for c in df.columns if c not in WORKLOAD_REQUIRED + WORKLOAD_OPTIONAL]
    return df[list(WORKLOAD_REQUIRED + WORKLOAD_OPTIONAL) + extra]


def _range_text(spec: ColumnSpec) -> str:
    """What a bounded column accepts, for a message: "expected a whole number from 1 to 10,000,000"."""
    lo, hi = spec.minimum, spec.maximum
    if spec.dtype == "int64" and lo is not None and hi is not None:
        return f"expected a whole number from {int(lo) + (1 if spec.exclusive_minimum else 0):,} to {int(hi):,}"
    if lo is not None and hi is not None:
        return f"expected a number in {'(' if spec.exclusive_minimum else '['}{lo:g}, {hi:g}]"
    if lo is not None:
        return f"expected a number {'>' if spec.exclusive_minimum else '>='} {lo:g}"
    return "expected a number"


#: workload tables this module checked and returned, by ``id``: a weak reference to the table and the
#: fingerprint of what was checked (:func:`_checked_fingerprint`); such a table, unchanged, is not checked again
_CHECKED: dict[int, tuple[weakref.ref, int]] = {}


def _checked_fingerprint(df: pd.DataFrame) -> int | None:
    """A CRC-32 over what :func:`workload_from_frame` checks and completes: the column names and
    dtypes, the row index, and the memory of the workload's columns (a million rows in about 40
    ms, against about 0.3 s for the checks, most of it the uniqueness of the query ids). None where
    a column's memory cannot be read so (an id column that is not Arrow-backed text, a column
    of objects): such a table is checked every time."""
    if not isinstance(df.index, pd.RangeIndex) or df.index.start != 0 or df.index.step != 1:
        return None
    crc = zlib.crc32(repr((list(map(str, df.columns)), [str(t) for t in df.dtypes], len(df))).encode())
    for c in WORKLOAD_REQUIRED + WORKLOAD_OPTIONAL:
        if c not in df.columns:
            return None
        arr = df[c].array
        if c == "query_id":
            chunked = getattr(arr, "_pa_array", None)  # pandas' Arrow-backed text: immutable buffers
            if chunked is None:
                return None
            for chunk in chunked.chunks:
                for buf in chunk.buffers():
                    if buf is not None:
                        crc = zlib.crc32(buf, crc)
            continue
        values = np.asarray(arr)
        if values.dtype.kind not in "iuf":
            return None
        crc = zlib.crc32(np.ascontiguousarray(values).data.cast("B"), crc)
    return crc


def _remember_checked(df: pd.DataFrame) -> pd.DataFrame:
    """Note ``df`` as a checked workload (see :data:`_CHECKED`) and return it."""
    fp = _checked_fingerprint(df)
    if fp is not None:
        key = id(df)

        def forget(_ref: weakref.ref, key: int = key) -> None:
            _CHECKED.pop(key, None)

        _CHECKED[key] = (weakref.ref(df, forget), fp)
    return df


def _already_checked(df: pd.DataFrame) -> bool:
    """Whether ``df`` is a table this module checked and returned, unchanged since."""
    seen = _CHECKED.get(id(df))
    return seen is not None and seen[0]() is df and _checked_fingerprint(df) == seen[1]


def workload_from_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A workload given as a table (the Python API) checked and completed as :func:`read_workload`
    does a file: the required columns, whole token counts in their ranges, accuracy floors in
    [0, 1] (missing: 0), deadlines > 0 (missing: none), unique query ids. Errors name the column
    and the row (its position, from 0). A table that a reader of this module (or this function)
    returned is returned as it is while its workload columns are unchanged (their fingerprint,
    :func:`_checked_fingerprint`): checking a million queries again costs about 0.3 s."""
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"a workload must be a table (pandas DataFrame) or a file path, got {type(df).__name__}")
    if _already_checked(df):
        return df
    missing = [c for c in WORKLOAD_REQUIRED if c not in df.columns]
    if missing:
        raise DataError(f"workload table: column(s) {', '.join(missing)} missing; expected {', '.join(WORKLOAD_REQUIRED)}")
    if df.empty:
        raise DataError("workload table: no queries; expected at least one row")
    out = df.reset_index(drop=True).copy()

    def bad(col: str, mask: np.ndarray, what: str) -> None:
        if mask.any():
            i = int(np.flatnonzero(mask)[0])
            raise DataError(f"workload table: row {i}, column {col}: {what}, got {excerpt(str(out[col].iloc[i]))}")

    ids = out["query_id"]
    bad("query_id", (ids.isna() | (ids.astype(str).str.strip() == "")).to_numpy(), "expected a query id")
    out["query_id"] = ids.astype(str)
    bad("query_id", out["query_id"].duplicated().to_numpy(), "expected unique query ids (given twice)")
    for spec in WORKLOAD_SPEC:
        if spec.name not in out.columns or not spec.is_numeric:
            continue
        v = pd.to_numeric(out[spec.name], errors="coerce").to_numpy(dtype=float)
        present = ~np.isnan(v)
        if spec.required:
            bad(spec.name, ~present, "expected a number")
        lo_ok = (v > spec.minimum if spec.exclusive_minimum else v >= spec.minimum) if spec.minimum is not None else True
        hi_ok = v <= spec.maximum if spec.maximum is not None else True
        bad(spec.name, present & ~(np.asarray(lo_ok) & np.asarray(hi_ok)), _range_text(spec))
        if spec.dtype == "int64":
            bad(spec.name, present & (v != np.round(v)), "expected a whole number")
            out[spec.name] = v.astype(np.int64)
        else:
            out[spec.name] = v
    out["min_accuracy"] = out["min_accuracy"].fillna(0.0) if "min_accuracy" in out.columns else 0.0
    if "deadline_s" not in out.columns:
        out["deadline_s"] = np.nan
    if "release_s" in out.columns:
        bad("release_s", np.isinf(out["release_s"].to_numpy(dtype=float)), "expected a finite number")
        out["release_s"] = out["release_s"].fillna(0.0)
    else:
        out["release_s"] = 0.0
    return _remember_checked(_in_workload_order(out))


#: what marks a missing value in an exported plan's columns other than ``query_id``
_ASSIGNMENT_NA = ["", "NaN", "nan", "NA", "N/A", "null", "None"]


def read_assignment_csv(path: str | Path) -> pd.DataFrame:
    """An exported plan (``assignment.csv``) as written by
    :func:`~energyopt.writers.write_table_csv`: ``query_id`` as text exactly as written (an id
    ``NA``, ``null`` or ``None`` stays that text, and quoted commas, quotes, line breaks, blanks and
    non-ASCII characters are kept), empty cells of the other columns as missing values. A file
    that is not readable as CSV is a one-line DataError naming it."""
    p = _check_file(path)
    try:
        header = pd.read_csv(p, nrows=0).columns
        return pd.read_csv(p, dtype={"query_id": str}, keep_default_na=False,
                           na_values={c: _ASSIGNMENT_NA for c in header if c != "query_id"})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{p}: not a readable CSV ({one_line(str(exc))})") from None


#: workload formats a reader may be told (``--workload-format``); None: by the file's suffix
WORKLOAD_FORMATS = ("csv", "jsonl")
#: the name errors give a workload read from standard input
STDIN_NAME = "<stdin>"


def sniff_workload_format(data: bytes) -> str:
    """``jsonl`` when the first character that is not blank (after a byte-order mark) opens a JSON
    object, else ``csv``."""
    head = data[:4096].decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
    return "jsonl" if head.startswith("{") else "csv"


def read_workload_stream(stream: BinaryIO, fmt: str | None = None, name: str = STDIN_NAME) -> pd.DataFrame:
    """A workload read from a byte stream (standard input for ``-``), as :func:`read_workload`
    reads a file: ``fmt`` ``csv`` or ``jsonl``, or None to sniff it (:func:`sniff_workload_format`).
    Errors name ``name`` and the physical line; the table's ``attrs`` hold ``source`` (``name``)
    and ``sha256`` (of the bytes read)."""
    import hashlib

    if fmt is not None and fmt not in WORKLOAD_FORMATS:
        raise DataError(f"workload format {excerpt(fmt)}: expected one of {', '.join(WORKLOAD_FORMATS)}")
    data = stream.read()
    if not data.strip():
        raise DataError(f"{name}: no input; expected a workload (CSV or JSONL) on it")
    fmt = fmt or sniff_workload_format(data)
    df = _read_bytes_as_file(data, name, f"workload.{fmt}", lambda p: read_workload(p, fmt=fmt))
    df.attrs["sha256"] = hashlib.sha256(data).hexdigest()
    return df


def read_characterization_stream(stream: BinaryIO, name: str = STDIN_NAME) -> pd.DataFrame:
    """A characterization CSV read from a byte stream (standard input for ``fit -``), checked as
    :func:`read_characterization` checks a file; errors name ``name`` and the physical line."""
    data = stream.read()
    if not data.strip():
        raise DataError(f"{name}: no input; expected a characterization CSV on it")
    return _read_bytes_as_file(data, name, "characterization.csv", read_characterization)


def _read_bytes_as_file(data: bytes, name: str, filename: str, reader: Callable[[Path], pd.DataFrame]) -> pd.DataFrame:
    """``reader`` run on ``data`` written to a private temporary file, its errors naming ``name``
    instead of that file, and the table's ``attrs["source"]`` ``name``."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="energyopt-stdin.") as d:
        tmp = Path(d) / filename
        tmp.write_bytes(data)
        try:
            df = reader(tmp)
        except DataError as exc:
            raise DataError(str(exc).replace(str(tmp), name)) from None
    df.attrs["source"] = name
    return df


def read_workload(path: str | Path, fmt: str | None = None) -> pd.DataFrame:
    """Read and validate a workload (one row per query) from CSV or JSONL.

    Columns as in :data:`~energyopt.schema.WORKLOAD_SPEC`: ``query_id`` (text), ``input_tokens``
    (whole numbers, 1 to :data:`~energyopt.schema.MAX_TOKENS`) and ``output_tokens`` (0 to
    ``MAX_TOKENS``; 0 is a prefill-only request, planned as 1 output token by
    :func:`~energyopt.problem.build_problem`), optional ``min_accuracy`` (0–1) and ``deadline_s``
    (completion time [s] from the batch start, > 0; empty means no deadline), ``release_s`` (the
    query's arrival [s] from the batch start, >= 0; empty or absent: 0). Instead of ``release_s`` a
    field of :data:`ARRIVAL_FIELDS` (``arrival``, ``timestamp``, ``arrival_time``) may give arrival
    times, all date-times or all numbers of seconds; they become ``release_s`` with the first arrival
    at 0. The public Azure LLM inference trace layout (``TIMESTAMP,ContextTokens,GeneratedTokens``)
    is accepted too: its rows are numbered as query ids ``q0, q1, …`` in file order, its TIMESTAMP
    gives ``release_s`` and is kept as text in ``arrival_timestamp``. ``fmt`` (``csv`` or ``jsonl``)
    overrides the suffix (``.jsonl`` and ``.ndjson`` are JSONL, anything else CSV).
    """
    p = _check_file(path)
    if fmt is not None and fmt not in WORKLOAD_FORMATS:
        raise DataError(f"workload format {excerpt(fmt)}: expected one of {', '.join(WORKLOAD_FORMATS)}")
    jsonl = fmt == "jsonl" if fmt is not None else p.suffix.lower() in (".jsonl", ".ndjson")
    if not jsonl:
        fast = _read_workload_csv_fast(p)
        if fast is not None:
            return fast
    if jsonl:
        df, lines = _read_jsonl(p)
    else:
        df, lines = _read_csv_strings(p)
    raw_cols = {str(c).strip().lower() for c in df.columns}
    is_azure = set(AZURE_TRACE_COLUMNS) <= raw_cols and "query_id" not in raw_cols
    df = _normalise_headers(df, WORKLOAD_COLUMN_ALIASES, p)
    if is_azure:
        df.insert(0, "query_id", [f"q{i}" for i in range(len(df))])
    _require_columns(df, WORKLOAD_REQUIRED, p)
    if df.empty:
        raise DataError(f"{p}: no queries; expected at least one row")
    df = df.reset_index(drop=True)
    release_s = _release_column(df, p, lines)
    if is_azure:  # the trace's own text is kept beside release_s
        df = df.rename(columns={"timestamp": "arrival_timestamp"})

    df["query_id"] = _query_ids(df["query_id"], p, lines)

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
    df["release_s"] = release_s.astype(float)
    out = _in_workload_order(df).copy()
    out.attrs["source"] = str(p)
    return _remember_checked(out)
