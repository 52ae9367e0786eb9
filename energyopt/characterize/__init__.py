"""Measurement harness: runtime and energy of LLM inference per (LLM, device).

Pure logic (point design, energy-window arithmetic, CSV writing, resume) imports nothing heavy
and is tested without a GPU. :mod:`.runner` imports torch and transformers lazily, and
:mod:`.meters` imports NVML only when a GPU meter is made.
"""

from .design import DesignPoint, default_design, holdout_design, parse_points

__all__ = ["DesignPoint", "default_design", "holdout_design", "parse_points"]
