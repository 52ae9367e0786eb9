"""Make the example workloads: token counts like public chat traces, some deadlines and floors.

Input and output lengths are lognormal (medians about 1,000 input and 130 output tokens, as in
public LLM chat traces), clipped to 8-4096 and 8-1024 tokens. A fifth of the queries carry a
completion deadline (uniform in a range: 60-1800 s after the batch start for make(), 2-20 s for
the shipped examples/workload.csv, so that its deadlines bind), drawn among those
without an accuracy floor (interactive queries need speed, not the largest model); 30% ask for
accuracy >= 0.5 and 10% for >= 0.6. Floors are drawn only among queries with at least 64 output
tokens and at most 4096 tokens in all (the context of the Llama-2 models; the default fleet's
models reach 0.6 with Mistral-7B, Llama-3-8B and Mixtral-8x7B). Seeded,
so the files are reproducible.

Run: python examples/make_workload.py [N] [OUT.csv] [--seed S] [--deadline-range MIN_S MAX_S]
(no arguments: the shipped examples/workload.csv)
"""

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

#: the shipped examples/workload.csv's deadlines [s]: tight enough to bind against the default
#: fleet's batched plan (makespan about half a minute), so that deadlines change the plan
EXAMPLE_DEADLINE_RANGE = (2.0, 20.0)


def make(n: int, seed: int = 0, deadline_fraction: float = 0.2, deadline_range: tuple[float, float] = (60, 1800)) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    tin = np.clip(np.round(rng.lognormal(np.log(1000), 0.9, n)), 8, 4096).astype(int)
    tout = np.clip(np.round(rng.lognormal(np.log(130), 0.8, n)), 8, 1024).astype(int)
    u = rng.random(n)
    can_floor = (tout >= 64) & (tin + tout <= 4096)
    u = np.where(can_floor, u * can_floor.mean(), 1.0)  # keep the overall shares at 10% and 30%
    min_acc = np.where(u < 0.1, 0.6, np.where(u < 0.3, 0.5, np.nan))
    free = np.isnan(min_acc)
    has_dl = free & (rng.random(n) < deadline_fraction / max(free.mean(), 1e-9))
    deadline = np.where(has_dl, np.round(rng.uniform(*deadline_range, n), 1), np.nan)
    return pd.DataFrame({"query_id": [f"q{i:06d}" for i in range(n)], "input_tokens": tin, "output_tokens": tout,
                         "min_accuracy": min_acc, "deadline_s": deadline})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", nargs="?", type=int, default=1000)
    ap.add_argument("out", nargs="?", type=Path, default=Path(__file__).with_name("workload.csv"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--deadline-fraction", type=float, default=0.2)
    ap.add_argument("--deadline-range", type=float, nargs=2, default=EXAMPLE_DEADLINE_RANGE, metavar=("MIN_S", "MAX_S"),
                    help="deadlines drawn uniformly in this range [s] (default: the shipped example's, 2-20 s)")
    a = ap.parse_args()
    make(a.n, a.seed, a.deadline_fraction, tuple(a.deadline_range)).to_csv(a.out, index=False)
    print(f"wrote {a.n} queries to {a.out}")


if __name__ == "__main__":
    main()
