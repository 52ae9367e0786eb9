"""Measurement harness: runtime and energy of LLM inference per (LLM, device).

Pure logic (point design, energy-window arithmetic, CSV writing, resume) imports nothing heavy
and is tested without a GPU. :mod:`.runner` imports torch and transformers lazily, and
:mod:`.meters` imports NVML only when a GPU meter is made. The package itself imports nothing,
so that :mod:`.catalog` (the LLMs' names, for ``--help``) loads without numpy.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DesignPoint", "default_design", "holdout_design", "parse_points"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import design

        return getattr(design, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
