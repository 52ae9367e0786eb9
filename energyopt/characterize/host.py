"""What the machine is: device labels and provenance fields for every measured row."""

from __future__ import annotations

import platform
import re
from pathlib import Path

__all__ = ["gpu_label", "cpu_name", "host_name"]


def gpu_label(name: str) -> str:
    """Short device label from a GPU's marketing name: 'NVIDIA H100 80GB HBM3' -> 'h100'."""
    m = re.search(r"\b([A-Z]{1,2}\d{2,4}[A-Z]?)\b", name.upper().replace("NVIDIA", ""))
    if m:
        return m.group(1).lower()
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "gpu"


def cpu_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def host_name() -> str:
    return platform.node()
