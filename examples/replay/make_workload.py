"""Make the replay check's workload: 240 queries with token counts like public chat traces.

Input and output lengths are lognormal (medians about 1,000 input and 130 output tokens, as in
public LLM chat traces, and as examples/make_workload.py draws them), clipped to 8-4096 and
8-1024 tokens. Floors that only some LLMs of examples/replay/fleet-*.toml meet: 15% of the
queries ask for accuracy >= 0.65 (Llama-3-8B alone), 25% for >= 0.55 (Mistral-7B or Llama-3-8B);
a fifth of the others carry a completion deadline drawn uniformly from 60-240 s. Seeded.

Run: python examples/replay/make_workload.py [N] [OUT.csv] [--seed S]
"""

import argparse
from pathlib import Path

import numpy as np
import pandas as pd


def make(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    tin = np.clip(np.round(rng.lognormal(np.log(1000), 0.9, n)), 8, 4096).astype(int)
    tout = np.clip(np.round(rng.lognormal(np.log(130), 0.8, n)), 8, 1024).astype(int)
    u = rng.random(n)
    min_acc = np.where(u < 0.15, 0.65, np.where(u < 0.40, 0.55, np.nan))
    free = np.isnan(min_acc)
    has_dl = free & (rng.random(n) < 0.2)
    deadline = np.where(has_dl, np.round(rng.uniform(60, 240, n), 1), np.nan)
    return pd.DataFrame({"query_id": [f"r{i:04d}" for i in range(n)], "input_tokens": tin, "output_tokens": tout,
                         "min_accuracy": min_acc, "deadline_s": deadline})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", nargs="?", type=int, default=240)
    ap.add_argument("out", nargs="?", type=Path, default=Path(__file__).with_name("workload.csv"))
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    make(a.n, a.seed).to_csv(a.out, index=False)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
