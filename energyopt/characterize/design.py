"""Which (input_tokens, output_tokens, batch_size) points a sweep measures.

The default design covers input 8–4096 and output 8–1024 tokens on log-spaced levels, so points
are densest at small counts, where fixed overheads make the curves bend. Because a run costs about
its output length in decode steps, the design spends few points on long outputs: every input level
meets short outputs, and long outputs are met at a spread of inputs (a Latin-square-like pattern),
so each term of the models (τin, τout, τin·τout, τout²) is identified.

With ``--batch-sizes`` the design is the product of the token points and the batch sizes: every
batch size is measured on the same token points (so one batch size can be held back to check a
fit across batch sizes), and the points are interleaved by batch size so that a time-boxed sweep
stops with every batch size covered.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from ..errors import DataError

__all__ = [
    "DesignPoint",
    "default_design",
    "holdout_design",
    "parse_points",
    "coverage_order",
    "fit_context",
    "design_cost_tokens",
    "parse_batch_sizes",
    "with_batch_sizes",
]

INPUT_LEVELS = (8, 32, 128, 512, 1024, 2048, 4096)
OUTPUT_LEVELS = (8, 32, 128, 256, 512, 1024)


@dataclass(frozen=True, order=True)
class DesignPoint:
    input_tokens: int
    output_tokens: int
    split: str = "design"  # "design" (used for fitting) or "holdout" (used to check the fit)
    batch_size: int = 1  # queries of this shape run together (one prefill, then decode steps of all)


def _clip_levels(levels: tuple[int, ...], lo: int, hi: int) -> list[int]:
    kept = [v for v in levels if lo <= v <= hi]
    if hi not in kept and hi > (kept[-1] if kept else 0):
        kept.append(hi)
    if lo not in kept and lo < (kept[0] if kept else math.inf):
        kept.insert(0, lo)
    return kept


def default_design(
    n_points: int | None = None,
    *,
    min_input: int = 8,
    max_input: int = 4096,
    min_output: int = 8,
    max_output: int = 1024,
) -> list[DesignPoint]:
    """The fitting design: a full grid over short outputs plus a diagonal sweep of long outputs.

    Every input level is measured with every output ≤ 128 tokens; outputs above 128 tokens are
    measured at input levels spread by a rotating pattern (two inputs per long output level, the
    longest output met at the smallest and largest input only). ``n_points`` thins the design
    evenly (keeping the corners) where a smaller budget is needed.
    """
    if not (1 <= min_input <= max_input and 1 <= min_output <= max_output):
        raise DataError(
            f"token ranges must satisfy 1 <= min <= max, got input {min_input}-{max_input}, output {min_output}-{max_output}"
        )
    ins = _clip_levels(INPUT_LEVELS, min_input, max_input)
    outs = _clip_levels(OUTPUT_LEVELS, min_output, max_output)
    short = [o for o in outs if o <= 128] or outs[:1]
    long_ = [o for o in outs if o not in short]
    pts = {DesignPoint(i, o) for i in ins for o in short}
    for k, o in enumerate(long_):
        spread = {ins[(2 * k + 1) % len(ins)], ins[(2 * k + 4) % len(ins)]}
        picks = {ins[0], ins[-1]} if o == long_[-1] else spread
        pts |= {DesignPoint(i, o) for i in picks}
    design = sorted(pts)
    if n_points is not None:
        if n_points < 6:
            raise DataError(f"--points must be at least 6 to fit the models, got {n_points}")
        if n_points < len(design):
            corners = {DesignPoint(ins[0], outs[0]), DesignPoint(ins[-1], outs[0]),
                       DesignPoint(ins[0], outs[-1]), DesignPoint(ins[-1], outs[-1])}
            corners &= set(design)
            rest = [p for p in design if p not in corners]
            idx = np.round(np.linspace(0, len(rest) - 1, n_points - len(corners))).astype(int)
            design = sorted(corners | {rest[i] for i in idx})
    return design


def holdout_design(
    n_points: int = 10,
    *,
    exclude: list[DesignPoint] | tuple[DesignPoint, ...] = (),
    seed: int = 2024,
    min_input: int = 8,
    max_input: int = 4096,
    min_output: int = 8,
    max_output: int = 1024,
    median_input: float = 1000.0,
    median_output: float = 130.0,
) -> list[DesignPoint]:
    """Held-back points, off the design grid, drawn like chat-trace queries.

    Token counts are lognormal (median ``median_input`` input and ``median_output`` output tokens,
    σ = 1 in log space), clipped to the design's range, and never equal to a design point.
    """
    rng = np.random.default_rng(seed)
    taken = {(p.input_tokens, p.output_tokens) for p in exclude}
    out: list[DesignPoint] = []
    while len(out) < n_points:
        i = int(np.clip(round(rng.lognormal(math.log(median_input), 1.0)), min_input, max_input))
        o = int(np.clip(round(rng.lognormal(math.log(median_output), 1.0)), min_output, max_output))
        if (i, o) in taken:
            continue
        taken.add((i, o))
        out.append(DesignPoint(i, o, "holdout"))
    return out


_POINT = re.compile(r"^\s*(\d+)\s*[xX:]\s*(\d+)\s*$")


def parse_points(text: str) -> list[DesignPoint]:
    """Parse ``"512x128,1024x64"`` (input x output tokens) into design points."""
    pts = []
    for part in text.split(","):
        if not part.strip():
            continue
        m = _POINT.match(part)
        if not m:
            raise DataError(f"--points: {part.strip()!r} is not INPUTxOUTPUT (for example 512x128)")
        i, o = int(m.group(1)), int(m.group(2))
        if i < 1 or o < 1:
            raise DataError(f"--points: {part.strip()!r}: token counts must be >= 1")
        pts.append(DesignPoint(i, o))
    if not pts:
        raise DataError("--points: no points given")
    return sorted(set(pts))


def fit_context(points: list[DesignPoint], context_tokens: int) -> list[DesignPoint]:
    """Clip points to an LLM's context window: input_tokens + output_tokens <= context_tokens.

    A point too long for the context keeps its output length and gets the longest input that
    fits; points that collide after clipping are kept once, and an output that alone fills the
    context is dropped.
    """
    out: dict[tuple[int, int, str, int], DesignPoint] = {}
    for p in points:
        if p.input_tokens + p.output_tokens <= context_tokens:
            q = p
        elif p.output_tokens < context_tokens:
            q = DesignPoint(context_tokens - p.output_tokens, p.output_tokens, p.split, p.batch_size)
        else:
            continue
        out.setdefault((q.input_tokens, q.output_tokens, q.split, q.batch_size), q)
    return list(out.values())


def coverage_order(points: list[DesignPoint]) -> list[DesignPoint]:
    """Reorder points so that any prefix spreads over the whole (log τin, log τout) range.

    Greedy farthest-point order in log space, starting from the corner of the shortest run. A sweep
    stopped by its time budget then still covers the range, and a resumed one fills it in.
    """
    if not points:
        return []
    xy = np.log2(np.array([[p.input_tokens, p.output_tokens] for p in points], dtype=float))
    order = [int(np.argmin(xy.sum(axis=1)))]
    dist = np.linalg.norm(xy - xy[order[0]], axis=1)
    while len(order) < len(points):
        k = int(np.argmax(dist))
        order.append(k)
        dist = np.minimum(dist, np.linalg.norm(xy - xy[k], axis=1))
    return [points[i] for i in order]


def design_cost_tokens(points: list[DesignPoint], prefill_weight: float = 0.002) -> float:
    """A crude cost of a design in 'decode-step equivalents', for progress estimates.

    A decode step of a batch costs about one step (it reads the weights once); its prefill costs
    about ``prefill_weight`` steps per token of every query.
    """
    return float(sum(p.output_tokens + prefill_weight * p.input_tokens * p.batch_size for p in points))


MAX_BATCH_SIZE = 4096


def parse_batch_sizes(text: str) -> list[int]:
    """Parse ``"1,8,32,64,128"`` into distinct batch sizes in the order given."""
    out: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit() or int(part) < 1:
            raise DataError(f"--batch-sizes: {part!r} is not a whole number >= 1 (for example 1,8,32,64,128)")
        b = int(part)
        if b > MAX_BATCH_SIZE:
            raise DataError(f"--batch-sizes: {b} is above the largest batch size the harness runs ({MAX_BATCH_SIZE})")
        if b not in out:
            out.append(b)
    if not out:
        raise DataError("--batch-sizes: no batch size given (for example 1,8,32,64,128)")
    return out


def with_batch_sizes(points: list[DesignPoint], batch_sizes: list[int]) -> list[DesignPoint]:
    """Every token point at every batch size, in the points' order, the batch sizes interleaved.

    The order is point by point (each at every batch size in turn), so any prefix of the list
    covers all batch sizes on the leading (coverage-ordered) token points.
    """
    if not batch_sizes:
        raise DataError("--batch-sizes: no batch size given (for example 1,8,32,64,128)")
    return [DesignPoint(p.input_tokens, p.output_tokens, p.split, int(b)) for p in points for b in batch_sizes]
