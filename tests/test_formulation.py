"""formulation.py: the matrix models' rows and columns on cases small enough to write out."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import make_models

from energyopt.fleet import fleet_from_dict
from energyopt.formulation import build_matrix, deadline_levels, level_of
from energyopt.problem import build_problem


def problem(deadlines, *, tout=None, max_instances=2, count=2, floor=None, idle=False, two_deployments=False,
            horizon_s=10.0):
    """One LLM "m" on GPUs (0.01 s and 1 J per output token), optionally also "n" on CPUs."""
    pools = {"g": {"kind": "gpu", "count": count, "memory_gb": 80, "idle_power_w": 5.0}}
    llms = {"m": {"accuracy": 0.5, "accuracy_source": "t", "params_b": 1}}
    deps = [{"llm": "m", "pool": "g", "max_instances": max_instances}]
    spec = {("m", "g"): ((0, 0, 1.0, 0), (0, 0, 0.01, 0))}
    if two_deployments:
        pools["c"] = {"kind": "cpu", "count": 3, "memory_gb": 80, "idle_power_w": 1.0}
        llms["n"] = {"accuracy": 0.9, "accuracy_source": "t", "params_b": 1}
        deps.append({"llm": "n", "pool": "c", "max_instances": 3})
        spec[("n", "c")] = ((0, 0, 2.0, 0), (0, 0, 0.02, 0))
    fleet = fleet_from_dict({"horizon_s": horizon_s, "pools": pools, "llms": llms, "deployments": deps})
    n = len(deadlines)
    wl = pd.DataFrame({"query_id": [f"q{i}" for i in range(n)], "input_tokens": 10,
                       "output_tokens": tout if tout is not None else [100] * n, "min_accuracy": 0.0,
                       "deadline_s": [np.nan if d is None else d for d in deadlines]})
    return build_problem(wl, fleet, make_models(spec), min_mean_accuracy=floor, idle=idle)


def kinds(model) -> dict[str, int]:
    k, n = np.unique(model.row_kind, return_counts=True)
    return dict(zip(k.tolist(), n.tolist()))


def rows_of(model, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    sel = model.row_kind == kind
    return model.A.toarray()[sel], model.row_lo[sel], model.row_hi[sel]


# --- deadline levels ------------------------------------------------------------------------

def test_deadline_levels_are_the_distinct_deadlines_without_a_cap():
    assert deadline_levels(np.array([5.0, 2.0, 5.0, 9.0]), None).tolist() == [2.0, 5.0, 9.0]


def test_deadline_levels_under_a_cap_keep_the_smallest_and_the_largest():
    dl = np.arange(1.0, 101.0)
    lv = deadline_levels(dl, 24)
    assert len(lv) == 24 and lv[0] == 1.0 and lv[-1] == 100.0
    assert set(lv.tolist()) <= set(dl.tolist()) and np.all(np.diff(lv) > 0)


def test_deadline_levels_keep_all_when_within_the_cap():
    assert deadline_levels(np.array([3.0, 1.0]), 24).tolist() == [1.0, 3.0]


def test_level_of_is_the_smallest_kept_level_not_below_the_deadline():
    levels = np.array([2.0, 5.0, 10.0])
    assert level_of(levels, np.array([1.0, 2.0, 3.0, 5.0, 9.9, 10.0])).tolist() == [0, 0, 1, 1, 2, 2]


# --- rows and columns -----------------------------------------------------------------------

def test_exact_model_counts_rows_of_each_kind():
    p = problem([2.0, 5.0, None], two_deployments=True, floor=0.6)
    m = build_matrix(p, "exact")
    # m@g: 2 instances × 3 levels; n@c: 3 instances × 3 levels (every query is an option of both)
    assert kinds(m) == {"assign": 3, "load": 15, "deadline": 15, "pool": 2, "accuracy": 1, "order": 3}
    assert m.n_x == 3 * 2 + 3 * 3 and len(m.u_dep) == 5 and m.n_vars == m.n_x + 15 + 5


def test_aggregate_model_counts_rows_of_each_kind():
    p = problem([2.0, 5.0, None], two_deployments=True)
    m = build_matrix(p, "aggregate")
    assert kinds(m) == {"assign": 3, "load": 6, "deadline": 6, "pool": 2}
    assert m.n_x == 6 and m.u_dep.tolist() == [0, 1] and m.u_inst.tolist() == [-1, -1]


def test_aggregate_model_keeps_at_most_max_levels_per_deployment():
    p = problem(list(np.arange(1.0, 9.0)), tout=[10] * 8)
    m = build_matrix(p, "aggregate", max_levels=3)
    assert kinds(m)["deadline"] == 3 and kinds(m)["load"] == 3
    assert kinds(build_matrix(p, "exact"))["deadline"] == 2 * 8  # exact: every distinct deadline, per instance


def test_deadline_rows_are_prefix_sums_of_bucket_loads_against_level_times_instances():
    # one instance; deadlines 2, 5 and none (the 10 s horizon); each query 1 s
    p = problem([2.0, 5.0, None], max_instances=1, count=1)
    m = build_matrix(p, "exact")
    z = m.n_x + np.arange(3)
    u = m.u_start
    A, lo, hi = rows_of(m, "deadline")
    want = np.zeros((3, m.n_vars))
    for lv, T in enumerate([2.0, 5.0, 10.0]):
        want[lv, z[: lv + 1]] = 1.0
        want[lv, u] = -T
    assert np.array_equal(A, want) and np.all(lo == -np.inf) and np.all(hi == 0.0)


def test_load_rows_tie_each_bucket_to_the_work_due_at_its_level():
    p = problem([2.0, 5.0, None], max_instances=1, count=1)
    m = build_matrix(p, "exact")
    A, lo, hi = rows_of(m, "load")
    # z_l − Σ r·x = 0: query q (1 s) sits in bucket q
    want = np.zeros((3, m.n_vars))
    for lv in range(3):
        want[lv, m.n_x + lv] = 1.0
        want[lv, lv] = -1.0
    assert np.allclose(A, want) and lo.tolist() == [0.0] * 3 and hi.tolist() == [0.0] * 3


def test_assignment_rows_sum_each_querys_columns_to_one():
    p = problem([None, None], max_instances=2)
    m = build_matrix(p, "exact")
    A, lo, hi = rows_of(m, "assign")
    assert A[:, : m.n_x].tolist() == [[1, 1, 0, 0], [0, 0, 1, 1]]  # (q0, i0), (q0, i1), (q1, i0), (q1, i1)
    assert lo.tolist() == [1.0, 1.0] and hi.tolist() == [1.0, 1.0]
    assert m.x_inst.tolist() == [0, 1, 0, 1] and m.x_cand.tolist() == [0, 0, 1, 1]


def test_pool_row_counts_devices_per_instance_against_the_pool():
    p = problem([None], max_instances=2, count=3)
    A, lo, hi = rows_of(build_matrix(p, "exact"), "pool")
    m = build_matrix(p, "exact")
    assert A[0, m.u_start:].tolist() == [1.0, 1.0] and hi.tolist() == [3.0] and lo.tolist() == [-np.inf]


def test_order_rows_switch_instances_on_in_order():
    p = problem([None], max_instances=3, count=3)
    m = build_matrix(p, "exact")
    A, lo, hi = rows_of(m, "order")
    u = m.u_start
    assert A[:, u:].tolist() == [[1.0, -1.0, 0.0], [0.0, 1.0, -1.0]] and lo.tolist() == [0.0, 0.0]


def test_accuracy_row_weighs_each_option_by_tokens_and_accuracy():
    p = problem([None, None], tout=[100, 300], two_deployments=True, floor=0.7)
    m = build_matrix(p, "aggregate")
    A, lo, hi = rows_of(m, "accuracy")
    # options: (q0, m), (q0, n), (q1, m), (q1, n); weights 110 and 310; accuracies 0.5 and 0.9
    assert A[0, : m.n_x].tolist() == pytest.approx([55.0, 99.0, 155.0, 279.0])
    assert lo.tolist() == pytest.approx([0.7 * 420.0]) and hi.tolist() == [np.inf]


def test_objective_bounds_and_integrality_of_each_kind():
    p = problem([None, None], idle=True, max_instances=2)
    for kind, u_hi in (("exact", [1.0, 1.0]), ("aggregate", [2.0])):
        m = build_matrix(p, kind)
        n_u = len(u_hi)
        # each query 100 J, 1 s at 5 W idle: 95 J above idle; an instance 5 W × 10 s
        assert m.c[: m.n_x].tolist() == pytest.approx([95.0] * m.n_x)
        assert m.c[m.u_start:].tolist() == pytest.approx([50.0] * n_u)
        assert np.all(m.c[m.n_x: m.u_start] == 0.0)
        assert m.var_hi[m.u_start:].tolist() == u_hi and np.all(m.var_hi[: m.n_x] == 1.0)
        assert np.all(m.integrality[: m.n_x] == 1) and np.all(m.integrality[m.n_x: m.u_start] == 0)
        assert np.all(m.integrality[m.u_start:] == 1)


def test_an_unservable_query_has_no_columns_and_no_assignment_row():
    p = problem([None, 0.5])  # q1: 1 s against a 0.5 s deadline
    assert len(p.unservable) == 1
    m = build_matrix(p, "aggregate")
    assert kinds(m)["assign"] == 1 and m.n_x == 1


# --- fixed work (the decomposition's sub-MILPs) ---------------------------------------------

def test_fixed_work_enters_the_load_rows_as_constants_at_its_level():
    p = problem([2.0, None], two_deployments=True)
    # fixed: 1.5 s on deployment 0 due by 2 s, 4 s on deployment 1 due by 10 s, 0.5 s on deployment 0 due by 10 s
    fixed = (np.array([0, 1, 0]), np.array([2.0, 10.0, 10.0]), np.array([1.5, 4.0, 0.5]))
    m = build_matrix(p, "aggregate", fixed_work=fixed)
    _, lo, hi = rows_of(m, "load")
    # levels per deployment: [2, 10] and [2, 10]; rows (m, 2 s), (m, 10 s), (n, 2 s), (n, 10 s)
    assert lo.tolist() == [1.5, 0.5, 0.0, 4.0] and hi.tolist() == lo.tolist()


def test_fixed_work_adds_its_own_deadline_levels():
    p = problem([None])
    m = build_matrix(p, "aggregate", fixed_work=(np.array([0]), np.array([3.0]), np.array([1.0])))
    assert kinds(m)["deadline"] == 2  # 3 s (fixed only) and the 10 s horizon
    A, _, _ = rows_of(m, "deadline")
    assert A[:, m.u_start].tolist() == [-3.0, -10.0]


def test_fixed_accuracy_lowers_the_accuracy_rows_target_over_the_whole_weight():
    p = problem([None], two_deployments=True, floor=0.7)
    m = build_matrix(p, "aggregate", fixed_work=(np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0)),
                     fixed_accuracy=200.0, weight_total=400.0)
    _, lo, _ = rows_of(m, "accuracy")
    assert lo.tolist() == pytest.approx([0.7 * 400.0 - 200.0])


def test_build_matrix_refuses_an_unknown_kind_and_fixed_work_in_the_exact_model():
    p = problem([None])
    with pytest.raises(ValueError, match="kind must be one of"):
        build_matrix(p, "decompose")
    with pytest.raises(ValueError, match="fixed work needs the aggregate formulation"):
        build_matrix(p, "exact", fixed_work=(np.array([0]), np.array([1.0]), np.array([1.0])))


# --- size before building, and the clock while building --------------------------------------

@pytest.mark.parametrize("kind", ["exact", "aggregate"])
@pytest.mark.parametrize("floor", [None, 0.5])
def test_matrix_nonzeros_counts_the_built_matrix_before_building_it(kind, floor):
    from energyopt.formulation import matrix_nonzeros

    p = problem([2.0, 3.0, None, 5.0, 3.0, None], max_instances=3, count=3, floor=floor, two_deployments=True)
    model = build_matrix(p, kind)
    built, est = model.A.nnz, matrix_nonzeros(p, kind)
    # left out: the pool, group and order rows, at most three entries per u column
    assert built - 3 * len(model.u_dep) <= est <= built, (est, built)


def test_matrix_nonzeros_of_the_exact_model_grows_with_lanes_times_deadlines_squared():
    from energyopt.formulation import matrix_nonzeros

    few, many = problem([5.0] * 8), problem([1.0 + i for i in range(8)])
    assert matrix_nonzeros(many, "exact") > 3 * matrix_nonzeros(few, "exact")
    assert matrix_nonzeros(many, "exact") == pytest.approx(build_matrix(many, "exact").A.nnz, abs=8)


def test_a_build_past_its_deadline_stops_with_build_timed_out():
    import time

    from energyopt.formulation import BuildTimedOut

    p = problem([2.0, 3.0, None])
    with pytest.raises(BuildTimedOut):
        build_matrix(p, "exact", deadline=time.perf_counter() - 1.0)
    # with time left it builds the same model as without a deadline
    a, b = build_matrix(p, "exact", deadline=time.perf_counter() + 60.0), build_matrix(p, "exact")
    assert (a.A != b.A).nnz == 0 and np.array_equal(a.c, b.c)
