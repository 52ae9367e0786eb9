"""Write models/<llm>__a100.json from the published coefficients in wilkins2024_a100.csv.

The paper's form e = a0·τin + a1·τout + a2·τin·τout (r likewise with b), no intercept, taken as
printed (``origin: published``): a0 and b0 are negative, so these models predict <= 0 for long
prompts with short outputs, and energyopt drops such options instead of treating them as free.

Run from the repository root: python data/published/make_models.py
"""

import json
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
OUT = HERE.parent.parent / "models"


def main() -> None:
    df = pd.read_csv(HERE / "wilkins2024_a100.csv")
    for r in df.itertuples():
        def target(prefix: str, unit: str) -> dict:
            return {
                "origin": "published",
                "form": "paper",
                "features": ["tin", "tout", "tin*tout"],
                "coefficients": {
                    "tin": getattr(r, f"{prefix}0_{'energy_j' if prefix == 'a' else 'runtime_s'}_per_input_token"),
                    "tout": getattr(r, f"{prefix}1_{'energy_j' if prefix == 'a' else 'runtime_s'}_per_output_token"),
                    "tin*tout": getattr(r, f"{prefix}2_{'energy_j' if prefix == 'a' else 'runtime_s'}_per_input_output_token"),
                },
                "intercept": 0.0,
                "unit": unit,
                "r2": None, "cv_r2": None, "cv_median_rel_error": None, "cv_p95_rel_error": None,
                "n_samples": 0, "n_points": 0,
                "input_tokens_range": None, "output_tokens_range": None,
            }

        doc = {
            "format_version": 1,
            "llm": r.llm,
            "device": r.device,
            "energy_j": target("a", "J"),
            "runtime_s": target("b", "s"),
            "measurement": {"num_devices": int(r.num_devices), "energy_source": "published"},
            "provenance": {"source": r.source, "file": "data/published/wilkins2024_a100.csv"},
        }
        path = OUT / f"{r.llm}__{r.device}.json"
        path.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
