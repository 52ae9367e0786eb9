"""Where the default data lives: the shipped fleet, models, example workload and LLM catalog, and
the environment variables that point elsewhere.

The shipped files are kept once, at the top of the source tree (``models/``, ``examples/``,
``data/``). A wheel carries copies of them in ``energyopt/_shipped/`` under the same relative
paths (``setup.py``'s build step); a checkout (an editable install, or the source tree on
``PYTHONPATH``) has no ``_shipped/`` folder and reads them where they are. :func:`shipped_path`
is the one place that tells the two layouts apart.

Precedence: the command line's ``--fleet``/``--models``, then ``ENERGYOPT_FLEET``/``ENERGYOPT_MODELS``,
then the shipped files.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import DataError

__all__ = [
    "FLEET_ENV",
    "MODELS_ENV",
    "SHIPPED_DIR",
    "shipped_path",
    "default_models_dir",
    "default_fleet_path",
    "default_llm_catalog_path",
    "example_workload_path",
]

#: environment variable naming a fleet TOML to use instead of the shipped one
FLEET_ENV = "ENERGYOPT_FLEET"
#: environment variable naming a models directory to use instead of the shipped one
MODELS_ENV = "ENERGYOPT_MODELS"
#: folder of an installed package that holds the shipped files (setup.py puts them there)
SHIPPED_DIR = "_shipped"


def shipped_path(relpath: str, package_dir: Path | None = None) -> Path:
    """The shipped file or folder ``relpath`` (its path in the source tree, e.g.
    ``examples/fleet.toml``): under ``energyopt/_shipped/`` in an installed wheel, else at the top
    of the source tree. ``package_dir`` is the ``energyopt`` package's folder (default: this one).

    Raises :class:`DataError` if it is in neither place (a broken install).
    """
    pkg = package_dir if package_dir is not None else Path(__file__).resolve().parent
    installed = pkg / SHIPPED_DIR
    root = installed if installed.is_dir() else pkg.parent
    p = root / relpath
    if not p.exists():
        raise DataError(
            f"{p}: shipped {relpath} not found (a broken install: reinstall energyopt, "
            f"or name the file with --fleet/--models or {FLEET_ENV}/{MODELS_ENV})"
        )
    return p


def _from_env(var: str, want_dir: bool) -> Path | None:
    """The path in environment variable ``var`` (None when unset or empty); :class:`DataError`
    naming the variable when it is not an existing file (``want_dir``: directory)."""
    value = os.environ.get(var, "")
    if not value:
        return None
    p = Path(value).expanduser()
    if want_dir and not p.is_dir():
        raise DataError(f"{var}={value}: {'not a directory' if p.exists() else 'no such directory'}")
    if not want_dir and not p.is_file():
        raise DataError(f"{var}={value}: {'not a file' if p.exists() else 'no such file'}")
    return p


def default_models_dir() -> Path:
    """``$ENERGYOPT_MODELS`` if set, else the shipped ``models/``."""
    return _from_env(MODELS_ENV, want_dir=True) or shipped_path("models")


def default_fleet_path() -> Path:
    """``$ENERGYOPT_FLEET`` if set, else the shipped ``examples/fleet.toml``."""
    return _from_env(FLEET_ENV, want_dir=False) or shipped_path("examples/fleet.toml")


def default_llm_catalog_path() -> Path:
    """The shipped LLM catalog, ``data/llms.csv`` (accuracies and their sources)."""
    return shipped_path("data/llms.csv")


def example_workload_path() -> Path:
    """The shipped example workload, ``examples/workload.csv`` (1,000 queries)."""
    return shipped_path("examples/workload.csv")
