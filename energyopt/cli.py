"""The ``energyopt`` command line. It parses arguments, calls one library function, and prints.

Every :class:`~energyopt.errors.EnergyoptError` becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .characterize.catalog import CATALOG
from .errors import DataError, EnergyoptError, FitError

#: exit codes (README "Exit codes", ``solve --help``)
EXIT_PLAN = 0  # a plan (or a command that succeeded)
EXIT_INFEASIBLE = 1  # proven: no plan exists
EXIT_BAD_INPUT = 2  # bad input or an unwritable output; nothing solved, nothing written
EXIT_NO_PLAN = 3  # no plan within the limits (time limit, watchdog, a backend that ended without one)
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT): 128 + 2
EXIT_TERMINATED = 143  # SIGTERM (as sent by `timeout` or `kill`): 128 + 15

# Heavy libraries (pandas, numpy, scipy, scikit-learn) and the pipeline's modules are imported
# inside the commands that use them: `energyopt --help` loads click and this module only.

# numpy is asked not to back its large arrays by transparent huge pages (before anything imports it):
# where the kernel compacts memory for such a request (THP defrag "madvise") the page faults of one
# million-query problem cost 4-8 s of system time on a long-running 2-core machine, against about 1 s
# without (measured 2026-12-03). An environment that sets NUMPY_MADVISE_HUGEPAGE keeps its choice.
os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")


#: the package's logger; the CLI's handlers hang here (``-v``, ``--log-file``)
log = logging.getLogger("energyopt")
#: progress of long steps (solving, sweeping, measuring): shown on stderr even without ``-v``
progress_log = logging.getLogger("energyopt.progress")


def _progress(line: str) -> None:
    """A long step's progress line: to stderr (as it always was) and to ``--log-file``; a live
    display (``--progress``) shows it beside the phase running."""
    from .progress import note

    progress_log.info(line)
    note(line)


@contextlib.contextmanager
def _display(quiet: bool) -> Any:
    """The live progress display (energyopt.display) around a command: on where stderr is a
    terminal (or ``--progress`` asks for it), off with ``--no-progress``, ``-q`` or a pipe."""
    ctx = click.get_current_context(silent=True)
    wanted = None if ctx is None else ctx.find_root().params.get("progress_display")  # energyopt --progress
    on = not quiet and (wanted if wanted is not None else sys.stderr.isatty())
    if not on:
        yield
        return
    from .display import RichListener
    from .progress import listening

    with RichListener(force=bool(wanted)) as listener, listening(listener):
        yield


class _StderrHandler(logging.Handler):
    """Log records on stderr through click (so that CliRunner and redirections see them). Without
    ``-v`` only progress lines (bare, as before) and warnings pass."""

    def __init__(self, verbosity: int) -> None:
        super().__init__(logging.DEBUG if verbosity >= 2 else logging.INFO)
        self.verbosity = verbosity

    def filter(self, record: logging.LogRecord) -> bool:
        if self.verbosity == 0 and record.levelno < logging.WARNING:
            return record.name == progress_log.name and record.levelno >= logging.INFO
        return True

    def emit(self, record: logging.LogRecord) -> None:
        try:
            click.echo(self.format(record), err=True)
        except Exception:  # pragma: no cover - logging must never end a command
            self.handleError(record)


_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _setup_logging(verbosity: int, log_file: Path | None) -> Callable[[], None]:
    """Handlers for ``-v``/``-vv`` and ``--log-file`` on the ``energyopt`` logger; returns the
    function that removes them again (a command run in-process, as by CliRunner, leaves none)."""
    level = logging.DEBUG if verbosity >= 2 else logging.INFO
    handlers: list[logging.Handler] = []
    err = _StderrHandler(verbosity)
    err.setFormatter(logging.Formatter("%(message)s" if verbosity == 0 else _LOG_FORMAT))
    handlers.append(err)
    if log_file is not None:
        try:
            fh: logging.Handler = logging.FileHandler(log_file, mode="a", encoding="utf-8")
        except OSError as exc:
            raise click.BadParameter(f"{log_file}: cannot write there ({exc.strerror or exc})",
                                     param_hint="--log-file") from None
        fh.setLevel(level)
        fh.setFormatter(logging.Formatter(_LOG_FORMAT))
        handlers.append(fh)
    previous = (log.level, log.propagate)
    log.setLevel(level)
    log.propagate = False  # our handlers only; the root logger's (if any) would print twice
    for h in handlers:
        log.addHandler(h)

    def remove() -> None:
        for h in handlers:
            log.removeHandler(h)
            h.close()
        log.setLevel(previous[0])
        log.propagate = previous[1]

    return remove


def _default_models() -> Path:
    from .defaults import default_models_dir

    return default_models_dir()


class Terminated(BaseException):
    """Raised in the main thread by the CLI's SIGTERM handler, so that a terminated command unwinds
    like an interrupted one: temporary files are removed and solver children are killed."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


#: seconds a command has to unwind after SIGTERM or SIGINT before it is ended without unwinding
UNWIND_GRACE_S = 1.0


def _end_if_stuck(read_fd: int, done: threading.Event) -> None:
    """Watcher thread: a signal's number arrives on ``read_fd`` the moment it is delivered (the
    interpreter's C-level handler writes it there), even while the main thread is inside a solver's
    C code, where Python's own handlers wait until that code returns (an in-process HiGHS MILP
    may run for minutes, and scipy releases the GIL while it does). If the command has not unwound
    within :data:`UNWIND_GRACE_S`, remove the files being written, say so and end the process
    with the signal's exit code; solver children die with it (they watch their parent)."""
    while not done.is_set():
        try:
            data = os.read(read_fd, 64)
        except OSError:
            return
        if not data:
            return
        codes = {int(signal.SIGTERM): EXIT_TERMINATED, int(signal.SIGINT): EXIT_INTERRUPTED}
        got = [codes[s] for s in data if s in codes]
        if not got:
            continue
        if done.wait(UNWIND_GRACE_S):
            return
        from .writers import remove_open_temp_files

        remove_open_temp_files()
        with contextlib.suppress(OSError):
            os.write(2, b"terminated\n" if got[0] == EXIT_TERMINATED else b"interrupted\n")
        os._exit(got[0])


def _forget_wakeup_fd() -> None:
    """In a forked child (a solver's watchdog child), signals must not reach the parent's watcher."""
    with contextlib.suppress(ValueError):
        signal.set_wakeup_fd(-1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_wakeup_fd)


@contextlib.contextmanager
def _sigterm_unwinds() -> Any:
    """SIGTERM raises :class:`Terminated` while the block runs (main thread only; the previous
    handler is restored after), and a watcher ends the process if the block cannot unwind in time
    (:func:`_end_if_stuck`)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    done = threading.Event()
    try:
        old_wakeup = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    except ValueError:  # not the main thread of the main interpreter
        old_wakeup = None
    watcher = threading.Thread(target=_end_if_stuck, args=(read_fd, done), name="energyopt-signal-watch", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        if old_wakeup is not None:
            signal.set_wakeup_fd(old_wakeup)
        signal.signal(signal.SIGTERM, previous)
        os.close(write_fd)  # the watcher's read returns empty and it ends
        watcher.join(timeout=UNWIND_GRACE_S + 1.0)
        os.close(read_fd)


def friendly_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn an EnergyoptError into ``error: …`` on stderr and exit code 2, never a traceback;
    Ctrl-C (SIGINT) into exit code 130 and SIGTERM into 143, after the command has unwound."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import time

        name = fn.__name__.removesuffix("_cmd")
        log.debug("%s: %s", name, ", ".join(f"{k}={v}" for k, v in kwargs.items()))
        t0 = time.perf_counter()
        try:
            with _sigterm_unwinds(), _display(bool(kwargs.get("quiet"))):
                return fn(*args, **kwargs)
        except EnergyoptError as exc:
            log.debug("%s: %s", name, exc)
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_BAD_INPUT)
        except ModuleNotFoundError as exc:
            top = (exc.name or "").split(".")[0]
            if not top or top == "energyopt":
                raise  # a module of ours missing is a bug, not the environment
            click.echo(f"error: this Python ({sys.executable}) has no module {top!r}, which {name} needs; install "
                       f"energyopt with its dependencies there (pip install energyopt, and the extra that names "
                       f"{top} if it is optional)", err=True)
            sys.exit(EXIT_BAD_INPUT)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except Terminated:
            click.echo("terminated", err=True)
            sys.exit(EXIT_TERMINATED)
        finally:
            log.info("%s ended after %.2f s", name, time.perf_counter() - t0)

    return wrapper


def _clear_old_report(out_dir: Path) -> None:
    """An earlier plan's OUT/report/ must not pass for this plan's: remove it (it is energyopt's if
    it holds report.html; a folder of anything else there is left alone and said so)."""
    import shutil

    d = out_dir / "report"
    if not d.is_dir():
        return
    if (d / "report.html").is_file():
        shutil.rmtree(d)
    else:
        click.echo(f"note: {d} is not an energyopt report (no report.html); left as it is", err=True)


def _exit_code_without_plan(status: Any) -> int:
    """The exit code of a result without a plan: 1 when no plan exists (proven), 3 when none was
    found within the limits (a time limit, the watchdog, a backend that ended without one)."""
    from .schema import Status

    return EXIT_INFEASIBLE if status == Status.INFEASIBLE else EXIT_NO_PLAN


def _signals_arg(signals_path: Any, signals_start: Any, fleet: Any) -> Any:
    """The --signals file read for this fleet from --signals-start (None without --signals)."""
    if signals_start is not None and signals_path is None:
        raise DataError("--signals-start: give --signals FILE too")
    if signals_path is None:
        return None
    from .signals import load_signals

    return load_signals(signals_path, fleet=fleet, batch_start=signals_start)


def _writable_dir(path: Path, option: str = "--out") -> None:
    """Check, before any solving or fitting, that ``path`` can be created and written: create it
    (and its parents), write and remove a file in it, and remove again the folders it created.
    An unwritable output is bad input (one line, exit 2), not a traceback after the work. ``-``
    is refused: a folder of files cannot go to stdout (``solve -o -`` is handled before this)."""
    import tempfile

    if str(path) == "-":
        raise DataError(f"{option} -: this command writes a folder of files, not one stream; give a folder "
                        "(stdout: solve -o -, or --json where the command has it)")

    created = []
    p = path.absolute()
    while not p.exists() and p != p.parent:
        created.append(p)
        p = p.parent
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".energyopt-write-test.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise DataError(f"{option} {path}: cannot write there ({exc.strerror or exc})") from None
    finally:
        for d in created:  # deepest first; what the command writes later creates them again
            try:
                d.rmdir()
            except OSError:
                break


def _fmt_table(df, floatfmt: dict[str, str] | None = None) -> str:
    floatfmt = floatfmt or {}
    cols = list(df.columns)
    cells = [[str(c) for c in cols]]
    for _, row in df.iterrows():
        line = []
        for c in cols:
            v = row[c]
            if isinstance(v, float) and v != v:
                line.append("-")
            elif isinstance(v, float):
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


def _json_opt(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--json``: print ``what`` as JSON on stdout instead of the human output; nothing else goes
    to stdout (progress, warnings and the names of the files written go to stderr)."""
    return click.option("--json", "as_json", is_flag=True,
                        help=f"Print {what} as JSON on stdout instead of the usual text; nothing else goes to stdout "
                             "(progress and warnings stay on stderr).")


def _echo_json(obj: Any) -> None:
    """``obj`` as indented JSON on stdout (plain JSON values: NaN as null, as in the files written)."""
    import json

    from .writers import jsonable

    click.echo(json.dumps(jsonable(obj), indent=2))


def _records(df: Any) -> list[dict[str, Any]]:
    """A table as a list of rows (column name to value), in plain JSON values (NaN as null)."""
    from .writers import jsonable

    return jsonable(df.to_dict(orient="records"))


_FIT_FORMATS = {"cv_r2": ".4f", "r2": ".4f", "median_rel_err": ".1%", "p95_rel_err": ".1%",
                "holdout_med_err": ".1%", "holdout_max_err": ".1%", "repeat_spread": ".1%",
                "held_back_batch_err": ".1%"}


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """``--version``: the installed version, read from the package metadata only when asked."""
    if not value or ctx.resilient_parsing:
        return
    from .version import package_version

    click.echo(f"energyopt, version {package_version()}")
    ctx.exit()


def _process_entry() -> bool:
    """Whether this process was started to run the CLI: the ``energyopt`` script or ``python -m
    energyopt.cli`` (not a test or a program that calls :func:`main`)."""
    top = sys.modules.get("__main__")
    spec = getattr(top, "__spec__", None)
    if spec is not None and spec.name == "energyopt.cli":
        return True
    script = getattr(top, "__file__", None)  # the console script is the __main__ module, and argv[0]
    return script is not None and Path(sys.argv[0]).name == "energyopt" and Path(script).name == "energyopt"


def _end_process(code: Any) -> None:
    """End the process as ``sys.exit(code)`` would, without the interpreter's teardown: the exit
    handlers run (the log is flushed and closed, temporary folders removed) and stdout and stderr
    are flushed, but the modules are not torn down one by one, which costs 0.1-0.2 s after numpy,
    pandas and scipy.optimize are loaded (0.44 s after a plan of 100,000 queries), 10-15% of a
    1,000-query solve. Only where no other thread but daemons runs (else the usual exit, which
    waits for them)."""
    if any(t is not threading.main_thread() and not t.daemon for t in threading.enumerate()):
        sys.exit(code)
    import atexit

    atexit._run_exitfuncs()
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code & 0xFF
    else:  # sys.exit("message"): the message on stderr, status 1
        with contextlib.suppress(Exception):
            print(code, file=sys.stderr)
        status = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)


class _Entry(click.Group):
    """The command group; called as this process's entry point (:func:`_process_entry`), it ends
    the process as soon as the command has (:func:`_end_process`)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not _process_entry():
            return super().__call__(*args, **kwargs)
        try:
            super().__call__(*args, **kwargs)
        except SystemExit as exc:
            _end_process(exc.code)
        _end_process(0)


@click.group(cls=_Entry, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Show the version and exit.")
@click.option("--verbose", "-v", "verbosity", count=True,
              help="Log to stderr with times: -v at INFO (each progress line, how long the command took), "
                   "-vv at DEBUG too (the options a command ran with). Goes before the command: energyopt -v solve ...")
@click.option("--log-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also append the log (progress lines with times; DEBUG with -vv) to this file.")
@click.option("--progress/--no-progress", "progress_display", default=None,
              help="A live display on stderr of the phases running (characterization runs, building the problem, "
                   "solving, packing, checking) with their elapsed time, ticking while a solver runs "
                   "[default: on where stderr is a terminal; never with solve -q].")
@click.pass_context
def main(ctx: click.Context, verbosity: int, log_file: Path | None, progress_display: bool | None) -> None:
    """Plan where LLM queries run so that a batch is served with the least energy.

    \b
    Typical session:
      energyopt solve examples/workload.csv       # plan the example batch: plan/assignment.csv
      energyopt explain plan/ q000001             # one query's options and why it went where
      energyopt compare examples/workload.csv     # the plan next to routing rules
      energyopt models                            # the fitted models and their quality
      energyopt predict --llm mistral-7b --device h200 --input-tokens 1000 --output-tokens 130
    """
    ctx.call_on_close(_setup_logging(verbosity, log_file))


# --------------------------------------------------------------------------------------------
# fit / models / predict
# --------------------------------------------------------------------------------------------
@main.command("fit")
@click.argument("data", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path, allow_dash=True))
@click.option("--out", "-o", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory to write the model JSON files into (one per LLM and device).")
@click.option("--min-r2", type=click.FloatRange(0, 1), default=0.96, show_default=True,
              help="Smallest cross-validated R² a fit may have; below it nothing is written.")
@click.option("--folds", type=click.IntRange(2, 50), default=5, show_default=True,
              help="Number of cross-validation folds (repeats of one point stay in one fold).")
@click.option("--loss", type=click.Choice(["relative", "absolute"]), default="relative", show_default=True,
              help="Least-squares loss: squared relative error (fits short queries well) or squared error.")
@click.option("--holdout-batch-sizes", default="",
              help="Comma-separated batch sizes not fitted but predicted from the others and scored "
                   "(e.g. 64 from 1, 8, 32, 128), shown as held_back_batch_err.")
@friendly_errors
def fit_cmd(data: tuple[Path, ...], out_dir: Path, min_r2: float, folds: int, loss: str, holdout_batch_sizes: str) -> None:
    """Fit runtime and energy models from characterization CSV files (- reads one from stdin).

    Each (LLM, device) gets the model form with the best cross-validated score among the paper's
    a0·τin + a1·τout + a2·τin·τout and richer forms (intercept, τout², τin², KV cache off); data
    measured at several batch sizes gets forms in the batch size b (energy per query, latency in
    the batch). Predictions are never negative. A run far off what the others predict (a factor 3
    or more) is reported as an outlier and not fitted. Prints one row per (LLM, device, target);
    writes OUT/<llm>__<device>.json only if every fit passes the R² gate at every batch size.
    """
    import pandas as pd

    from .fit import fit_models
    from .io import STDIN_NAME, read_characterization, read_characterization_stream

    try:
        held = [int(v) for v in holdout_batch_sizes.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated whole numbers, got {holdout_batch_sizes!r}",
                                 param_hint="--holdout-batch-sizes") from None
    if sum(str(p) == "-" for p in data) > 1:
        raise DataError("DATA: - (standard input) can be given once")
    frames = [read_characterization_stream(sys.stdin.buffer) if str(p) == "-" else read_characterization(p)
              for p in data]
    df = pd.concat(frames, ignore_index=True)
    _writable_dir(out_dir)
    try:
        models = fit_models(df, min_r2=min_r2, folds=folds, relative=(loss == "relative"),
                            holdout_batch_sizes=held, sources=[STDIN_NAME if str(p) == "-" else p.name for p in data])
    except FitError as exc:
        fitted = getattr(exc, "models", None)
        if fitted is not None:
            click.echo(_fmt_table(fitted.table(), _FIT_FORMATS))
        raise
    click.echo(_fmt_table(models.table(), _FIT_FORMATS))
    written = models.save(out_dir)
    click.echo(f"wrote {len(written)} model file(s) to {out_dir}")


@main.command("models")
@click.option("--models", "models_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Models directory [default: $ENERGYOPT_MODELS, else the shipped models/].")
@_json_opt("one record per (LLM, device, target), every column of the table and the token ranges as "
           "[low, high] (null where a published model states none),")
@friendly_errors
def models_cmd(models_dir: Path | None, as_json: bool) -> None:
    """List the fitted models: form, cross-validated R², error and token ranges."""
    from .modelstore import FittedModels

    fm = FittedModels.load(models_dir or _default_models())
    t = fm.table()
    ranges: list[str] = []
    in_ranges: list[list[int] | None] = []
    out_ranges: list[list[int] | None] = []
    for _, r in t.iterrows():
        m = fm.get(r["llm"], r["device"])[r["target"]]
        if m.origin == "published" and m.to_dict()["input_tokens_range"] is None:
            ranges.append("not stated")
            in_ranges.append(None)
            out_ranges.append(None)
        else:
            (in_lo, in_hi), (out_lo, out_hi) = m.input_tokens_range, m.output_tokens_range
            ranges.append(f"{in_lo}-{in_hi} x {out_lo}-{out_hi}")
            in_ranges.append([int(in_lo), int(in_hi)])
            out_ranges.append([int(out_lo), int(out_hi)])
    if as_json:
        t["input_tokens_range"], t["output_tokens_range"] = in_ranges, out_ranges
        _echo_json(_records(t))
        return
    t["tokens_in_x_out"] = ranges
    click.echo(_fmt_table(t.drop(columns=["r2", "points"]), _FIT_FORMATS))


@main.command("predict")
@click.option("--llm", required=True, help="LLM name as in the models.")
@click.option("--device", required=True, help="Device name as in the models.")
@click.option("--input-tokens", type=click.IntRange(min=1), required=True, help="Prompt length [tokens].")
@click.option("--output-tokens", type=click.IntRange(min=1), required=True, help="Generated length [tokens].")
@click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True,
              help="Queries served at once; the prediction is one query's latency and share of the energy.")
@click.option("--models", "models_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Models directory [default: $ENERGYOPT_MODELS, else the shipped models/].")
@_json_opt("the prediction (llm, device, input_tokens, output_tokens, batch_size, runtime_s, energy_j, "
           "extrapolated)")
@friendly_errors
def predict_cmd(llm: str, device: str, input_tokens: int, output_tokens: int, batch_size: int,
                models_dir: Path | None, as_json: bool) -> None:
    """Predict the runtime [s] and energy [J] of one query on one (LLM, device) at a batch size."""
    from .modelstore import FittedModels

    fm = FittedModels.load(models_dir or _default_models())
    p = fm.predict(llm, device, [input_tokens], [output_tokens], batch_size=batch_size).iloc[0]
    if not p["valid"]:
        pair = fm.get(llm, device)
        raw = {t: float(pair[t].predict_raw([input_tokens], [output_tokens], batch_size)[0]) for t in ("energy_j", "runtime_s")}
        raise DataError(f"the models of {llm} on {device} predict energy_j={raw['energy_j']:.4g}, "
                        f"runtime_s={raw['runtime_s']:.4g} at {input_tokens} x {output_tokens} tokens, batch size "
                        f"{batch_size}: not positive, outside the models' valid domain (a plan never uses such an option)")
    if as_json:
        _echo_json({"llm": llm, "device": device, "input_tokens": input_tokens, "output_tokens": output_tokens,
                    "batch_size": batch_size, "runtime_s": p["runtime_s"], "energy_j": p["energy_j"],
                    "extrapolated": bool(p["extrapolated"])})
    else:
        click.echo(f"llm={llm} device={device} input_tokens={input_tokens} output_tokens={output_tokens} "
                   f"batch_size={batch_size}")
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
# solve / compare / solvers
# --------------------------------------------------------------------------------------------
def _plan_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    opts = [
        click.option("--fleet", "fleet_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="Fleet TOML [default: $ENERGYOPT_FLEET, else the shipped examples/fleet.toml]."),
        click.option("--models", "models_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="Models directory [default: $ENERGYOPT_MODELS, else the shipped models/]."),
        click.option("--solver", type=click.Choice(["auto", "highs", "cbc", "cpsat"]), default="auto", show_default=True,
                     help="Backend: HiGHS (scipy), CBC (PuLP) or CP-SAT (OR-Tools); auto takes the first installed."),
        click.option("--time-limit", "time_limit_s", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Seconds the command may spend planning: solve (with --report, its extra plans too) "
                          "ends when it runs out, counted from its start (reading and writing included), with the best "
                          "plan found by then and its gap; compare and sweep apply it to each plan of theirs."),
        click.option("--gap", "mip_rel_gap", type=click.FloatRange(0, 1), default=1e-4, show_default=True,
                     help="Relative gap at which the search may stop."),
        click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True,
                     help="Threads each solver backend may use (HiGHS, CBC, CP-SAT)."),
        click.option("--objective", type=click.Choice(["energy", "tradeoff", "carbon", "cost"]), default="energy",
                     show_default=True,
                     help="energy: least energy; tradeoff: the paper's zeta*energy - (1-zeta)*accuracy; carbon, "
                          "cost (solve, with --signals): least kgCO2e or cost, moving work to clean or cheap slots."),
        click.option("--zeta", type=click.FloatRange(0, 1), default=0.5, show_default=True,
                     help="Weight of energy in the tradeoff objective."),
        click.option("--idle/--no-idle", default=False, show_default=True,
                     help="Count idle power of switched-on instances over the horizon (instances with no work are off)."),
        click.option("--min-mean-accuracy", type=click.FloatRange(0, 1), default=None,
                     help="Floor on the token-weighted mean accuracy of the batch."),
        click.option("--strict-range", is_flag=True,
                     help="Refuse predictions outside the token ranges the models were measured on: such a pair is "
                          "not an option, and a query left with none makes the plan infeasible (exit 1, the reason "
                          "names the ranges). Without it such options stay and solve says how many queries rest "
                          "on them."),
        click.option("--formulation", type=click.Choice(["auto", "exact", "aggregate", "decompose"]), default="auto",
                     show_default=True,
                     help="exact: one variable per query and instance (refused where its matrix would have more than "
                          "10 million non-zeros: a few thousand queries with deadlines); aggregate: one MILP per "
                          "deployment, then packing; decompose: priced coupling rows (Lagrangian bound) and the MILP only on the "
                          "nearly tied queries (large batches); auto: exact while small, else decompose."),
    ]
    for o in reversed(opts):
        fn = o(fn)
    return fn


def _extrapolation_line(s: Any) -> str:
    """The line ``solve`` prints when some queries of the plan rest on extrapolated predictions."""
    share = s.extrapolated_energy_share
    energy = "" if share is None else f" ({share:.1%} of the queries' predicted energy)"
    return (f"{s.extrapolated_queries} of {s.assigned} queries{energy} rest on predictions outside the token ranges "
            f"their models were measured on; --strict-range refuses them")


def _dropped_options_line(problem: Any) -> str | None:
    """The line ``solve`` prints when models predicted <= 0 J or s for some options (dropped, so
    a plan never counts them free; ``excluded_invalid_predictions`` in summary.json)."""
    by = problem.excluded_invalid_by
    if not by:
        return None
    where = ", ".join(f"{d} ({n})" for d, n in sorted(by.items(), key=lambda kv: -kv[1])[:3])
    more = f" and {len(by) - 3} more deployments" if len(by) > 3 else ""
    return (f"{problem.excluded_invalid} options dropped, where their models predict <= 0 J or s (outside the models' "
            f"valid domain): {where}{more}")


def _notes_lines(s: Any, problem: Any, echo: Callable[[str], None]) -> None:
    """The lines ``solve`` prints even under --quiet: queries on extrapolated predictions, options dropped."""
    if s.extrapolated_queries:
        echo(_extrapolation_line(s))
    dropped = _dropped_options_line(problem)
    if dropped:
        echo(dropped)


def _check_slot_objective(objective: str, signals: Any, fleet: Any) -> None:
    """``--objective carbon|cost`` needs signals with the objective's column: checked before solving."""
    if objective not in ("carbon", "cost"):
        return
    if signals is None:
        raise DataError(f"--objective {objective}: give --signals FILE with a "
                        f"{'carbon_g_per_kwh' if objective == 'carbon' else 'price_per_kwh'} column per slot")
    from .timeslots import slot_prices

    slot_prices(fleet, signals, objective)


def _signals_line(sig: dict[str, Any]) -> str:
    """The line ``solve`` prints for a plan priced under --signals."""
    n = sig["slots"]
    parts = [f"signals: {sig['total_energy_kwh']:.6g} kWh over {n} slot{'' if n == 1 else 's'} of {sig['slot_s']:g} s"]
    if sig["total_kg_co2e"] is not None:
        parts.append(f"{sig['total_kg_co2e']:.6g} kgCO2e (mean {sig['mean_carbon_g_per_kwh']:.1f} g/kWh)")
    if sig["total_cost"] is not None:
        parts.append(f"cost {sig['total_cost']:.6g}")
    return "  ".join(parts) + (" (planned per slot)" if sig.get("planned_per_slot") else
                               " (the signals price the plan; the objective is unchanged)")


def _workload_argument(fn: Callable[..., Any]) -> Callable[..., Any]:
    """WORKLOAD (a file, or ``-`` for standard input) and ``--workload-format``."""
    fn = click.option("--workload-format", type=click.Choice(["auto", "csv", "jsonl"]), default="auto", show_default=True,
                      help="Format of WORKLOAD: auto goes by the file's suffix (.jsonl/.ndjson: JSONL, else CSV) and, "
                           "for - (standard input), by the first character ({: JSONL, else CSV).")(fn)
    return click.argument("workload", type=click.Path(dir_okay=False, path_type=Path, allow_dash=True))(fn)


def _inputs(workload: Path, fleet_path: Path | None, models_dir: Path | None, workload_format: str = "auto"):
    """The three inputs; WORKLOAD ``-`` is read from standard input (errors name ``<stdin>``)."""
    from .defaults import default_fleet_path
    from .inputs import load_inputs
    from .io import read_workload, read_workload_stream
    from .progress import phase

    fmt = None if workload_format == "auto" else workload_format
    if Path(workload).as_posix().endswith("examples/workload.csv") and not Path(workload).exists():
        from .defaults import example_workload_path  # (an installed energyopt, run outside the source tree)

        raise DataError(f"{workload}: file not found; the example workload energyopt ships is {example_workload_path()}")
    with phase(f"reading {'<stdin>' if str(workload) == '-' else workload}, the fleet and the models"):
        wl = read_workload_stream(sys.stdin.buffer, fmt) if str(workload) == "-" else read_workload(workload, fmt=fmt)
        return load_inputs(wl, fleet_path or default_fleet_path(), models_dir or _default_models())


def _solve_lines(s: Any, quiet: bool, echo: Callable[[str], None]) -> None:
    """solve's summary line and, unless quiet, its details (per LLM and device, padding, signals)."""
    echo(f"status: {s.status}  solver: {s.solver} ({s.formulation})  energy: {s.total_energy_j:.6g} J "
         f"({s.total_energy_kwh:.4f} kWh{', idle counted' if s.idle_counted else ''})  gap: {s.gap:.4%}")
    if quiet:
        return
    echo(f"queries: {s.assigned}  mean accuracy: {s.mean_accuracy:.4f} (token-weighted "
         f"{s.token_weighted_mean_accuracy:.4f})  deadlines met: {s.deadlines_met}/{s.queries_with_deadline}  "
         f"makespan: {s.makespan_s:.1f} s  check: {'ok' if s.check['ok'] else 'FAILED'}")
    for r in s.by_llm_device:
        sizes = "/".join(str(b) for b in r["batch_sizes"])
        echo(f"  {r['llm']:<16} {r['device']:<8} {r['queries']:>7} queries {r['instances']:>3} instances "
             f"at batch {sizes:<6} {r['energy_j']:>14.1f} J")
    if s.padding_energy_j:
        echo(f"empty slots of batched instances until their last query ends: about {s.padding_energy_j:.6g} J "
             "more (predicted, not in the objective; README: Replaying a plan)")
    if s.engine_makespan_s is not None:
        echo(f"on a continuous-batching engine (every refill's prefill stalls every slot): makespan "
             f"{s.engine_makespan_s:.1f} s, deadlines met {s.engine_deadlines_met}/{s.queries_with_deadline} "
             "(simulated: engine_start_s and engine_end_s in assignment.csv; README: Replaying a plan)")
    if s.signals is not None:
        echo(_signals_line(s.signals))


def _solve_to_stdout(sched: Any, s: Any, as_json: bool, quiet: bool, echo: Callable[[str], None]) -> None:
    """``solve -o -``: nothing written to files; stdout gets the assignment CSV (with --json the
    summary instead), stderr the lines solve prints; the exit code as with a folder."""
    from .writers import write_table_csv_stream

    has_plan = not sched.assignment.empty and s.status.has_plan
    if as_json:
        _echo_json(s.to_dict())
    elif has_plan:
        stream = sys.stdout.buffer
        write_table_csv_stream(sched.assignment, stream)
        stream.flush()
    if not has_plan:
        echo(f"status: {s.status}: {sched.message}")
        _notes_lines(s, sched.problem, echo)
        sys.exit(_exit_code_without_plan(s.status))
    if not as_json:
        _solve_lines(s, quiet, echo)
    _notes_lines(s, sched.problem, echo)


@main.command("solve")
@_workload_argument
@_plan_options
@click.option("--out", "-o", "out_dir", type=click.Path(file_okay=False, path_type=Path, allow_dash=True), default=Path("plan"),
              show_default=True,
              help="Directory for assignment.csv and summary.json; - writes no files and prints the assignment CSV "
                   "(with --json the summary) on stdout, the other lines on stderr.")
@click.option("--quiet", "-q", is_flag=True,
              help="Print only the summary line (and the line on extrapolated predictions, if any).")
@click.option("--report", is_flag=True,
              help="Also write OUT/report/: report.html (one self-contained page) and PNGs of energy per LLM and "
                   "device, the timeline and utilisation (per instance, or per deployment at scale or with batches), "
                   "the devices busy per pool over time, deadline slack and the marginal energy cost of accuracy "
                   "(5 extra plans at raised accuracy floors), with the table behind each as CSV.")
@click.option("--signals", "signals_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Signals CSV, one row per time slot (start_s or timestamp, carbon_g_per_kwh and/or price_per_kwh, "
                   "optional pool; or the NESO carbon intensity layout of data/signals/): the plan is priced per "
                   "slot (kWh, kgCO2e, cost in the summary; OUT/slots.csv per slot, LLM and device). It prices the "
                   "plan; the objective stays --objective.")
@click.option("--signals-start", default=None,
              help="ISO 8601 time of the batch start (t = 0) in a --signals file with timestamps "
                   "[default: its first row].")
@_json_opt("the summary (what OUT/summary.json holds, also without a plan)")
@click.option("--distributed", type=click.Choice(["ray", "local"]), default=None,
              help="Plan in --partitions partitions of WORKLOAD (CSV, or Parquet by its suffix), each on a worker that "
                   "keeps its queries' options (ray: Ray actors, pip install energyopt[ray]; local: this process): the "
                   "decomposition, same plan and gap; writes OUT/assignment-part-NNNNN.csv per partition.")
@click.option("--partitions", type=click.IntRange(min=1), default=None,
              help="Partitions of WORKLOAD for --distributed (whole multiples of 32,768 rows) [default: 4].")
@click.option("--address", default=None,
              help="Ray cluster to join with --distributed ray, e.g. ray://HOST:10001 [default: a local Ray].")
@friendly_errors
def solve_cmd(workload: Path, workload_format: str, fleet_path: Path | None, models_dir: Path | None, solver: str,
              time_limit_s: float | None, mip_rel_gap: float, threads: int, objective: str, zeta: float, idle: bool,
              min_mean_accuracy: float | None, strict_range: bool, formulation: str, out_dir: Path, quiet: bool, report: bool,
              signals_path: Path | None, signals_start: str | None, as_json: bool, distributed: str | None,
              partitions: int | None, address: str | None) -> None:
    """Plan a batch of queries (CSV or JSONL workload) at least energy.

    \b
    Each query goes to one (LLM, device instance) meeting its min_accuracy; queries on an instance
    run one after another from t = 0 and each ends by its deadline_s and the fleet's horizon.
    Writes OUT/assignment.csv (one row per query) and OUT/summary.json (totals, status, bound,
    gap).

    \b
    Exit codes:
      0    a plan
      1    no plan exists (proven infeasible; summary.json says why)
      2    bad input or an unwritable OUT (one line; checked before solving)
      3    no plan found within the limits (a time-out, or a backend that ended without one;
           summary.json has status no_solution or error)
      130  interrupted (Ctrl-C, SIGINT)
      143  terminated (SIGTERM, e.g. from `timeout`)
    """
    from .methods import Limits
    from .plan import plan
    from .progress import phase

    # one budget for the whole command from the process's start, --report included
    limits = Limits.since_process_start(time_limit_s, mip_rel_gap, threads)
    if (distributed, partitions, address) != (None, None, None):
        _solve_distributed(workload, workload_format, fleet_path, models_dir, solver, limits, objective, idle,
                           min_mean_accuracy, strict_range, formulation, out_dir, quiet, report, signals_path, as_json,
                           distributed, partitions, address)
        return
    wl, fl, fm = _inputs(workload, fleet_path, models_dir, workload_format)
    signals = _signals_arg(signals_path, signals_start, fl)
    to_stdout = str(out_dir) == "-"  # -o -: no files; the assignment CSV (with --json the summary) on stdout
    if to_stdout and report:
        raise DataError("--report writes a folder of files: give --out DIR, not -")
    _check_slot_objective(objective, signals, fl)
    if not to_stdout:
        _writable_dir(out_dir)
    _report_dir_free(out_dir, report)
    say = progress_log.debug if quiet else _progress  # -q: progress only at -vv
    keep_s = 0.0  # --report: the plans leave the plots and tables their time
    if report:
        from .report import report_reserve_s

        keep_s = report_reserve_s(time_limit_s)
    sched = plan(wl, fl, fm, solver=solver, objective=objective, zeta=zeta, idle=idle, min_mean_accuracy=min_mean_accuracy,
                 strict_range=strict_range, limits=limits.less(keep_s), formulation=formulation, progress=say,
                 signals=signals)
    if keep_s:  # the summary records the limit asked for, not the plan's share of it
        sched = dataclasses.replace(sched, settings={**sched.settings, "time_limit_s": time_limit_s})
    s = sched.summary()
    # with --json or -o - stdout holds one thing (the summary, or the assignment): the lines below go to stderr
    echo = (lambda line: click.echo(line, err=True)) if as_json or to_stdout else click.echo
    if to_stdout:
        _solve_to_stdout(sched, s, as_json, quiet, echo)
        return
    _clear_old_report(out_dir)
    stale_slots = out_dir / "slots.csv"
    if stale_slots.is_file() and (signals is None or not s.status.has_plan):  # an earlier run's, not this plan's
        stale_slots.unlink()
    if sched.assignment.empty or not s.status.has_plan:
        stale = out_dir / "assignment.csv"
        if stale.exists():  # an earlier run's plan must not pass for this one's
            stale.unlink()
        path = sched.write_summary(out_dir, s)
        if as_json:
            _echo_json(s.to_dict())
        echo(f"status: {s.status}: {sched.message}")
        echo(f"wrote {path} (no assignment)")
        _notes_lines(s, sched.problem, echo)
        sys.exit(_exit_code_without_plan(s.status))
    with phase(f"writing the plan of {len(sched.assignment):,} queries to {out_dir}"):
        paths = sched.write(out_dir, s)
    if as_json:
        _echo_json(s.to_dict())
    else:
        _solve_lines(s, quiet, click.echo)
    if not quiet and not as_json:
        click.echo(f"wrote {', '.join(str(p) for p in paths[:-1])} and {paths[-1]}")
    _notes_lines(s, sched.problem, echo)
    if report:
        from .report import write_report
        from .sweep import accuracy_cost

        # the curve's plans raise a mean-accuracy floor, which plans under power caps do not take yet: the plan alone
        more = {"steps": 0} if fl.has_power_caps else {}
        with phase("report: plans at raised accuracy floors"):
            curve = accuracy_cost(sched, limits=limits.less(keep_s), progress=say, solver=solver, formulation=formulation,
                                  idle=idle, strict_range=strict_range, **more)
        with phase("report: plots and tables"):
            written = write_report(sched, out_dir, curve, progress=say)
        echo(f"wrote the report: {written[0]} and {len(written) - 1} plots and tables in {written[0].parent}")


def _report_dir_free(out_dir: Path, report: bool) -> None:
    """--report writes OUT/report/: a file there is bad input."""
    if report and (out_dir / "report").exists() and not (out_dir / "report").is_dir():
        raise DataError(f"--out {out_dir}: {out_dir / 'report'} exists and is not a directory (--report writes there)")


def _solve_distributed(workload: Path, workload_format: str, fleet_path: Path | None, models_dir: Path | None,
                       solver: str, limits: Any, objective: str, idle: bool, min_mean_accuracy: float | None,
                       strict_range: bool, formulation: str, out_dir: Path, quiet: bool, report: bool,
                       signals_path: Path | None, as_json: bool, distributed: str | None, partitions: int | None,
                       address: str | None) -> None:
    """solve --distributed: the options it takes checked (one line, exit 2), then the plan."""
    from .defaults import default_fleet_path
    from .distributed import plan_distributed

    if distributed is None:
        raise DataError(f"{'--partitions' if partitions is not None else '--address'}: only with --distributed ray|local")
    if address is not None and distributed != "ray":
        raise DataError("--address: only with --distributed ray")
    refused = [name for name, given in (("--objective " + objective, objective != "energy"),
                                        ("--signals", signals_path is not None), ("--report", report),
                                        ("--json", as_json), ("--out -", str(out_dir) == "-"),
                                        ("--formulation " + formulation, formulation not in ("auto", "decompose")),
                                        ("WORKLOAD -", str(workload) == "-"),
                                        ("--workload-format jsonl", workload_format == "jsonl"))
               if given]
    if refused:
        raise DataError(f"--distributed: {refused[0]} is not supported with it yet (it plans energy with the "
                        "decomposition, from a CSV or Parquet file, into a folder)")
    _writable_dir(out_dir)
    res = plan_distributed(workload, fleet_path or default_fleet_path(), models_dir or _default_models(), out_dir,
                           partitions=partitions or 4, executor=distributed, address=address,
                           workload_format=None if workload_format == "auto" else workload_format, idle=idle,
                           min_mean_accuracy=min_mean_accuracy, strict_range=strict_range, solver=solver, limits=limits,
                           progress=progress_log.debug if quiet else _progress)
    t = res.totals
    if not res.status.has_plan:
        click.echo(f"status: {res.status}: {res.message}")
        click.echo(f"wrote {res.summary_path} (no assignment)")
        sys.exit(_exit_code_without_plan(res.status))
    click.echo(f"status: {res.status}  solver: decompose, distributed over {res.partitions} partitions  energy: "
               f"{t['total_energy_j']:.6g} J ({t['total_energy_j'] / 3.6e6:.4f} kWh{', idle counted' if idle else ''})  "
               f"gap: {res.gap:.4%}")
    if not quiet:
        click.echo(f"queries: {res.queries}  check: ok (per partition, and across them)  "
                   f"wrote {len(res.files)} files {res.files[0]} … {res.files[-1]} and {res.summary_path} in {out_dir}")


@main.command("compare")
@_workload_argument
@_plan_options
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the random baseline.")
@click.option("--equal-accuracy/--no-equal-accuracy", default=True, show_default=True,
              help="Also solve, for each baseline, the least-energy plan at no lower token-weighted accuracy.")
@click.option("--out", "-o", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write the table to this directory as compare.csv and compare.json (a list of rows) "
                   "[default: write nothing].")
@click.option("--signals", "signals_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Signals CSV (as for solve): every row, the plan and each baseline, is also priced per time "
                   "slot, in kgCO2e (kg_co2e) and cost where the file has carbon and price, with the plan at "
                   "the baseline's accuracy too. Needed by --objective carbon|cost, which plans the optimal rows "
                   "for the least kgCO2e (cost) per slot; with energy or tradeoff it only prices the plans.")
@click.option("--signals-start", default=None,
              help="ISO 8601 time of the batch start (t = 0) in a --signals file with timestamps "
                   "[default: its first row].")
@_json_opt("the table (a list of rows, as OUT/compare.json)")
@friendly_errors
def compare_cmd(workload: Path, workload_format: str,
                fleet_path: Path | None, models_dir: Path | None, solver: str, time_limit_s: float | None,
                mip_rel_gap: float, threads: int, objective: str, zeta: float, idle: bool, min_mean_accuracy: float | None,
                strict_range: bool, formulation: str, seed: int, equal_accuracy: bool, out_dir: Path | None,
                signals_path: Path | None, signals_start: str | None, as_json: bool) -> None:
    """The optimal plan next to today's routing rules: energy, accuracy, deadlines, makespan.

    \b
    Baselines: round-robin, random (seeded), most accurate LLM on its fastest device, fastest
    option per query, and each LLM alone. With --equal-accuracy (default) each baseline also gets
    the optimiser's plan at its token-weighted accuracy or better, and the energy saved.
    With --out the table is also written as OUT/compare.csv and OUT/compare.json (written even
    when the optimal plan has none: its row's status says why). With --signals every row also
    gets kg_co2e and/or cost, priced per time slot as solve prices its plan. With --objective
    carbon|cost (and --signals) the optimal rows are planned for the least kgCO2e (cost) and
    saved is the share of each baseline's kgCO2e (cost) saved at equal or better accuracy.
    """
    from .compare import compare

    wl, fl, fm = _inputs(workload, fleet_path, models_dir, workload_format)
    signals = _signals_arg(signals_path, signals_start, fl)
    _check_slot_objective(objective, signals, fl)
    if out_dir is not None:
        _writable_dir(out_dir)
    table = compare(wl, fl, fm, solver=solver, objective=objective, zeta=zeta, idle=idle,
                    min_mean_accuracy=min_mean_accuracy, strict_range=strict_range, time_limit_s=time_limit_s,
                    mip_rel_gap=mip_rel_gap, threads=threads, formulation=formulation, seed=seed, equal_accuracy=equal_accuracy,
                    progress=_progress, signals=signals)
    if as_json:
        _echo_json(_records(table))
    else:
        click.echo(_fmt_table(table, {"energy_kwh": ".4f", "accuracy": ".4f", "makespan_s": ".1f",
                                      "optimal_same_acc_kwh": ".4f", "saved": ".1%", "gap": ".3%",
                                      "kg_co2e": ".6g", "cost": ".6g", "optimal_same_acc_kg_co2e": ".6g",
                                      "optimal_same_acc_cost": ".6g"}))
        if objective in ("carbon", "cost"):
            col = "kg_co2e" if objective == "carbon" else "cost"
            click.echo(f"(minimised: {col}: the optimal rows planned for the least {col} per time slot under "
                       f"--signals; saved: the share of each baseline's {col} saved at equal or better accuracy; "
                       "the baselines priced per slot)")
        elif signals is not None:
            click.echo("(kg_co2e and cost: each row priced per time slot under --signals; the plans are still "
                       "planned for the objective, not for carbon or cost)")
    if out_dir is not None:
        from .writers import write_json, write_table_csv

        csv_p, json_p = out_dir / "compare.csv", out_dir / "compare.json"
        write_table_csv(table, csv_p)
        write_json(json_p, _records(table))
        click.echo(f"wrote {csv_p} and {json_p}", err=as_json)
    from .schema import Status

    status = Status(table["status"].iloc[0])  # the optimal plan's (the first row)
    if not status.has_plan:
        sys.exit(_exit_code_without_plan(status))


@main.command("sweep")
@_workload_argument
@click.option("--vary", required=True,
              type=click.Choice(["min-mean-accuracy", "zeta", "deadline-scale", "deadline-window", "power-cap"]),
              help="What the series varies: the batch's token-weighted accuracy floor, the trade-off weight zeta "
                   "(objective tradeoff), a factor on every query's deadline_s, the batch's completion window in "
                   "hours (deadline_s = min(own, window), horizon = window), or --pool's power_cap_w in W.")
@click.option("--values", default=None,
              help="Comma-separated values [default: accuracy: 7 floors from the unconstrained plan's accuracy to "
                   "the most reachable; zeta: 0,0.1,...,1; deadline-scale: 0.5,0.75,1,1.5,2,4; deadline-window "
                   "[h]: 1,2,4,8,12,24; power-cap [W]: none, give them].")
@click.option("--pool", default=None, help="The pool whose power_cap_w --vary power-cap sweeps (a fleet pool name).")
@click.option("--site", default=None, help="The site whose power_cap_w --vary power-cap sweeps (a fleet [sites] name).")
@_plan_options
@click.option("--out", "-o", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("sweep"),
              show_default=True, help="Directory for sweep.csv and sweep.png.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the random baseline.")
@click.option("--baselines/--no-baselines", default=True, show_default=True,
              help="Price round-robin, random, fastest, most-accurate and each LLM alone, drawn as points.")
@click.option("--signals", "signals_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Signals CSV (as for solve): needed by --objective carbon|cost (deadline-scale, deadline-window "
                   "and power-cap series); every plan and baseline is also priced per time slot (kg_co2e, cost).")
@click.option("--signals-start", default=None,
              help="ISO 8601 time of the batch start (t = 0) in a --signals file with timestamps "
                   "[default: its first row].")
@friendly_errors
def sweep_cmd(workload: Path, workload_format: str, vary: str, values: str | None, pool: str | None, site: str | None,
              fleet_path: Path | None, models_dir: Path | None,
              solver: str, time_limit_s: float | None, mip_rel_gap: float, threads: int, objective: str, zeta: float, idle: bool,
              min_mean_accuracy: float | None, strict_range: bool, formulation: str, out_dir: Path, seed: int,
              baselines: bool, signals_path: Path | None, signals_start: str | None) -> None:
    """Solve a series of plans and draw the energy/accuracy (or energy/deadline) front.

    \b
    Writes OUT/sweep.csv (one row per plan and per baseline: energy [J, kWh], token-weighted
    accuracy, deadlines and floors met, makespan, gap, whether the point is on the Pareto front)
    and OUT/sweep.png. Points without a plan (an accuracy floor out of reach, deadlines too
    tight, a power cap too low) are kept in the CSV with their status and reason. Options
    other than the swept one hold for every point.

    \b
    --vary deadline-window: each value W [h] is the batch's completion window, one plan per W:
    every query's deadline_s is min(its own, W) and the fleet's horizon is W. With --objective
    carbon --signals FILE this shows the kgCO2e a longer window saves.
    --vary power-cap --pool NAME --values W,...: the pool's power_cap_w [W] per plan (planned
    per time slot: the signals' slots, else hours); --site NAME sweeps a site's cap instead.
    With --signals every plan and baseline also gets kg_co2e and/or cost, priced per time slot
    as solve prices its plan (baselines on the unswept workload and fleet).
    """
    from .report import plot_sweep
    from .sweep import sweep
    from .writers import write_atomic

    vals = None
    if values is not None:
        try:
            vals = [float(v) for v in values.split(",") if v.strip()]
        except ValueError:
            raise click.BadParameter(f"expected comma-separated numbers, got {values!r}", param_hint="--values") from None
    wl, fl, fm = _inputs(workload, fleet_path, models_dir, workload_format)
    signals = _signals_arg(signals_path, signals_start, fl)
    _check_slot_objective(objective, signals, fl)
    _writable_dir(out_dir)
    table = sweep(wl, fl, fm, vary, vals, baselines=baselines, seed=seed, progress=_progress, pool=pool, site=site,
                  signals=signals, solver=solver, objective=objective, zeta=zeta, idle=idle, min_mean_accuracy=min_mean_accuracy,
                  strict_range=strict_range, time_limit_s=time_limit_s, mip_rel_gap=mip_rel_gap, threads=threads,
                  formulation=formulation)
    csv_p = out_dir / "sweep.csv"
    name = "<stdin>" if str(workload) == "-" else workload.name
    png_p = plot_sweep(table, out_dir / "sweep.png", title=f"{name}: {len(wl)} queries, sweep over {vary}")
    write_atomic(csv_p, table.to_csv(index=False, float_format="%.9g"))
    empty = [c for c in ("kg_co2e", "cost", "engine_deadlines_met") if table[c].isna().all()]
    click.echo(_fmt_table(table.drop(columns=["vary", "total_energy_j", "mean_accuracy", "total_s", "reason", *empty]),
                          {"value": ".4g", "total_energy_kwh": ".5f", "token_weighted_mean_accuracy": ".4f",
                           "makespan_s": ".1f", "gap": ".3%", "deadlines_met": ".0f", "engine_deadlines_met": ".0f",
                           "accuracy_floors_met": ".0f", "kg_co2e": ".6g", "cost": ".6g"}))
    for _, r in table[table["reason"].astype(bool)].iterrows():
        click.echo(f"{vary} = {r['value']:g}: {r['status']}: {r['reason']}")
    click.echo(f"wrote {csv_p} and {png_p}")


@main.command("study")
@click.argument("study_toml", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: a pool of --workers processes; ray: Ray tasks of one CPU each (pip install energyopt[ray]).")
@click.option("--address", default=None,
              help="Ray cluster to join, e.g. ray://HOST:10001 [default: a local Ray of --workers CPUs].")
@click.option("--out", "-o", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("study"),
              show_default=True, help="Directory for study.csv and plans/<key>/.")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="Plans run at once (local processes, or the CPUs of a local Ray).")
@click.option("--retries", type=click.IntRange(min=0), default=2, show_default=True,
              help="Times a plan whose task raised or whose worker died is run again before its row says failed.")
@friendly_errors
def study_cmd(study_toml: Path, executor: str, address: str | None, out_dir: Path, workers: int, retries: int) -> None:
    """Run a study: the plans a TOML file declares (a base and axes, or a list), as tasks.

    \b
    Writes OUT/study.csv (one row per plan: its options, status, energy [J, kWh], kgCO2e and cost
    under signals, accuracy, objective, bound, gap, wall time [s], input hash), rewritten as each
    plan ends, and each plan's assignment.csv and summary.json in OUT/plans/<key>/. A re-run
    skips the plans already in study.csv (keyed by the SHA-256 of their input files and options);
    failed ones run again. The study file and every file it names are checked before any plan
    runs (exit 2).

    \b
    Exit codes:
      0    every plan ran (infeasible ones are rows with their status)
      2    bad input: the study file, a file it names, Ray missing or unreachable
      3    some plans failed on every attempt (rows with status failed and the reason)
    """
    from .study import StudyStatus, read_study, run_study

    if address is not None and executor != "ray":
        raise DataError("--address: only with --executor ray")
    study = read_study(study_toml)
    if executor == "ray":
        from .executors import _import_ray

        _import_ray()
    _writable_dir(out_dir)
    table = run_study(study, out_dir, executor=executor, workers=workers, retries=retries, address=address,
                      progress=_progress)
    counts = table["status"].value_counts()
    click.echo(f"study {study.name}: {len(table)} plans: "
               + ", ".join(f"{n} {st}" for st, n in counts.items()) + f"; wrote {out_dir / 'study.csv'}")
    failed = int(counts.get(StudyStatus.FAILED.value, 0))
    if failed:
        sys.exit(EXIT_NO_PLAN)


def _recorded_inputs(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--workload, --fleet and --models of a command on a plan directory (explain, replay): the
    inputs the plan was made from, as its summary.json records them unless given."""
    fn = click.option("--models", "models_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                      help="Models directory [default: as recorded].")(fn)
    fn = click.option("--fleet", "fleet_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                      help="Fleet TOML [default: as recorded].")(fn)
    return click.option("--workload", type=click.Path(dir_okay=False, path_type=Path, allow_dash=True), default=None,
                        help="Workload the plan was made from; - reads it from stdin (CSV or JSONL by its first "
                             "character), refused unless its SHA-256 is the one PLAN_DIR/summary.json records "
                             "[default: as recorded in PLAN_DIR/summary.json].")(fn)


def _recorded_workload(workload: Path | None) -> Any:
    """--workload of explain and replay: the path, or for ``-`` the table read from stdin (whose
    SHA-256 the plan's loader checks against the recorded one)."""
    if workload is None or str(workload) != "-":
        return workload
    from .io import read_workload_stream

    return read_workload_stream(sys.stdin.buffer)


@main.command("explain")
@click.argument("plan_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("query_id")
@_recorded_inputs
@click.option("--json", "as_json", is_flag=True, help="Print the explanation as JSON.")
@friendly_errors
def explain_cmd(plan_dir: Path, query_id: str, workload: Path | None, fleet_path: Path | None,
                models_dir: Path | None, as_json: bool) -> None:
    """Why QUERY_ID went where it did in the plan in PLAN_DIR.

    \b
    Lists every (LLM, device) of the fleet with the query's predicted energy and runtime there,
    what rules it out (context window, accuracy floor, deadline or horizon, capacity of the plan's
    instances, the batch's mean-accuracy floor), and the energy the plan would gain (+) or save
    (-) by moving it there, all other queries kept (shown for ruled-out options too: what the
    constraint that rules them out costs for this query).
    """
    import json as _json

    from .explain import explain_plan_dir

    ex = explain_plan_dir(plan_dir, query_id, workload=_recorded_workload(workload), fleet=fleet_path,
                          models=models_dir)
    if as_json:
        click.echo(_json.dumps(ex.to_dict(), indent=2))
        return
    qi = ex.query
    dl = "none" if qi["deadline_s"] is None else f"{qi['deadline_s']:g} s"
    click.echo(f"query {qi['query_id']}: {qi['input_tokens']} input + {qi['output_tokens']} output tokens, "
               f"accuracy floor {qi['min_accuracy']:g}, deadline {dl}"
               + (f", released at {qi['release_s']:g} s" if qi["release_s"] else ""))
    click.echo(f"plan: {qi['llm']} on {qi['device']} instance {qi['instance']} lane {qi['lane']} of {qi['batch_size']} "
               f"({qi['queries_on_its_instance']} queries on the instance), {qi['start_s']:.2f}-{qi['end_s']:.2f} s, "
               f"{qi['energy_j']:.6g} J")
    t = ex.options.rename(columns={"delta_energy_j": "delta_j_if_moved"})
    t = t.rename(columns={"batch_size": "batch"})
    cols = ["llm", "device", "batch", "accuracy", "energy_j", "runtime_s", "verdict", "delta_j_if_moved", "where"]
    click.echo(_fmt_table(t[cols], {"accuracy": ".4f", "energy_j": ".6g", "runtime_s": ".4g", "delta_j_if_moved": "+.6g"}))
    for r in t.itertuples():
        if r.reasons:
            click.echo(f"  {r.llm}/{r.device}{'' if r.batch == 1 else f'/b{r.batch}'}: {r.reasons}")
    for n in ex.notes:
        click.echo(n)


@main.command("replay")
@click.argument("plan_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--device", type=click.Choice(["cuda", "cpu"]), default="cuda", show_default=True,
              help="Where to run the plan: an NVIDIA GPU metered by NVML, or a CPU metered by RAPL.")
@click.option("--pool", default=None, help="Replay the plan's instances on this pool [default: the plan's only pool].")
@click.option("--gpu", "gpu_index", type=click.IntRange(min=0), default=0, show_default=True,
              help="Which GPU (NVML index) to run on and meter.")
@click.option("--dtype", type=click.Choice(["bf16", "fp16", "fp32"]), default="bf16", show_default=True,
              help="Weights' precision (the characterization's: bf16 on GPU).")
@click.option("--attention", type=click.Choice(["auto", "triton", "reference"]), default="auto", show_default=True,
              help="Decode attention over each slot's own tokens: a Triton kernel (auto on a GPU) or a masked "
                   "torch reference that reads the whole cache (auto on a CPU).")
@_recorded_inputs
@click.option("--out", "-o", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory for replay_queries.csv, replay_instances.csv, replay_steps.csv and replay.json "
                   "[default: PLAN_DIR/replay].")
@friendly_errors
def replay_cmd(plan_dir: Path, device: str, pool: str | None, gpu_index: int, dtype: str, attention: str,
               workload: Path | None, fleet_path: Path | None, models_dir: Path | None, out_dir: Path | None) -> None:
    """Run the plan in PLAN_DIR on this machine and compare measured with predicted energy and time.

    \b
    Each instance of the pool runs as a continuous-batching engine whose slots are the plan's
    lanes: a slot runs its lane's queries in the plan's order, each a prefill of its prompt and
    then one token per decode step of the whole instance (CUDA graph); a finished query's slot
    takes the lane's next query at once, once the device has run the steps queued (as a serving
    engine reads the ended query's token). The LLMs are the characterization's builds (published
    shapes, random weights, output length forced). Instances run one after another, each measured
    apart (set-up and one prefill of every prompt length first, outside the measurement); NVML's
    energy counter is read every 5 ms and interpolated between its updates. A query is charged its
    prefill and its share of each decode step it ran in: 1/b of the part every slot shares and of
    the rest in proportion to its context (both parts fitted from the steps' durations); the
    shares of empty slots are the instance's padding. Prints per instance and in total the
    predicted (the plan's engine times where it gives them) and measured energy and makespan and
    the per-query errors.
    """
    out = out_dir if out_dir is not None else plan_dir / "replay"
    _writable_dir(out)
    from .replay.run import replay_plan_dir

    tables, info, written = replay_plan_dir(
        plan_dir, device=device, pool=pool, out=out, workload=_recorded_workload(workload), fleet=fleet_path,
        models=models_dir,
        dtype=dtype, gpu_index=gpu_index, attention=attention, progress=_progress)
    t = tables.instances[["llm", "batch_size", "instance", "queries", "predicted_energy_j", "measured_energy_j",
                          "energy_error", "predicted_makespan_s", "measured_makespan_s", "makespan_error",
                          "simulated_makespan_s", "simulated_makespan_error"]]
    click.echo(_fmt_table(t.rename(columns={"batch_size": "batch"}),
                          {"predicted_energy_j": ".0f", "measured_energy_j": ".0f", "energy_error": "+.1%",
                           "predicted_makespan_s": ".2f", "measured_makespan_s": ".2f", "makespan_error": "+.1%",
                           "simulated_makespan_s": ".2f", "simulated_makespan_error": "+.1%"}))
    click.echo(f"total: {info['queries']} queries, energy {info['measured_energy_j']:.0f} J measured vs "
               f"{info['predicted_energy_j']:.0f} J predicted ({info['energy_error']:+.1%}); makespan "
               f"{info['measured_makespan_s']:.2f} s vs {info['predicted_makespan_s']:.2f} s ({info['makespan_error']:+.1%}); "
               f"per query |error| median energy {info['query_energy_error_median_abs']:.1%}, runtime "
               f"{info['query_runtime_error_median_abs']:.1%}; deadlines met {info['deadlines_met_measured']}/"
               f"{info['queries_with_deadline']} measured ({info['deadlines_met_predicted']} predicted)")
    if not math.isnan(info["simulated_makespan_s"]):
        click.echo(f"engine simulation of the plan's lanes (every prefill stalls every slot): energy "
                   f"{info['simulated_energy_j']:.0f} J ({info['simulated_energy_error']:+.1%}), makespan "
                   f"{info['simulated_makespan_s']:.2f} s ({info['simulated_makespan_error']:+.1%}), per query |error| "
                   f"median runtime {info['query_runtime_error_median_abs_simulated']:.1%}")
    if info["queries_not_replayed"]:
        click.echo(f"{info['queries_not_replayed']} queries of the plan are on other pools and were not replayed")
    click.echo(f"wrote {written}/replay_queries.csv, replay_instances.csv, replay_steps.csv and replay.json")


@main.command("solvers")
def solvers_cmd() -> None:
    """List the solver backends installed here."""
    from .solvers import SOLVER_NAMES, available_solvers

    have = set(available_solvers())
    for name in SOLVER_NAMES:
        click.echo(f"{name:<6} {'available' if name in have else 'not installed'}")


# --------------------------------------------------------------------------------------------
# characterize
# --------------------------------------------------------------------------------------------
@main.command("characterize")
@click.option("--llm", "llms", multiple=True,
              help="Catalog LLM to build with random weights (repeat for several): "
                   + ", ".join(n for n in CATALOG if n != "tiny-test") + ".")
@click.option("--model-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="A local Hugging Face model directory to measure instead of a catalog LLM.")
@click.option("--device", type=click.Choice(["cuda", "cpu"]), default="cuda", show_default=True,
              help="Where to measure: an NVIDIA GPU metered by NVML, or the CPU metered by RAPL (or --cpu-power-w).")
@click.option("--gpu", "gpu_index", type=click.IntRange(min=0), default=0, show_default=True,
              help="Which GPU (NVML index) to run on and meter.")
@click.option("--points", default=None,
              help="Design size N (thinned default design) or explicit points like 512x128,1024x64 "
                   "[default: the full design, input 8-4096 x output 8-1024].")
@click.option("--holdout", type=click.IntRange(min=0), default=10, show_default=True,
              help="Extra held-back points off the design grid (split=holdout), to check the fit.")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True,
              help="Measurements of every point (each a row; their spread is the fit's repeat_spread).")
@click.option("--min-window-s", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Shorter runs are repeated back to back inside one window of at least this length.")
@click.option("--max-input-tokens", type=click.IntRange(min=1), default=4096, show_default=True,
              help="Longest prompt of the design [tokens]; points beyond an LLM's context window are clipped.")
@click.option("--max-output-tokens", type=click.IntRange(min=1), default=1024, show_default=True,
              help="Longest generated output of the design [tokens].")
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
@click.option("--idle-seconds", type=click.FloatRange(min=0.5), default=5.0, show_default=True,
              help="Seconds the idle power (LLM loaded, nothing running) is measured for before an LLM's runs; "
                   "the above-idle energy subtracts it.")
@click.option("--batch-sizes", default="1", show_default=True,
              help="Batch sizes to measure every point at, like 1,8,32,64,128: b identical queries run together "
                   "(one prefill, then decode steps of the whole batch); points whose KV cache and weights do not "
                   "fit in device memory are skipped.")
@click.option("--decode-attention", type=click.Choice(["grouped", "sdpa", "ragged"]), default="grouped", show_default=True,
              help="grouped: each KV head's cache is read once for the query heads that share it (as serving "
                   "engines do); sdpa: transformers' own path, which copies K and V out to every query head; "
                   "ragged: the engine `energyopt replay` runs (a prefill per query, decode attention over each "
                   "query's own tokens), so that models fitted on the rows predict a replay (use its own --out file).")
@click.option("--out", "-o", "out_csv", type=click.Path(path_type=Path), default=None,
              help="CSV to append rows to (created if missing; rows already there are skipped; a file, not -: "
                   "a run resumes from it); with --campaign the campaign's folder.  [required]")
@click.option("--campaign", "campaign_toml", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A campaign file (LLMs x batch sizes x device kinds, README: Characterization campaigns): its "
                   "tasks run on the nodes that have each device kind, rows merged into OUT/KIND.csv.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="With --campaign: local: a pool of --workers processes on this machine; ray: Ray tasks, each "
                   "asking for its device kind's resource and GPUs (pip install energyopt[ray]).")
@click.option("--address", default=None,
              help="With --executor ray: the Ray cluster to join, e.g. ray://HOST:10001 or auto [default: a local Ray].")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="With --campaign: tasks run at once (local processes, or the CPUs of a local Ray).")
@click.option("--retries", type=click.IntRange(min=0), default=2, show_default=True,
              help="With --campaign: times a task that raised or whose worker died runs again before it is failed.")
@click.option("--dry-run", is_flag=True, default=False,
              help="Run the whole measurement loop without torch or a GPU: simulated runtimes on a virtual clock and "
                   "a constant power, rows labelled energy_source=dry_run (to test a set-up, never to fit).")
@friendly_errors
def characterize_cmd(llms: tuple[str, ...], model_dir: Path | None, device: str, gpu_index: int,
                     points: str | None, holdout: int, repeats: int, min_window_s: float,
                     max_input_tokens: int, max_output_tokens: int, dtype: str | None,
                     device_name: str | None, threads: int | None, cpu_power_w: float | None,
                     cpu_idle_w: float | None, time_budget_s: float | None, idle_seconds: float,
                     batch_sizes: str, decode_attention: str, out_csv: Path | None, campaign_toml: Path | None,
                     executor: str, address: str | None, workers: int, retries: int, dry_run: bool) -> None:
    """Measure runtime and energy of LLM inference over a design of token counts (or run a campaign).

    \b
    GPU: NVML's energy counter of the GPU used (nvidia-ml-py), plus RAPL CPU package energy where
    readable. CPU: RAPL where readable, otherwise --cpu-power-w times the runtime, labelled
    energy_source=estimate. Catalog LLMs are built from their published configurations with
    random weights (runtime and energy depend on shapes and token counts, not weight values);
    the KV cache is on and the output length is forced. With --batch-sizes each point is also run
    as a batch of b identical queries: the row records the whole batch's runtime_s and energy_j
    and energy_per_query_j = energy_j / b. Rows are appended as they are measured, with provenance
    (device name, driver, library versions, dtype, date); an interrupted sweep resumes where it
    stopped.

    \b
    With --campaign CAMPAIGN.toml, --out is a folder: each (LLM, device kind) of the file (or each
    batch size too, split = "batch_size") runs as a task on a node with that device kind (Ray
    resources named by it), writing OUT/parts/KIND/*.csv; the rows merge into OUT/KIND.csv, each
    once, and OUT/campaign.csv has a row per task. A re-run skips complete tasks and the rows
    already merged. Exit codes: 0 every task complete or partial (time budget; run again to
    resume), 2 bad input (the campaign file, Ray missing or no node with a kind), 3 some tasks
    failed on every attempt.
    """
    ctx = click.get_current_context()
    given = [p for p in ctx.command.params
             if p.name and ctx.get_parameter_source(p.name) == click.core.ParameterSource.COMMANDLINE]
    if out_csv is None:
        raise DataError("--out is required (a CSV; with --campaign a folder)")
    if str(out_csv) == "-":
        raise DataError("--out -: characterize appends to its CSV and resumes from the rows there, which stdout "
                        "cannot do; give a file (then `energyopt fit FILE`, or `cat FILE | energyopt fit -`)")
    if campaign_toml is not None:
        measure = [p for p in given if p.name not in ("campaign_toml", "out_csv", "executor", "address", "workers",
                                                      "retries", "dry_run")]
        if measure:
            raise DataError(f"--campaign: give {measure[0].opts[0]} in the campaign file, not on the command line")
        _characterize_campaign(campaign_toml, out_csv, executor, address, workers, retries, dry_run)
        return
    campaign_only = [p for p in given if p.name in ("executor", "address", "workers", "retries")]
    if campaign_only:
        raise DataError(f"{campaign_only[0].opts[0]}: only with --campaign")
    from .characterize.orchestrate import characterize

    if out_csv.is_dir():
        raise DataError(f"--out {out_csv}: a folder; without --campaign --out is a CSV file")
    _writable_dir(out_csv.parent)
    characterize(
        llms=list(llms), model_dir=model_dir, device=device, gpu_index=gpu_index, points=points,
        holdout=holdout, repeats=repeats, min_window_s=min_window_s, max_input_tokens=max_input_tokens,
        max_output_tokens=max_output_tokens, dtype=dtype, device_name=device_name, threads=threads,
        cpu_power_w=cpu_power_w, cpu_idle_w=cpu_idle_w, time_budget_s=time_budget_s,
        idle_seconds=idle_seconds, out_csv=out_csv, progress=_progress,
        batch_sizes=batch_sizes, decode_attention=decode_attention, dry_run=dry_run,
    )


def _characterize_campaign(campaign_toml: Path, out_dir: Path, executor: str, address: str | None, workers: int,
                           retries: int, dry_run: bool) -> None:
    """``characterize --campaign``: check the file, run its tasks, print the task table's counts."""
    from .campaign import TaskStatus, read_campaign, run_campaign

    if address is not None and executor != "ray":
        raise DataError("--address: only with --executor ray")
    campaign = read_campaign(campaign_toml, dry_run=dry_run)
    if executor == "ray":
        from .executors import _import_ray

        _import_ray()
    _writable_dir(out_dir)
    rows = run_campaign(campaign, out_dir, executor=executor, workers=workers, retries=retries, address=address,
                        progress=_progress)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    files = [str(out_dir / f"{kind}.csv") for kind in campaign.kinds if (out_dir / f"{kind}.csv").is_file()]
    click.echo(f"campaign {campaign.name}: {len(rows)} tasks: " + ", ".join(f"{n} {st}" for st, n in counts.items())
               + f"; wrote {', '.join([*files, str(out_dir / 'campaign.csv')])}")
    if counts.get(TaskStatus.PARTIAL.value):
        click.echo("partial tasks stopped at their time budget: run the same command again to resume them", err=True)
    if counts.get(TaskStatus.FAILED.value):
        sys.exit(EXIT_NO_PLAN)


if __name__ == "__main__":  # pragma: no cover
    main()
