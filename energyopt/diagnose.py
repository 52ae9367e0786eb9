"""Why no plan exists: queries no option can serve, an accuracy floor out of reach, pools or
deployments short of instance-seconds before some deadline."""

from __future__ import annotations

import numpy as np

from .problem import Problem

__all__ = ["explain_infeasible", "shown_below", "unreachable_accuracy"]


def _prefix_shortage(work: np.ndarray, deadlines: np.ndarray, servers: float,
                     horizon_s: float) -> tuple[np.ndarray, np.ndarray, int | None]:
    """Work due by each deadline (sorted) against ``servers`` × deadline: cumulative work, the
    sorted deadlines, and the index of the shortage to report (None if nothing is short): the
    horizon's where the work does not fit the horizon (no deadline is to blame then), else the
    deadline's with the largest shortage."""
    order = np.argsort(deadlines, kind="stable")
    cum = np.cumsum(work[order])
    due = deadlines[order]
    short = cum - servers * due
    if due[-1] >= horizon_s - 1e-9 and short[-1] > 1e-9:
        return cum, due, len(due) - 1
    j = int(np.argmax(short))
    return cum, due, (j if short[j] > 1e-9 else None)


def _by(t: float, horizon_s: float) -> str:
    """"by the deadline t s" or "by the horizon (t s)": what a shortage by time t asks to move."""
    return f"by the horizon ({horizon_s:g} s)" if t >= horizon_s - 1e-9 else f"by the deadline {t:g} s"


def unreachable_accuracy(problem: Problem) -> list[str]:
    """The reason where the batch's accuracy floor is above its token-weighted mean with every query
    on its most accurate option (by more than the checker's 1e-9), else none: proven before solving."""
    if problem.min_mean_accuracy is None:
        return []
    reach = problem.max_mean_accuracy()
    if reach < problem.min_mean_accuracy - 1e-9:
        return [f"token-weighted mean accuracy can reach at most {shown_below(reach, problem.min_mean_accuracy)} "
                f"(every query on its most accurate option), below the floor {problem.min_mean_accuracy:.6g}"]
    return []


def shown_below(value: float, floor: float) -> str:
    """``value`` with 4 decimals, or the fewer more (up to 12) that show it below ``floor``."""
    for decimals in range(4, 13):
        text = f"{value:.{decimals}f}"
        if float(text) < floor:
            return text
    return f"{value:.12f}"


def _single_deployment_shortage(problem: Problem) -> tuple[list[str], dict[int, int]]:
    """Queries that only one deployment can serve, against that deployment's instances; and the
    least instances each such deployment needs."""
    cand = problem.cand
    deps = problem.deployments
    n_dep = cand.groupby("q")["d"].nunique()
    single = cand[cand["q"].isin(n_dep.index[(n_dep == 1).to_numpy()])]
    out: list[str] = []
    min_inst: dict[int, int] = {}
    for d, sel in single.groupby("d"):
        m = int(deps["max_instances"].iloc[d])
        lanes = int(deps["lanes"].iloc[d])  # an instance at batch size b runs b queries at once
        cum, due, worst = _prefix_shortage(sel["runtime_s"].to_numpy(), sel["deadline_eff_s"].to_numpy(), m * lanes,
                                            problem.horizon_s)
        if worst is not None:
            what = "instance-seconds" if lanes == 1 else "lane-seconds"
            out.append(f"{deps['deployment'].iloc[d]}: queries only it can serve need {cum[worst]:.1f} {what} "
                       f"{_by(due[worst], problem.horizon_s)}, but its {m} instances offer {m * lanes * due[worst]:.1f} "
                       f"(short by {cum[worst] - m * lanes * due[worst]:.1f} s)")
        min_inst[int(d)] = int(np.ceil(np.max(cum / due) / lanes - 1e-9))
    return out, min_inst


def _pool_short_of_instances(problem: Problem, min_inst: dict[int, int]) -> list[str]:
    deps = problem.deployments
    pool_of = deps["device"].to_numpy()
    k_all = deps["devices_per_instance"].to_numpy()
    out = []
    for pool, cnt in zip(problem.pools["pool"], problem.pools["count"]):
        need = {d: n * int(k_all[d]) for d, n in min_inst.items() if pool_of[d] == pool and n > 0}
        if sum(need.values()) > cnt:
            parts = ", ".join(f"{deps['deployment'].iloc[d]} at least {min_inst[d]} instances ({n} devices)"
                              for d, n in need.items())
            out.append(f"pool {pool}: the queries only one deployment can serve need {parts}; the pool has {cnt} devices")
    return out


def _pool_short_of_device_seconds(problem: Problem) -> list[str]:
    """Queries that only one pool can serve, against that pool's device-seconds by each deadline."""
    cand = problem.cand
    deps = problem.deployments
    pool_of = deps["device"].to_numpy()
    k_all = deps["devices_per_instance"].to_numpy()
    cand_pool = pool_of[cand["d"].to_numpy()]
    n_pools = cand.assign(pool=cand_pool).groupby("q")["pool"].nunique()
    one_pool = cand["q"].isin(n_pools.index[(n_pools == 1).to_numpy()])
    out = []
    for pool, cnt in zip(problem.pools["pool"], problem.pools["count"]):
        sel = cand[one_pool & (cand_pool == pool)]
        if sel.empty:
            continue
        lanes = deps["lanes"].to_numpy()[sel["d"].to_numpy()]
        need = (sel["runtime_s"] * k_all[sel["d"].to_numpy()] / lanes).groupby(sel["q"]).min()
        cum, due, worst = _prefix_shortage(need.to_numpy(), problem.queries["deadline_eff_s"].to_numpy()[need.index], cnt,
                                            problem.horizon_s)
        if worst is not None:
            out.append(f"pool {pool}: queries only it can serve need at least {cum[worst]:.1f} device-seconds "
                       f"{_by(due[worst], problem.horizon_s)}, but its {cnt} devices offer {cnt * due[worst]:.1f} "
                       f"(short by {cum[worst] - cnt * due[worst]:.1f} device-seconds)")
    return out


def explain_infeasible(problem: Problem) -> list[str]:
    """Reasons no plan exists, the most specific first: unservable queries; an accuracy floor out
    of reach or deployments and pools short of instances; pools short of device-seconds."""
    out = [f"query {r.query_id}: {r.reason}" for r in problem.unservable.itertuples()]
    if out:
        return out
    short, min_inst = _single_deployment_shortage(problem)
    out = unreachable_accuracy(problem) + short + _pool_short_of_instances(problem, min_inst)
    if out:
        return out
    out = _pool_short_of_device_seconds(problem)
    if not out:
        due = problem.queries["deadline_eff_s"].to_numpy(dtype=float)
        if np.any(due < problem.horizon_s - 1e-9):
            out.append("capacity and deadlines together cannot be met: instances are too few for the work due "
                       "before some deadlines (relax deadlines, add devices, or allow more instances)")
        else:  # no query is due before the horizon: the deadlines are not what binds
            out.append(f"capacity cannot be met: instances are too few for the work by the horizon "
                       f"({problem.horizon_s:g} s) (lengthen the horizon, add devices, or allow more instances)")
    return out
