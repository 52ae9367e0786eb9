"""The replay's engine against the characterization's harness, on the same batches of identical queries.

The plan's predictions come from models fitted on the harness (`energyopt characterize`: one
prefill of the batch, decode steps over a static cache of 128- or 512-token buckets, grouped
attention over the whole bucket); `energyopt replay` runs the plan on a continuous-batching engine
(a prefill per query, decode attention over each slot's own tokens). Where the two differ on the
same work, a replay measures the difference of engines, not the plan. For b identical queries of
a few shapes, prints each one's runtime and energy (NVML, repeated to fill at least one second)
and their ratio, side by side in one process.

Run (on a GPU): python benchmarks/replay_vs_harness.py [--llm NAME ...]
"""

import argparse
import time

from energyopt.characterize.catalog import get_spec
from energyopt.characterize.engine import SlotEngine, capacity_tokens
from energyopt.characterize.meters import NvmlMeter
from energyopt.characterize.runner import HFRunner

POINTS = [(512, 128), (1024, 256), (2048, 64)]


def window(fn, read_j, min_s: float = 1.0) -> tuple[float, float]:
    """Seconds and joules per call of ``fn``, repeated back to back to fill ``min_s``."""
    fn()
    n, t0, e0 = 0, time.perf_counter(), read_j()
    while True:
        fn()
        n += 1
        t, e = time.perf_counter(), read_j()
        if t - t0 >= min_s:
            return (t - t0) / n, (e - e0) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llm", action="append", default=None)
    ap.add_argument("--batch-sizes", default="1,32")
    a = ap.parse_args()
    meter = NvmlMeter([0])
    print(f"{meter.names()[0]}, driver {meter.driver()}")
    print("llm            batch  input output  harness_s engine_s  time_ratio  harness_j  engine_j  energy_ratio")
    for llm in a.llm or ["llama-3-8b", "mistral-7b", "qwen2.5-0.5b"]:
        runner = HFRunner(get_spec(llm), device="cuda", dtype="bf16", decode_attention="grouped")
        for b in (int(x) for x in a.batch_sizes.split(",")):
            for tin, tout in POINTS:
                runner.model.set_attn_implementation("energyopt_grouped")
                runner.prepare(tin, tout, b)
                th, eh = window(lambda r=runner, tin=tin, tout=tout, b=b: r.run(tin, tout, b), meter.read_j)
                runner._drop_graphs()
                lanes = [[(tin, tout)] for _ in range(b)]
                eng = SlotEngine(runner, b, capacity_tokens(lanes))
                eng.warm_up([tin])
                te, ee = window(lambda lanes=lanes, eng=eng: eng.run(lanes), meter.read_j)
                eng.close()
                print(f"{llm:14s} {b:5d} {tin:6d} {tout:6d} {th:10.3f} {te:8.3f} {te / th:11.3f} {eh:10.1f} "
                      f"{ee:9.1f} {ee / eh:13.3f}", flush=True)
        runner.model = None
        runner._drop_graphs()


if __name__ == "__main__":
    main()
