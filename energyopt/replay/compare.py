"""Predicted against measured: the replay's tables and totals (plain data; printing is the CLI's)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..accounting import ends_in_time, padding_energy_j
from ..enginesim import EngineTimeline
from .lanes import InstanceRun
from .measure import InstanceMeasurement

__all__ = ["instance_table", "query_table", "totals", "ReplayTables", "relative_error", "planned_times_s"]


def relative_error(measured, predicted) -> np.ndarray:
    """(measured − predicted) / measured: how far the prediction is from what was measured."""
    m = np.asarray(measured, dtype=float)
    p = np.asarray(predicted, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(m > 0, (m - p) / m, np.nan)


@dataclass
class ReplayTables:
    queries: pd.DataFrame
    instances: pd.DataFrame
    steps: pd.DataFrame
    totals: dict


def planned_times_s(run: InstanceRun) -> tuple[np.ndarray, np.ndarray, bool]:
    """Each query's start and end [s] as the plan predicts them, and whether they are engine times:
    the plan's ``engine_start_s`` and ``engine_end_s`` where it states them for every query of the
    instance (a batched instance of a plan timed as the engine runs it), else its lane model's
    ``start_s`` and ``end_s``."""
    r = run.rows
    if "engine_start_s" in r.columns and "engine_end_s" in r.columns:
        es = r["engine_start_s"].to_numpy(dtype=float)
        ee = r["engine_end_s"].to_numpy(dtype=float)
        if len(r) and np.isfinite(es).all() and np.isfinite(ee).all():
            return es, ee, True
    return r["start_s"].to_numpy(dtype=float), r["end_s"].to_numpy(dtype=float), False


def query_table(run: InstanceRun, meas: InstanceMeasurement, sim: EngineTimeline | None = None) -> pd.DataFrame:
    """Per query: the plan's prediction (its engine times where it states them:
    :func:`planned_times_s`), the measurement and, with ``sim``, the engine simulation's times
    (:mod:`.simulate`)."""
    r = run.rows
    q = meas.queries
    start, end, _ = planned_times_s(run)
    t = pd.DataFrame({
        "query_id": r["query_id"].to_numpy(),
        "llm": run.llm, "device": run.device, "instance": run.instance, "batch_size": run.batch_size,
        "lane": r["lane"].to_numpy(),
        "input_tokens": r["input_tokens"].to_numpy(), "output_tokens": r["output_tokens"].to_numpy(),
        "predicted_start_s": start, "measured_start_s": q["measured_start_s"].to_numpy(),
        "predicted_end_s": end, "measured_end_s": q["measured_end_s"].to_numpy(),
        "predicted_runtime_s": end - start, "measured_runtime_s": q["measured_runtime_s"].to_numpy(),
        "predicted_energy_j": r["energy_j"].to_numpy(), "measured_energy_j": q["measured_energy_j"].to_numpy(),
        "deadline_s": r["deadline_s"].to_numpy(dtype=float),
        "prefill_step": q["prefill_step"].to_numpy(), "first_decode_step": q["first_decode_step"].to_numpy(),
        "last_decode_step": q["last_decode_step"].to_numpy(),
    })
    t["energy_error"] = relative_error(t["measured_energy_j"], t["predicted_energy_j"])
    t["runtime_error"] = relative_error(t["measured_runtime_s"], t["predicted_runtime_s"])
    nan = np.full(len(t), np.nan)
    t["simulated_start_s"] = sim.start_s if sim is not None else nan
    t["simulated_end_s"] = sim.end_s if sim is not None else nan
    t["simulated_runtime_s"] = t["simulated_end_s"] - t["simulated_start_s"]
    t["simulated_runtime_error"] = relative_error(t["measured_runtime_s"], t["simulated_runtime_s"])
    met = pd.array(ends_in_time(t["measured_end_s"].to_numpy(), t["deadline_s"].to_numpy()), dtype="boolean")
    met[np.isnan(t["deadline_s"].to_numpy())] = pd.NA  # empty, not false, for a query without a deadline
    t["deadline_met_measured"] = met
    return t


def instance_table(run: InstanceRun, meas: InstanceMeasurement, setup_s: float, slot_power_w: float | None = None,
                   sim: EngineTimeline | None = None) -> dict:
    """One instance's predicted and measured figures. ``slot_power_w``: an empty slot's predicted
    power [W] (see :func:`~energyopt.accounting.padding_energy_j`); None: its queries' mean.
    With ``sim``, the engine simulation's makespan and padding (the queries' energy stays the
    plan's), else NaN. A plan timed as the engine runs it (:func:`planned_times_s`) predicts the
    makespan and the padding of that timing (the simulation's, from the same lanes and models)."""
    pred_q = float(run.rows["energy_j"].sum())
    _, end, engine_timed = planned_times_s(run)
    pred_m = float(end.max())
    busy_s = float(run.rows["runtime_s"].sum())
    if slot_power_w is None:
        slot_power_w = pred_q / busy_s if busy_s > 0 else 0.0
    sim_pad = sim.padding_energy_j(slot_power_w) if sim is not None else float("nan")
    pred_pad = sim_pad if engine_timed and sim is not None else padding_energy_j(slot_power_w, run.batch_size, pred_m,
                                                                                  busy_s)
    pred_e = pred_q + pred_pad
    sim_m = sim.makespan_s if sim is not None else float("nan")
    return {
        "llm": run.llm, "device": run.device, "instance": run.instance, "batch_size": run.batch_size,
        "queries": len(run.rows), "lanes_used": int(run.rows["lane"].nunique()),
        "predicted_query_energy_j": pred_q, "measured_query_energy_j": meas.energy_j - meas.padding_energy_j,
        "predicted_padding_energy_j": pred_pad, "measured_padding_energy_j": meas.padding_energy_j,
        "predicted_energy_j": pred_e, "measured_energy_j": meas.energy_j,
        "energy_error": float(relative_error(meas.energy_j, pred_e)),
        "predicted_makespan_s": pred_m, "measured_makespan_s": meas.makespan_s,
        "makespan_error": float(relative_error(meas.makespan_s, pred_m)),
        "simulated_padding_energy_j": sim_pad, "simulated_energy_j": pred_q + sim_pad,
        "simulated_energy_error": float(relative_error(meas.energy_j, pred_q + sim_pad)),
        "simulated_makespan_s": sim_m, "simulated_makespan_error": float(relative_error(meas.makespan_s, sim_m)),
        "predicted_slot_power_w": slot_power_w, "decode_steps": meas.decode_steps,
        "mean_running": meas.mean_active, "setup_s": setup_s,
    }


def totals(queries: pd.DataFrame, instances: pd.DataFrame) -> dict:
    """The plan as a whole: energies add up over instances; the makespan is the latest instance's
    (the plan runs its instances side by side; the replay measures them one after another). An
    instance's energy is its queries' plus its padding (slots with no query until its last query
    ends): the plan's objective counts the queries'; the padding is predicted from the plan's lanes
    (:func:`~energyopt.accounting.padding_energy_j`)."""
    pe, me = float(instances["predicted_energy_j"].sum()), float(instances["measured_energy_j"].sum())
    pq, mq = float(instances["predicted_query_energy_j"].sum()), float(instances["measured_query_energy_j"].sum())
    pm, mm = float(instances["predicted_makespan_s"].max()), float(instances["measured_makespan_s"].max())
    se = float(instances["simulated_energy_j"].sum(skipna=False))  # NaN unless every instance was simulated
    sm = float(instances["simulated_makespan_s"].max(skipna=False))
    ae = queries["energy_error"].abs()
    ar = queries["runtime_error"].abs()
    dl = queries["deadline_s"].notna()
    return {
        "queries": int(len(queries)), "instances": int(len(instances)),
        "llms": sorted(queries["llm"].unique().tolist()),
        "batch_sizes": sorted(int(b) for b in queries["batch_size"].unique()),
        "predicted_energy_j": pe, "measured_energy_j": me, "energy_error": float(relative_error(me, pe)),
        "predicted_query_energy_j": pq, "measured_query_energy_j": mq,
        "query_energy_error": float(relative_error(mq, pq)),
        "predicted_padding_energy_j": pe - pq, "measured_padding_energy_j": me - mq,
        "predicted_makespan_s": pm, "measured_makespan_s": mm, "makespan_error": float(relative_error(mm, pm)),
        "simulated_energy_j": se, "simulated_energy_error": float(relative_error(me, se)),
        "simulated_makespan_s": sm, "simulated_makespan_error": float(relative_error(mm, sm)),
        "query_runtime_error_median_abs_simulated": float(queries["simulated_runtime_error"].abs().median()),
        "query_energy_error_median_abs": float(ae.median()), "query_energy_error_p90_abs": float(ae.quantile(0.9)),
        "query_energy_error_max_abs": float(ae.max()),
        "query_runtime_error_median_abs": float(ar.median()), "query_runtime_error_p90_abs": float(ar.quantile(0.9)),
        "queries_with_deadline": int(dl.sum()),
        "deadlines_met_measured": int(queries.loc[dl, "deadline_met_measured"].sum()),
        "deadlines_met_predicted": int(ends_in_time(queries.loc[dl, "predicted_end_s"].to_numpy(),
                                                    queries.loc[dl, "deadline_s"].to_numpy()).sum()),
    }
