"""energyopt's version: one home, read from the installed package metadata.

``importlib.metadata`` is imported inside :func:`package_version`, so importing this module costs
nothing; the facade (``energyopt.__version__``), the CLI's ``--version`` and the fitted models'
provenance all call the function when they need the string.
"""

from __future__ import annotations

import functools
from pathlib import Path

__all__ = ["DISTRIBUTION", "package_version"]

#: the distribution name in ``pyproject.toml`` and in the installed metadata
DISTRIBUTION = "energyopt"

# what a source tree without metadata and without a readable pyproject.toml reports
_UNKNOWN = "0+unknown"


@functools.cache
def package_version() -> str:
    """The installed distribution's version; in a source tree that is not installed, the version
    in ``pyproject.toml`` beside the package (``"0+unknown"`` when neither is found)."""
    from importlib import metadata

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return _source_tree_version(Path(__file__).resolve().parent.parent / "pyproject.toml")


def _source_tree_version(pyproject: Path) -> str:
    """``[project] version`` of a ``pyproject.toml``, or ``"0+unknown"`` if it has none."""
    import tomllib

    try:
        doc = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return _UNKNOWN
    project = doc.get("project")
    version = project.get("version") if isinstance(project, dict) else None
    return version if isinstance(version, str) and version else _UNKNOWN
