"""Characterization campaigns: LLMs × batch sizes × device kinds, measured as tasks on the nodes
that have each kind of device, merged into one characterization CSV per device kind.

A campaign file names the LLMs, the batch sizes, the measurement options of ``energyopt
characterize`` and a table per device kind::

    name = "h200-batched"
    llms = ["qwen2.5-0.5b", "mistral-7b"]
    batch_sizes = [1, 8, 64]
    points = 12                  # or "512x128,2048x64"
    holdout = 3
    repeats = 1
    time_budget_s = 3600         # per task; a re-run resumes what a task left
    split = "llm"                # a task per (LLM, device kind); "batch_size": per batch size too

    [devices.h200]               # the device kind: the rows' device column, OUT/h200.csv
    resource = "nvidia-h200"     # the Ray resource of the nodes that have it (default nvidia-KIND)
    num_gpus = 1                 # per task (default 1; 0 for device = "cpu")

Each task runs :func:`energyopt.characterize.orchestrate.characterize` for its LLM (and batch
sizes) on one device of its kind, writing its rows with their provenance into its own part file
(``OUT/parts/KIND/LLM__KEY.csv``, resumed by a retried task on the same node) and returning them;
the driver merges them into ``OUT/KIND.csv``, each row (keyed by LLM, device, token counts,
split, repeat and batch size) once. ``OUT/campaign.csv`` holds a row per task: its status
(complete, partial: stopped by its time budget, or failed), rows, attempts, the node it ran on and
the reason. A re-run skips the complete tasks (keyed by the SHA-256 of their settings) and passes
the rows already merged to the others, which measure only what is missing; part files left by a
killed run are merged first. Executors: ``local`` (a process pool of ``--workers``) and ``ray``
(each task asks for ``num_gpus`` and one unit of its kind's resource).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Any

from .characterize.csvlog import ROW_COLUMNS, RunKey, RunLog, exclusive_writer, run_key
from .characterize.design import MAX_BATCH_SIZE, parse_points
from .errors import DataError, EnergyoptError, excerpt, key_text, one_line, unknown_key_hint
from .executors import run_local, run_ray
from .io import check_toml_value, read_toml_document
from .writers import write_atomic

__all__ = ["TaskStatus", "TaskSpec", "Campaign", "read_campaign", "run_task", "run_campaign", "merge_rows",
           "TASK_COLUMNS", "EXECUTORS"]

EXECUTORS = ("local", "ray")
SPLITS = ("llm", "batch_size")


class TaskStatus(StrEnum):
    """A campaign task's outcome."""

    COMPLETE = "complete"  # every point measured (or skipped for want of device memory)
    PARTIAL = "partial"  # stopped by its time budget: a re-run resumes it
    FAILED = "failed"  # raised, or its worker died, on every attempt


#: measurement option -> (accepted types, default); a device kind's table may override any of them
_MEASURE: dict[str, tuple[tuple[type, ...], Any]] = {
    "llms": ((list,), None),
    "batch_sizes": ((list,), [1]),
    "points": ((int, str), None),
    "holdout": ((int,), 10),
    "repeats": ((int,), 3),
    "min_window_s": ((int, float), 1.0),
    "max_input_tokens": ((int,), 4096),
    "max_output_tokens": ((int,), 1024),
    "dtype": ((str,), None),
    "decode_attention": ((str,), "grouped"),
    "time_budget_s": ((int, float), None),
    "idle_seconds": ((int, float), 5.0),
    "threads": ((int,), None),
    "cpu_power_w": ((int, float), None),
    "cpu_idle_w": ((int, float), None),
}
#: keys of a device kind's table only
_DEVICE: dict[str, tuple[tuple[type, ...], Any]] = {
    "device": ((str,), "cuda"),
    "resource": ((str,), None),
    "num_gpus": ((int, float), None),
    "gpu_label": ((str,), None),
}
_CHOICES = {"dtype": ("bf16", "fp16", "fp32"), "decode_attention": ("grouped", "sdpa", "ragged"),
            "device": ("cuda", "cpu"), "split": SPLITS}
_TOP_KEYS = ("name", "split", "devices", *_MEASURE)

TASK_COLUMNS = (
    "task", "task_key", "llm", "device", "batch_sizes", "resource", "num_gpus", "status", "rows", "measured",
    "left", "no_room", "attempts", "node", "host", "wall_s", "reason",
)


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """One task: an LLM on one device of a kind, at some batch sizes, with its measurement
    options (every key of ``_MEASURE`` and ``_DEVICE``), keyed by the SHA-256 of them all;
    ``known``: the rows already in the kind's merged file (filled in when it is dispatched)."""

    index: int
    llm: str
    kind: str
    batch_sizes: tuple[int, ...]
    options: dict[str, Any]
    task_key: str
    dry_run: bool = False
    known: frozenset[RunKey] = frozenset()

    def __str__(self) -> str:
        return f"task {self.index} ({self.llm} on {self.kind}, batch sizes {_sizes(self.batch_sizes)})"

    def ray_options(self) -> dict[str, Any]:
        """Ray's options for the task: one CPU, its GPUs, one unit of its kind's resource."""
        o = self.options
        return {"num_cpus": 1, "num_gpus": o["num_gpus"], "resources": {o["resource"]: 1}}


@dataclasses.dataclass(frozen=True)
class Campaign:
    """A campaign read from its TOML file."""

    name: str
    tasks: list[TaskSpec]
    kinds: dict[str, dict[str, Any]]  # device kind -> its options
    path: str


def _sizes(sizes: tuple[int, ...] | list[int]) -> str:
    return ",".join(map(str, sizes))


def _check(key: str, value: Any, where: str, p: Path) -> Any:
    types, _ = {**_MEASURE, **_DEVICE}[key]
    check_toml_value(value, tuple(t for t in types if t is not bool), where, p, _CHOICES.get(key))
    floors = {"holdout": 0, "repeats": 1, "min_window_s": 0, "max_input_tokens": 1, "max_output_tokens": 1,
              "time_budget_s": 1, "idle_seconds": 0.5, "threads": 1, "cpu_idle_w": 0, "num_gpus": 0}
    if key in floors and value < floors[key]:
        raise DataError(f"{p}: key {where} must be >= {floors[key]}, got {value}")
    if key == "cpu_power_w" and not value > 0:
        raise DataError(f"{p}: key {where} must be > 0, got {value}")
    if key in ("resource", "gpu_label") and not value.strip():
        raise DataError(f"{p}: key {where} must not be empty")
    if key == "points":
        if isinstance(value, int) and value < 6:
            raise DataError(f"{p}: key {where} must be at least 6 points (to fit the models), got {value}")
        if isinstance(value, str):
            try:
                parse_points(value)
            except DataError as exc:
                raise DataError(f"{p}: key {where}: {str(exc).removeprefix('--points: ')}") from None
        return str(value)
    if key == "llms":
        return _check_llms(value, where, p)
    if key == "batch_sizes":
        return _check_batch_sizes(value, where, p)
    return float(value) if float in types else value


def _check_llms(value: list[Any], where: str, p: Path) -> list[str]:
    from .characterize.catalog import CATALOG

    if not value:
        raise DataError(f"{p}: key {where} must be a non-empty list of catalog LLMs")
    for i, name in enumerate(value):
        if name not in CATALOG:
            raise DataError(f"{p}: key {where}[{i}]: unknown LLM {excerpt(name)}"
                            f"{unknown_key_hint(name, list(CATALOG))}")
    if len(set(value)) != len(value):
        raise DataError(f"{p}: key {where} lists an LLM twice: {excerpt(value)}")
    return list(value)


def _check_batch_sizes(value: list[Any], where: str, p: Path) -> list[int]:
    if not value:
        raise DataError(f"{p}: key {where} must be a non-empty list of batch sizes, like [1, 8, 64]")
    for i, b in enumerate(value):
        if not isinstance(b, int) or isinstance(b, bool) or not 1 <= b <= MAX_BATCH_SIZE:
            raise DataError(f"{p}: key {where}[{i}] must be a whole number from 1 to {MAX_BATCH_SIZE}, got {excerpt(b)}")
    if len(set(value)) != len(value):
        raise DataError(f"{p}: key {where} lists a batch size twice: {excerpt(value)}")
    return list(value)


def _options(t: dict[str, Any], keys: dict[str, Any], where: str, p: Path) -> dict[str, Any]:
    for key in t:
        if key not in keys:
            raise DataError(f"{p}: unknown key {where}{key_text(key)}{unknown_key_hint(key, list(keys))}")
    return {k: _check(k, v, f"{where}{k}", p) for k, v in t.items()}


def _kind_options(kind: Any, table: dict[str, Any], base: dict[str, Any], p: Path) -> dict[str, Any]:
    """A device kind's options: the defaults, the file's top level, its own table."""
    if not isinstance(kind, str) or not kind.strip() or "/" in kind or kind.startswith("."):
        raise DataError(f"{p}: device kind {excerpt(kind)} must be a plain name, like h200")
    own = _options(table, {**_MEASURE, **_DEVICE}, f"devices.{kind}.", p)
    o = {k: default for k, (_, default) in {**_MEASURE, **_DEVICE}.items()} | base | own
    if o["llms"] is None:
        raise DataError(f"{p}: key llms is missing (a list of catalog LLMs, at the top or in [devices.{kind}])")
    cuda = o["device"] == "cuda"
    if o["resource"] is None:
        o["resource"] = kind if kind.startswith("nvidia-") or not cuda else f"nvidia-{kind}"
    if o["num_gpus"] is None:
        o["num_gpus"] = 1.0 if cuda else 0.0
    if o["gpu_label"] is None and cuda:
        o["gpu_label"] = kind.removeprefix("nvidia-")
    if o["decode_attention"] == "ragged" and not cuda:
        raise DataError(f"{p}: key devices.{kind}.decode_attention: ragged runs on cuda devices only")
    return o


def read_campaign(path: str | Path, *, dry_run: bool = False) -> Campaign:
    """Read and validate a campaign TOML file; every error is a one-line :class:`DataError`
    naming the file and the key."""
    p = Path(path)
    doc = read_toml_document(p, _TOP_KEYS)
    name = doc.get("name", p.stem)
    if not isinstance(name, str):
        raise DataError(f"{p}: key name must be str, got {excerpt(name)}")
    split = doc.get("split", "llm")
    if split not in SPLITS:
        raise DataError(f"{p}: key split must be one of {', '.join(SPLITS)}, got {excerpt(split)}")
    base = _options({k: v for k, v in doc.items() if k in _MEASURE}, _MEASURE, "", p)
    devices = doc.get("devices")
    if not isinstance(devices, dict) or not devices or not all(isinstance(t, dict) for t in devices.values()):
        raise DataError(f"{p}: key devices must hold a table per device kind, like [devices.h200]")
    kinds: dict[str, dict[str, Any]] = {}
    tasks: list[TaskSpec] = []
    for kind, table in devices.items():
        o = kinds[kind] = _kind_options(kind, table, base, p)
        groups = [tuple(o["batch_sizes"])] if split == "llm" else [(b,) for b in o["batch_sizes"]]
        for llm in o["llms"]:
            for sizes in groups:
                tasks.append(TaskSpec(len(tasks), llm, kind, sizes, o, _task_key(llm, kind, sizes, o, dry_run),
                                      dry_run))
    return Campaign(name, tasks, kinds, str(p))


def _task_key(llm: str, kind: str, sizes: tuple[int, ...], o: dict[str, Any], dry_run: bool) -> str:
    text = json.dumps({"llm": llm, "kind": kind, "batch_sizes": sizes, "dry_run": dry_run,
                       "options": {k: v for k, v in o.items() if k not in ("llms", "batch_sizes")}}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ---- one task (runs on a worker) ----------------------------------------------------------------

def part_path(out_dir: str | Path, spec: TaskSpec) -> Path:
    """Where a task writes its rows: ``OUT/parts/KIND/LLM__KEY.csv``."""
    return Path(out_dir) / "parts" / spec.kind / f"{spec.llm}__{spec.task_key}.csv"


def _where() -> str:
    """The Ray node this runs on (its id), or ``local``."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        try:
            return str(ray.get_runtime_context().get_node_id())
        except Exception:  # noqa: BLE001 - outside a task or an old Ray: not worth failing the task
            return "ray"
    return "local"


def _gpu_index() -> int:
    """The NVML index of the GPU a task was given: the first of ``CUDA_VISIBLE_DEVICES`` (set by
    Ray for a task with ``num_gpus``; NVML counts every GPU of the node)."""
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")  # CUDA's order then is NVML's
    first = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    return int(first) if first.isdigit() else 0


def run_task(spec: TaskSpec, out_dir: str) -> dict[str, Any]:
    """Measure one task's rows into its part file (resuming it) and return them with the outcome.
    A bad input (an :class:`EnergyoptError`: no GPU of the kind, no NVML) fails the task at once,
    its rows kept; any other error propagates (the executor retries)."""
    from .characterize.orchestrate import characterize

    t0 = time.perf_counter()
    o = spec.options
    part = part_path(out_dir, spec)
    part.parent.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    out: dict[str, Any] = {"node": _where(), "host": platform.node(), "measured": 0, "left": 0, "no_room": 0,
                           "reason": ""}
    try:
        results = characterize(
            llms=[spec.llm], model_dir=None, device=o["device"], gpu_index=_gpu_index(), points=o["points"],
            holdout=o["holdout"], repeats=o["repeats"], min_window_s=o["min_window_s"],
            max_input_tokens=o["max_input_tokens"], max_output_tokens=o["max_output_tokens"], dtype=o["dtype"],
            device_name=spec.kind, threads=o["threads"], cpu_power_w=o["cpu_power_w"], cpu_idle_w=o["cpu_idle_w"],
            time_budget_s=o["time_budget_s"], idle_seconds=o["idle_seconds"], out_csv=part, progress=lines.append,
            batch_sizes=_sizes(spec.batch_sizes), decode_attention=o["decode_attention"], dry_run=spec.dry_run,
            known=spec.known, gpu_label_expected=None if spec.dry_run else o["gpu_label"])
    except EnergyoptError as exc:
        status, out["reason"] = TaskStatus.FAILED, one_line(str(exc), 240)
    else:
        out["measured"] = sum(r.measured for r in results)
        out["left"] = sum(r.remaining for r in results)
        out["no_room"] = sum(r.out_of_memory for r in results)
        status = TaskStatus.PARTIAL if out["left"] else TaskStatus.COMPLETE
        if out["left"]:
            out["reason"] = f"time budget of {o['time_budget_s']:g} s reached; {out['left']} runs left for a re-run"
    return {**out, "status": status.value, "rows": RunLog(part).rows(), "wall_s": round(time.perf_counter() - t0, 3)}


# ---- merging -----------------------------------------------------------------------------------

def merge_rows(merged: Path, rows: list[dict[str, Any]], source: str) -> int:
    """Append to ``merged`` the rows whose key it does not hold yet (each once); the count added."""
    log = RunLog(merged)
    done = log.done()
    new = []
    for i, row in enumerate(rows):
        try:
            key = run_key(row)
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{source}: row {i + 1} is malformed ({exc})") from None
        if key not in done:
            done.add(key)
            new.append({c: row.get(c) for c in ROW_COLUMNS if c in row})
    log.append_many(new)
    return len(new)


def _check_merged(kind: str, merged: Path, o: dict[str, Any], dry_run: bool) -> None:
    """A kind's merged file takes this campaign's rows: the current layout, one decode attention,
    and dry-run rows apart from measured ones."""
    log = RunLog(merged)
    if log.legacy:
        raise DataError(f"{merged} has the older column layout (no energy_per_query_j, decode_attention); "
                        "write the campaign to another --out")
    other = log.decode_attentions() - {o["decode_attention"], ""}
    if other:
        raise DataError(f"{merged} holds rows measured with decode attention {', '.join(sorted(other))}, "
                        f"devices.{kind} measures {o['decode_attention']}: a model fits one engine's rows; "
                        "write the campaign to another --out")
    from .characterize.dryrun import DRY_RUN

    sources = {r.get("energy_source") or "" for r in log.rows()}
    if sources and (DRY_RUN in sources) != dry_run:
        raise DataError(f"{merged} holds {'measured' if dry_run else 'dry-run'} rows; write "
                        f"{'a dry run' if dry_run else 'measurements'} to another --out")


def _read_tasks(path: Path) -> dict[str, dict[str, str]]:
    if not path.is_file():
        return {}
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or "task_key" not in reader.fieldnames or "status" not in reader.fieldnames:
            raise DataError(f"{path}: not a campaign table (no task_key or status column); remove it to start over")
        return {r["task_key"]: r for r in reader}


def _write_tasks(path: Path, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=TASK_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in sorted(rows, key=lambda r: int(r["task"])):
        w.writerow({c: "" if r.get(c) is None else r.get(c) for c in TASK_COLUMNS})
    write_atomic(path, buf.getvalue())


def _task_row(spec: TaskSpec, **outcome: Any) -> dict[str, Any]:
    o = spec.options
    return {"task": spec.index, "task_key": spec.task_key, "llm": spec.llm, "device": spec.kind,
            "batch_sizes": _sizes(spec.batch_sizes), "resource": o["resource"], "num_gpus": f"{o['num_gpus']:g}",
            **outcome}


Task = Callable[[TaskSpec, str], dict[str, Any]]
Progress = Callable[[str], None]


def _prepare(campaign: Campaign, out: Path, merged: dict[str, Path], table_path: Path, dry_run: bool,
             say: Progress) -> tuple[dict[str, dict[str, Any]], list[TaskSpec]]:
    """Check the merged files, merge the parts an earlier run left, and split the tasks into the
    complete ones (their rows of the task table) and those to run (each with the rows known)."""
    for kind, o in campaign.kinds.items():
        _check_merged(kind, merged[kind], o, dry_run)
    for kind in campaign.kinds:  # rows of parts an earlier run did not merge (a killed driver)
        for part in sorted((out / "parts" / kind).glob("*.csv")):
            n = merge_rows(merged[kind], RunLog(part).rows(), str(part))
            if n:
                say(f"merged {n} rows left in {part}")
    old = _read_tasks(table_path)
    known = {kind: RunLog(merged[kind]).done() for kind in campaign.kinds}
    table: dict[str, dict[str, Any]] = {}
    todo: list[TaskSpec] = []
    for s in campaign.tasks:
        mine = frozenset(k for k in known[s.kind] if k[0] == s.llm and k[6] in s.batch_sizes)
        prev = old.get(s.task_key)
        # complete, and its rows still there (a merged file removed by hand runs its tasks again)
        if prev is not None and prev["status"] == TaskStatus.COMPLETE.value and len(mine) >= int(prev["rows"] or 0):
            table[s.task_key] = {**prev, **_task_row(s)}
        else:
            todo.append(dataclasses.replace(s, known=mine))
    return table, todo


def run_campaign(campaign: Campaign, out_dir: str | Path, *, executor: str = "local", workers: int = 1,
                 retries: int = 2, address: str | None = None, task: Task = run_task,
                 progress: Progress | None = None) -> list[dict[str, Any]]:
    """Run the campaign's tasks not complete yet in ``out_dir``; the task table (also
    ``out_dir/campaign.csv``, rewritten as each task ends). Rows merge into ``out_dir/KIND.csv``."""
    say = progress or (lambda s: None)
    if executor not in EXECUTORS:
        raise DataError(f"--executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    dry_run = any(s.dry_run for s in campaign.tasks)
    with exclusive_writer(out / "campaign"):  # one driver per folder
        merged = {kind: out / f"{kind}.csv" for kind in campaign.kinds}
        table_path = out / "campaign.csv"
        table, todo = _prepare(campaign, out, merged, table_path, dry_run, say)
        say(f"campaign {campaign.name}: {len(campaign.tasks)} tasks, {len(table)} complete already, "
            f"{len(todo)} to run on {executor}" + (" (dry run)" if dry_run else ""))

        def rows_of(spec: TaskSpec) -> int:
            return sum(1 for k in RunLog(merged[spec.kind]).done() if k[0] == spec.llm and k[6] in spec.batch_sizes)

        def merge_part(spec: TaskSpec, rows: list[dict[str, Any]]) -> None:
            """The rows a task returned, and its part file where this machine sees it (a task that
            died or failed returns none)."""
            merge_rows(merged[spec.kind], rows, str(spec))
            part = part_path(out, spec)
            if part.is_file():
                merge_rows(merged[spec.kind], RunLog(part).rows(), str(part))

        def record(spec: TaskSpec, row: dict[str, Any]) -> None:
            table[spec.task_key] = row
            _write_tasks(table_path, list(table.values()))
            say(f"[{len(table)}/{len(campaign.tasks)}] {spec}: {row['status']}, {row['rows']} rows"
                + (f" ({row['reason']})" if row.get("reason") else ""))

        def finished(spec: TaskSpec, result: dict[str, Any]) -> None:
            merge_part(spec, result.pop("rows"))
            record(spec, _task_row(spec, **result, rows=rows_of(spec)))

        def failed(spec: TaskSpec, reason: str, attempts: int) -> None:
            merge_part(spec, [])
            record(spec, _task_row(spec, status=TaskStatus.FAILED.value, attempts=attempts,
                                   reason=one_line(reason, 240), rows=rows_of(spec)))

        if todo and executor == "local":
            run_local(todo, str(out), task, workers, retries, finished, failed)
        elif todo:
            local_node = None
            if dry_run:  # a local Ray started here offers every kind, with fake GPUs
                local_node = {"resources": {o["resource"]: float(workers) for o in campaign.kinds.values()},
                              "num_gpus": workers}
            run_ray(todo, str(out), task, workers, retries, address, finished, failed,
                    task_options=TaskSpec.ray_options, local_node=local_node)
        rows = sorted(table.values(), key=lambda r: int(r["task"]))
        _write_tasks(table_path, rows)
        return rows
