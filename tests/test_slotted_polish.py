"""The slot bound with the instances fixed (deployments without an instance priced out) and the plan's
deal of the rows free all day over a deployment's cells: against enumeration on tiny instances."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from conftest import TWO_LLM_MODELS, make_models
from oracles import _caps_hold, _lanes_needed
from test_slotted import _fleet, _signals, _workload

from energyopt.methods.slotted import _evaluate, _Slots, _sort_by_intensity, _View
from energyopt.plan import plan


def _best_with(T, problem, n: np.ndarray, cap_w: dict) -> float:
    """The least objective of an in-slot plan whose instances fit in ``n`` (each (deployment,
    slot)'s queries on at most n[d] instances' lanes), by enumeration; inf where none."""
    dt = [float(x) for x in T.dt]
    opts = [[(d, k) for d in range(T.n_d) if T.ok[q, d] and n[d] > 0 for k in range(T.S)
             if T.fits(np.array([q]), np.array([d]), np.array([k]))[0]] for q in range(problem.n_queries)]
    best = math.inf
    for pick in itertools.product(*opts):
        cells: dict[tuple[int, int], list[int]] = {}
        for q, (d, k) in enumerate(pick):
            cells.setdefault((d, k), []).append(q)
        if any(_lanes_needed([float(T.R[q, d]) for q in qs], dt[k]) > n[d] * T.lanes[d] for (d, k), qs in cells.items()):
            continue
        if not _caps_hold(problem, pick, n, cap_w, dt):
            continue
        best = min(best, sum(float(T.E[q, d] * T.a0[d, k]) for q, (d, k) in enumerate(pick)))
    return best


def _vectors(T) -> list[np.ndarray]:
    out = []
    for cand in itertools.product(*[range(0, 3) for _ in range(T.n_d)]):
        nn = np.array(cand)
        if all(int((T.k[ds] * nn[ds]).sum()) <= cnt for cnt, ds in T.pools) and all(
                nn[m].sum() <= T.max_inst[m[0]] for m in T.groups):
            out.append(nn)
    return out


@pytest.mark.parametrize("seed", range(8))
def test_bound_at_fixed_instances_against_enumeration(seed):
    """With the instances fixed at n, L with the deployments that have none priced out is at least L
    at the same prices, at most every plan with instances n; and each such evaluation is a cut
    α − gain·n' that no plan with any instance vector n' beats (the instance master reads them)."""
    rng = np.random.default_rng(seed)
    cap = None if seed % 2 == 0 else float(rng.uniform(40, 150))
    s = plan(_workload(rng, 4), _fleet(cap), make_models(TWO_LLM_MODELS), objective="carbon",
             signals=_signals(rng.uniform(50, 400, 3)))
    p = s.problem
    T = _Slots(p)
    V = _View(T, np.flatnonzero(T.ok.any(axis=1)), exact=True)
    cap_w = {} if cap is None else {"g": cap}
    vectors = _vectors(T)
    best = {tuple(n.tolist()): _best_with(T, p, n, cap_w) for n in vectors}
    for _trial in range(4):
        lam = np.where(rng.random((T.n_d, T.S)) < 0.5, 0.0, rng.uniform(0, 3e-9, (T.n_d, T.S)))
        pi = np.zeros((T.n_c, T.S))
        pi[T.capped] = np.where(rng.random((len(T.capped), T.S)) < 0.5, 0.0, rng.uniform(0, 1e-10, (len(T.capped), T.S)))
        for n in vectors:
            T.cuts = []
            closed = _evaluate(T, V, lam, pi, fixed_n=n)[0]
            opened = _evaluate(T, V, lam, pi, fixed_n=n, close=False)[0]
            assert closed >= opened - 1e-12 * abs(opened)
            assert closed <= best[tuple(n.tolist())] * (1 + 1e-9) + 1e-15
            alpha, gain = T.cuts[0]
            for m in vectors:
                assert alpha - gain @ m <= best[tuple(m.tolist())] * (1 + 1e-9) + 1e-15
    # some vector's bound is raised by pricing its idle deployments out
    assert any(_evaluate(T, V, np.zeros((T.n_d, T.S)), np.zeros((T.n_c, T.S)), fixed_n=n)[0]
               > _evaluate(T, V, np.zeros((T.n_d, T.S)), np.zeros((T.n_c, T.S)), fixed_n=n, close=False)[0]
               for n in vectors if n.any())


# energy from the input tokens, run time from the output tokens: rows alike in run, not in joules
SPREAD_MODELS = {("small", "g"): ((0, 1.0, 0.2, 0), (0, 0, 0.01, 0)),
                 ("big", "g"): ((0, 3.0, 0.5, 0), (0, 0, 0.02, 0)),
                 ("big", "c"): ((0, 2.0, 0.3, 0), (0, 0, 0.1, 0))}


@pytest.mark.parametrize("seed", range(6))
def test_sort_by_intensity_against_every_deal(seed):
    """Rows of one deployment, alike in run time and free all day, dealt over its cells (as many
    per cell as before): the deal costs the least of every way to deal them so, as enumeration
    finds it; rows with a deadline stay in their cells."""
    rng = np.random.default_rng(seed)
    n_q = 7
    wl = pd.DataFrame({"query_id": [f"q{i}" for i in range(n_q)], "input_tokens": rng.integers(1, 400, n_q),
                       "output_tokens": np.full(n_q, 100), "min_accuracy": np.zeros(n_q),
                       "deadline_s": np.where(np.arange(n_q) == 0, 20.0, np.nan)})
    s = plan(wl, _fleet(None), make_models(SPREAD_MODELS), objective="carbon", signals=_signals(rng.uniform(50, 400, 3)))
    T = _Slots(s.problem)
    rows = np.arange(n_q)
    d = 0  # small@g, every query an option
    assert T.ok[:, d].all()
    d_of = np.full(n_q, d)
    k_of = rng.integers(0, 2, n_q)  # the first row's deadline (20 s) allows the first two slots
    k_of[1:] = rng.integers(0, T.S, n_q - 1)
    before = k_of.copy()
    moved = _sort_by_intensity(T, rows, d_of, k_of)
    assert k_of[0] == before[0]  # a deadline inside the horizon: left where it was
    assert moved == int(np.sum(k_of != before))
    free = rows[1:]
    counts = np.bincount(before[free], minlength=T.S)
    np.testing.assert_array_equal(np.bincount(k_of[free], minlength=T.S), counts)
    cost = float(np.sum(T.E[free, d] * T.a0[d, k_of[free]]))
    best = min(float(np.sum(T.E[free, d] * T.a0[d, list(perm)]))
               for perm in set(itertools.permutations(before[free].tolist())))
    assert cost == pytest.approx(best, rel=1e-12)
    assert cost <= float(np.sum(T.E[free, d] * T.a0[d, before[free]])) * (1 + 1e-12)


def test_sort_by_intensity_leaves_a_capped_pool_as_it_was():
    rng = np.random.default_rng(0)
    s = plan(_workload(rng, 6), _fleet(80.0), make_models(SPREAD_MODELS), objective="carbon",
             signals=_signals([300.0, 50.0, 200.0]))
    T = _Slots(s.problem)
    d_of = np.zeros(6, dtype=np.int64)
    k_of = np.array([0, 2, 0, 2, 1, 0])
    assert _sort_by_intensity(T, np.arange(6), d_of, k_of) == 0
    np.testing.assert_array_equal(k_of, [0, 2, 0, 2, 1, 0])
