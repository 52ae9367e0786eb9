"""Fleet TOML: valid layout and one-line errors naming the key."""

from __future__ import annotations

import pytest

from energyopt.errors import DataError
from energyopt.fleet import read_fleet

GOOD = """
horizon_s = 100
[pools.g]
kind = "gpu"
count = 2
memory_gb = 40
idle_power_w = 50
[llms.m]
accuracy = 0.5
accuracy_source = "x"
params_b = 7
[[deployments]]
llm = "m"
pool = "g"
"""


def write(tmp_path, text):
    p = tmp_path / "f.toml"
    p.write_text(text)
    return p


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
