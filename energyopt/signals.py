"""Time slots and their signals: grid carbon intensity and electricity price, read from CSV.

A signals file has one row per slot::

    start_s,carbon_g_per_kwh,price_per_kwh
    0,182,0.21
    3600,164,0.19

``start_s`` [s] is the slot's start from the batch start (or ``timestamp``, ISO 8601, read as
seconds from the first row or from a given batch start; a time without an offset is read as UTC).
A slot lasts until the next row's start; the last one as long as the others. ``carbon_g_per_kwh``
[gCO2e/kWh] and ``price_per_kwh`` [currency/kWh] are optional, but one of them must be there; an
optional ``pool`` column gives each fleet pool its own series. The rows of one series are evenly
spaced (a longer step is a missing row, an error) and must cover the plan's horizon.

The public National Grid ESO (NESO) Carbon Intensity API layout (``from,to,forecast,actual,index``,
one row per half hour; the shipped ``data/signals/`` series) is read too: its ``actual`` intensity
is the carbon signal and each row's ``to`` its end.

Every error is a one-line :class:`~energyopt.errors.DataError` naming the file, the physical line
and the column, and what was expected (the conventions of :mod:`energyopt.io`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError, excerpt, key_text, unknown_key_hint
from .fleet import Fleet
from .io import _check_file, _normalise_headers, _numeric, _read_csv_strings

__all__ = ["Signals", "read_signals", "load_signals", "SIGNAL_COLUMNS", "NESO_COLUMNS"]

#: the columns of a signals file (one of start_s and timestamp; one or both of the signals)
SIGNAL_COLUMNS = ("start_s", "timestamp", "carbon_g_per_kwh", "price_per_kwh", "pool")
#: the NESO Carbon Intensity API layout (``/intensity/{from}/{to}`` as CSV): ``actual`` [gCO2/kWh] is used
NESO_COLUMNS = ("from", "to", "forecast", "actual", "index")
#: relative tolerance on the spacing of a series' rows
_STEP_REL_TOL = 1e-9


@dataclass(frozen=True)
class Signals:
    """Slots and their signals. Arrays have one entry per slot; the slots of one series (one per
    pool, or one for every pool where ``pool`` is None) are in time order, contiguous, and
    together the rows of the file.

    ``start_s``, ``end_s`` [s] from the batch start; ``carbon_g_per_kwh`` [gCO2e/kWh] and
    ``price_per_kwh`` [currency/kWh] are None where the file has no such column; ``pool`` names
    each slot's pool (None: one series for all pools); ``line`` is each slot's physical line in
    the file (for messages); ``batch_start`` the ISO 8601 time of t = 0 where the file has
    timestamps."""

    start_s: np.ndarray
    end_s: np.ndarray
    carbon_g_per_kwh: np.ndarray | None
    price_per_kwh: np.ndarray | None
    pool: np.ndarray | None = None
    line: np.ndarray | None = None
    source: str = "<memory>"
    batch_start: str | None = None

    @property
    def n_slots(self) -> int:
        return int(len(self.start_s))

    @property
    def pools(self) -> tuple[str, ...]:
        """The pools with a series of their own, in file order (empty: one series for all)."""
        return () if self.pool is None else tuple(dict.fromkeys(str(p) for p in self.pool))

    def rows_of(self, pool: str | None = None) -> np.ndarray:
        """The slots (indices) of ``pool``'s series, in time order; all of them for a file
        without pools."""
        if self.pool is None:
            return np.arange(self.n_slots)
        rows = np.flatnonzero(self.pool == pool)
        if not len(rows):
            raise DataError(f"{self.source}: no series for pool {key_text(pool)}{unknown_key_hint(pool, self.pools)}")
        return rows

    def bounds_s(self, pool: str | None = None) -> np.ndarray:
        """The slot boundaries [s] of ``pool``'s series: its starts and its last end (S + 1 values)."""
        rows = self.rows_of(pool)
        return np.append(self.start_s[rows], self.end_s[rows[-1]])

    def slot_s(self) -> float:
        """The median slot length [s]."""
        return float(np.median(self.end_s - self.start_s))

    def slot_at(self, t_s, pool: str | None = None) -> np.ndarray:
        """Index (into the arrays) of the slot of ``pool``'s series holding each time ``t_s`` [s]
        (a slot holds its start, not its end); -1 outside the series."""
        rows = self.rows_of(pool)
        b = self.bounds_s(pool)
        k = np.searchsorted(b, np.asarray(t_s, dtype=float), side="right") - 1
        inside = (k >= 0) & (k < len(rows))
        return np.where(inside, rows[np.clip(k, 0, len(rows) - 1)], -1)

    def check_covers(self, until_s: float, what: str = "the plan's horizon") -> None:
        """Raise a :class:`DataError` unless every series covers [0, ``until_s``) [s], saying how far short."""
        for pool in self.pools or (None,):
            rows = self.rows_of(pool)
            whose = "" if pool is None else f" of pool {key_text(pool)}"
            first, last = float(self.start_s[rows[0]]), float(self.end_s[rows[-1]])
            if first > 0:
                raise DataError(f"{self.source}: the series{whose} starts {_s(first)} after the batch start "
                                f"(line {self._line(rows[0])}); expected a slot holding t = 0")
            if last < until_s:
                raise DataError(f"{self.source}: the series{whose} ends at {_s(last)}, {_s(until_s - last)} short of "
                                f"{what} ({_s(until_s)}); add rows up to {_s(until_s)}")

    def check_fleet(self, fleet: Fleet) -> None:
        """Raise a :class:`DataError` unless the series cover the fleet's horizon and, where the
        file has pools, name exactly the fleet's pools."""
        if self.pool is not None:
            known = tuple(fleet.pools)
            for pool in self.pools:
                if pool not in fleet.pools:
                    row = int(np.flatnonzero(self.pool == pool)[0])
                    raise DataError(f"{self.source}: line {self._line(row)}, column pool: unknown pool "
                                    f"{key_text(pool)}{unknown_key_hint(pool, known)}")
            missing = [p for p in known if p not in self.pools]
            if missing:
                raise DataError(f"{self.source}: no series for pool(s) {', '.join(key_text(p) for p in missing)}; "
                                "expected one series per pool of the fleet where the file has a pool column")
        self.check_covers(fleet.horizon_s, f"the fleet's horizon_s in {fleet.source}")

    def _line(self, row: int) -> int | str:
        return int(self.line[row]) if self.line is not None else f"of slot {row}"


def _s(x: float) -> str:
    """Seconds as a message states them: ``86,400 s``, ``0.5 s``."""
    return f"{int(x):,} s" if float(x).is_integer() else f"{x:,.6g} s"


def load_signals(signals: Signals | str | Path, *, fleet: Fleet | None = None,
                 batch_start: str | None = None) -> Signals:
    """A :class:`Signals` from a path (:func:`read_signals`) or as given, checked against
    ``fleet`` (its horizon covered; its pools, where the file has a pool column)."""
    sig = read_signals(signals, batch_start=batch_start) if isinstance(signals, (str, Path)) else signals
    if fleet is not None:
        sig.check_fleet(fleet)
    return sig


def read_signals(path: str | Path, *, batch_start: str | None = None) -> Signals:
    """Read and validate a signals CSV: the generic layout (:data:`SIGNAL_COLUMNS`) or the NESO
    Carbon Intensity API layout (:data:`NESO_COLUMNS`, detected by its header).

    ``batch_start`` (ISO 8601) is t = 0 for a file with timestamps [default: its first row]; a
    file with ``start_s`` is in seconds from the batch start already and refuses it."""
    p = _check_file(path)
    df, lines = _read_csv_strings(p)
    df = _normalise_headers(df, {}, p)
    if {"from", "actual"} <= set(df.columns):
        return _read_neso(df, lines, p, batch_start)
    return _read_generic(df, lines, p, batch_start)


def _no_unknown_columns(df: pd.DataFrame, known: tuple[str, ...], p: Path) -> None:
    for col in df.columns:
        if col not in known:
            raise DataError(f"{p}: line 1: unknown column {key_text(col)}{unknown_key_hint(col, known)}")


def _need_rows(df: pd.DataFrame, p: Path) -> None:
    if df.empty:
        raise DataError(f"{p}: no slots; expected one row per slot after the header")


def _read_generic(df: pd.DataFrame, lines: np.ndarray, p: Path, batch_start: str | None) -> Signals:
    _no_unknown_columns(df, SIGNAL_COLUMNS, p)
    has_start, has_time = "start_s" in df.columns, "timestamp" in df.columns
    if has_start == has_time:
        raise DataError(f"{p}: line 1: expected one of the columns start_s (seconds from the batch start) or "
                        f"timestamp (ISO 8601), {'not both' if has_start else 'found neither'}")
    if "carbon_g_per_kwh" not in df.columns and "price_per_kwh" not in df.columns:
        raise DataError(f"{p}: line 1: expected a carbon_g_per_kwh or a price_per_kwh column (or both)")
    _need_rows(df, p)
    pool = _pools(df, lines, p) if "pool" in df.columns else None
    if has_start:
        if batch_start is not None:
            raise DataError(f"{p}: a batch start was given, but the file's start_s are seconds from the batch "
                            "start already; give timestamps or no batch start")
        start = _numeric(df, "start_s", p, lines, unit="s").to_numpy(dtype=float)
        origin = None
    else:
        start, origin = _seconds(df["timestamp"], "timestamp", lines, p, batch_start)
    carbon = (_numeric(df, "carbon_g_per_kwh", p, lines, nonnegative=True, unit="gCO2e/kWh").to_numpy(dtype=float)
              if "carbon_g_per_kwh" in df.columns else None)
    price = (_numeric(df, "price_per_kwh", p, lines, unit="currency/kWh").to_numpy(dtype=float)
             if "price_per_kwh" in df.columns else None)
    col = "start_s" if has_start else "timestamp"
    order = _series_order(pool, len(start))
    start, lines, text = start[order], lines[order], df[col].to_numpy(dtype=object)[order]
    pool = None if pool is None else pool[order]
    end = _ends_evenly_spaced(start, pool, lines, text, p, col)
    return Signals(start, end, None if carbon is None else carbon[order], None if price is None else price[order],
                   pool, lines, str(p), origin)


def _read_neso(df: pd.DataFrame, lines: np.ndarray, p: Path, batch_start: str | None) -> Signals:
    """The NESO layout: ``from`` and ``to`` (ISO 8601, UTC) bound each slot, ``actual`` [gCO2/kWh]
    is its carbon intensity; ``forecast`` and ``index`` are read as text and not used. A row's
    ``to`` must be the next row's ``from`` (a missing half hour is an error)."""
    _no_unknown_columns(df, NESO_COLUMNS, p)
    if "to" not in df.columns:
        raise DataError(f"{p}: missing column to; the NESO layout has from, to, forecast, actual, index")
    _need_rows(df, p)
    start, origin = _seconds(df["from"], "from", lines, p, batch_start)
    end, _ = _seconds(df["to"], "to", lines, p, origin)
    carbon = _numeric(df, "actual", p, lines, nonnegative=True, unit="gCO2/kWh").to_numpy(dtype=float)
    bad = ~(end > start)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{p}: line {lines[i]}, column to: {excerpt(df['to'].iloc[i])} is not after from "
                        f"({excerpt(df['from'].iloc[i])}); expected each slot to end after it starts")
    _increasing(start, lines, p, "from", df["from"].to_numpy(dtype=object))
    gap = np.flatnonzero(start[1:] != end[:-1])
    if len(gap):
        i = int(gap[0]) + 1
        what = "a gap" if start[i] > end[i - 1] else "an overlap"
        raise DataError(f"{p}: line {lines[i]}, column from: {excerpt(df['from'].iloc[i])} is not where line "
                        f"{lines[i - 1]}'s slot ends ({excerpt(df['to'].iloc[i - 1])}): {what} of "
                        f"{_s(abs(start[i] - end[i - 1]))}; expected contiguous slots")
    return Signals(start, end, carbon, None, None, lines, str(p), origin)


def _pools(df: pd.DataFrame, lines: np.ndarray, p: Path) -> np.ndarray:
    raw = df["pool"]
    blank = raw.isna() | (raw.astype(str).str.strip() == "")
    if blank.any():
        i = int(np.flatnonzero(blank.to_numpy())[0])
        raise DataError(f"{p}: line {lines[i]}, column pool: value is missing; expected a pool name of the fleet")
    return raw.astype(str).str.strip().to_numpy(dtype=object)


def _seconds(raw: pd.Series, col: str, lines: np.ndarray, p: Path, origin: str | None) -> tuple[np.ndarray, str]:
    """ISO 8601 times as seconds from ``origin`` (ISO 8601; default the first row) and the origin
    used. A time without an offset is read as UTC."""
    blank = raw.isna()
    if blank.any():
        i = int(np.flatnonzero(blank.to_numpy())[0])
        raise DataError(f"{p}: line {lines[i]}, column {col}: value is missing; expected an ISO 8601 time")
    t = pd.to_datetime(raw.astype(str).str.strip(), utc=True, format="ISO8601", errors="coerce")
    bad = t.isna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{p}: line {lines[i]}, column {col}: expected an ISO 8601 time "
                        f"(e.g. 2023-01-01T00:00:00Z), got {excerpt(raw.iloc[i])}")
    if origin is None:
        t0 = t.iloc[0]
    else:
        t0 = pd.to_datetime(str(origin).strip(), utc=True, format="ISO8601", errors="coerce")
        if pd.isna(t0):
            raise DataError(f"batch start: expected an ISO 8601 time (e.g. 2023-01-01T00:00:00Z), got {excerpt(origin)}")
    ns = t.to_numpy(dtype="datetime64[ns]").astype(np.int64) - np.int64(t0.value)
    return ns / 1e9, t0.isoformat().replace("+00:00", "Z")


def _series_order(pool: np.ndarray | None, n: int) -> np.ndarray:
    """Rows grouped by pool (in the order pools first appear), each pool's rows in file order."""
    if pool is None:
        return np.arange(n)
    codes, _ = pd.factorize(pool)
    return np.argsort(codes, kind="stable")


def _increasing(start: np.ndarray, lines: np.ndarray, p: Path, col: str, text: np.ndarray) -> None:
    back = np.flatnonzero(~(start[1:] > start[:-1]))
    if len(back):
        i = int(back[0]) + 1
        shown = excerpt(text[i])
        same = "the same start as" if start[i] == start[i - 1] else "not after"
        raise DataError(f"{p}: line {lines[i]}, column {col}: {shown} is {same} line {lines[i - 1]}; expected "
                        "strictly increasing slot starts (one row per slot)")


def _ends_evenly_spaced(start: np.ndarray, pool: np.ndarray | None, lines: np.ndarray, text: np.ndarray, p: Path,
                        col: str) -> np.ndarray:
    """Each slot's end: the next row's start, the last slot's its start plus the median step. The
    rows of each series must rise by one step (the median): a longer step is a missing row."""
    end = np.empty_like(start)
    groups = [np.arange(len(start))] if pool is None else [np.flatnonzero(pool == g) for g in dict.fromkeys(pool)]
    for rows in groups:
        s, ln = start[rows], lines[rows]
        whose = "" if pool is None else f" (pool {key_text(pool[rows[0]])})"
        _increasing(s, ln, p, col, text[rows])
        if len(s) < 2:
            raise DataError(f"{p}: line {ln[0]}: one slot{whose}; expected at least two rows, whose spacing is the "
                            "slot length")
        step = np.diff(s)
        median = float(np.median(step))
        off = np.flatnonzero(np.abs(step - median) > _STEP_REL_TOL * median)
        if len(off):
            i = int(off[0]) + 1
            what = "a gap (a missing row?)" if step[i - 1] > median else "a shorter slot"
            raise DataError(f"{p}: line {ln[i]}, column {col}: starts {_s(step[i - 1])} after line {ln[i - 1]}, "
                            f"the other slots{whose} are {_s(median)} long: {what}; expected evenly spaced rows")
        end[rows] = np.append(s[1:], s[-1] + median)
    return end
