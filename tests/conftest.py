"""Shared fixtures: models with known coefficients, tiny fleets, random workloads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

from energyopt.fleet import fleet_from_dict
from energyopt.modelstore import FitMetrics, FittedModel, FittedModels

if TYPE_CHECKING:
    from energyopt.schedule import Schedule

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).parent.parent


def known_model(llm: str, device: str, energy: tuple[float, float, float, float], runtime: tuple[float, float, float, float],
                origin: str = "fitted") -> dict[str, FittedModel]:
    """A (llm, device) pair whose targets are c + a·τin + b·τout + d·τin·τout with given coefficients."""
    feats = ("1", "tin", "tout", "tin*tout")
    m = FitMetrics(1.0, 1.0, 0.0, 0.0, 10, 10)
    return {
        t: FittedModel(llm, device, t, "paper+c", feats, np.array(c, dtype=float), m, (1, 8192), (1, 4096), origin=origin)
        for t, c in (("energy_j", energy), ("runtime_s", runtime))
    }


def make_models(spec: dict[tuple[str, str], tuple]) -> FittedModels:
    return FittedModels({k: known_model(k[0], k[1], *v) for k, v in spec.items()})


def random_instance(seed: int, n_q: int = 4):
    """A tiny random fleet, models and workload (deadlines, floors and capacity can all bind)."""
    rng = np.random.default_rng(seed)
    pools = {"ga": {"kind": "gpu", "count": int(rng.integers(1, 3)), "memory_gb": 80, "idle_power_w": float(rng.uniform(0, 100))},
             "gb": {"kind": "gpu", "count": int(rng.integers(1, 3)), "memory_gb": 80, "idle_power_w": float(rng.uniform(0, 100))}}
    llms = {"s": {"accuracy": 0.4, "accuracy_source": "test", "params_b": 1},
            "b": {"accuracy": float(rng.choice([0.5, 0.7])), "accuracy_source": "test", "params_b": 1}}
    deps = [{"llm": "s", "pool": "ga"}, {"llm": "b", "pool": "ga"}, {"llm": "b", "pool": "gb"}]
    if rng.random() < 0.3:
        deps[2]["devices_per_instance"] = int(pools["gb"]["count"])
    horizon = float(rng.uniform(3, 12))
    fleet = fleet_from_dict({"horizon_s": horizon, "pools": pools, "llms": llms, "deployments": deps})
    spec = {}
    for llm, pool in (("s", "ga"), ("b", "ga"), ("b", "gb")):
        e = (rng.uniform(0, 20), rng.uniform(0, 0.05), rng.uniform(0.5, 3), rng.uniform(0, 1e-3))
        r = (rng.uniform(0, 0.2), rng.uniform(0, 1e-3), rng.uniform(0.005, 0.03), rng.uniform(0, 1e-5))
        spec[(llm, pool)] = (e, r)
    models = make_models(spec)
    tin = rng.integers(10, 2000, n_q)
    tout = rng.integers(10, 300, n_q)
    dl = np.where(rng.random(n_q) < 0.5, rng.uniform(1, 10, n_q), np.nan)
    floor = np.where(rng.random(n_q) < 0.3, 0.5, 0.0)
    wl = pd.DataFrame({"query_id": [f"q{i}" for i in range(n_q)], "input_tokens": tin, "output_tokens": tout,
                       "min_accuracy": floor, "deadline_s": dl})
    kw = {"idle": bool(rng.random() < 0.4)}
    if rng.random() < 0.3:
        kw["objective"] = "tradeoff"
        kw["zeta"] = float(rng.uniform(0.2, 0.9))
    if rng.random() < 0.3:
        kw["min_mean_accuracy"] = float(rng.uniform(0.4, 0.6))
    return wl, fleet, models, kw


# --- a hand-built fleet for unit tests: two LLMs, a GPU and a CPU pool, per-token models ---------

def two_llm_fleet(horizon_s: float = 100.0, big_context: int | None = None):
    """small (accuracy 0.4, 1000-token context) on GPUs; big (0.8) on GPUs and on a CPU."""
    big = {"accuracy": 0.8, "accuracy_source": "t", "params_b": 1}
    if big_context is not None:
        big["context_tokens"] = big_context
    return fleet_from_dict({
        "horizon_s": horizon_s,
        "pools": {"g": {"kind": "gpu", "count": 2, "memory_gb": 80, "idle_power_w": 50},
                  "c": {"kind": "cpu", "count": 1, "memory_gb": 80, "idle_power_w": 10}},
        "llms": {"small": {"accuracy": 0.4, "accuracy_source": "t", "params_b": 1, "context_tokens": 1000},
                 "big": big},
        "deployments": [{"llm": "small", "pool": "g"}, {"llm": "big", "pool": "g"}, {"llm": "big", "pool": "c"}],
    })


# per output token: small@g 1 J and 0.01 s, big@g 3 J and 0.02 s, big@c 2 J and 0.1 s
TWO_LLM_MODELS = {("small", "g"): ((0, 0, 1.0, 0), (0, 0, 0.01, 0)),
                  ("big", "g"): ((0, 0, 3.0, 0), (0, 0, 0.02, 0)),
                  ("big", "c"): ((0, 0, 2.0, 0), (0, 0, 0.1, 0))}


def with_measured_ranges(models: FittedModels, input_tokens: tuple[int, int], output_tokens: tuple[int, int],
                         pairs=None, targets=("energy_j", "runtime_s")) -> FittedModels:
    """Set the token ranges the models of ``pairs`` (default: every pair) were measured on, per target."""
    for pair in models.pairs() if pairs is None else pairs:
        for t in targets:
            m = models.get(*pair)[t]
            m.input_tokens_range, m.output_tokens_range = input_tokens, output_tokens
    return models


#: measured ranges of :func:`ranged_two_llm_models`, and a workload with one query inside every model's ranges
#: (q0: 10 input, 100 output tokens) and one outside all of them (q1: 600 input, 300 output tokens)
MEASURED_IN, MEASURED_OUT = (8, 512), (8, 256)


def ranged_two_llm_models() -> FittedModels:
    """:data:`TWO_LLM_MODELS` measured on 8-512 input and 8-256 output tokens only."""
    return with_measured_ranges(make_models(TWO_LLM_MODELS), MEASURED_IN, MEASURED_OUT)


def inside_outside_workload() -> pd.DataFrame:
    return workload_of([(10, 100, 0.0, None), (600, 300, 0.0, None)])


#: :func:`two_llm_fleet` (default horizon and contexts) as a fleet TOML file's text
TWO_LLM_FLEET_TOML = """horizon_s = 100.0
[pools.g]
kind = "gpu"
count = 2
memory_gb = 80
idle_power_w = 50
[pools.c]
kind = "cpu"
count = 1
memory_gb = 80
idle_power_w = 10
[llms.small]
accuracy = 0.4
accuracy_source = "t"
params_b = 1
context_tokens = 1000
[llms.big]
accuracy = 0.8
accuracy_source = "t"
params_b = 1
[[deployments]]
llm = "small"
pool = "g"
[[deployments]]
llm = "big"
pool = "g"
[[deployments]]
llm = "big"
pool = "c"
"""


def write_two_llm_inputs(directory: Path, workload: pd.DataFrame, models: FittedModels) -> tuple[Path, Path, Path]:
    """The workload (CSV), :data:`TWO_LLM_FLEET_TOML` and the models as files in ``directory``: their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    wl, fl, md = directory / "workload.csv", directory / "fleet.toml", directory / "models"
    workload.to_csv(wl, index=False)
    fl.write_text(TWO_LLM_FLEET_TOML)
    models.save(md)
    return wl, fl, md


#: one LLM (m, 7 B parameters) on one pool of 2 GPUs (g, 40 GB): the fleet TOML that test_fleet breaks
#: key by key, and test_sites extends with a second pool and a site
ONE_LLM_FLEET_TOML = """
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


def write_fleet_toml(directory: Path, text: str) -> Path:
    """``text`` as ``directory``/f.toml (the name the tests' expected errors give): its path."""
    p = directory / "f.toml"
    p.write_text(text)
    return p


def example_make_workload():
    """examples/make_workload.py's ``make`` (the example workload's generator), imported from its file."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_workload", ROOT / "examples" / "make_workload.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make


def scaled_example_fleet(directory: Path, factor: int) -> Path:
    """examples/fleet.toml with every pool's device count times ``factor``, as ``directory``/fleet.toml."""
    import re

    text = (ROOT / "examples" / "fleet.toml").read_text()
    p = directory / "fleet.toml"
    p.write_text(re.sub(r"^count = (\d+)", lambda m: f"count = {int(m.group(1)) * factor}", text, flags=re.M))
    return p


def workload_of(rows) -> pd.DataFrame:
    """(input tokens, output tokens, min accuracy, deadline) per query."""
    tin, tout, floor, dl = zip(*rows)
    return pd.DataFrame({"query_id": [f"q{i}" for i in range(len(rows))], "input_tokens": tin, "output_tokens": tout,
                         "min_accuracy": floor, "deadline_s": [np.nan if d is None else d for d in dl]})


def short_workload(rng: np.random.Generator, n_q: int) -> pd.DataFrame:
    """``n_q`` short queries (1-49 input, 50-399 output tokens), half of them with a floor of 0.5."""
    return pd.DataFrame({"query_id": [f"q{i}" for i in range(n_q)], "input_tokens": rng.integers(1, 50, n_q),
                         "output_tokens": rng.integers(50, 400, n_q), "min_accuracy": rng.choice([0.0, 0.5], n_q),
                         "deadline_s": np.full(n_q, np.nan)})


#: three 10-s slots, slot 1 the cleanest
THREE_SLOTS_CSV = "start_s,carbon_g_per_kwh\n0,400\n10,50\n20,300\n"


@dataclass(frozen=True)
class UncappedCarbonPlan:
    """Six short queries without floors on :func:`two_llm_fleet` (30 s) over :data:`THREE_SLOTS_CSV`,
    and their carbon plan without any power cap: where a cap below its peak makes the plan move work
    (the set-up the tests of explain's cap notes share; read-only)."""

    workload: pd.DataFrame
    models: FittedModels
    signals_csv: Path
    free: Schedule


@pytest.fixture(scope="session")
def uncapped_carbon_plan(tmp_path_factory) -> UncappedCarbonPlan:
    from energyopt.plan import plan

    wl = short_workload(np.random.default_rng(1), 6)
    wl["min_accuracy"] = 0.0
    models = make_models(TWO_LLM_MODELS)
    sig_csv = tmp_path_factory.mktemp("signals") / "signals.csv"
    sig_csv.write_text(THREE_SLOTS_CSV)
    free = plan(wl, two_llm_fleet(30.0), models, objective="carbon", signals=sig_csv)
    return UncappedCarbonPlan(wl, models, sig_csv, free)


@pytest.fixture(autouse=True)
def _shipped_defaults(monkeypatch):
    """Every test sees the shipped fleet and models, whatever ENERGYOPT_FLEET/ENERGYOPT_MODELS the
    shell that runs pytest has set (a test sets them itself where it needs them)."""
    monkeypatch.delenv("ENERGYOPT_FLEET", raising=False)
    monkeypatch.delenv("ENERGYOPT_MODELS", raising=False)


@pytest.fixture(scope="session")
def synthetic_models(tmp_path_factory) -> Path:
    from energyopt.fit import fit_models
    from energyopt.io import read_characterization

    d = tmp_path_factory.mktemp("models")
    fit_models(read_characterization(DATA / "synthetic_characterization.csv")).save(d)
    return d


@pytest.fixture(scope="session")
def synthetic_fleet() -> Path:
    return DATA / "fleet_synthetic.toml"


def lognormal_workload(n: int, seed: int = 0, deadline_fraction: float = 0.0, deadline_range=(60, 600)) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    dl = np.where(rng.random(n) < deadline_fraction, rng.uniform(*deadline_range, n), np.nan)
    return pd.DataFrame({
        "query_id": [f"q{i}" for i in range(n)],
        "input_tokens": np.clip(rng.lognormal(np.log(1000), 0.9, n), 8, 4096).astype(int),
        "output_tokens": np.clip(rng.lognormal(np.log(130), 0.8, n), 8, 1024).astype(int),
        "min_accuracy": 0.0,
        "deadline_s": dl,
    })


# --- one local Ray cluster for the tests that only need one ---------------------------------


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray cluster of 2 CPUs, started once for every test that asks for it (Ray takes
    seconds to start and stop); those tests run last (:func:`pytest_collection_modifyitems`), so
    that no other test finds it running (test_study's command line starts and stops its own,
    test_campaign's its cluster of two nodes)."""
    import shutil
    import tempfile

    ray = pytest.importorskip("ray")
    temp_dir = tempfile.mkdtemp(prefix="energyopt-ray-")  # short: Ray's socket paths must fit 107 bytes
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=temp_dir)
    yield ray
    ray.shutdown()
    shutil.rmtree(temp_dir, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    """The tests on :func:`ray_local`'s cluster after all others, in their order."""
    items[:] = [i for i in items if "ray_local" not in getattr(i, "fixturenames", ())] + \
               [i for i in items if "ray_local" in getattr(i, "fixturenames", ())]
