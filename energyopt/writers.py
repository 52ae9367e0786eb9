"""Files written so that a reader never sees half of one: atomic replacement, CSV tables, JSON."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["atomic_path", "write_atomic", "write_table_csv", "write_table_csv_stream", "write_json", "jsonable",
           "remove_open_temp_files"]

#: temporary files being written now (removed by :func:`remove_open_temp_files` if the process
#: must end before the write does)
_OPEN_TEMPS: set[str] = set()


def remove_open_temp_files() -> None:
    """Remove the temporary files of writes still under way (before a forced exit)."""
    for tmp in list(_OPEN_TEMPS):
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _umask() -> int:
    """The process's file mode creation mask, read without changing it where Linux shows it
    (``os.umask`` alone can only read it by setting it, a moment another thread could see)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[str]:
    """A temporary file beside ``path`` to write into; it replaces ``path`` only when the block
    ends without error, so a failed write never leaves a partial file. The file gets the mode a
    plain ``open`` would give it (0666 less the umask: 0644 under umask 022), not mkstemp's 0600.

    On Linux the file has no name while it is written (``O_TMPFILE``; the path yielded is
    ``/proc/self/fd/N``): a process killed mid-write, even by SIGKILL, leaves nothing in the
    folder. It is named (``.NAME.*.tmp``) only for the instant before it replaces ``path``.
    Elsewhere, or where the file system cannot, a named temporary file as mkstemp makes it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _unnamed_file(path.parent)
    if fd is None:
        with _named_temp(path) as tmp:
            yield tmp
        return
    try:
        yield f"/proc/self/fd/{fd}"
        with _named_temp(path) as tmp:  # a name for the finished file, then the rename
            os.unlink(tmp)
            folder = os.open(path.parent, os.O_RDONLY)
            try:  # (with a directory descriptor CPython calls linkat, which follows /proc's link to the file)
                os.link(f"/proc/self/fd/{fd}", os.path.basename(tmp), dst_dir_fd=folder, follow_symlinks=True)
            finally:
                os.close(folder)
    finally:
        os.close(fd)


def _unnamed_file(folder: Path) -> int | None:
    """A writable file without a name in ``folder`` (Linux's O_TMPFILE), or None where not to be had."""
    flag = getattr(os, "O_TMPFILE", None)
    if flag is None or not os.path.isdir("/proc/self/fd"):
        return None
    try:
        return os.open(folder, flag | os.O_WRONLY, 0o666)  # the mode less the umask, as open() gives
    except OSError:  # a file system without it (EOPNOTSUPP, EISDIR on old kernels)
        return None


@contextlib.contextmanager
def _named_temp(path: Path) -> Iterator[str]:
    """A named temporary file beside ``path`` (mode as open() gives it) that replaces ``path`` when
    the block ends without error; removed otherwise."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    _OPEN_TEMPS.add(tmp)
    try:
        try:
            if hasattr(os, "fchmod"):  # POSIX
                os.fchmod(fd, 0o666 & ~_umask())
        finally:
            os.close(fd)
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    finally:
        _OPEN_TEMPS.discard(tmp)


def write_atomic(path: Path, text: str) -> None:
    """``text`` into ``path``, replaced atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def write_table_csv(table: Any, path: Path) -> None:
    """A pandas table as CSV, replaced atomically: strings quoted only where needed, missing values
    empty, floats in their shortest exact form. pyarrow's writer formats a million rows in about a
    second, where pandas' takes about seven."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        write_table_csv_stream(table, fh)


def write_table_csv_stream(table: Any, fh: BinaryIO) -> None:
    """A pandas table as CSV (as :func:`write_table_csv` formats it) into a binary stream, such as
    standard output."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    t = pa.Table.from_pandas(table, preserve_index=False)
    # large tables in two halves formatted at once (pyarrow's writer releases the GIL), then
    # written one after the other: formatting floats is most of the time
    half = (t.num_rows + 1) // 2 if t.num_rows >= 200_000 else t.num_rows
    parts = [t.slice(0, half), t.slice(half)] if half < t.num_rows else [t]

    def fmt(part: pa.Table, header: bool) -> pa.Buffer:
        sink = pa.BufferOutputStream()
        pa_csv.write_csv(part, sink, write_options=pa_csv.WriteOptions(quoting_style="needed", include_header=header))
        return sink.getvalue()

    headers = [True] + [False] * (len(parts) - 1)
    if len(parts) == 1:
        bufs = [fmt(parts[0], True)]
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(len(parts)) as ex:
            bufs = list(ex.map(fmt, parts, headers))
    for b in bufs:
        fh.write(b)


def jsonable(o: Any) -> Any:
    """Plain JSON values: numpy scalars to Python numbers, enums to their values, NaN to null,
    ±inf to the strings "inf"/"-inf"."""
    if isinstance(o, dict):
        return {str(k): jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [jsonable(v) for v in o]
    if isinstance(o, Enum):
        return o.value
    if hasattr(o, "item") and not isinstance(o, (str, bytes)):  # numpy scalars
        o = o.item()
    if isinstance(o, bool) or o is None or isinstance(o, (int, str)):
        return o
    if isinstance(o, float):
        return None if math.isnan(o) else (o if math.isfinite(o) else ("inf" if o > 0 else "-inf"))
    return o


def write_json(path: Path, obj: Any) -> Path:
    """``obj`` as indented JSON, replaced atomically."""
    write_atomic(path, json.dumps(jsonable(obj), indent=2) + "\n")
    return path
