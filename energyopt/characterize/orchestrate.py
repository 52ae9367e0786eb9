"""``energyopt characterize``: choose meters, build each LLM, run its sweep."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..errors import DataError
from .catalog import get_spec
from .csvlog import RunLog
from .design import coverage_order, default_design, fit_context, holdout_design, parse_points
from .host import cpu_name, gpu_label, host_name
from .meters import EstimateMeter, Meter, RaplMeter, rapl_available
from .sweep import SweepConfig, run_sweep

__all__ = ["characterize", "make_points"]


def make_points(points: str | None, holdout: int, max_input_tokens: int, max_output_tokens: int):
    """The design (coverage-ordered) followed by the held-back points."""
    if points is None or points.strip().isdigit():
        n = int(points) if points else None
        design = default_design(n, max_input=max_input_tokens, max_output=max_output_tokens)
    else:
        design = parse_points(points)
    hold = holdout_design(holdout, exclude=design, max_input=max_input_tokens, max_output=min(max_output_tokens, 512)) if holdout else []
    # interleave held-back points after the first few design points, so a time-boxed sweep has both
    ordered = coverage_order(design)
    out = ordered[:6]
    rest = ordered[6:]
    step = max(1, len(rest) // max(1, len(hold)))
    for i, h in enumerate(hold):
        out += rest[i * step:(i + 1) * step] + [h]
    out += rest[len(hold) * step:]
    return out


def characterize(*, llms: list[str], model_dir: Path | None, device: str, gpu_index: int, points: str | None,
                 holdout: int, repeats: int, min_window_s: float, max_input_tokens: int, max_output_tokens: int,
                 dtype: str | None, device_name: str | None, threads: int | None, cpu_power_w: float | None,
                 cpu_idle_w: float | None, time_budget_s: float | None, idle_seconds: float, out_csv: Path,
                 progress: Callable[[str], None]) -> None:
    from .runner import HFRunner

    if not llms and model_dir is None:
        raise DataError("name at least one --llm (see the catalog) or give --model-dir")
    if llms and model_dir is not None:
        raise DataError("give --llm or --model-dir, not both")
    specs = [get_spec(n) for n in llms]  # fail on an unknown name before measuring anything
    log = RunLog(out_csv)
    pts = make_points(points, holdout, max_input_tokens, max_output_tokens)
    meters: dict[str, Meter] = {}
    fixed_idle: dict[str, float] = {}
    prov: dict[str, str] = {"host": host_name(), "cpu_name": cpu_name()}
    if device == "cuda":
        from .meters import NvmlMeter

        try:
            gm = NvmlMeter([gpu_index])
        except Exception as exc:  # pynvml missing or no driver
            raise DataError(f"cannot read NVML energy counters ({exc}); install nvidia-ml-py on a machine with an NVIDIA GPU") from None
        meters["gpu"] = gm
        names = gm.names()
        prov["gpu_name"] = names[0]
        prov["driver"] = gm.driver()
        label = device_name or gpu_label(names[0])
        if rapl_available():
            meters["cpu"] = RaplMeter()
        dtype = dtype or "bf16"
    else:
        if rapl_available():
            meters["cpu"] = RaplMeter()
        elif cpu_power_w is not None:
            meters["cpu"] = EstimateMeter(cpu_power_w)
            fixed_idle["cpu"] = cpu_idle_w if cpu_idle_w is not None else 0.0
        else:
            raise DataError("no readable RAPL counters (/sys/class/powercap): pass --cpu-power-w to record an estimate")
        label = device_name or "cpu"
        dtype = dtype or "fp32"
    progress(f"energy meters: {', '.join(f'{k}={m.source}' for k, m in meters.items())}; device label {label!r}; {len(pts)} points x {repeats} repeats")
    runs = [(s.name, s, None) for s in specs] or [(Path(model_dir).name, None, model_dir)]
    for name, spec, mdir in runs:
        progress(f"building {name} ({dtype}) on {device} ...")
        runner = HFRunner(spec, model_dir=mdir, device=device, dtype=dtype, threads=threads)
        context = spec.context_tokens if spec is not None else runner.context_tokens
        llm_pts = fit_context(pts, context)
        if len(llm_pts) < len(pts):
            progress(f"{name}: context window {context} tokens: {len(pts) - len(llm_pts)} point(s) clipped or merged")
        try:
            cfg = SweepConfig(llm=name, device=label, points=llm_pts, repeats=repeats, min_window_s=min_window_s,
                              idle_seconds=idle_seconds, time_budget_s=time_budget_s, fixed_idle_power_w=fixed_idle)
            res = run_sweep(runner, meters, log, cfg, {**prov, "dtype": dtype, **runner.versions}, progress=progress)
            if runner.fallback_reason:
                progress(f"{name}: CUDA-graph decode not possible ({runner.fallback_reason}); measured with the eager loop")
            progress(f"{name}: measured {res.measured}, skipped {res.skipped}, left {res.remaining} in {res.elapsed_s:.0f} s")
        finally:
            del runner
            _free_cuda()


def _free_cuda() -> None:
    import gc

    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass
