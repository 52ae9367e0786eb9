"""The three inputs of a plan, from paths or from objects already loaded."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pandas as pd

from .fleet import Fleet, read_fleet
from .io import read_workload, workload_from_frame
from .modelstore import FittedModels

__all__ = ["Inputs", "load_inputs"]


class Inputs(NamedTuple):
    """A workload table, a fleet and fitted models: what a plan is made from (and checked against)."""

    workload: pd.DataFrame
    fleet: Fleet
    models: FittedModels


def load_inputs(workload: pd.DataFrame | str | Path, fleet: Fleet | str | Path,
                models: FittedModels | str | Path) -> Inputs:
    """Accept paths or loaded objects for the three inputs."""
    wl = read_workload(workload) if isinstance(workload, (str, Path)) else workload_from_frame(workload)
    fl = read_fleet(fleet) if isinstance(fleet, (str, Path)) else fleet
    fm = FittedModels.load(models) if isinstance(models, (str, Path)) else models
    return Inputs(wl, fl, fm)
