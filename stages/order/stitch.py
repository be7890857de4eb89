"""Joining ordered partitions into one path: which partition follows which, in which direction.

Each partition is already a path; what is left to choose is the order of the partitions and the
direction each is walked in, so that the similarity across every seam (the last document of one
partition, the first of the next) is high. Two solvers (`OrderSettings.stitch`):

- `dp` (default): order the partitions along an edge-matching path over their centroids, then choose
  every direction by dynamic programming (Viterbi), which is exact for that order. Deterministic and
  instant.
- `ortools`: OR-tools' routing solver over both ends of every partition: guided local search
  under a time limit, from the solver's own first solution (cheapest arc), optimising the seams
  themselves (order and directions together) rather than centroid similarity. Every partition is two
  nodes (its first and last document) joined by a free arc, every other arc costs a large constant
  plus the seam's dissimilarity, so a route that keeps every partition whole is always cheaper than
  one that cuts one open; a depot with free arcs leaves the two ends of the path open.
  Guided local search stops at the time limit, so two runs can differ; `stitch_solutions` stops it
  after that many solutions instead (repeatable while the time limit is not reached first).

At 1,000,000 documents (20 partitions, `bench/order_scale.py --stitch-only`, both from the same
partition paths in one run), ortools raised the mean similarity across the 19 seams from 0.033 (DP)
to 0.102 in 2.1 s (DP: 2.1 s), and the whole path's MAC by 1e-6 (0.498082 -> 0.498083): 19 seams
among 999,999 neighbouring pairs. `dp` stays the default because it is repeatable byte for byte and
the path as a whole does not measurably change.
"""

from __future__ import annotations

import numpy as np

from stages.neighbors.rowfiles import read_rows
from stages.order.algorithms import order_by_greedy_path

STITCH_METHODS = ("dp", "ortools")
StitchPlan = list[tuple[int, bool]]  # (partition index, walked reversed) in path order

_SCALE = 10_000  # similarity resolution of the integer arc costs


def _end_vectors(vectors: np.ndarray, paths: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    heads = read_rows(vectors, [p[0] for p in paths], np.float32)
    tails = read_rows(vectors, [p[-1] for p in paths], np.float32)
    return heads, tails


def seam_similarities(vectors: np.ndarray, paths: list[np.ndarray], plan: StitchPlan) -> np.ndarray:
    """Similarity across each of the len(plan) - 1 seams of a stitched path."""
    heads, tails = _end_vectors(vectors, paths)
    first = [tails[i] if rev else heads[i] for i, rev in plan]
    last = [heads[i] if rev else tails[i] for i, rev in plan]
    return np.array([float(np.dot(last[t], first[t + 1])) for t in range(len(plan) - 1)], dtype=np.float64)


def apply_plan(paths: list[np.ndarray], plan: StitchPlan) -> np.ndarray:
    return np.concatenate([paths[i][::-1] if rev else paths[i] for i, rev in plan])


def plan_dp(vectors: np.ndarray, paths: list[np.ndarray], seed: int = 0) -> StitchPlan:
    """Partitions ordered by centroid similarity (edge matching), directions by Viterbi over the seams."""
    m = len(paths)
    if m == 1:
        return [(0, False)]
    cent = np.stack([read_rows(vectors, p, np.float32).mean(axis=0) for p in paths])
    cent /= np.maximum(np.linalg.norm(cent, axis=1, keepdims=True), 1e-12)
    sims = cent @ cent.T
    np.fill_diagonal(sims, -np.inf)
    k = min(m - 1, 32)
    nb = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    seq = order_by_greedy_path(cent, nb, np.take_along_axis(sims, nb, axis=1), seed)
    heads, tails = _end_vectors(vectors, paths)
    # state 0 = walked as ordered (enters at its head, leaves at its tail), 1 = reversed
    enter = [(heads[i], tails[i]) for i in seq]
    leave = [(tails[i], heads[i]) for i in seq]
    score = np.zeros(2)
    back = np.zeros((m, 2), dtype=np.int64)
    for t in range(1, m):
        new = np.empty(2)
        for cur in range(2):
            cand = [score[prev] + float(np.dot(leave[t - 1][prev], enter[t][cur])) for prev in range(2)]
            back[t, cur] = int(np.argmax(cand))
            new[cur] = max(cand)
        score = new
    state = int(np.argmax(score))
    flips = [0] * m
    for t in range(m - 1, -1, -1):
        flips[t] = state
        state = int(back[t, state])
    return [(int(i), bool(f)) for i, f in zip(seq, flips)]


def plan_ortools(vectors: np.ndarray, paths: list[np.ndarray], seed: int = 0, time_limit_s: float = 2.0,
                 solutions: int = 0, start: StitchPlan | None = None) -> StitchPlan:
    """Guided local search (OR-tools routing) over the seams, from `start` when given (e.g. `plan_dp`'s
    answer), else from the solver's own first solution. `solutions` > 0 stops after that many
    solutions. `seed` is used only by the DP fallback (the routing search has no randomness)."""
    from ortools.constraint_solver import pywrapcp, routing_enums_pb2  # 0.4 s to import: only when asked for

    m = len(paths)
    if m == 1:
        return [(0, False)]
    heads, tails = _end_vectors(vectors, paths)
    ends = np.empty((2 * m, heads.shape[1]), dtype=np.float32)
    ends[0::2], ends[1::2] = heads, tails  # node 1 + 2i = head of partition i, node 2 + 2i = its tail
    dissimilarity = np.rint((1.0 - np.clip(ends @ ends.T, -1.0, 1.0)) * _SCALE).astype(np.int64)
    offset = 2 * _SCALE * (m + 2)  # more than any route's dissimilarities can add up to
    cost = np.zeros((2 * m + 1, 2 * m + 1), dtype=np.int64)
    cost[1:, 1:] = offset + dissimilarity
    cost[0, 1:] = cost[1:, 0] = offset
    for i in range(m):
        cost[1 + 2 * i, 2 + 2 * i] = cost[2 + 2 * i, 1 + 2 * i] = 0
    np.fill_diagonal(cost, 0)
    table = cost.tolist()

    manager = pywrapcp.RoutingIndexManager(2 * m + 1, 1, 0)
    routing = pywrapcp.RoutingModel(manager)
    callback = routing.RegisterTransitCallback(
        lambda a, b: table[manager.IndexToNode(a)][manager.IndexToNode(b)])
    routing.SetArcCostEvaluatorOfAllVehicles(callback)
    params = pywrapcp.DefaultRoutingSearchParameters()
    params.first_solution_strategy = routing_enums_pb2.FirstSolutionStrategy.PATH_CHEAPEST_ARC
    params.local_search_metaheuristic = routing_enums_pb2.LocalSearchMetaheuristic.GUIDED_LOCAL_SEARCH
    params.time_limit.FromMilliseconds(max(1, int(time_limit_s * 1000)))
    if solutions > 0:
        params.solution_limit = solutions
    if start:
        route = [node for i, rev in start for node in ((2 + 2 * i, 1 + 2 * i) if rev else (1 + 2 * i, 2 + 2 * i))]
        initial = routing.ReadAssignmentFromRoutes([route], True)
        solution = routing.SolveFromAssignmentWithParameters(initial, params)
    else:
        solution = routing.SolveWithParameters(params)
    if solution is None:
        return start or plan_dp(vectors, paths, seed)
    nodes, index = [], routing.Start(0)
    while not routing.IsEnd(index):
        index = solution.Value(routing.NextVar(index))
        if not routing.IsEnd(index):
            nodes.append(manager.IndexToNode(index))
    plan = []
    for a, b in zip(nodes[0::2], nodes[1::2]):
        part = (a - 1) // 2
        if (b - 1) // 2 != part:  # a partition cut open: cannot happen at the optimum; keep the start
            return start or plan_dp(vectors, paths, seed)
        plan.append((part, a % 2 == 0))  # entering at the tail (even node) walks it reversed
    return plan


def plan_stitch(vectors: np.ndarray, paths: list[np.ndarray], seed: int = 0, method: str = "dp",
                time_limit_s: float = 2.0, solutions: int = 0) -> StitchPlan:
    """The order and directions of the (non-empty) partition `paths`, by `method` ("dp" or "ortools")."""
    if method == "dp":
        return plan_dp(vectors, paths, seed)
    if method == "ortools":
        return plan_ortools(vectors, paths, seed, time_limit_s, solutions)
    raise ValueError(f"unknown stitch method {method!r}; valid: {', '.join(STITCH_METHODS)}")


def stitch_partitions(vectors: np.ndarray, paths: list[np.ndarray], seed: int = 0, method: str = "dp",
                      time_limit_s: float = 2.0, solutions: int = 0) -> np.ndarray:
    """Concatenate partition paths into one, ordered and oriented by `method` ("dp" or "ortools")."""
    paths = [p for p in paths if len(p)]
    if not paths:
        return np.empty(0, dtype=np.int64)
    return apply_plan(paths, plan_stitch(vectors, paths, seed, method, time_limit_s, solutions))
