"""Studies: many plans declared in one TOML file, run as tasks, gathered into one tidy table.

A study file has a ``[base]`` table (the options of one plan, as ``solve`` takes them) and either
``[axes]`` (lists of values; the plans are their cross product over the base) or ``[[plans]]``
(an explicit list of tables, each overriding the base)::

    [base]
    workload = "workload.csv"     # paths relative to the study file
    fleet = "fleet.toml"          # default: the shipped fleet; models: the shipped models/
    queries = 50                  # only the first 50 queries of the workload
    threads = 1                   # solver threads per plan (one task per core)

    [axes]
    min_mean_accuracy = [0.6, 0.7]
    deadline_scale = [0.5, 1.0, 2.0]

Each plan is keyed by the SHA-256 of its inputs (the bytes of its workload, fleet, model and
signals files, and its options): ``OUT/study.csv`` holds one row per plan, ``OUT/plans/<key>/``
its ``assignment.csv`` and ``summary.json``; a re-run skips the plans whose row is there already
(except failed ones). A task that raises is retried up to ``retries`` times, then recorded with
status ``failed`` and a one-line reason. Executors: ``local`` (a process pool) and ``ray`` (Ray
tasks, ``num_cpus=1`` each; Ray is imported only there).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import time
from collections.abc import Callable, Iterable
from enum import StrEnum
from pathlib import Path
from typing import Any

from .defaults import default_fleet_path, default_models_dir
from .errors import DataError, EnergyoptError, excerpt, key_text, one_line, unknown_key_hint
from .executors import run_local, run_ray
from .io import check_toml_value, read_toml_document
from .schedule import _file_sha256
from .schema import Status
from .writers import write_table_csv

__all__ = ["StudyStatus", "PlanSpec", "Study", "read_study", "run_plan", "run_study", "STUDY_COLUMNS", "EXECUTORS"]

EXECUTORS = ("local", "ray")


class StudyStatus(StrEnum):
    """A study row's status: a plan's :class:`~energyopt.schema.Status`, or failed (the task
    raised, or its worker died, on every attempt)."""

    OPTIMAL = Status.OPTIMAL.value
    FEASIBLE = Status.FEASIBLE.value
    INFEASIBLE = Status.INFEASIBLE.value
    NO_SOLUTION = Status.NO_SOLUTION.value
    ERROR = Status.ERROR.value
    FAILED = "failed"


#: base option -> (accepted types, default); path options are resolved against the study file
_OPTIONS: dict[str, tuple[tuple[type, ...], Any]] = {
    "workload": ((str,), None),
    "fleet": ((str,), None),
    "models": ((str,), None),
    "signals": ((str,), None),
    "signals_start": ((str,), None),
    "queries": ((int,), None),
    "deadline_scale": ((int, float), 1.0),
    "min_mean_accuracy": ((int, float), None),
    "objective": ((str,), "energy"),
    "zeta": ((int, float), 0.5),
    "idle": ((bool,), False),
    "strict_range": ((bool,), False),
    "solver": ((str,), "auto"),
    "formulation": ((str,), "auto"),
    "time_limit_s": ((int, float), None),
    "mip_rel_gap": ((int, float), 1e-4),
    "threads": ((int,), 1),
}
_PATHS = ("workload", "fleet", "models", "signals")
_CHOICES = {"objective": ("energy", "tradeoff"), "solver": ("auto", "highs", "cbc", "cpsat"),
            "formulation": ("auto", "exact", "aggregate", "decompose")}
_TOP_KEYS = ("name", "base", "axes", "plans")

#: the table's columns: the plan's options, then its outcome
STUDY_COLUMNS = (
    "plan", "plan_key", *_OPTIONS, "status", "energy_j", "energy_kwh", "kg_co2e", "cost", "mean_accuracy",
    "token_weighted_mean_accuracy", "objective_value", "bound", "gap", "solver_used", "method", "attempts",
    "wall_s", "reason", "input_sha256",
)
#: columns that differ between runs of the same plan (the time it took, how many attempts)
VOLATILE_COLUMNS = ("wall_s", "attempts")


@dataclasses.dataclass(frozen=True)
class PlanSpec:
    """One plan of a study: its index in the study, its options (every key of ``_OPTIONS``,
    paths absolute) and the SHA-256 of its inputs."""

    index: int
    options: dict[str, Any]
    input_sha256: str

    @property
    def key(self) -> str:
        """The folder name of its outputs: the first 16 hex digits of its input hash."""
        return self.input_sha256[:16]


@dataclasses.dataclass(frozen=True)
class Study:
    """A study read from its TOML file: its name, its plans, and the file it came from."""

    name: str
    plans: list[PlanSpec]
    path: str


def _check_value(key: str, value: Any, where: str, p: Path) -> Any:
    types, _ = _OPTIONS[key]
    check_toml_value(value, types, where, p, _CHOICES.get(key))
    if key in ("min_mean_accuracy", "zeta") and not 0 <= value <= 1:
        raise DataError(f"{p}: key {where} must be between 0 and 1, got {value}")
    if key in ("deadline_scale", "time_limit_s") and not value > 0:
        raise DataError(f"{p}: key {where} must be > 0, got {value}")
    if key in ("queries", "threads") and value < 1:
        raise DataError(f"{p}: key {where} must be a whole number >= 1, got {value}")
    if key == "mip_rel_gap" and not 0 <= value <= 1:
        raise DataError(f"{p}: key {where} must be between 0 and 1, got {value}")
    if key in _PATHS:
        f = (p.parent / value).resolve()
        if key == "models" and not f.is_dir():
            raise DataError(f"{p}: key {where}: {f} is not a directory")
        if key != "models" and not f.is_file():
            raise DataError(f"{p}: key {where}: {f}: file not found")
        return str(f)
    return float(value) if float in types and not isinstance(value, bool) else value


def _table(doc: dict[str, Any], name: str, p: Path) -> dict[str, Any]:
    t = doc.get(name, {})
    if not isinstance(t, dict):
        raise DataError(f"{p}: key {name} must be a table")
    return t


def _options(t: dict[str, Any], where: str, p: Path) -> dict[str, Any]:
    for key in t:
        if key not in _OPTIONS:
            raise DataError(f"{p}: unknown key {where}.{key_text(key)}{unknown_key_hint(key, list(_OPTIONS))}")
    return {k: _check_value(k, v, f"{where}.{k}", p) for k, v in t.items()}


def _axes(t: dict[str, Any], p: Path) -> list[dict[str, Any]]:
    lists: list[list[tuple[str, Any]]] = []
    for key, values in t.items():
        if key not in _OPTIONS:
            raise DataError(f"{p}: unknown key axes.{key_text(key)}{unknown_key_hint(key, list(_OPTIONS))}")
        if not isinstance(values, list) or not values:
            raise DataError(f"{p}: key axes.{key} must be a non-empty list, got {excerpt(values)}")
        checked = [_check_value(key, v, f"axes.{key}[{i}]", p) for i, v in enumerate(values)]
        if len(set(map(repr, checked))) != len(checked):
            raise DataError(f"{p}: key axes.{key} lists a value twice: {excerpt(values)}")
        lists.append([(key, v) for v in checked])
    return [dict(combo) for combo in itertools.product(*lists)]


def read_study(path: str | Path) -> Study:
    """Read and validate a study TOML file, and key its plans by their inputs. Every file the
    plans name is read and checked (fleets, workloads, models, signals) before any plan runs;
    every error is a :class:`DataError` naming the file and the key."""
    p = Path(path)
    doc = read_toml_document(p, _TOP_KEYS)
    name = doc.get("name", p.stem)
    if not isinstance(name, str):
        raise DataError(f"{p}: key name must be str, got {excerpt(name)}")
    base = _options(_table(doc, "base", p), "base", p)
    if "axes" in doc and "plans" in doc:
        raise DataError(f"{p}: give [axes] or [[plans]], not both")
    if "plans" in doc:
        raw = doc["plans"]
        if not isinstance(raw, list) or not raw or not all(isinstance(t, dict) for t in raw):
            raise DataError(f"{p}: key plans must be a non-empty array of tables ([[plans]])")
        variants = [_options(t, f"plans[{i}]", p) for i, t in enumerate(raw)]
    else:
        variants = _axes(_table(doc, "axes", p), p)
    plans = []
    for i, v in enumerate(variants):
        opts = {k: default for k, (_, default) in _OPTIONS.items()} | base | v
        if opts["workload"] is None:
            raise DataError(f"{p}: key base.workload is missing (or give workload in [axes] or each [[plans]])")
        opts["fleet"] = opts["fleet"] or str(default_fleet_path().resolve())
        opts["models"] = opts["models"] or str(default_models_dir().resolve())
        if opts["signals_start"] is not None and opts["signals"] is None:
            raise DataError(f"{p}: key signals_start needs signals too")
        plans.append(PlanSpec(i, opts, _input_sha256(opts)))
    _check_unique(plans, p)
    _check_inputs(plans, p)
    return Study(name, plans, str(p))


def _check_unique(plans: list[PlanSpec], p: Path) -> None:
    seen: dict[str, int] = {}
    for s in plans:
        if s.input_sha256 in seen:
            raise DataError(f"{p}: plans {seen[s.input_sha256]} and {s.index} have the same inputs and options")
        seen[s.input_sha256] = s.index


def _check_inputs(plans: list[PlanSpec], p: Path) -> None:
    """Read each distinct fleet, workload, models folder and (signals, fleet) pair once: a bad
    file is an error now, not a failed row after the other plans have run."""
    from .fleet import read_fleet
    from .io import read_workload
    from .modelstore import FittedModels
    from .signals import load_signals

    def wrap(what: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        try:
            return fn(*args, **kw)
        except EnergyoptError as exc:
            raise DataError(f"{p}: {what}: {exc}") from None

    fleets = {f: wrap("fleet", read_fleet, f) for f in sorted({s.options["fleet"] for s in plans})}
    for w in sorted({s.options["workload"] for s in plans}):
        wrap("workload", read_workload, w)
    for m in sorted({s.options["models"] for s in plans}):
        wrap("models", FittedModels.load, m)
    for sig, start, f in sorted({(s.options["signals"], s.options["signals_start"] or "", s.options["fleet"])
                                 for s in plans if s.options["signals"]}):
        wrap("signals", load_signals, sig, fleet=fleets[f], batch_start=start or None)


def _input_sha256(opts: dict[str, Any]) -> str:
    """The SHA-256 of a plan's inputs: its files' contents (not their paths) and its options."""
    files: dict[str, Any] = {}
    for k in _PATHS:
        if opts[k] is None:
            files[k] = None
        elif k == "models":
            files[k] = {f.name: _file_sha256(f) for f in sorted(Path(opts[k]).glob("*.json"))}
        else:
            files[k] = _file_sha256(Path(opts[k]))
    rest = {k: v for k, v in opts.items() if k not in _PATHS}
    text = json.dumps({"files": files, "options": rest}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _row(spec: PlanSpec) -> dict[str, Any]:
    return {"plan": spec.index, "plan_key": spec.key, **spec.options, "input_sha256": spec.input_sha256}


def failed_row(spec: PlanSpec, reason: str, attempts: int) -> dict[str, Any]:
    """The row of a plan whose task failed on every attempt."""
    return {**_row(spec), "status": StudyStatus.FAILED.value, "attempts": attempts, "reason": one_line(reason, 240)}


def run_plan(spec: PlanSpec, out_dir: str) -> dict[str, Any]:
    """Run one plan through the library and write its outputs to ``out_dir/plans/<key>/``; the
    study row. A bad input (an :class:`EnergyoptError`) is a failed row, not an exception: it
    would fail again on every retry."""
    from .io import read_workload
    from .plan import plan

    t0 = time.perf_counter()
    o = spec.options
    try:
        wl = read_workload(o["workload"])
        if o["queries"] is not None:
            wl = wl.iloc[: o["queries"]].reset_index(drop=True)
        if o["deadline_scale"] != 1.0:
            wl = wl.copy()
            wl["deadline_s"] = wl["deadline_s"] * o["deadline_scale"]
        sched = plan(wl, o["fleet"], o["models"], solver=o["solver"], objective=o["objective"], zeta=o["zeta"],
                     idle=o["idle"], min_mean_accuracy=o["min_mean_accuracy"], strict_range=o["strict_range"],
                     time_limit_s=o["time_limit_s"], mip_rel_gap=o["mip_rel_gap"], formulation=o["formulation"],
                     threads=o["threads"], signals=o["signals"], signals_start=o["signals_start"])
    except EnergyoptError as exc:
        return {**failed_row(spec, str(exc), 1), "wall_s": round(time.perf_counter() - t0, 3)}
    s = sched.summary()
    d = Path(out_dir) / "plans" / spec.key
    if s.status.has_plan:
        sched.write(d, s)
    else:
        for stale in ("assignment.csv", "slots.csv"):
            (d / stale).unlink(missing_ok=True)
        sched.write_summary(d, s)
    sig = s.signals or {}
    return {
        **_row(spec), "status": StudyStatus(s.status.value).value, "energy_j": s.total_energy_j,
        "energy_kwh": s.total_energy_kwh, "kg_co2e": sig.get("total_kg_co2e"), "cost": sig.get("total_cost"),
        "mean_accuracy": s.mean_accuracy, "token_weighted_mean_accuracy": s.token_weighted_mean_accuracy,
        "objective_value": s.objective_value, "bound": s.bound, "gap": s.gap, "solver_used": s.solver,
        "method": s.formulation, "attempts": 1, "wall_s": round(time.perf_counter() - t0, 3),
        "reason": "" if s.status.has_plan else one_line(sched.message, 240),
    }


Task = Callable[[PlanSpec, str], dict[str, Any]]
Progress = Callable[[str], None]


def _table_of(rows: Iterable[dict[str, Any]]) -> Any:
    import pandas as pd

    df = pd.DataFrame(list(rows), columns=list(STUDY_COLUMNS))
    df["reason"] = df["reason"].fillna("")  # the same bytes whether a row was read back or made now
    return df.sort_values("plan", kind="stable").reset_index(drop=True)


def read_done(out_dir: Path, plans: list[PlanSpec]) -> dict[str, dict[str, Any]]:
    """The rows of ``OUT/study.csv`` that belong to these plans and did not fail, by input hash."""
    import pandas as pd

    path = out_dir / "study.csv"
    if not path.is_file():
        return {}
    try:
        old = pd.read_csv(path, dtype={"plan_key": str, "input_sha256": str, "reason": str}, keep_default_na=True)
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: cannot read the earlier table ({one_line(str(exc))}); remove it to start over") from None
    if "input_sha256" not in old.columns or "status" not in old.columns:
        raise DataError(f"{path}: not a study table (no input_sha256 or status column); remove it to start over")
    wanted = {s.input_sha256: s for s in plans}
    done = {}
    for r in old.to_dict("records"):
        spec = wanted.get(r["input_sha256"])
        if spec is not None and r["status"] != StudyStatus.FAILED.value:
            done[spec.input_sha256] = {**r, **_row(spec)}  # its index and paths in this study
    return done


def run_study(study: Study, out_dir: str | Path, *, executor: str = "local", workers: int = 2, retries: int = 2,
              address: str | None = None, task: Task = run_plan, progress: Progress | None = None) -> Any:
    """Run the study's plans not done yet in ``out_dir``; the table (one row per plan, also
    written to ``out_dir/study.csv`` after each plan ends). ``task`` runs one plan (default
    :func:`run_plan`)."""
    say = progress or (lambda s: None)
    if executor not in EXECUTORS:
        raise DataError(f"--executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = read_done(out, study.plans)
    todo = [s for s in study.plans if s.input_sha256 not in rows]
    say(f"study {study.name}: {len(study.plans)} plans, {len(rows)} done already, {len(todo)} to run on {executor}")

    def finished(spec: PlanSpec, row: dict[str, Any]) -> None:
        rows[spec.input_sha256] = row
        write_table_csv(_table_of(rows.values()), out / "study.csv")
        say(f"[{len(rows)}/{len(study.plans)}] plan {spec.index} ({spec.key}): {row['status']}")

    def failed(spec: PlanSpec, reason: str, attempts: int) -> None:
        finished(spec, failed_row(spec, reason, attempts))

    if todo:
        if executor == "local":
            run_local(todo, str(out), task, workers, retries, finished, failed)
        else:
            run_ray(todo, str(out), task, workers, retries, address, finished, failed)
    table = _table_of(rows.values())
    write_table_csv(table, out / "study.csv")
    plot_study(table, out / "study.png", title=study.name)
    return table


def varying_axes(table: Any) -> list[str]:
    """The options whose value differs between the table's plans, in the table's column order."""
    opts = [c for c in _OPTIONS if c in table.columns]
    return [c for c in opts if table[c].astype(str).nunique() > 1]


def plot_study(table: Any, path: Path, *, title: str = "") -> Path | None:
    """``study.png``: energy [kWh] against token-weighted accuracy, one panel per option that
    varies, each plan a point coloured by its value there; None (and an earlier figure removed)
    when no plan of the table has a plan to draw."""
    from .report import ACCURACY_UNIT
    from .writers import atomic_path

    plotted = table[table["status"].isin([StudyStatus.OPTIMAL.value, StudyStatus.FEASIBLE.value])]
    if plotted.empty:
        path.unlink(missing_ok=True)
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes_names = varying_axes(table) or ["plan"]
    fig, axs = plt.subplots(1, len(axes_names), figsize=(4.2 * len(axes_names), 3.6), squeeze=False, sharey=True)
    for ax, name in zip(axs[0], axes_names):
        for value, grp in plotted.groupby(plotted[name].astype(str), sort=False):
            label = Path(value).name if name in _PATHS else value
            ax.scatter(grp["token_weighted_mean_accuracy"], grp["energy_kwh"], s=18, label=f"{label}")
        ax.set_xlabel(f"token-weighted mean accuracy {ACCURACY_UNIT}")
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=7, title_fontsize=7)
        ax.grid(alpha=0.3)
    axs[0][0].set_ylabel("energy [kWh]")
    fig.suptitle(f"{title}: {len(plotted)} of {len(table)} plans with a plan", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path
