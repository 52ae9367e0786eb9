"""Append-only CSV of measured runs, so an interrupted sweep keeps its rows and resumes.

One row per measured run of ``batch_size`` identical queries run together. ``runtime_s`` [s],
``energy_j`` [J] (and ``gpu_energy_j``, ``cpu_energy_j``, ``above_idle_energy_j``) are the whole
batch's; ``energy_per_query_j`` [J] is ``energy_j / batch_size``, each query's share (a query's
latency while it shares the device is the batch's ``runtime_s``). ``decode_attention`` says how a
decode step attends: ``grouped`` (the query heads of each KV head read that head's cache once, as
serving engines do), ``sdpa`` (transformers' own path, which copies K and V out to every query
head) or empty where the model's code cannot take the grouped path.

Files written before these two columns existed (``LEGACY_COLUMNS``) are still resumed: their rows
keep the older layout, where ``energy_per_query_j`` is ``energy_j / batch_size`` and the decode
attention is transformers' own.
"""

from __future__ import annotations

import contextlib
import csv
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..errors import DataError

__all__ = ["RunLog", "ROW_COLUMNS", "LEGACY_COLUMNS", "RunKey", "run_key"]

ROW_COLUMNS = (
    "llm", "device", "input_tokens", "output_tokens", "batch_size", "runtime_s", "energy_j",
    "energy_per_query_j", "gpu_energy_j", "cpu_energy_j", "idle_power_w", "above_idle_energy_j", "num_devices",
    "energy_source", "split", "repeat", "inner_runs", "decode_loop", "decode_attention", "dtype", "gpu_name",
    "cpu_name", "driver", "torch_version", "transformers_version", "host", "measured_at",
)
# the layout of files written before batch sizes were measured (data/h100.csv, data/h200.csv, ...)
LEGACY_COLUMNS = tuple(c for c in ROW_COLUMNS if c not in ("energy_per_query_j", "decode_attention"))

# (llm, device, input_tokens, output_tokens, split, repeat, batch_size)
RunKey = tuple[str, str, int, int, str, int, int]


def run_key(row: dict[str, Any]) -> RunKey:
    """A row's key (raises KeyError, TypeError or ValueError on a malformed row). A row with no
    ``batch_size`` (an empty cell) ran one query at a time: batch size 1."""
    batch = row.get("batch_size")
    return (row["llm"], row["device"], int(row["input_tokens"]), int(row["output_tokens"]), row["split"],
            int(row["repeat"]), int(batch) if batch not in (None, "") else 1)


@contextlib.contextmanager
def exclusive_writer(path: str | Path) -> Iterator[None]:
    """Hold ``PATH.lock`` (an exclusive ``flock``) while one ``characterize`` writes to ``path``: a
    second one at the same time would measure the same points again and append them twice. The
    lock goes with the process, however it ends; the file names the holder's pid."""
    import fcntl

    lock_path = Path(f"{path}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise DataError(f"{path}: another energyopt characterize (pid {holder}) is writing to it; "
                            "wait for it to end, or write to another file") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.unlink(lock_path)
    finally:
        os.close(fd)


class RunLog:
    """One CSV file; rows are flushed to disk as each run finishes. ``known``: keys measured
    elsewhere (a campaign's merged file), counted as done as if they were in this file."""

    def __init__(self, path: str | Path, columns: Iterable[str] = ROW_COLUMNS, known: Iterable[RunKey] = ()):
        self.path = Path(path)
        self.columns = tuple(columns)
        self.known = frozenset(known)
        if self.path.exists() and self.path.stat().st_size > 0:
            self._drop_torn_line()
        if self.path.exists() and self.path.stat().st_size > 0:
            with self.path.open(newline="") as fh:
                header = next(csv.reader(fh), [])
            if tuple(header) == LEGACY_COLUMNS and self.columns == ROW_COLUMNS:
                self.columns = LEGACY_COLUMNS  # resume an older file in its own layout
            elif tuple(header) != self.columns:
                raise DataError(
                    f"{self.path}: existing file has columns {header}; expected energyopt's "
                    "characterization columns (write to a new file)"
                )

    @property
    def legacy(self) -> bool:
        """Whether the file has the layout of before batch sizes (``LEGACY_COLUMNS``)."""
        return self.columns == LEGACY_COLUMNS

    def legacy_message(self) -> str:
        return (f"{self.path} has the older column layout (no energy_per_query_j, decode_attention): it can be "
                "resumed only with --batch-sizes 1 --decode-attention sdpa; write other runs to a new file")

    def _drop_torn_line(self) -> None:
        """A writer killed mid-row leaves a line without its newline: cut it (it is re-measured)."""
        data = self.path.read_bytes()
        if data.endswith(b"\n"):
            return
        cut = data.rfind(b"\n") + 1
        with self.path.open("r+b") as fh:
            fh.truncate(cut)

    def done(self) -> set[RunKey]:
        """Keys (llm, device, input_tokens, output_tokens, split, repeat, batch_size) already measured
        (in the file, or ``known``). A row with no ``batch_size`` (an empty cell) ran one query at a
        time: batch size 1.
        """
        keys = set(self.known)
        if not self.path.exists() or self.path.stat().st_size == 0:
            return keys
        with self.path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            for row in reader:
                try:
                    keys.add(run_key(row))
                except (KeyError, TypeError, ValueError) as exc:
                    raise DataError(f"{self.path}: line {reader.line_num} is malformed ({exc}); fix or remove it") from None
        return keys

    def decode_attentions(self) -> set[str]:
        """The ``decode_attention`` values of the rows already in the file (a file holds one engine)."""
        if self.legacy or not self.path.exists() or self.path.stat().st_size == 0:
            return set()
        with self.path.open(newline="") as fh:
            return {row.get("decode_attention") or "" for row in csv.DictReader(fh)}

    def rows(self) -> list[dict[str, str]]:
        """The file's rows as written (strings), in order."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return []
        with self.path.open(newline="") as fh:
            return list(csv.DictReader(fh))

    def append(self, row: dict[str, Any]) -> None:
        self.append_many([row])

    def append_many(self, rows: list[dict[str, Any]]) -> None:
        """Append rows (each as :meth:`append` checks it), flushed to disk once at the end."""
        rows = [self._checked(r) for r in rows]
        if not rows:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists() or self.path.stat().st_size == 0
        with self.path.open("a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=self.columns)
            if new:
                w.writeheader()
            for row in rows:
                w.writerow({c: _fmt(row.get(c)) for c in self.columns})
            fh.flush()
            os.fsync(fh.fileno())

    def _checked(self, row: dict[str, Any]) -> dict[str, Any]:
        if self.legacy:
            # an older file: it can state single queries measured with transformers' own attention
            if int(row.get("batch_size") or 1) != 1 or row.get("decode_attention") not in (None, "", "sdpa"):
                raise DataError(self.legacy_message())
            row = {k: v for k, v in row.items() if k not in ("energy_per_query_j", "decode_attention")}
        unknown = set(row) - set(self.columns)
        if unknown:
            raise ValueError(f"unknown column(s) {sorted(unknown)}")
        return row


def _fmt(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}" if abs(v) < 1e6 else f"{v:.9g}"
    return v
