"""The measurement loop: idle power, warm-up, then each (point, repeat) in a measured window.

A point is ``batch_size`` identical queries run together; its row records the whole batch's
runtime and energy and each query's share (``energy_per_query_j``). A run shorter than
``min_window_s`` is repeated back to back inside one window (``inner_runs``) and the window's
runtime and energy are divided by the count, so that the energy counters' update interval does
not dominate short runs. Every row is written as soon as it is measured;
points already in the output file are skipped, so a sweep resumes where it stopped (keyed by
LLM, device, token counts, split, repeat and batch size). A point whose run does not fit in the
device's memory (the runner raises :class:`DeviceMemoryError`) is said so and skipped.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from ..progress import Phase, phase
from .csvlog import RunLog
from .design import DesignPoint, design_cost_tokens
from .meters import Meter, above_idle_j, measure_idle_power_w
from .runner import DeviceMemoryError

T = TypeVar("T")
_WINDOW_ATTEMPTS = 4  # measurements of a point whose window fell short of min_window_s


def _counted(items: list[T], ph: contextlib.AbstractContextManager[Phase]) -> Iterator[T]:
    """The items, inside the phase ``ph``, one step of it counted as each is done (a loop that
    breaks off ends the phase when the generator is closed)."""
    with ph as counter:
        for item in items:
            yield item
            counter.advance()

__all__ = ["SweepConfig", "SweepResult", "run_sweep", "format_duration", "Runner"]


class Runner(Protocol):
    decode_loop: str
    decode_attention: str

    def prepare(self, input_tokens: int, output_tokens: int, batch_size: int = 1) -> None: ...

    def run(self, input_tokens: int, output_tokens: int, batch_size: int = 1) -> None: ...


@dataclass
class SweepConfig:
    llm: str
    device: str
    points: list[DesignPoint]
    repeats: int = 3
    min_window_s: float = 1.0
    warmup_runs: int = 2
    idle_seconds: float = 5.0
    time_budget_s: float | None = None
    num_devices: int = 1
    fixed_idle_power_w: Mapping[str, float] = field(default_factory=dict)  # meter key -> W (estimates)


@dataclass
class SweepResult:
    measured: int
    skipped: int
    remaining: int
    idle_power_w: float | None
    elapsed_s: float
    out_of_memory: int = 0  # points skipped because the run did not fit in the device's memory


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def _read(meters: Mapping[str, Meter]) -> dict[str, float]:
    return {k: m.read_j() for k, m in meters.items()}


def run_sweep(
    runner: Runner,
    meters: Mapping[str, Meter],
    log: RunLog,
    cfg: SweepConfig,
    provenance: Mapping[str, Any],
    progress: Callable[[str], None] = print,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
) -> SweepResult:
    """Measure every (point, repeat) not yet in ``log``; returns counts and the idle power."""
    done = log.done()
    todo = [
        (p, rep)
        for p in cfg.points
        for rep in range(cfg.repeats)
        if (cfg.llm, cfg.device, p.input_tokens, p.output_tokens, p.split, rep, p.batch_size) not in done
    ]
    skipped = len(cfg.points) * cfg.repeats - len(todo)
    start = clock()
    if not todo:
        progress(f"{cfg.llm} on {cfg.device}: all {skipped} runs already in {log.path}")
        return SweepResult(0, skipped, 0, None, 0.0)

    # idle power of each meter's devices, with the model loaded and nothing running
    idle: dict[str, float] = {}
    with phase(f"{cfg.llm} on {cfg.device}: idle power"):
        for key, m in meters.items():
            if key in cfg.fixed_idle_power_w:
                idle[key] = float(cfg.fixed_idle_power_w[key])
            else:
                idle[key] = measure_idle_power_w(m, cfg.idle_seconds, sleep=sleep, clock=clock)
    idle_total = sum(idle.values())
    progress(f"{cfg.llm} on {cfg.device}: idle power {idle_total:.1f} W; {len(todo)} runs to measure"
             + (f", {skipped} already done" if skipped else ""))
    for _ in range(cfg.warmup_runs):
        runner.run(128, 8)

    total_cost = design_cost_tokens([p for p, _ in todo])
    cost_done = 0.0
    measured = 0
    out_of_memory: set[DesignPoint] = set()
    sources = "+".join(m.source for m in meters.values())
    measuring = phase(f"{cfg.llm} on {cfg.device}: runs", total=len(todo))
    for k, (p, rep) in enumerate(_counted(todo, measuring)):
        if cfg.time_budget_s is not None and clock() - start > cfg.time_budget_s:
            progress(f"{cfg.llm} on {cfg.device}: time budget of {cfg.time_budget_s:.0f} s reached; "
                     f"{len(todo) - k} runs left for a resumed sweep")
            break
        b = p.batch_size
        if p in out_of_memory:
            continue
        inner = 1
        try:
            runner.prepare(p.input_tokens, p.output_tokens, b)  # e.g. graph capture, outside the window
            e0, t0 = _read(meters), clock()
            runner.run(p.input_tokens, p.output_tokens, b)
            e1, t1 = _read(meters), clock()
            # a window shorter than min_window_s is measured again with more runs in it, sized on the
            # last window's mean run: the first run of a point can be several times slower than the
            # next (a first prefill at a new length), and a window sized on it alone can end before an
            # energy counter that updates every 100 ms (NVML) has moved, which read 0 J on the H200
            for _ in range(_WINDOW_ATTEMPTS):
                if t1 - t0 >= cfg.min_window_s:
                    break
                per_run_s = max((t1 - t0) / inner, 1e-6)
                inner = max(2 * inner, math.ceil(1.1 * cfg.min_window_s / per_run_s))
                e0, t0 = _read(meters), clock()
                for _ in range(inner):
                    runner.run(p.input_tokens, p.output_tokens, b)
                e1, t1 = _read(meters), clock()
        except DeviceMemoryError as exc:
            out_of_memory.add(p)
            progress(f"[{k + 1:>3}/{len(todo)}] {cfg.llm} {cfg.device} {p.input_tokens}x{p.output_tokens} "
                     f"batch {b} {p.split}: skipped, out of device memory ({exc})")
            continue
        runtime_s = (t1 - t0) / inner
        parts = {key: (e1[key] - e0[key]) / inner for key in meters}
        energy_j = sum(parts.values())
        row = {
            "llm": cfg.llm,
            "device": cfg.device,
            "input_tokens": p.input_tokens,
            "output_tokens": p.output_tokens,
            "batch_size": b,
            "runtime_s": runtime_s,
            "energy_j": energy_j,
            "energy_per_query_j": energy_j / b,
            "gpu_energy_j": parts.get("gpu"),
            "cpu_energy_j": parts.get("cpu"),
            "idle_power_w": idle_total,
            "above_idle_energy_j": above_idle_j(energy_j, idle_total, runtime_s),
            "num_devices": cfg.num_devices,
            "energy_source": sources,
            "split": p.split,
            "repeat": rep,
            "inner_runs": inner,
            "decode_loop": runner.decode_loop,
            "decode_attention": runner.decode_attention,
            "measured_at": _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat(),
            **provenance,
        }
        log.append(row)
        measured += 1
        cost_done += design_cost_tokens([p])
        elapsed = clock() - start
        eta = elapsed / cost_done * (total_cost - cost_done) if cost_done else 0.0
        progress(
            f"[{k + 1:>3}/{len(todo)}] {cfg.llm} {cfg.device} {p.input_tokens}x{p.output_tokens} "
            + (f"batch {b} " if b != 1 else "")
            + f"{p.split} rep {rep}: {runtime_s:.3f} s {energy_j:.1f} J"
            + (f" ({energy_j / b:.1f} J/query, {energy_j / (b * p.output_tokens):.3f} J/token)" if b != 1 else "")
            + (f" (x{inner})" if inner > 1 else "")
            + f" | {format_duration(elapsed)} elapsed, ~{format_duration(eta)} left"
        )
    oom_runs = sum(1 for p, _ in todo if p in out_of_memory)
    return SweepResult(measured, skipped, len(todo) - measured - oom_runs, idle_total, clock() - start,
                       out_of_memory=len(out_of_memory))
