"""Append-only CSV of measured runs, so an interrupted sweep keeps its rows and resumes."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Iterable

from ..errors import DataError

__all__ = ["RunLog", "ROW_COLUMNS"]

ROW_COLUMNS = (
    "llm", "device", "input_tokens", "output_tokens", "batch_size", "runtime_s", "energy_j",
    "gpu_energy_j", "cpu_energy_j", "idle_power_w", "above_idle_energy_j", "num_devices",
    "energy_source", "split", "repeat", "inner_runs", "decode_loop", "dtype", "gpu_name", "cpu_name", "driver",
    "torch_version", "transformers_version", "host", "measured_at",
)


class RunLog:
    """One CSV file; rows are flushed to disk as each run finishes."""

    def __init__(self, path: str | Path, columns: Iterable[str] = ROW_COLUMNS):
        self.path = Path(path)
        self.columns = tuple(columns)
        if self.path.exists() and self.path.stat().st_size > 0:
            self._drop_torn_line()
        if self.path.exists() and self.path.stat().st_size > 0:
            with self.path.open(newline="") as fh:
                header = next(csv.reader(fh), [])
            if tuple(header) != self.columns:
                raise DataError(
                    f"{self.path}: existing file has columns {header}; expected energyopt's "
                    "characterization columns (write to a new file)"
                )

    def _drop_torn_line(self) -> None:
        """A writer killed mid-row leaves a line without its newline: cut it (it is re-measured)."""
        data = self.path.read_bytes()
        if data.endswith(b"\n"):
            return
        cut = data.rfind(b"\n") + 1
        with self.path.open("r+b") as fh:
            fh.truncate(cut)

    def done(self) -> set[tuple[str, str, int, int, str, int]]:
        """Keys (llm, device, input_tokens, output_tokens, split, repeat) already measured."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return set()
        keys = set()
        with self.path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            for row in reader:
                try:
                    keys.add((row["llm"], row["device"], int(row["input_tokens"]), int(row["output_tokens"]),
                              row["split"], int(row["repeat"])))
                except (KeyError, TypeError, ValueError) as exc:
                    raise DataError(f"{self.path}: line {reader.line_num} is malformed ({exc}); fix or remove it") from None
        return keys

    def append(self, row: dict[str, Any]) -> None:
        unknown = set(row) - set(self.columns)
        if unknown:
            raise ValueError(f"unknown column(s) {sorted(unknown)}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists() or self.path.stat().st_size == 0
        with self.path.open("a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=self.columns)
            if new:
                w.writeheader()
            w.writerow({c: _fmt(row.get(c)) for c in self.columns})
            fh.flush()
            os.fsync(fh.fileno())


def _fmt(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}" if abs(v) < 1e6 else f"{v:.9g}"
    return v
