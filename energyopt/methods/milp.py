"""The matrix model handed to a backend: ``exact`` (one column per option and instance) or
``aggregate`` (one column per option, instance counts per deployment; packing places the queries)."""

from __future__ import annotations

import math
import time

import numpy as np

from ..formulation import BuildTimedOut, MatrixModel, build_matrix
from ..problem import Problem
from ..schema import BoundSource, Status, Termination
from ..solvers import Solver, SolveResult
from . import Choice, Limits, Method, Progress, strong
from .lanecuts import lanes_or_cuts, with_lane_cuts
from .strong import recall, remember, remembered_cuts, solve_strong

__all__ = ["MilpMethod", "LANE_CUT_ROUNDS"]

#: rounds of lane cuts (:mod:`.lanecuts`) at most: the aggregate model solved again with them
LANE_CUT_ROUNDS = 8
#: the rounds with lane cuts share a budget of this many times the first solve's seconds (at least
#: :data:`LANE_CUT_MIN_S`), and once it is spent each round still gets the longest round's seconds
#: (at least :data:`LANE_ROUND_MIN_S`; a plan whose lanes do not hold is no answer, and
#: :data:`LANE_CUT_ROUNDS` ends the rounds): where plans tie (the trade-off at small ζ), each cut can
#: leave another equal choice that no lanes run, and each solve takes as long as the first. In a
#: sweep the first solve starts from the last plan's cuts and takes a second or two while the rounds
#: after it take 10-20 s each on the example (2-core machine): hence the floor
LANE_CUT_TIME_FACTOR = 2.0
LANE_CUT_MIN_S = 60.0
#: the least a round gets once the budget is spent (a round of a small batch takes milliseconds, and
#: one capped at that would end without a plan)
LANE_ROUND_MIN_S = 5.0
#: once a quick round's plan has lanes, its model is solved to the gap in at most this many times the
#: seconds the method has spent so far (at least :data:`CLOSE_GAP_MIN_S`; under a time limit, at most
#: what is left of it); then the plan ends with the gap it has. Measured on the example at ζ = 0
#: (2-core machine): the rounds reach a plan 0.018% above their bound in 60 s, and the whole model
#: closes that to 0.0069% in 930 s, which a sweep of eleven plans cannot wait for (given 64 s it did
#: not move the bound); at ζ = 0.1 the rounds take 13 s and the solve to the gap 13-15 s
CLOSE_GAP_TIME_FACTOR = 0.5
CLOSE_GAP_MIN_S = 30.0


def _lane_key(problem: Problem) -> tuple:
    """What a lane cut depends on: the options (query, deployment), their runtimes, the queries'
    deadlines and the deployments' lanes and instances (not the costs, nor an accuracy floor)."""
    deps = problem.deployments
    return ("lane", problem.n_queries, problem.n_deployments, hash(problem.cand["q"].to_numpy().tobytes()),
            hash(problem.cand["d"].to_numpy().tobytes()), hash(np.ascontiguousarray(problem.runtime_s).tobytes()),
            hash(problem.queries["deadline_eff_s"].to_numpy(dtype=float).tobytes()),
            hash(deps["lanes"].to_numpy().tobytes()), hash(deps["max_instances"].to_numpy().tobytes()))


class MilpMethod(Method):
    """``exact`` or ``aggregate``: build the matrix model, solve it under the limits, read the choice.
    The aggregate model's choice gets its lanes here where every deployment's queries fit its
    instances' lanes; where some provably do not, the model is solved again with lane cuts."""

    def __init__(self, kind: str):
        self.name = kind

    def solve(self, problem: Problem, backend: Solver, limits: Limits, progress: Progress) -> Choice:
        try:  # the build checks the clock: the exact model of a few thousand queries takes seconds
            model = build_matrix(problem, self.name, deadline=limits.deadline())
        except BuildTimedOut:
            return Choice.none(self.name, backend.name, Status.NO_SOLUTION, Termination.TIME_LIMIT, -np.inf,
                               BoundSource.NONE,
                               message=f"no plan found within the limits (the time ran out while the {self.name} "
                                       "model was being built)")
        progress(f"model: {model.kind} formulation, {model.n_vars} variables, {model.A.shape[0]} rows; "
                 f"solving with {backend.name}")
        if limits.expired():
            return Choice.none(self.name, backend.name, Status.NO_SOLUTION, Termination.TIME_LIMIT, -np.inf,
                               BoundSource.NONE, message="no plan found within the limits (the time was spent)")
        # the rounds of lane cuts solve models of one layout: each round's LP starts from the
        # option-on-instance rows the rounds before found (in a series, those of its plans before)
        with remembered_cuts(inherit=True):
            return self._rounds(problem, model, backend, limits, progress)

    def _rounds(self, problem: Problem, model: MatrixModel, backend: Solver, limits: Limits,
                progress: Progress) -> Choice:
        """The model solved, and solved again with lane cuts where its plan's lanes do not hold."""
        bound = -np.inf
        # the lane cuts an earlier plan of the same problem found (a sweep's points): valid for every plan
        lane_key = _lane_key(problem) if model.kind == "aggregate" and not problem.has_releases else None
        known: list = (recall(lane_key) or []) if lane_key is not None else []
        if known:
            model = with_lane_cuts(model, problem, known)
            progress(f"lanes: {len(known)} lane cuts remembered from the last plan of these queries")
        budget_end: float | None = None
        last: Choice | None = None  # the last choice with a plan, without lanes (packing decides)
        # the rounds that look for lane cuts take the first plan within reach; once a plan's lanes
        # hold, its model is solved to the gap (and any cut that plan needs starts the rounds again)
        # (a small batch's model is solved to the gap at once: each solve takes milliseconds)
        close_gap = model.kind != "aggregate" or problem.has_releases or problem.n_queries < strong.COUNTS_MIN_QUERIES
        rnd = 0
        quick: SolveResult | None = None  # the quick round's answer for the model solved to the gap next
        started, close_s = time.perf_counter(), math.inf
        longest_s = 0.0  # the longest round's seconds so far
        while rnd <= LANE_CUT_ROUNDS:
            cap_s = None if budget_end is None else budget_end - time.perf_counter()
            if quick is not None:  # the solve to the gap of a quick plan whose lanes hold
                cap_s = close_s
            if quick is None and cap_s is not None:
                # a round gets at least the longest round's time, spent budget or not: the plan before
                # it has lanes that do not hold, and a round cut shorter than a solve takes ends without
                # a plan, or with a poor one (at ζ = 0 on the example, 2-core machine: a round capped at
                # 23 s planned -0.836 against a bound of -0.936, and packing could not place it)
                cap_s = max(cap_s, longest_s, LANE_ROUND_MIN_S)
            t0 = time.perf_counter()
            res = solve_strong(model, problem, backend, limits, progress, cap_s=cap_s, close_gap=close_gap, known=quick)
            quick = None
            longest_s = max(longest_s, time.perf_counter() - t0)
            if budget_end is None:
                budget_end = time.perf_counter() + max(LANE_CUT_TIME_FACTOR * (time.perf_counter() - t0), LANE_CUT_MIN_S)
            if last is not None and res.x is None and res.status != Status.INFEASIBLE:
                return last  # no plan of the cut model in its time
            bound = max(bound, res.bound)  # every round's model is a relaxation of the batch
            progress(f"{backend.name}: {res.status} in {res.time_s:.2f} s, objective {res.objective:.6g}, "
                     f"bound {res.bound:.6g}")
            choice = self._choice(problem, model, res, backend, bound)
            if choice.dep_of_q is None or model.kind != "aggregate" or problem.has_releases:
                return choice
            assert choice.n_inst is not None
            lane, cuts, undecided = lanes_or_cuts(problem, choice.dep_of_q, choice.n_inst)
            if not cuts:
                if not undecided:  # every deployment's queries have lanes: the plan's
                    choice.lane_of_q = lane
                if close_gap or choice.status is Status.OPTIMAL or limits.expired():
                    return choice
                close_s = max(CLOSE_GAP_TIME_FACTOR * (time.perf_counter() - started), CLOSE_GAP_MIN_S)
                progress(f"lanes: every deployment's queries fit its lanes; solving the model to the gap "
                         f"(in {close_s:.0f} s at most)")
                # the solve to the gap has a budget of its own (CLOSE_GAP_*), not what is left of the
                # rounds' (set by the quick first round, which is for cut rounds); the rounds after this
                # one get theirs from this solve's time
                last, close_gap, budget_end, quick = choice, True, None, res
                continue
            rnd += 1
            if rnd > LANE_CUT_ROUNDS or limits.expired():
                # packing and its repair decide, as without the cuts; a quick plan solved to the gap first
                # (the rounds before the quick ones ended with a plan solved to the gap)
                if close_gap or choice.status is Status.OPTIMAL or limits.expired():
                    return choice
                assert budget_end is not None  # set after the first round
                # as a round: at least the longest round's time, spent budget or not
                return self._closed(problem, model, res, backend, limits, progress, bound,
                                    cap_s=max(budget_end - time.perf_counter(), longest_s, LANE_ROUND_MIN_S))
            last = choice
            names = problem.deployments["deployment"].to_numpy()
            progress(f"lanes: no lanes of {', '.join(f'{c.n_inst} {names[c.dep]}' for c in cuts)} run their "
                     f"queries in time ({', '.join(str(len(c.queries)) for c in cuts)} queries); cut, solving again")
            model = with_lane_cuts(model, problem, cuts)
            known = [*known, *cuts]
            if lane_key is not None:
                remember(lane_key, known)
        raise AssertionError("unreachable")  # every round returns or continues until rnd > LANE_CUT_ROUNDS

    def _closed(self, problem: Problem, model: MatrixModel, quick: SolveResult, backend: Solver, limits: Limits,
                progress: Progress, bound: float, *, cap_s: float) -> Choice:
        """The choice of ``model`` solved to the gap from its quick plan ``quick`` (its lanes where they
        hold), within ``cap_s`` (what is left of the rounds' budget, at least a round's time)."""
        progress("lanes: the rounds are spent; the last model solved to the gap, packing places its queries")
        res = solve_strong(model, problem, backend, limits, progress, cap_s=cap_s, known=quick)
        choice = self._choice(problem, model, res, backend, max(bound, res.bound))
        if choice.dep_of_q is not None and choice.n_inst is not None:
            lane, cuts, undecided = lanes_or_cuts(problem, choice.dep_of_q, choice.n_inst)
            if not cuts and not undecided:
                choice.lane_of_q = lane
        return choice

    def _choice(self, problem: Problem, model: MatrixModel, res: SolveResult, backend: Solver, bound: float) -> Choice:
        """The choice a solved model gives (none where it has no solution), with ``bound``."""
        assert res.termination is not None
        if res.x is None:
            status = Status.INFEASIBLE if res.status == Status.INFEASIBLE else Status.NO_SOLUTION
            # an infeasible model's reasons come from the diagnosis (plan.py), not the backend's words, but
            # where the result's proof says why (an accuracy floor out of reach: methods/floor.py)
            message = res.reason if status == Status.INFEASIBLE else f"no plan found within the limits ({res.message})"
            return Choice.none(self.name, backend.name, status, res.termination,
                               res.bound if status == Status.INFEASIBLE else bound, res.bound_source,
                               solver_s=res.time_s, message=message)
        pick = np.flatnonzero(res.x[: model.n_x] > 0.5)
        options = model.x_cand[pick]
        q_of = problem.cand["q"].to_numpy()[options]
        dep_of_q = np.full(problem.n_queries, -1, dtype=np.int64)
        dep_of_q[q_of] = problem.cand["d"].to_numpy()[options]
        n_inst = np.zeros(problem.n_deployments, dtype=np.int64)
        np.add.at(n_inst, model.u_dep, np.round(model.u_values(res.x)).astype(np.int64))
        lane_of_q = None
        if model.kind == "exact":
            lanes = problem.deployments["lanes"].to_numpy()
            lane_of_q = np.full(problem.n_queries, -1, dtype=np.int64)
            lane_of_q[q_of] = model.x_inst[pick] * lanes[dep_of_q[q_of]] + model.x_lane[pick]
        return Choice(self.name, backend.name, res.status, res.termination, bound, res.bound_source,
                      dep_of_q=dep_of_q, n_inst=n_inst, lane_of_q=lane_of_q, objective=res.objective,
                      solver_s=res.time_s, message=res.message)
