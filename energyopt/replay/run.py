"""Replay a plan on a device: every instance of one pool, one after another, each measured apart.

For each instance (largest first): the LLM is built (random weights, as characterized), the
engine's KV rows and decode graph are set up and every prompt length of the instance is run once
(``setup_s``, outside any measurement); then its lanes run as the plan orders them while the
energy counter is read (:mod:`.measure`). The plan runs its instances side by side on separate
devices; the replay runs them one after another on one, so each instance's makespan and energy are
its own, and the plan's makespan is the latest instance's.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from ..characterize.engine import SlotEngine, capacity_tokens
from ..enginesim import EngineTimeline
from ..errors import DataError
from ..version import package_version
from .compare import ReplayTables, instance_table, query_table, totals
from .lanes import InstanceRun
from .measure import CounterSampler, attribute_queries
from .simulate import simulate_with_models

__all__ = ["replay_runs", "RunnerFactory"]

RunnerFactory = Callable[[str], Any]  # LLM name -> an HFRunner (or one with the same parts)


def replay_runs(runs: list[InstanceRun], make_runner: RunnerFactory, read_j: Callable[[], float], *,
                attention: str = "auto", progress: Callable[[str], None] = print,
                sample_interval_s: float = 0.005, margin_s: float = 0.3,
                slot_power_w: Callable[[InstanceRun], float | None] = lambda run: None,
                simulate: Callable[[InstanceRun], EngineTimeline | None] = lambda run: None) -> ReplayTables:
    """Run and measure every instance of ``runs``; returns the per-query and per-instance tables.
    ``slot_power_w`` gives an instance's predicted power of an empty slot (None: its queries' mean);
    ``simulate`` its engine simulation (:mod:`.simulate`; None: none)."""
    q_tables, i_rows, s_tables = [], [], []
    runner: Any = None
    runner_llm = None
    for k, run in enumerate(runs, 1):
        sim = simulate(run)
        t_setup = time.perf_counter()
        if runner_llm != run.llm:
            if runner is not None:
                _free(runner)
            runner, runner_llm = None, None
            runner = make_runner(run.llm)
            runner_llm = run.llm
        lanes = run.lanes
        engine = SlotEngine(runner, run.batch_size, capacity_tokens(lanes), attention=attention)
        try:
            engine.warm_up([tin for lane in lanes for tin, _ in lane])
            setup_s = time.perf_counter() - t_setup
            progress(f"[{k}/{len(runs)}] {run.label}: {len(run.rows)} queries on {sum(1 for x in lanes if x)} lanes; "
                     f"set up in {setup_s:.1f} s ({engine.attention} decode attention), measuring...")
            with CounterSampler(read_j, sample_interval_s, margin_s) as sampler:
                log = engine.run(lanes)
            meas = attribute_queries(log, sampler.knots())
        finally:
            engine.close()
        row = instance_table(run, meas, setup_s, slot_power_w(run), sim)
        i_rows.append(row)
        q_tables.append(query_table(run, meas, sim))
        s_tables.append(meas.steps.assign(llm=run.llm, device=run.device, instance=run.instance,
                                          batch_size=run.batch_size))
        progress(f"[{k}/{len(runs)}] {run.label}: energy {row['measured_energy_j']:.0f} J measured, "
                 f"{row['predicted_energy_j']:.0f} J predicted ({row['energy_error']:+.1%}); makespan "
                 f"{row['measured_makespan_s']:.2f} s measured, {row['predicted_makespan_s']:.2f} s predicted "
                 f"({row['makespan_error']:+.1%})"
                 + (f", {row['simulated_makespan_s']:.2f} s by the engine simulation ({row['simulated_makespan_error']:+.1%})"
                    if sim is not None else ""))
    if runner is not None:
        _free(runner)
    queries = pd.concat(q_tables, ignore_index=True)
    instances = pd.DataFrame(i_rows)
    steps = pd.concat(s_tables, ignore_index=True)
    steps = steps[["llm", "device", "instance", "batch_size"] + list(s_tables[0].columns[:-4])]
    return ReplayTables(queries, instances, steps, totals(queries, instances))


def _free(runner: Any) -> None:
    runner.model = None
    runner._drop_graphs()


def hf_runner_factory(device: str, dtype: str, threads: int | None = None) -> RunnerFactory:
    """Runners of the characterization's catalog builds (random weights, CUDA-graph decode)."""
    from ..characterize.catalog import get_spec
    from ..characterize.runner import HFRunner

    def make(llm: str) -> Any:
        return HFRunner(get_spec(llm), device=device, dtype=dtype, threads=threads, decode_attention="grouped")

    return make


def provenance(device: str, meter: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"energyopt_version": package_version(),
                           "replayed_at": _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()}
    try:
        import torch
        import transformers

        out.update(torch_version=torch.__version__, transformers_version=transformers.__version__)
    except ImportError:
        pass
    if hasattr(meter, "names"):
        out.update(gpu_name=meter.names()[0], driver=meter.driver())
    out["energy_source"] = getattr(meter, "source", "")
    out["device"] = device
    return out


def empty_slot_power_w(problem: Any, run: InstanceRun) -> float | None:
    """An empty slot's predicted power [W] at the instance's batch size (the plan's models)."""
    if run.batch_size == 1 or problem.inputs is None:
        return None
    return problem.inputs.models.empty_slot_power_w(run.llm, run.device, run.batch_size)


def check_output_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a directory")


def replay_plan_dir(plan_dir: str | Path, *, device: str = "cuda", pool: str | None = None, out: Path | None = None,
                    workload=None, fleet=None, models=None, dtype: str = "bf16", gpu_index: int = 0,
                    attention: str = "auto", progress: Callable[[str], None] = print) -> tuple[ReplayTables, dict, Path]:
    """Replay the plan in ``plan_dir`` on this machine's ``device`` and write the tables to ``out``
    (default PLAN_DIR/replay): ``replay_queries.csv``, ``replay_instances.csv``, ``replay_steps.csv``
    (every prefill and decode step with its measured energy) and ``replay.json``.

    Every instance of ``pool`` (default: the plan's only pool) is replayed; queries on other pools
    are counted as not replayed. Every input is checked before anything is built or measured.
    """
    from ..characterize.catalog import get_spec
    from ..explain import load_plan_dir
    from ..writers import write_json, write_table_csv
    from .lanes import instance_runs

    problem, asg, summary = load_plan_dir(plan_dir, workload=workload, fleet=fleet, models=models)
    pools = sorted(asg["device"].unique())
    if pool is None:
        if len(pools) != 1:
            raise DataError(f"the plan uses pools {', '.join(pools)}: choose one with --pool")
        pool = pools[0]
    elif pool not in pools:
        raise DataError(f"--pool {pool!r}: the plan has no query there (it uses {', '.join(pools)})")
    runs = instance_runs(asg, problem.queries, device=pool)
    for llm in sorted({r.llm for r in runs}):
        get_spec(llm)  # an LLM the catalog cannot build: refused before anything runs
    out_dir = Path(out) if out is not None else Path(plan_dir) / "replay"
    check_output_dir(out_dir)
    if device == "cuda":
        from ..characterize.meters import NvmlMeter

        try:
            meter: Any = NvmlMeter([gpu_index])
        except Exception as exc:  # pynvml missing or no driver
            raise DataError(f"cannot read NVML energy counters ({exc}); the replay needs an NVIDIA GPU "
                            "and nvidia-ml-py") from None
    else:
        from ..characterize.meters import RaplMeter, rapl_available

        if not rapl_available():
            raise DataError("--device cpu: no readable RAPL counters (/sys/class/powercap); a replay needs a measured "
                            "energy counter")
        meter = RaplMeter()
    prov = provenance(device, meter)
    tables = replay_runs(runs, hf_runner_factory(device, dtype), meter.read_j, attention=attention, progress=progress,
                         slot_power_w=lambda run: empty_slot_power_w(problem, run),
                         simulate=lambda run: simulate_with_models(run, problem.inputs.models)
                         if problem.inputs is not None else None)
    info = {**tables.totals, "pool": pool, "plan_dir": str(plan_dir),
            "queries_not_replayed": int((asg["device"] != pool).sum()),
            "plan_status": summary.get("status"), "plan_input_sha256": summary.get("input_sha256"),
            "provenance": prov}
    out_dir.mkdir(parents=True, exist_ok=True)
    write_table_csv(tables.queries, out_dir / "replay_queries.csv")
    write_table_csv(tables.instances, out_dir / "replay_instances.csv")
    write_table_csv(tables.steps, out_dir / "replay_steps.csv")
    write_json(out_dir / "replay.json", info)
    return tables, info, out_dir
