"""From a plan's assignment to what the replay engine runs: each instance's lanes, in order."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import DataError

__all__ = ["InstanceRun", "instance_runs"]

KEY = ["llm", "device", "instance", "batch_size"]


@dataclass(frozen=True)
class InstanceRun:
    """One instance of the plan: its lanes' queries, in the order each lane runs them.

    ``rows`` are the plan's assignment rows of this instance, with ``input_tokens`` and
    ``output_tokens`` joined, in the engine's order (lane by lane, by start time).
    """

    llm: str
    device: str
    instance: int
    batch_size: int
    rows: pd.DataFrame

    @property
    def lanes(self) -> list[list[tuple[int, int]]]:
        out: list[list[tuple[int, int]]] = [[] for _ in range(self.batch_size)]
        for lane, tin, tout in zip(self.rows["lane"], self.rows["input_tokens"], self.rows["output_tokens"]):
            out[int(lane)].append((int(tin), int(tout)))
        return out

    @property
    def label(self) -> str:
        return f"{self.llm}/{self.device}#{self.instance} (batch {self.batch_size})"


def instance_runs(assignment: pd.DataFrame, tokens: pd.DataFrame, *, device: str | None = None) -> list[InstanceRun]:
    """The plan's instances on ``device`` (a pool name; None: every pool), largest work first.

    ``tokens`` has ``query_id``, ``input_tokens`` and ``output_tokens`` for every query of the plan.
    """
    asg = assignment
    if device is not None:
        asg = asg[asg["device"] == device]
    if asg.empty:
        raise DataError(f"the plan has no query on {device!r}" if device else "the plan has no query")
    tok = tokens.set_index("query_id")[["input_tokens", "output_tokens"]]
    missing = ~asg["query_id"].isin(tok.index)
    if missing.any():
        raise DataError(f"query {asg['query_id'][missing].iloc[0]!r} of the plan is not in the workload")
    rows = asg.join(tok, on="query_id")
    bad = (rows["lane"] < 0) | (rows["lane"] >= rows["batch_size"])
    if bad.any():
        r = rows[bad].iloc[0]
        raise DataError(f"query {r['query_id']!r}: lane {r['lane']} outside its instance's {r['batch_size']} lanes")
    out = []
    for key, grp in rows.groupby(KEY, sort=True):
        llm, dev, inst, b = key
        grp = grp.sort_values(["lane", "start_s", "query_id"], kind="stable").reset_index(drop=True)
        out.append(InstanceRun(str(llm), str(dev), int(inst), int(b), grp))
    work = [float(np.sum(r.rows["input_tokens"] + r.rows["output_tokens"])) for r in out]
    return [out[i] for i in np.argsort(work, kind="stable")[::-1]]
