"""Where the time of short replay-engine runs goes, per step (GPU only; a diagnostic, not a test).

    PYTHONPATH=$PWD taskset -c 0-3 python3 benchmarks/engine_step_times.py qwen2.5-0.5b

For a few (batch size, input, output) shapes the characterization's EngineRunner prepares the
engine, then runs b identical queries three times (after 3 s idle, then twice back to back) and
prints one JSON line per run: the host's window, the device's span (CUDA events), the prefills'
sum, first and median, and the decode steps' sum, first five, median and last five [ms]; then the
mean of five runs through ``EngineRunner.run`` (as the characterization times them). The output
of 2026-12-03 on the H200 is data/env/h200-engine-step-times-2026-12-03.txt: decode steps are
steady from the first (2.5-3.0 ms for Qwen2.5-0.5B, 7-8.7 ms for Llama-3-8B), and a prefill costs
16-30 ms of host launches whatever the prompt length, varying by about 20% from run to run.
"""

import json
import sys
import time

import numpy as np

from energyopt.characterize.catalog import get_spec
from energyopt.characterize.engine import EngineRunner
from energyopt.characterize.runner import HFRunner

SHAPES = [(32, 64, 16), (32, 64, 128), (32, 1024, 16), (8, 64, 16), (8, 64, 128), (1, 64, 128), (32, 8, 512)]


def main(llm: str) -> None:
    r = EngineRunner(HFRunner(get_spec(llm), device="cuda", dtype="bf16", decode_attention="grouped"))
    for b, tin, tout in SHAPES:
        r.prepare(tin, tout, b)
        eng = r._engine
        assert eng is not None
        for cond in ["after_sleep", "back_to_back", "back_to_back"]:
            if cond == "after_sleep":
                time.sleep(3)
            h0 = time.perf_counter()
            log = eng.run([[(tin, tout)] for _ in range(b)])
            h1 = time.perf_counter()
            d = np.diff(np.concatenate([[log.t0_s], log.step_end_s]))
            pre, dec = d[log.step_is_prefill], d[~log.step_is_prefill]
            print(json.dumps(dict(
                b=b, tin=tin, tout=tout, cond=cond, host_window_s=h1 - h0, gpu_span_s=float(log.step_end_s[-1] - log.t0_s),
                prefill_sum_s=float(pre.sum()), prefill_first_ms=float(pre[0] * 1e3), prefill_med_ms=float(np.median(pre) * 1e3),
                decode_n=int(dec.size), decode_sum_s=float(dec.sum()), decode_first5_ms=[round(x * 1e3, 2) for x in dec[:5]],
                decode_med_ms=float(np.median(dec) * 1e3) if dec.size else None,
                decode_last5_ms=[round(x * 1e3, 2) for x in dec[-5:]])), flush=True)
        h0 = time.perf_counter()
        for _ in range(5):
            r.run(tin, tout, b)
        print(json.dumps(dict(b=b, tin=tin, tout=tout, cond="runner.run x5 per run", s=(time.perf_counter() - h0) / 5)),
              flush=True)
    r.close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "qwen2.5-0.5b")
