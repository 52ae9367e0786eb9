"""Where the shipped default data lives (models, fleet, LLM catalog).

The shipped files sit at the top of the source tree (``models/``, ``data/``, ``examples/``); the
package is installed in editable mode by the README's set-up command, so they are found next to
the package. ``ENERGYOPT_HOME`` points elsewhere (a copy of those folders) where needed.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import DataError

__all__ = ["project_home", "default_models_dir", "default_fleet_path", "default_llm_catalog_path"]


def project_home() -> Path:
    env = os.environ.get("ENERGYOPT_HOME")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent


def _must_exist(p: Path, what: str) -> Path:
    if not p.exists():
        raise DataError(
            f"{p}: shipped {what} not found; install from the source tree (pip install -e .) "
            "or set ENERGYOPT_HOME to a copy of it"
        )
    return p


def default_models_dir() -> Path:
    return _must_exist(project_home() / "models", "models directory")


def default_fleet_path() -> Path:
    return _must_exist(project_home() / "examples" / "fleet.toml", "default fleet")


def default_llm_catalog_path() -> Path:
    return _must_exist(project_home() / "data" / "llms.csv", "LLM catalog")
