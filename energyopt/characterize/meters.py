"""Energy meters: cumulative counters read at the edges of a measurement window.

* :class:`NvmlMeter` — NVML's total-energy counter of each GPU [mJ], summed over the GPUs used.
* :class:`RaplMeter` — Linux powercap (RAPL) package counters [µJ], with wrap-around handled.
* :class:`EstimateMeter` — no counter: energy = an assumed power [W] × elapsed time, labelled
  ``estimate`` on every row it produces.

The arithmetic (deltas across a wrapping counter, idle power, above-idle energy) is in plain
functions so that it is tested without hardware.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

__all__ = [
    "Meter",
    "NvmlMeter",
    "RaplMeter",
    "EstimateMeter",
    "counter_delta",
    "above_idle_j",
    "measure_idle_power_w",
    "rapl_available",
]

POWERCAP = Path("/sys/class/powercap")


def counter_delta(start: float, end: float, wrap: float | None = None) -> float:
    """Increase of a cumulative counter from ``start`` to ``end``, allowing one wrap-around."""
    if end >= start:
        return end - start
    if wrap is None or wrap <= 0:
        raise ValueError(f"counter went backwards ({start} -> {end}) and has no wrap value")
    return end + wrap - start


def above_idle_j(energy_j: float, idle_power_w: float, runtime_s: float) -> float:
    """Energy above the idle floor: what the run added to what the device burns anyway."""
    return energy_j - idle_power_w * runtime_s


class Meter(Protocol):
    source: str

    def read_j(self) -> float:
        """Cumulative energy [J] since an arbitrary origin; monotone."""
        ...


class NvmlMeter:
    """Sum of NVML total-energy counters over the given GPU indices."""

    source = "nvml"

    def __init__(self, gpu_indices: list[int]):
        import pynvml  # nvidia-ml-py

        pynvml.nvmlInit()
        self._nvml = pynvml
        self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in gpu_indices]

    def read_j(self) -> float:
        return sum(self._nvml.nvmlDeviceGetTotalEnergyConsumption(h) for h in self.handles) / 1000.0

    def names(self) -> list[str]:
        out = []
        for h in self.handles:
            n = self._nvml.nvmlDeviceGetName(h)
            out.append(n.decode() if isinstance(n, bytes) else str(n))
        return out

    def driver(self) -> str:
        d = self._nvml.nvmlSystemGetDriverVersion()
        return d.decode() if isinstance(d, bytes) else str(d)

    def memory_gb(self) -> float:
        return sum(self._nvml.nvmlDeviceGetMemoryInfo(h).total for h in self.handles) / 1e9


def _rapl_packages(root: Path = POWERCAP) -> list[Path]:
    out = []
    for d in sorted(root.glob("intel-rapl:*")):
        if d.name.count(":") != 1:
            continue  # sub-domains (core, uncore, dram) are inside the package
        try:
            if (d / "name").read_text().strip().startswith("package"):
                (d / "energy_uj").read_text()
                out.append(d)
        except OSError:
            continue
    return out


def rapl_available(root: Path = POWERCAP) -> bool:
    return bool(_rapl_packages(root))


class RaplMeter:
    """Sum of RAPL package counters, accumulated across wrap-arounds between reads."""

    source = "rapl"

    def __init__(self, root: Path = POWERCAP):
        self.domains = _rapl_packages(root)
        if not self.domains:
            raise OSError(f"no readable RAPL package counters under {root}")
        self.wrap_uj = [float((d / "max_energy_range_uj").read_text()) for d in self.domains]
        self.last = [self._raw(d) for d in self.domains]
        self.total_uj = 0.0

    @staticmethod
    def _raw(d: Path) -> float:
        return float((d / "energy_uj").read_text())

    def read_j(self) -> float:
        for k, d in enumerate(self.domains):
            now = self._raw(d)
            self.total_uj += counter_delta(self.last[k], now, self.wrap_uj[k])
            self.last[k] = now
        return self.total_uj / 1e6


class EstimateMeter:
    """No hardware counter: a constant assumed power [W] integrated over wall-clock time."""

    source = "estimate"

    def __init__(self, power_w: float, clock: Callable[[], float] = time.perf_counter):
        if not power_w > 0:
            raise ValueError(f"assumed power must be > 0 W, got {power_w}")
        self.power_w = power_w
        self.clock = clock
        self.t0 = clock()

    def read_j(self) -> float:
        return self.power_w * (self.clock() - self.t0)


def measure_idle_power_w(meter: Meter, seconds: float = 5.0, sleep: Callable[[float], None] = time.sleep,
                         clock: Callable[[], float] = time.perf_counter) -> float:
    """Mean power [W] of an idle device over ``seconds``."""
    e0, t0 = meter.read_j(), clock()
    sleep(seconds)
    e1, t1 = meter.read_j(), clock()
    return (e1 - e0) / (t1 - t0)
