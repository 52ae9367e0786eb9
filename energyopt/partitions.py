"""A workload file read in partitions: CSV or Parquet, each partition a contiguous range of its
rows, read and checked by :func:`~energyopt.io.read_workload` (CSV) or
:func:`~energyopt.io.workload_from_frame` (Parquet) on its own, errors naming the whole file and
its physical line (CSV) or row (Parquet).

The driver of a distributed plan only finds the boundaries (:func:`split_workload`: one pass
over the file's bytes in chunks, or the Parquet footer); each worker reads its own range
(:func:`read_partition`). Partitions hold a whole number of ``align`` rows (the last one the
rest), so that blocks of rows priced apart line up with the single-process blocks.

Not partitioned: arrival times to convert (``arrival``, ``timestamp``, the Azure trace layout:
their first arrival is t = 0 for the whole file) — give ``release_s`` instead; a CSV field with a
line break inside quotes.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError
from .io import ARRIVAL_FIELDS, AZURE_TRACE_COLUMNS, WORKLOAD_COLUMN_ALIASES, read_workload, workload_from_frame

__all__ = ["PartitionSpec", "split_workload", "read_partition", "PARTITION_FORMATS"]

PARTITION_FORMATS = ("csv", "parquet")
#: bytes read at a time while the boundaries of a CSV's partitions are found
_CHUNK_BYTES = 1 << 26


@dataclass(frozen=True)
class PartitionSpec:
    """One partition: rows ``first_row`` … ``first_row + n_rows − 1`` (from 0, data rows only) of
    ``path``; for CSV, its bytes ``byte_start`` … ``byte_end`` and the physical line of its first row."""

    path: str
    fmt: str  # csv or parquet
    index: int
    first_row: int
    n_rows: int
    byte_start: int = 0
    byte_end: int = 0
    first_line: int = 0


def _format_of(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        if fmt not in PARTITION_FORMATS:
            raise DataError(f"{path}: workload format {fmt!r} cannot be read in partitions; expected one of "
                            f"{', '.join(PARTITION_FORMATS)}")
        return fmt
    return "parquet" if path.suffix.lower() in (".parquet", ".pq") else "csv"


def _check_columns(path: Path, header: list[str]) -> None:
    """Arrival times are converted with the file's first arrival at t = 0: not per partition."""
    canon = {WORKLOAD_COLUMN_ALIASES.get(h.strip().lower(), h.strip().lower()) for h in header}
    raw = {h.strip().lower() for h in header}
    if canon & set(ARRIVAL_FIELDS) or (set(AZURE_TRACE_COLUMNS) <= raw and "query_id" not in raw):
        raise DataError(f"{path}: arrival times ({', '.join(sorted(canon & set(ARRIVAL_FIELDS)) or ['TIMESTAMP'])}) "
                        "are read relative to the file's first arrival, which partitions cannot do; give release_s "
                        "[s from the batch start] instead")


def _sizes(n_rows: int, parts: int, align: int) -> list[int]:
    """Rows per partition: equal shares rounded up to a multiple of ``align`` (the last the rest);
    fewer partitions where the rows do not fill them."""
    share = -(-n_rows // parts)
    per = max(align, -(-share // align) * align)
    out = []
    left = n_rows
    while left > 0:
        out.append(min(per, left))
        left -= out[-1]
    return out


def _csv_rows(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The header's fields, and each data row's byte start and physical line (from 1), blank lines
    skipped. A quote character anywhere: the rows are found by Python's csv reader (slower)."""
    import csv

    with path.open("rb") as fh:
        first = fh.readline()
    try:
        header = next(csv.reader([first.decode("utf-8-sig")]))
    except (UnicodeDecodeError, StopIteration, csv.Error):
        raise DataError(f"{path}: line 1: expected a CSV header of column names") from None
    starts: list[np.ndarray] = []
    lines: list[np.ndarray] = []
    with path.open("rb") as fh:
        data = fh.read(_CHUNK_BYTES)
        offset, line = 0, 1
        prev_nl = -1  # position of the newline before the current line (-1: start of file)
        while data:
            buf = np.frombuffer(data, dtype=np.uint8)
            if (buf == 34).any():  # a quote further on
                return header, *_csv_rows_quoted(path)
            nl = np.flatnonzero(buf == 10) + offset
            line_starts = np.concatenate([[prev_nl + 1], nl[:-1] + 1]) if len(nl) else np.zeros(0, dtype=np.int64)
            line_ends = nl
            # a line holds a row unless it is empty (or only a carriage return)
            length = line_ends - line_starts
            has = length > 0
            if len(nl):
                cr = buf[np.maximum(line_ends - offset - 1, 0)] == 13
                has &= ~((length == 1) & cr)
            starts.append(line_starts[has])
            lines.append(np.arange(line, line + len(nl))[has])
            line += len(nl)
            if len(nl):
                prev_nl = int(nl[-1])
            offset += len(data)
            data = fh.read(_CHUNK_BYTES)
        size = offset
    if prev_nl + 1 < size:  # a last line without a newline
        starts.append(np.array([prev_nl + 1]))
        lines.append(np.array([line]))
    s = np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64)
    ln = np.concatenate(lines) if lines else np.zeros(0, dtype=np.int64)
    return header, s[1:], ln[1:]  # the header's line is not a row


def _csv_rows_quoted(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Rows' byte starts and physical lines, found by the csv module (quoted fields); a line break
    inside a quoted field is refused (a partition boundary could fall inside it)."""
    starts, lines = [], []
    pos, line = 0, 0
    with path.open("rb") as fh:
        for raw in fh:
            line += 1
            if raw.count(b'"') % 2:
                raise DataError(f"{path}: line {line}: a quoted field with a line break inside cannot be read in "
                                "partitions; remove the line break or plan in one process")
            if line > 1 and raw.strip(b"\r\n"):
                starts.append(pos)
                lines.append(line)
            pos += len(raw)
    return np.asarray(starts, dtype=np.int64), np.asarray(lines, dtype=np.int64)


def split_workload(path: str | Path, parts: int, *, fmt: str | None = None, align: int = 1) -> list[PartitionSpec]:
    """The partitions of a workload file (CSV, or Parquet by its suffix ``.parquet``/``.pq`` or
    ``fmt``): ``parts`` contiguous ranges of its rows, each a whole number of ``align`` rows but
    the last (fewer partitions where the rows do not fill them)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such file; expected a workload (CSV or Parquet)")
    if parts < 1:
        raise DataError(f"--partitions {parts}: expected at least 1")
    kind = _format_of(p, fmt)
    if kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(p)
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{p}: not a Parquet file ({str(exc).splitlines()[0]})") from None
        _check_columns(p, list(pf.schema_arrow.names))
        n = pf.metadata.num_rows
        if n == 0:
            raise DataError(f"{p}: no queries; expected at least one row")
        out, first = [], 0
        for i, k in enumerate(_sizes(n, parts, align)):
            out.append(PartitionSpec(str(p), kind, i, first, k))
            first += k
        return out
    header, starts, lines = _csv_rows(p)
    _check_columns(p, header)
    if not len(starts):
        raise DataError(f"{p}: no queries; expected at least one row")
    size = p.stat().st_size
    out, first = [], 0
    for i, k in enumerate(_sizes(len(starts), parts, align)):
        end = int(starts[first + k]) if first + k < len(starts) else size
        out.append(PartitionSpec(str(p), kind, i, first, k, int(starts[first]), end, int(lines[first])))
        first += k
    return out


_LINE = re.compile(r"\bline (\d+)")
_ROW = re.compile(r"^workload table: row (\d+)")


def read_partition(spec: PartitionSpec) -> pd.DataFrame:
    """The rows of one partition as a checked workload table (see :func:`~energyopt.io.read_workload`);
    errors name the whole file and its physical line (CSV) or row from 0 (Parquet)."""
    if spec.fmt == "parquet":
        return _read_parquet_rows(spec)
    p = Path(spec.path)
    with p.open("rb") as fh:
        header = fh.readline()
        fh.seek(spec.byte_start)
        body = fh.read(spec.byte_end - spec.byte_start)
    if not header.endswith(b"\n"):
        header += b"\n"
    with tempfile.TemporaryDirectory(prefix="energyopt-part.") as d:
        tmp = Path(d) / f"part-{spec.index:05d}.csv"
        tmp.write_bytes(header + body)
        try:
            df = read_workload(tmp, fmt="csv")
        except DataError as exc:
            # the partition file's line 2 is the file's spec.first_line
            msg = _LINE.sub(lambda m: f"line {int(m.group(1)) + spec.first_line - 2 if int(m.group(1)) > 1 else 1}",
                            str(exc))
            raise DataError(msg.replace(str(tmp), str(p))) from None
    df.attrs["source"] = str(p)
    return df


def _read_parquet_rows(spec: PartitionSpec) -> pd.DataFrame:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(spec.path)
    # the row groups that hold the range, then the range within them
    bounds = np.cumsum([0] + [pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)])
    g0 = int(np.searchsorted(bounds, spec.first_row, side="right") - 1)
    g1 = int(np.searchsorted(bounds, spec.first_row + spec.n_rows, side="left"))
    table = pf.read_row_groups(list(range(g0, g1)))
    table = table.slice(spec.first_row - int(bounds[g0]), spec.n_rows)
    df = table.to_pandas()
    df.columns = [WORKLOAD_COLUMN_ALIASES.get(str(c).strip().lower(), str(c).strip().lower()) for c in df.columns]
    try:
        out = workload_from_frame(df)
    except DataError as exc:
        msg = _ROW.sub(lambda m: f"{spec.path}: row {int(m.group(1)) + spec.first_row}", str(exc))
        raise DataError(msg.replace("workload table:", f"{spec.path}:")) from None
    out.attrs["source"] = spec.path
    return out
