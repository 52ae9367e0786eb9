"""The ``energyopt`` command line. It parses arguments, calls one library function, and prints.

Every :class:`~energyopt.errors.EnergyoptError` becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any, Callable

import click

from . import __version__
from .errors import EnergyoptError, FitError

def _default_models() -> Path:
    from .defaults import default_models_dir

    return default_models_dir()


def friendly_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn an EnergyoptError into ``error: …`` on stderr and exit code 2, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EnergyoptError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)

    return wrapper


def _fmt_table(df, floatfmt: dict[str, str] | None = None) -> str:
    floatfmt = floatfmt or {}
    cols = list(df.columns)
    cells = [[str(c) for c in cols]]
    for _, row in df.iterrows():
        line = []
        for c in cols:
            v = row[c]
            if isinstance(v, float):
                line.append(format(v, floatfmt.get(c, ".4g")))
            else:
                line.append(str(v))
        cells.append(line)
    widths = [max(len(r[i]) for r in cells) for i in range(len(cols))]
    numeric = [df[c].dtype.kind in "fiu" for c in cols]
    out = []
    for k, r in enumerate(cells):
        out.append(
            "  ".join(
                (r[i].rjust(widths[i]) if numeric[i] else r[i].ljust(widths[i])) for i in range(len(cols))
            ).rstrip()
        )
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="energyopt")
def main() -> None:
    """Plan where LLM queries run so that a batch is served with the least energy.

    \b
    Typical session:
      energyopt fit data/*.csv --out models/      # characterization data -> models
      energyopt models                            # what models there are
      energyopt predict --llm llama-2-7b --device h100 --input-tokens 1000 --output-tokens 130
    """


# --------------------------------------------------------------------------------------------
# fit / models / predict
# --------------------------------------------------------------------------------------------
@main.command("fit")
@click.argument("data", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory to write the model JSON files into (one per LLM and device).")
@click.option("--min-r2", type=click.FloatRange(0, 1), default=0.96, show_default=True,
              help="Smallest cross-validated R² a fit may have; below it nothing is written.")
@click.option("--folds", type=click.IntRange(2, 50), default=5, show_default=True,
              help="Number of cross-validation folds (repeats of one point stay in one fold).")
@click.option("--loss", type=click.Choice(["relative", "absolute"]), default="relative", show_default=True,
              help="Least-squares loss: squared relative error (fits short queries well) or squared error.")
@friendly_errors
def fit_cmd(data: tuple[Path, ...], out_dir: Path, min_r2: float, folds: int, loss: str) -> None:
    """Fit runtime and energy models from characterization CSV files.

    Each (LLM, device) gets the model form with the best cross-validated score among the paper's
    a0·τin + a1·τout + a2·τin·τout and richer forms (intercept, τout², τin²). Predictions are never
    negative. Prints one row per (LLM, device, target); writes OUT/<llm>__<device>.json only if every
    fit passes the R² gate.
    """
    import pandas as pd

    from .fit import fit_models
    from .io import read_characterization

    frames = [read_characterization(p) for p in data]
    df = pd.concat(frames, ignore_index=True)
    try:
        models = fit_models(df, min_r2=min_r2, folds=folds, relative=(loss == "relative"),
                            sources=[p.name for p in data])
    except FitError as exc:
        fitted = getattr(exc, "models", None)
        if fitted is not None:
            click.echo(_fmt_table(fitted.table(), {"cv_r2": ".4f", "r2": ".4f", "median_rel_err": ".1%", "p95_rel_err": ".1%"}))
        raise
    click.echo(_fmt_table(models.table(), {"cv_r2": ".4f", "r2": ".4f", "median_rel_err": ".1%", "p95_rel_err": ".1%"}))
    written = models.save(out_dir)
    click.echo(f"wrote {len(written)} model file(s) to {out_dir}")


@main.command("models")
@click.option("--models", "models_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Models directory [default: the shipped models].")
@friendly_errors
def models_cmd(models_dir: Path | None) -> None:
    """List the fitted models: form, cross-validated R², error and token ranges."""
    from .fit import FittedModels

    fm = FittedModels.load(models_dir or _default_models())
    t = fm.table()
    ranges = []
    for _, r in t.iterrows():
        m = fm.get(r["llm"], r["device"])[r["target"]]
        ranges.append(f"{m.input_tokens_range[0]}-{m.input_tokens_range[1]} x {m.output_tokens_range[0]}-{m.output_tokens_range[1]}")
    t["tokens_in_x_out"] = ranges
    click.echo(_fmt_table(t.drop(columns=["r2", "points"]), {"cv_r2": ".4f", "median_rel_err": ".1%", "p95_rel_err": ".1%"}))


@main.command("predict")
@click.option("--llm", required=True, help="LLM name as in the models.")
@click.option("--device", required=True, help="Device name as in the models.")
@click.option("--input-tokens", type=click.IntRange(min=1), required=True, help="Prompt length [tokens].")
@click.option("--output-tokens", type=click.IntRange(min=1), required=True, help="Generated length [tokens].")
@click.option("--models", "models_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Models directory [default: the shipped models].")
@friendly_errors
def predict_cmd(llm: str, device: str, input_tokens: int, output_tokens: int, models_dir: Path | None) -> None:
    """Predict the runtime [s] and energy [J] of one query on one (LLM, device)."""
    from .fit import FittedModels

    fm = FittedModels.load(models_dir or _default_models())
    p = fm.predict(llm, device, [input_tokens], [output_tokens]).iloc[0]
    click.echo(f"llm={llm} device={device} input_tokens={input_tokens} output_tokens={output_tokens}")
    click.echo(f"runtime_s={p['runtime_s']:.4f}")
    click.echo(f"energy_j={p['energy_j']:.2f}")
    if p["extrapolated"]:
        m = fm.get(llm, device)["energy_j"]
        click.echo(
            f"warning: outside the measured range (input {m.input_tokens_range[0]}-{m.input_tokens_range[1]}, "
            f"output {m.output_tokens_range[0]}-{m.output_tokens_range[1]} tokens): extrapolated",
            err=True,
        )


# --------------------------------------------------------------------------------------------
# characterize
# --------------------------------------------------------------------------------------------
@main.command("characterize")
@click.option("--llm", "llms", multiple=True, help="Catalog LLM to build with random weights (repeat for several).")
@click.option("--model-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="A local Hugging Face model directory to measure instead of a catalog LLM.")
@click.option("--device", type=click.Choice(["cuda", "cpu"]), default="cuda", show_default=True)
@click.option("--gpu", "gpu_index", type=click.IntRange(min=0), default=0, show_default=True,
              help="Which GPU (NVML index) to run on and meter.")
@click.option("--points", default=None,
              help="Design size N (thinned default design) or explicit points like 512x128,1024x64 "
                   "[default: the full design, input 8-4096 x output 8-1024].")
@click.option("--holdout", type=click.IntRange(min=0), default=10, show_default=True,
              help="Extra held-back points off the design grid (split=holdout), to check the fit.")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--min-window-s", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Shorter runs are repeated back to back inside one window of at least this length.")
@click.option("--max-input-tokens", type=click.IntRange(min=1), default=4096, show_default=True)
@click.option("--max-output-tokens", type=click.IntRange(min=1), default=1024, show_default=True)
@click.option("--dtype", type=click.Choice(["bf16", "fp16", "fp32"]), default=None,
              help="Weights' precision [default: bf16 on GPU, fp32 on CPU].")
@click.option("--device-name", default=None, help="Label for the device column [default: from the GPU name, or 'cpu'].")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads for torch.")
@click.option("--cpu-power-w", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Without readable RAPL counters: assumed CPU power while busy [W] (rows are labelled estimate).")
@click.option("--cpu-idle-w", type=click.FloatRange(min=0), default=None,
              help="Without RAPL: assumed CPU idle power [W] for the above-idle column.")
@click.option("--time-budget-s", type=click.FloatRange(min=1), default=None,
              help="Stop starting new runs of an LLM after this many seconds; a re-run resumes.")
@click.option("--idle-seconds", type=click.FloatRange(min=0.5), default=5.0, show_default=True)
@click.option("--out", "out_csv", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="CSV to append rows to (created if missing; rows already there are skipped).")
@friendly_errors
def characterize_cmd(llms: tuple[str, ...], model_dir: Path | None, device: str, gpu_index: int,
                     points: str | None, holdout: int, repeats: int, min_window_s: float,
                     max_input_tokens: int, max_output_tokens: int, dtype: str | None,
                     device_name: str | None, threads: int | None, cpu_power_w: float | None,
                     cpu_idle_w: float | None, time_budget_s: float | None, idle_seconds: float,
                     out_csv: Path) -> None:
    """Measure runtime and energy of LLM inference over a design of token counts.

    \b
    GPU: NVML's energy counter of the GPU used (nvidia-ml-py), plus RAPL CPU package energy where
    readable. CPU: RAPL where readable, otherwise --cpu-power-w times the runtime, labelled
    energy_source=estimate. Catalog LLMs are built from their published configurations with
    random weights (runtime and energy depend on shapes and token counts, not weight values);
    the KV cache is on and the output length is forced. Rows are appended as they are measured,
    with provenance (device name, driver, library versions, dtype, date); an interrupted sweep
    resumes where it stopped.
    """
    from .characterize.orchestrate import characterize

    characterize(
        llms=list(llms), model_dir=model_dir, device=device, gpu_index=gpu_index, points=points,
        holdout=holdout, repeats=repeats, min_window_s=min_window_s, max_input_tokens=max_input_tokens,
        max_output_tokens=max_output_tokens, dtype=dtype, device_name=device_name, threads=threads,
        cpu_power_w=cpu_power_w, cpu_idle_w=cpu_idle_w, time_budget_s=time_budget_s,
        idle_seconds=idle_seconds, out_csv=out_csv, progress=lambda s: click.echo(s, err=True),
    )


if __name__ == "__main__":  # pragma: no cover
    main()
