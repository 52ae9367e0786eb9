"""Fleet TOML: valid layout and one-line errors naming the key."""

from __future__ import annotations

import pytest
from conftest import ONE_LLM_FLEET_TOML as GOOD
from conftest import write_fleet_toml as write

from energyopt.errors import DataError
from energyopt.fleet import read_fleet


def test_good_fleet(tmp_path):
    f = read_fleet(write(tmp_path, GOOD))
    assert f.deployments[0].max_instances == 2 and f.horizon_s == 100


@pytest.mark.parametrize(
    "old, new, match",
    [
        ("horizon_s = 100", "horizon_s = -1", r"key horizon_s must be > 0"),
        ('kind = "gpu"', 'kind = "tpu"', r"key pools\.g\.kind must be 'gpu' or 'cpu'"),
        ("count = 2", "count = 0", r"key pools\.g\.count must be >= 1"),
        ("accuracy = 0.5", "accuracy = 2", r"key llms\.m\.accuracy must be in \[0, 1\]"),
        ('llm = "m"', 'llm = "zz"', r"key deployments\[0\]\.llm: unknown LLM 'zz'"),
        ('pool = "g"', 'pool = "h"', r"key deployments\[0\]\.pool: unknown device pool 'h'"),
        ("params_b = 7", "params_b = 70", r"deployments\[0\]: m needs 168 GB .* instance of 1 x g has 40 GB"),
        ('accuracy_source = "x"\n', "", r"key llms\.m\.accuracy_source is missing"),
        ("horizon_s = 100", "horizon_s = [", r"f\.toml: malformed TOML"),
    ],
)
def test_fleet_errors(tmp_path, old, new, match):
    with pytest.raises(DataError, match=match):
        read_fleet(write(tmp_path, GOOD.replace(old, new)))


def test_missing_fleet(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_fleet(tmp_path / "none.toml")


@pytest.mark.parametrize(
    "old, new, match",
    [
        ("idle_power_w = 50", "idle_power_w = nan", r"f\.toml: key pools\.g\.idle_power_w must be a finite number, got nan"),
        ("memory_gb = 40", "memory_gb = inf", r"key pools\.g\.memory_gb must be a finite number, got inf"),
        ("horizon_s = 100", "horizon_s = -inf", r"key horizon_s must be a finite number, got -inf"),
        ("params_b = 7", "params_b = 1e400", r"key llms\.m\.params_b must be a finite number, got inf"),
        ('pool = "g"', 'pool = "g"\nbatch_sizes = [1, nan]', r"key deployments\[0\]\.batch_sizes\[1\] must be a finite number"),
        ('accuracy_source = "x"', 'accuracy_source = "x"\nkv_bytes_per_token = nan', r"key llms\.m\.kv_bytes_per_token must be"),
        ("horizon_s = 100", 'horizon_s = 100\ndescription = {note = nan}', r"key description\.note must be a finite number"),
    ],
)
def test_a_number_that_is_not_finite_is_an_error_anywhere(tmp_path, old, new, match):
    """TOML's nan and inf compare false with every bound, so a range check let idle_power_w = nan
    through: every number in the fleet must be finite, and the error names its key."""
    with pytest.raises(DataError, match=match):
        read_fleet(write(tmp_path, GOOD.replace(old, new)))


def test_a_byte_order_mark_is_accepted(tmp_path):
    p = tmp_path / "f.toml"
    p.write_bytes(b"\xef\xbb\xbf" + GOOD.encode())
    assert read_fleet(p).horizon_s == 100


@pytest.mark.parametrize(
    "text",
    [
        '[' + ", ".join(f'{{"pool{i}": {i}}}' for i in range(300)) + ']',  # a JSON array
        GOOD.replace("[pools.g]", '[pools."g\\nsecond line ' + "x" * 500 + '"]'),  # a name with a line break
        GOOD.replace('llm = "m"', 'llm = "' + "m" * 5000 + '"'),
        GOOD + "\n" + "\n".join(f"unknown_key_{i} = 1" for i in range(300)),
    ],
)
def test_fleet_errors_stay_short_and_on_one_line(tmp_path, text):
    with pytest.raises(DataError) as err:
        read_fleet(write(tmp_path, text))
    msg = str(err.value)
    assert "\n" not in msg and len(msg) < len(str(tmp_path)) + 320, msg


def test_random_bytes_are_not_a_fleet(tmp_path):
    p = tmp_path / "f.toml"
    p.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(DataError, match=r"f\.toml: line 2: expected UTF-8 text, got the byte 0x80"):
        read_fleet(p)
