"""Make ``synthetic_characterization.csv``: a realistic small characterization table for tests.

Runtimes and energies follow known KV-cache-on cost functions (a prefill term in τin, a decode
term in τout, an attention term in τin·τout, and a fixed overhead) with 3% multiplicative noise,
on a log-spaced design with two repeats per point. It is synthetic, labelled so in
``energy_source``, and only used by the tests; real measurements live in ``data/``.

Run: python tests/data/make_synthetic.py
"""

from pathlib import Path

import numpy as np
import pandas as pd

# (llm, device): runtime coefficients (c, tin, tout, tin*tout) and average power [W]
TRUTH = {
    ("small-llm", "gpu-a"): ((0.05, 2.0e-5, 0.018, 1.5e-7), 280.0),
    ("small-llm", "gpu-b"): ((0.04, 1.5e-5, 0.015, 1.0e-7), 330.0),
    ("big-llm", "gpu-a"): ((0.08, 5.0e-5, 0.035, 3.0e-7), 420.0),
    ("big-llm", "gpu-b"): ((0.06, 3.5e-5, 0.028, 2.2e-7), 470.0),
}


def main() -> None:
    rng = np.random.default_rng(7)
    tin = [8, 32, 128, 512, 1024, 2048, 4096]
    tout = [8, 32, 128, 512, 1024]
    rows = []
    for (llm, dev), ((c, a, b, d), power) in TRUTH.items():
        for x in tin:
            for y in tout:
                for rep in range(2):
                    rt = (c + a * x + b * y + d * x * y) * rng.lognormal(0, 0.03)
                    en = rt * power * (1 + 0.1 * np.log1p(x) / 8) * rng.lognormal(0, 0.03)
                    rows.append(
                        dict(llm=llm, device=dev, input_tokens=x, output_tokens=y, batch_size=1,
                             runtime_s=round(rt, 6), energy_j=round(en, 4), idle_power_w=70.0,
                             num_devices=1, energy_source="synthetic", repeat=rep)
                    )
    out = Path(__file__).with_name("synthetic_characterization.csv")
    pd.DataFrame(rows).to_csv(out, index=False)
    print(f"wrote {len(rows)} rows to {out}")


if __name__ == "__main__":
    main()
