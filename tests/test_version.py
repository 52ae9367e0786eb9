"""The version: one home, from the installed metadata, with a source-tree fallback."""

from __future__ import annotations

from importlib import metadata

from click.testing import CliRunner

import energyopt
from energyopt import version
from energyopt.cli import main


def test_version_is_the_installed_metadata():
    assert version.package_version() == metadata.version("energyopt") == energyopt.__version__


def test_source_tree_fallback_reads_pyproject(tmp_path, monkeypatch):
    p = tmp_path / "pyproject.toml"
    p.write_text('[project]\nname = "energyopt"\nversion = "9.8.7"\n')
    assert version._source_tree_version(p) == "9.8.7"
    p.write_text("[project\n")
    assert version._source_tree_version(p) == "0+unknown"
    p.write_text('[tool.x]\nversion = "1"\n')
    assert version._source_tree_version(p) == "0+unknown"
    assert version._source_tree_version(tmp_path / "missing.toml") == "0+unknown"

    def not_installed(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", not_installed)
    version.package_version.cache_clear()
    try:
        pyproject = version.Path(version.__file__).resolve().parent.parent / "pyproject.toml"
        assert version.package_version() == version._source_tree_version(pyproject)
    finally:
        version.package_version.cache_clear()


def test_cli_version_option():
    r = CliRunner().invoke(main, ["--version"])
    assert r.exit_code == 0 and r.output == f"energyopt, version {version.package_version()}\n"
