"""``energyopt characterize``: choose meters, build each LLM, run its sweep."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError
from .catalog import ArchSpec, get_spec
from .csvlog import RunKey, RunLog, exclusive_writer
from .design import coverage_order, default_design, fit_context, holdout_design, parse_batch_sizes, parse_points, with_batch_sizes
from .host import cpu_name, gpu_label, host_name
from .memory import split_by_memory
from .meters import EstimateMeter, Meter, RaplMeter, rapl_available
from .sweep import SweepConfig, SweepResult, run_sweep

__all__ = ["characterize", "make_points", "host_memory_bytes"]


def make_points(points: str | None, holdout: int, max_input_tokens: int, max_output_tokens: int,
                batch_sizes: list[int] | None = None):
    """The design (coverage-ordered) with the held-back points interleaved, at every batch size.

    Each token point is measured at every batch size in ``batch_sizes`` (default: 1 alone), one
    after another, so a time-boxed sweep covers every batch size on the same leading points.
    """
    if points is None or points.strip().isdigit():
        n = int(points) if points else None
        design = default_design(n, max_input=max_input_tokens, max_output=max_output_tokens)
    else:
        design = parse_points(points)
    hold_max_output = min(max_output_tokens, 512)
    hold = holdout_design(holdout, exclude=design, max_input=max_input_tokens, max_output=hold_max_output) if holdout else []
    # interleave held-back points after the first few design points, so a time-boxed sweep has both
    ordered = coverage_order(design)
    out = ordered[:6]
    rest = ordered[6:]
    step = max(1, len(rest) // max(1, len(hold)))
    for i, h in enumerate(hold):
        out += rest[i * step:(i + 1) * step] + [h]
    out += rest[len(hold) * step:]
    return with_batch_sizes(out, batch_sizes or [1])


def host_memory_bytes() -> int | None:
    """Physical memory of this host [bytes] (the CPU device's memory), None where unknown."""
    import os

    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


@dataclass
class _Metering:
    """The energy meters of a run and what they tell about the machine."""

    meters: dict[str, Meter]
    fixed_idle_w: dict[str, float]  # idle power given, not measured (an estimated CPU)
    provenance: dict[str, str]
    memory_bytes: int | None  # device memory (the host's for a CPU; None: unknown)
    label: str  # the device column's value


def _dry_meters(device: str, device_name: str | None, clock: Any) -> _Metering:
    """A dry run's meter: a constant power on the virtual clock, with a fixed idle power."""
    from .dryrun import DRY_BUSY_POWER_W, DRY_IDLE_POWER_W, DryMeter

    key = "gpu" if device == "cuda" else "cpu"
    prov = {"host": host_name(), "cpu_name": cpu_name()}
    if device == "cuda":
        prov |= {"gpu_name": "dry run", "driver": ""}
    return _Metering({key: DryMeter(DRY_BUSY_POWER_W, clock=clock)}, {key: DRY_IDLE_POWER_W}, prov, None,
                     device_name or ("dry-run-gpu" if device == "cuda" else "cpu"))


def _meters(device: str, gpu_index: int, device_name: str | None, cpu_power_w: float | None,
            cpu_idle_w: float | None) -> _Metering:
    """NVML on a GPU (and RAPL where readable); RAPL on a CPU, else the estimate ``cpu_power_w``."""
    meters: dict[str, Meter] = {}
    fixed_idle: dict[str, float] = {}
    prov: dict[str, str] = {"host": host_name(), "cpu_name": cpu_name()}
    if device == "cuda":
        from .meters import NvmlMeter

        try:
            gm = NvmlMeter([gpu_index])
        except Exception as exc:  # pynvml missing or no driver
            raise DataError(f"cannot read NVML energy counters ({exc}); "
                            "install nvidia-ml-py on a machine with an NVIDIA GPU") from None
        meters["gpu"] = gm
        names = gm.names()
        prov["gpu_name"] = names[0]
        prov["driver"] = gm.driver()
        if rapl_available():
            meters["cpu"] = RaplMeter()
        return _Metering(meters, fixed_idle, prov, int(gm.memory_gb() * 1e9), device_name or gpu_label(names[0]))
    if rapl_available():
        meters["cpu"] = RaplMeter()
    elif cpu_power_w is not None:
        meters["cpu"] = EstimateMeter(cpu_power_w)
        fixed_idle["cpu"] = cpu_idle_w if cpu_idle_w is not None else 0.0
    else:
        raise DataError("no readable RAPL counters (/sys/class/powercap): pass --cpu-power-w to record an estimate")
    return _Metering(meters, fixed_idle, prov, host_memory_bytes(), device_name or "cpu")


def _choose_meters(dry_run: bool, device: str, gpu_index: int, device_name: str | None, cpu_power_w: float | None,
                   cpu_idle_w: float | None, gpu_label_expected: str | None) -> tuple[_Metering, Any]:
    """The meters (and a dry run's virtual clock, else None); a GPU of another label is refused."""
    if dry_run:
        from .dryrun import DryClock

        clock = DryClock()
        return _dry_meters(device, device_name, clock), clock
    m = _meters(device, gpu_index, device_name, cpu_power_w, cpu_idle_w)
    seen = gpu_label(m.provenance["gpu_name"]) if device == "cuda" else None
    if gpu_label_expected is not None and seen is not None and seen != gpu_label_expected:
        raise DataError(f"this node's GPU {gpu_index} is {m.provenance['gpu_name']} ({seen}), not {gpu_label_expected}")
    return m, None


def _build_runner(spec: ArchSpec | None, mdir: Path | None, device: str, dtype: str, threads: int | None,
                  decode_attention: str, memory_bytes: int | None, clock: Any) -> Any:
    """The LLM's runner: a dry run's (``clock`` given), transformers', or the replay's engine."""
    if clock is not None:
        from .dryrun import DryRunner

        assert spec is not None  # a dry run takes catalog LLMs only
        return DryRunner(spec, clock, decode_attention)
    from .runner import HFRunner

    runner: Any = HFRunner(spec, model_dir=mdir, device=device, dtype=dtype, threads=threads,
                           decode_attention="grouped" if decode_attention == "ragged" else decode_attention,
                           memory_bytes=memory_bytes)
    if decode_attention == "ragged":  # the replay's engine (energyopt replay)
        from .engine import EngineRunner

        runner = EngineRunner(runner)
    return runner


def characterize(*, llms: list[str], model_dir: Path | None, device: str, gpu_index: int, points: str | None,
                 holdout: int, repeats: int, min_window_s: float, max_input_tokens: int, max_output_tokens: int,
                 dtype: str | None, device_name: str | None, threads: int | None, cpu_power_w: float | None,
                 cpu_idle_w: float | None, time_budget_s: float | None, idle_seconds: float, out_csv: Path,
                 progress: Callable[[str], None], batch_sizes: str = "1", decode_attention: str = "grouped",
                 dry_run: bool = False, known: Iterable[RunKey] = (), gpu_label_expected: str | None = None,
                 ) -> list[SweepResult]:
    """Measure each LLM's points into ``out_csv``, skipping the rows already there (or in
    ``known``); one :class:`SweepResult` per LLM. ``dry_run``: the runner and meters of
    :mod:`.dryrun` (no torch, no GPU, a virtual clock). ``gpu_label_expected``: refuse a GPU whose
    label (``h200`` for an NVIDIA H200) is another."""
    from .runner import DECODE_ATTENTION

    if not llms and model_dir is None:
        raise DataError("name at least one --llm (see the catalog) or give --model-dir")
    if llms and model_dir is not None:
        raise DataError("give --llm or --model-dir, not both")
    specs = [get_spec(n) for n in llms]  # fail on an unknown name before measuring anything
    sizes = parse_batch_sizes(batch_sizes)
    if decode_attention not in (*DECODE_ATTENTION, "ragged"):
        raise DataError(f"--decode-attention must be one of {', '.join(DECODE_ATTENTION)} or ragged, "
                        f"got {decode_attention!r}")
    if dry_run and model_dir is not None:
        raise DataError("--dry-run builds catalog LLMs only (name them with --llm), not --model-dir")
    results: list[SweepResult] = []
    with exclusive_writer(out_csv):  # one writer at a time, or rows are measured and appended twice
        log = RunLog(out_csv, known=known)
        if log.legacy and (sizes != [1] or decode_attention != "sdpa"):
            raise DataError(log.legacy_message())
        other = log.decode_attentions() - {decode_attention}
        if other:
            raise DataError(f"{out_csv} holds rows measured with --decode-attention {', '.join(sorted(other))}: a model fits "
                            f"one engine's rows, so write --decode-attention {decode_attention} to a new file")
        pts = make_points(points, holdout, max_input_tokens, max_output_tokens, sizes)
        m, clock = _choose_meters(dry_run, device, gpu_index, device_name, cpu_power_w, cpu_idle_w, gpu_label_expected)
        meters, fixed_idle, prov, memory_bytes, label = m.meters, m.fixed_idle_w, m.provenance, m.memory_bytes, m.label
        dtype = dtype or ("bf16" if device == "cuda" else "fp32")
        progress(f"energy meters: {', '.join(f'{k}={m.source}' for k, m in meters.items())}; device label {label!r}; "
                 f"{len(pts)} points x {repeats} repeats"
                 + (f" (batch sizes {','.join(map(str, sizes))})" if sizes != [1] else ""))
        runs: list[tuple[str, ArchSpec | None, Path | None]] = [(s.name, s, None) for s in specs]
        if not runs:
            assert model_dir is not None  # the command takes a catalog LLM or a model directory
            runs = [(Path(model_dir).name, None, model_dir)]
        for name, spec, mdir in runs:
            progress(f"building {name} ({dtype}) on {device}{' (dry run)' if dry_run else ''} ...")
            runner = _build_runner(spec, mdir, device, dtype, threads, decode_attention, memory_bytes, clock)
            context = spec.context_tokens if spec is not None else runner.context_tokens
            llm_pts = fit_context(pts, context)
            if len(llm_pts) < len(pts):
                progress(f"{name}: context window {context} tokens: {len(pts) - len(llm_pts)} point(s) clipped or merged")
            too_big: list = []
            if memory_bytes:
                llm_pts, too_big = split_by_memory(llm_pts, runner.kv, runner.weight_bytes, memory_bytes,
                                                   runner.cache_bucket_for_batch)
                for p, kv in too_big:
                    progress(f"{name}: skipped {p.input_tokens}x{p.output_tokens} batch {p.batch_size} ({p.split}): "
                             f"KV cache {kv / 1e9:.1f} GB + weights {runner.weight_bytes / 1e9:.1f} GB do not fit in "
                             f"{memory_bytes / 1e9:.0f} GB of device memory")
            try:
                cfg = SweepConfig(llm=name, device=label, points=llm_pts, repeats=repeats, min_window_s=min_window_s,
                                  idle_seconds=idle_seconds, time_budget_s=time_budget_s, fixed_idle_power_w=fixed_idle)
                timing = {"clock": clock, "sleep": clock.sleep} if dry_run else {}
                res = run_sweep(runner, meters, log, cfg, {**prov, "dtype": dtype, **runner.versions}, progress=progress,
                                **timing)
                results.append(res)
                if runner.fallback_reason:
                    progress(f"{name}: CUDA-graph decode not possible ({runner.fallback_reason}); measured with the eager loop")
                no_room = len(too_big) + res.out_of_memory
                progress(f"{name}: measured {res.measured}, skipped {res.skipped}, left {res.remaining}, "
                         f"skipped for memory {no_room} in {res.elapsed_s:.0f} s")
            finally:
                if hasattr(runner, "close"):
                    runner.close()
                del runner
                if not dry_run:
                    _free_cuda()
    return results


def _free_cuda() -> None:
    import gc

    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass
