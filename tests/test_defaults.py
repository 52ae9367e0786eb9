"""Where the shipped defaults are found (a checkout, an installed wheel) and the environment
variables that override them. The wheel itself is built and installed in test_packaging.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import ROOT, lognormal_workload

import energyopt
from energyopt import defaults
from energyopt.cli import main
from energyopt.errors import DataError

SHIPPED = ["examples/fleet.toml", "examples/workload.csv", "data/llms.csv", "models"]


def run(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env, catch_exceptions=False)


def fake_tree(root: Path, relpaths: list[str]) -> None:
    for rel in relpaths:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(rel)


def test_this_checkout_reads_the_source_tree():
    pkg = Path(energyopt.__file__).resolve().parent
    if (pkg / defaults.SHIPPED_DIR).exists():
        pytest.skip("energyopt is imported from an installed wheel here, not from the checkout")
    assert pkg.parent == ROOT.resolve()
    for rel in SHIPPED:
        assert defaults.shipped_path(rel) == ROOT.resolve() / rel
    assert defaults.default_fleet_path() == ROOT.resolve() / "examples" / "fleet.toml"
    assert defaults.default_models_dir() == ROOT.resolve() / "models"
    assert defaults.default_llm_catalog_path() == ROOT.resolve() / "data" / "llms.csv"
    assert defaults.example_workload_path() == ROOT.resolve() / "examples" / "workload.csv"


def test_checkout_layout(tmp_path):
    """No _shipped/ beside the modules: the files are at the top of the source tree."""
    (tmp_path / "energyopt").mkdir()
    fake_tree(tmp_path, ["examples/fleet.toml", "models/a.json"])
    assert defaults.shipped_path("examples/fleet.toml", tmp_path / "energyopt") == tmp_path / "examples" / "fleet.toml"
    assert defaults.shipped_path("models", tmp_path / "energyopt") == tmp_path / "models"


def test_installed_layout(tmp_path):
    """An installed wheel: energyopt/_shipped/ holds them, and a stray site-packages/examples/ (another
    distribution's, or nothing at all) is never read."""
    site = tmp_path / "site-packages"
    fake_tree(site / "energyopt" / "_shipped", ["examples/fleet.toml", "models/a.json"])
    fake_tree(site, ["examples/fleet.toml", "models/b.json"])
    pkg = site / "energyopt"
    assert defaults.shipped_path("examples/fleet.toml", pkg) == pkg / "_shipped" / "examples" / "fleet.toml"
    assert defaults.shipped_path("models", pkg) == pkg / "_shipped" / "models"


def test_a_missing_shipped_file_is_a_data_error(tmp_path):
    fake_tree(tmp_path / "energyopt" / "_shipped", ["models/a.json"])
    with pytest.raises(DataError, match=r"_shipped/examples/fleet.toml: shipped examples/fleet.toml not found \(a broken"):
        defaults.shipped_path("examples/fleet.toml", tmp_path / "energyopt")


def test_environment_overrides_the_shipped_defaults(tmp_path, monkeypatch, synthetic_fleet, synthetic_models):
    monkeypatch.setenv("ENERGYOPT_FLEET", str(synthetic_fleet))
    monkeypatch.setenv("ENERGYOPT_MODELS", str(synthetic_models))
    assert defaults.default_fleet_path() == synthetic_fleet
    assert defaults.default_models_dir() == synthetic_models
    monkeypatch.setenv("ENERGYOPT_FLEET", "")  # empty is unset
    monkeypatch.setenv("ENERGYOPT_MODELS", "")
    assert defaults.default_fleet_path() == defaults.shipped_path("examples/fleet.toml")
    assert defaults.default_models_dir() == defaults.shipped_path("models")


@pytest.mark.parametrize(("var", "value", "message"), [
    ("ENERGYOPT_FLEET", "missing.toml", "no such file"),
    ("ENERGYOPT_FLEET", ".", "not a file"),
    ("ENERGYOPT_MODELS", "missing", "no such directory"),
    ("ENERGYOPT_MODELS", "f.toml", "not a directory"),
])
def test_bad_environment_values_name_the_variable(tmp_path, monkeypatch, var, value, message):
    (tmp_path / "f.toml").write_text("")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(var, value)
    getter = defaults.default_fleet_path if var == "ENERGYOPT_FLEET" else defaults.default_models_dir
    with pytest.raises(DataError, match=f"^{var}={value}: {message}$"):
        getter()
    r = run("solve", ROOT / "examples" / "workload.csv", "--out", tmp_path / "p")
    assert r.exit_code == 2 and r.output == f"error: {var}={value}: {message}\n"
    assert not (tmp_path / "p").exists()
    if var == "ENERGYOPT_MODELS":
        for cmd in (["models"], ["predict", "--llm", "x", "--device", "y", "--input-tokens", 1, "--output-tokens", 1]):
            r = run(*cmd)
            assert r.exit_code == 2 and r.output == f"error: {var}={value}: {message}\n"


def test_cli_uses_the_environment_and_options_override_it(tmp_path, synthetic_fleet, synthetic_models):
    wl = tmp_path / "w.csv"
    lognormal_workload(20, seed=3).to_csv(wl, index=False)
    env = {"ENERGYOPT_FLEET": str(synthetic_fleet), "ENERGYOPT_MODELS": str(synthetic_models)}
    r = run("solve", wl, "--out", tmp_path / "p", "-q", env=env)
    assert r.exit_code == 0 and "status: optimal" in r.output, r.output
    bad = {"ENERGYOPT_FLEET": str(tmp_path / "missing.toml"), "ENERGYOPT_MODELS": str(tmp_path / "missing")}
    r = run("solve", wl, "--fleet", synthetic_fleet, "--models", synthetic_models, "--out", tmp_path / "q", "-q", env=bad)
    assert r.exit_code == 0 and "status: optimal" in r.output, r.output


@pytest.mark.parametrize("command", ["solve", "compare", "sweep"])
def test_help_names_the_variables(command):
    r = run(command, "--help")
    text = " ".join(r.output.split())  # as wrapped to the terminal's width
    assert r.exit_code == 0
    assert "Fleet TOML [default: $ENERGYOPT_FLEET, else the shipped examples/fleet.toml]." in text
    assert "Models directory [default: $ENERGYOPT_MODELS, else the shipped models/]." in text
