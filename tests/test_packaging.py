"""The wheel carries the shipped defaults, and a plain (non-editable) install finds them from any folder.

Built offline from a copy of the source tree, with this environment's setuptools (``pip wheel
--no-deps --no-build-isolation --no-index``), and installed with ``pip install --target`` beside this
environment's dependencies. ``.ci/run`` does the slower check: the wheel in a fresh virtual
environment with its dependencies from the index, run from an empty folder.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT

SHIPPED = "energyopt/_shipped"
#: what the wheel must carry, as paths of the source tree
EXPECTED = sorted(["examples/fleet.toml", "examples/workload.csv", "data/llms.csv",
                   *(f"models/{p.name}" for p in (ROOT / "models").glob("*.json"))])
#: what a copy of the source tree leaves out: build outputs, caches, local plans
IGNORE = shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__", ".*cache", ".hypothesis", ".venv",
                                "plan", "out", "plan-api")


def _why_not_buildable() -> str | None:
    if importlib.util.find_spec("pip") is None:
        return "pip is not installed in this environment"
    try:  # its metadata only: importing setuptools here would import distutils (a warning, an error in tests)
        version = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        return "setuptools is not installed here (the test extra brings it): the wheel cannot be built offline"
    if int(version.split(".")[0]) < 77:
        return f"setuptools {version} is older than pyproject.toml's build requirement (>=77)"
    return None


pytestmark = pytest.mark.skipif(_why_not_buildable() is not None, reason=str(_why_not_buildable()))


def _run(args: list, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    r = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"{args}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory) -> Path:
    """The source tree without build outputs: a stale build/ cannot leak into the wheel."""
    src = tmp_path_factory.mktemp("src") / "energyopt"
    shutil.copytree(ROOT, src, ignore=IGNORE)
    return src


@pytest.fixture(scope="module")
def wheel(source_copy, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "--no-cache-dir",
          "-q", "-w", out, source_copy])
    (whl,) = out.glob("energyopt-*.whl")
    return whl


def test_wheel_carries_the_shipped_defaults(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        shipped = sorted(n.removeprefix(f"{SHIPPED}/") for n in names if n.startswith(f"{SHIPPED}/"))
        assert shipped == EXPECTED
        for rel in EXPECTED:  # the files of this tree, not stale copies
            assert z.read(f"{SHIPPED}/{rel}") == (ROOT / rel).read_bytes(), rel
    # nothing beside the package: no site-packages/examples/ or site-packages/models/
    assert all(top == "energyopt" or top.endswith(".dist-info") for top in {n.split("/")[0] for n in names})


def test_sdist_carries_them_too(source_copy, tmp_path):
    """A wheel built from the sdist (``python -m build``) needs them in the sdist."""
    r = _run([sys.executable, "-c", f"from setuptools import build_meta; print(build_meta.build_sdist({str(tmp_path)!r}))"],
             cwd=source_copy)
    sdist = tmp_path / r.stdout.strip().splitlines()[-1]
    with tarfile.open(sdist) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    assert set(EXPECTED) <= names


def test_installed_wheel_runs_from_any_folder(wheel, tmp_path):
    site = tmp_path / "site"
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--no-cache-dir", "-q", "--target", site, wheel])
    assert not (site / "examples").exists() and not (site / "models").exists()
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}  # the installed copy, this environment's dependencies
    for var in ("ENERGYOPT_FLEET", "ENERGYOPT_MODELS"):
        env.pop(var, None)
    code = ("import energyopt, energyopt.defaults as d; print(energyopt.__file__); print(d.default_fleet_path()); "
            "print(d.default_models_dir()); print(d.default_llm_catalog_path()); print(d.example_workload_path())")
    pkg, fleet, models, catalog, workload = (Path(x) for x in _run([sys.executable, "-c", code], cwd=empty, env=env)
                                             .stdout.split())
    shipped = site / SHIPPED
    assert pkg == site / "energyopt" / "__init__.py"
    assert (fleet, models, catalog, workload) == (shipped / "examples/fleet.toml", shipped / "models",
                                                  shipped / "data/llms.csv", shipped / "examples/workload.csv")
    r = _run([sys.executable, "-m", "energyopt.cli", "solve", workload, "--out", "plan", "-q"], cwd=empty, env=env)
    assert "status: optimal" in r.stdout
    assert (empty / "plan" / "assignment.csv").is_file() and (empty / "plan" / "summary.json").is_file()
    # the help's first command, typed where there is no examples/ folder: the error says where the example is
    r = subprocess.run([sys.executable, "-m", "energyopt.cli", "solve", "examples/workload.csv"], cwd=empty, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr == (f"error: examples/workload.csv: file not found; the example workload "
                                              f"energyopt ships is {workload}\n"), r.stderr
