"""The signals reader: good files in both layouts, and every error a one-line message naming the
file, the physical line, the column and what was expected."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ROOT
from hypothesis import given, settings
from test_fuzz_inputs import CSV_VALUES, FUZZ, mutated_text, one_line_or_loaded

from energyopt.errors import DataError
from energyopt.fleet import read_fleet
from energyopt.signals import Signals, load_signals, read_signals

SHIPPED = ROOT / "data" / "signals" / "neso_gb_national_intensity_2023-01-01_07.csv"
SYNTHETIC_FLEET = ROOT / "tests" / "data" / "fleet_synthetic.toml"  # pools gpu-a, gpu-b; horizon 600 s


def write(tmp_path, text: str, name: str = "s.csv"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_start_s_layout_reads_slots_until_the_next_start_and_the_last_as_long_as_the_rest(tmp_path):
    s = read_signals(write(tmp_path, "start_s,carbon_g_per_kwh,price_per_kwh\n0,100,0.2\n600,50,0.1\n1200,75,-0.01\n"))
    assert isinstance(s, Signals)
    np.testing.assert_array_equal(s.start_s, [0, 600, 1200])
    np.testing.assert_array_equal(s.end_s, [600, 1200, 1800])
    np.testing.assert_array_equal(s.carbon_g_per_kwh, [100, 50, 75])
    np.testing.assert_array_equal(s.price_per_kwh, [0.2, 0.1, -0.01])  # a market price may be negative
    np.testing.assert_array_equal(s.line, [2, 3, 4])
    assert s.pool is None and s.pools == () and s.batch_start is None and s.slot_s() == 600
    np.testing.assert_array_equal(s.slot_at([0, 599.9, 600, 1799, 1800, -1]), [0, 0, 1, 2, -1, -1])


def test_carbon_only_or_price_only_is_a_series(tmp_path):
    c = read_signals(write(tmp_path, "start_s,carbon_g_per_kwh\n0,1\n10,2\n"))
    assert c.price_per_kwh is None and c.carbon_g_per_kwh is not None
    p = read_signals(write(tmp_path, "Start_S , PRICE_PER_KWH\n0,1\n10,2\n"))  # headers are case- and space-blind
    assert p.carbon_g_per_kwh is None and p.price_per_kwh is not None


def test_timestamps_are_seconds_from_the_first_row_or_from_a_given_batch_start(tmp_path):
    text = "timestamp,carbon_g_per_kwh\n2023-01-01T00:00:00Z,10\n2023-01-01T01:00:00+00:00,20\n2023-01-01T04:00:00+02:00,30\n"
    s = read_signals(write(tmp_path, text))
    np.testing.assert_array_equal(s.start_s, [0, 3600, 7200])  # 04:00+02:00 is 02:00Z
    assert s.batch_start == "2023-01-01T00:00:00Z"
    later = read_signals(write(tmp_path, text), batch_start="2023-01-01T00:30:00Z")
    np.testing.assert_array_equal(later.start_s, [-1800, 1800, 5400])
    later.check_covers(100)  # t = 0 lies in the first slot
    with pytest.raises(DataError, match=r"starts 1,800 s after the batch start \(line 2\)"):
        read_signals(write(tmp_path, text), batch_start="2022-12-31T23:30:00Z").check_covers(100)
    dup = text.replace("04:00:00+02:00", "03:00:00+02:00")  # the same instant as the row before
    with pytest.raises(DataError, match=r"line 4, column timestamp: '2023-01-01T03:00:00\+02:00' is the same start as line 3"):
        read_signals(write(tmp_path, dup))


def test_the_shipped_neso_series_reads_as_a_week_of_half_hours():
    s = read_signals(SHIPPED)
    assert s.n_slots == 337 and s.slot_s() == 1800 and s.price_per_kwh is None
    assert s.batch_start == "2022-12-31T23:30:00Z" and s.start_s[0] == 0 and s.end_s[-1] == 337 * 1800
    assert float(s.carbon_g_per_kwh.min()) == 49 and float(s.carbon_g_per_kwh.max()) == 207
    assert s.carbon_g_per_kwh[0] == 65 and s.carbon_g_per_kwh[-1] == 61  # the `actual` column, first and last rows
    day = read_signals(SHIPPED, batch_start="2023-01-01T00:00:00Z")
    assert day.start_s[1] == 0 and day.slot_at([0])[0] == 1


def test_per_pool_series_are_grouped_by_pool_in_file_order(tmp_path):
    text = "pool,start_s,carbon_g_per_kwh\ngpu-a,0,1\ngpu-b,0,5\ngpu-a,300,2\ngpu-b,300,6\n"
    s = read_signals(write(tmp_path, text))
    assert s.pools == ("gpu-a", "gpu-b")
    np.testing.assert_array_equal(s.bounds_s("gpu-b"), [0, 300, 600])
    np.testing.assert_array_equal(s.carbon_g_per_kwh[s.rows_of("gpu-b")], [5, 6])
    np.testing.assert_array_equal(s.line[s.rows_of("gpu-a")], [2, 4])
    load_signals(s, fleet=read_fleet(SYNTHETIC_FLEET))  # the fleet's two pools, horizon 600 s covered


@pytest.mark.parametrize("text, message", [
    ("", r"file is empty"),
    ("start_s,carbon_g_per_kwh\n", r"no slots; expected one row per slot"),
    ("start_s,carbon_g_per_kwh,prce_per_kwh\n0,1,2\n", r"line 1: unknown column prce_per_kwh; did you mean price_per_kwh\?"),
    ("start_s,timestamp,carbon_g_per_kwh\n0,2023-01-01T00:00Z,1\n", r"one of the columns start_s .* not both"),
    ("carbon_g_per_kwh\n1\n", r"one of the columns start_s .* found neither"),
    ("start_s\n0\n", r"expected a carbon_g_per_kwh or a price_per_kwh column"),
    ("start_s,carbon_g_per_kwh\n0,1\n0,2\n",
     r"line 3, column start_s: '0' is the same start as line 2; expected strictly increasing"),
    ("start_s,carbon_g_per_kwh\n0,1\n60,2\n30,3\n", r"line 4, column start_s: '30' is not after line 3"),
    ("start_s,carbon_g_per_kwh\n0,1\n60,2\n180,3\n240,3\n",
     r"line 4, column start_s: starts 120 s after line 3, the other slots are 60 s long: a gap \(a missing row\?\)"),
    ("start_s,carbon_g_per_kwh\n0,1\n60,2\n90,3\n150,3\n210,3\n",
     r"line 4, column start_s: starts 30 s after line 3.*a shorter slot"),
    ("start_s,carbon_g_per_kwh\n0,1\n60,-2\n",
     r"line 3, column carbon_g_per_kwh: expected a number >= 0 \[gCO2e/kWh\], got '-2'"),
    ("start_s,carbon_g_per_kwh\n0,1\n60,nan\n", r"line 3, column carbon_g_per_kwh: value is missing"),
    ("start_s,price_per_kwh\n0,1\n60,inf\n",
     r"line 3, column price_per_kwh: expected a finite number \[currency/kWh\], got 'inf'"),
    ("start_s,carbon_g_per_kwh\n0,1\nx,2\n", r"line 3, column start_s: expected a number, got 'x'"),
    ("start_s,carbon_g_per_kwh\n0,1\n\n60,\n", r"line 4, column carbon_g_per_kwh: value is missing"),
    ("start_s,carbon_g_per_kwh\n0,1\n", r"line 2: one slot; expected at least two rows"),
    ("timestamp,carbon_g_per_kwh\n2023-01-01T00:00Z,1\nyesterday,2\n", r"line 3, column timestamp: expected an ISO 8601 time"),
    ("pool,start_s,carbon_g_per_kwh\ngpu-a,0,1\n,60,1\n", r"line 3, column pool: value is missing"),
    ("pool,start_s,carbon_g_per_kwh\na,0,1\nb,0,1\na,60,1\nb,60,1\nb,120,1\nb,240,1\n",
     r"line 7, column start_s: starts 120 s after line 6, the other slots \(pool b\) are 60 s long: a gap"),
    ("start_s,carbon_g_per_kwh\n0,1,2\n", r"line 2 has 3 fields, the header has 2"),
])
def test_each_error_is_one_line_naming_the_line_and_column(tmp_path, text, message):
    p = write(tmp_path, text)
    with pytest.raises(DataError, match=message) as exc:
        read_signals(p)
    assert str(exc.value).startswith(str(p)) and "\n" not in str(exc.value)


@pytest.mark.parametrize("text, message", [
    ("from,to,forecast,actual,index\n2023-01-01 00:00:00+00:00,2023-01-01 00:30:00+00:00,1,2.0,low\n"
     "2023-01-01 01:00:00+00:00,2023-01-01 01:30:00+00:00,1,2.0,low\n",
     r"line 3, column from: '2023-01-01 01:00:00\+00:00' is not where line 2's slot ends .*: a gap of 1,800 s"),
    ("from,to,forecast,actual,index\n2023-01-01 00:00:00+00:00,2023-01-01 00:30:00+00:00,1,,low\n",
     r"line 2, column actual: value is missing"),
    ("from,to,forecast,actual,index\n2023-01-01 00:30:00+00:00,2023-01-01 00:00:00+00:00,1,2,low\n",
     r"line 2, column to: .* is not after from"),
    ("from,to,forecast,actual,indx\n2023-01-01 00:00:00+00:00,2023-01-01 00:30:00+00:00,1,2,low\n",
     r"line 1: unknown column indx; did you mean index\?"),
])
def test_neso_layout_errors(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        read_signals(write(tmp_path, text))


def test_a_byte_order_mark_is_read_past_as_by_every_reader(tmp_path):
    p = tmp_path / "bom.csv"
    p.write_bytes(b"\xef\xbb\xbfstart_s,carbon_g_per_kwh\n0,1\n60,2\n")
    assert read_signals(p).n_slots == 2


def test_start_s_refuses_a_batch_start_and_a_bad_batch_start_is_named(tmp_path):
    with pytest.raises(DataError, match="start_s are seconds from the batch start already"):
        read_signals(write(tmp_path, "start_s,carbon_g_per_kwh\n0,1\n60,2\n"), batch_start="2023-01-01T00:00Z")
    with pytest.raises(DataError, match="batch start: expected an ISO 8601 time"):
        read_signals(write(tmp_path, "timestamp,carbon_g_per_kwh\n2023-01-01T00:00Z,1\n2023-01-01T01:00Z,1\n"),
                     batch_start="noon")


def test_missing_file_and_short_series_say_how_far_short(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_signals(tmp_path / "nope.csv")
    fleet = read_fleet(SYNTHETIC_FLEET)  # horizon 600 s
    short = write(tmp_path, "start_s,carbon_g_per_kwh\n0,1\n100,2\n200,3\n")
    with pytest.raises(DataError, match=r"ends at 300 s, 300 s short of the fleet's horizon_s .* \(600 s\); add rows up to 600"):
        load_signals(short, fleet=fleet)


def test_pools_must_be_the_fleets(tmp_path):
    fleet = read_fleet(SYNTHETIC_FLEET)
    typo = write(tmp_path, "pool,start_s,carbon_g_per_kwh\ngpu-a,0,1\ngpu-a,600,1\ngpu-c,0,1\ngpu-c,600,1\n")
    with pytest.raises(DataError, match=r"line 4, column pool: unknown pool gpu-c; did you mean gpu-[ab]\?"):
        load_signals(typo, fleet=fleet)
    one = write(tmp_path, "pool,start_s,carbon_g_per_kwh\ngpu-a,0,1\ngpu-a,600,1\n")
    with pytest.raises(DataError, match=r"no series for pool\(s\) gpu-b"):
        load_signals(one, fleet=fleet)


SIGNAL_LINES = ["start_s,carbon_g_per_kwh,price_per_kwh\n"] + [f"{600 * i},{100 + i},{0.1 * i:.2f}\n" for i in range(12)]
NESO_LINES = SHIPPED.read_text().splitlines(keepends=True)[:20]


def sound_signals(s: Signals) -> None:
    assert s.n_slots >= 2 and np.all(np.isfinite(s.start_s)) and np.all(s.end_s > s.start_s)
    for pool in s.pools or (None,):
        rows = s.rows_of(pool)
        assert np.all(s.start_s[rows][1:] == s.end_s[rows][:-1])  # contiguous, no gap, no overlap
    if s.carbon_g_per_kwh is not None:
        assert np.all(np.isfinite(s.carbon_g_per_kwh)) and np.all(s.carbon_g_per_kwh >= 0)
    if s.price_per_kwh is not None:
        assert np.all(np.isfinite(s.price_per_kwh))


@settings(FUZZ, max_examples=80)
@given(data=mutated_text(SIGNAL_LINES, CSV_VALUES, ","))
def test_fuzzed_signals_load_soundly_or_are_one_line(tmp_path_factory, data):
    p = tmp_path_factory.mktemp("fuzz") / "s.csv"
    p.write_bytes(data)
    s = one_line_or_loaded(lambda: read_signals(p), p)
    if s is not None:
        sound_signals(s)


@settings(FUZZ, max_examples=60)
@given(data=mutated_text(NESO_LINES, CSV_VALUES, ","))
def test_fuzzed_neso_files_load_soundly_or_are_one_line(tmp_path_factory, data):
    p = tmp_path_factory.mktemp("fuzz") / "n.csv"
    p.write_bytes(data)
    s = one_line_or_loaded(lambda: read_signals(p), p)
    if s is not None:
        sound_signals(s)
