"""Stitching ordered partitions: both solvers keep every partition whole and walk each exactly once;
OR-tools' guided local search finds stronger seams than the DP and never ends below a start it is
given; and the
ordering-algorithm interface maps settings to options without the stage naming an algorithm."""

from __future__ import annotations

import numpy as np
import pytest

from curate.errors import MissingStageError
from curate.plan import StageContext
from stages.order.algorithms import ALGORITHMS
from stages.order.stage import OrderSettings
from stages.order.stitch import apply_plan, plan_dp, plan_ortools, seam_similarities, stitch_partitions
from stages.order.store import order_file, read_order, write_order


def partitions(n=3000, parts=30, d=24, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, np.array_split(rng.permutation(n), parts)


def assert_whole_partitions(plan, paths, path):
    assert sorted(i for i, _ in plan) == list(range(len(paths)))
    assert np.array_equal(np.sort(path), np.sort(np.concatenate(paths)))
    at = 0
    for i, rev in plan:  # each partition appears contiguously, in its own order or reversed
        piece = path[at : at + len(paths[i])]
        assert np.array_equal(piece, paths[i][::-1] if rev else paths[i])
        at += len(paths[i])


@pytest.mark.parametrize("method", ["dp", "ortools"])
def test_stitch_walks_every_partition_whole(method):
    x, paths = partitions()
    plan = plan_dp(x, paths, 0) if method == "dp" else plan_ortools(x, paths, 0, time_limit_s=0.5)
    assert_whole_partitions(plan, paths, apply_plan(paths, plan))
    if method == "dp":
        assert np.array_equal(stitch_partitions(x, paths, 0, "dp"), apply_plan(paths, plan))


def test_ortools_finds_stronger_seams_than_dp_and_never_ends_below_a_given_start():
    x, paths = partitions(seed=3)
    dp_plan = plan_dp(x, paths, 0)
    dp = seam_similarities(x, paths, dp_plan).sum()
    # random vectors: the centroid order says little about the seams, so the search finds better ones
    assert seam_similarities(x, paths, plan_ortools(x, paths, 0, time_limit_s=0.5)).sum() > dp + 1.0
    assert seam_similarities(x, paths, plan_ortools(x, paths, 0, time_limit_s=0.5, start=dp_plan)).sum() >= dp


def test_ortools_from_its_own_first_solution_and_with_a_solution_limit_is_repeatable():
    x, paths = partitions(n=600, parts=12, seed=5)
    a = plan_ortools(x, paths, 0, time_limit_s=5.0, solutions=30, start=[])
    b = plan_ortools(x, paths, 0, time_limit_s=5.0, solutions=30, start=[])
    assert a == b
    assert_whole_partitions(a, paths, apply_plan(paths, a))


def test_one_partition_and_empty_partitions():
    x, paths = partitions(n=50, parts=1)
    assert np.array_equal(stitch_partitions(x, paths, method="ortools"), paths[0])
    assert len(stitch_partitions(x, [], method="dp")) == 0
    with pytest.raises(ValueError, match="unknown stitch method"):
        stitch_partitions(x, paths + paths, method="lkh")


def test_algorithms_take_their_options_from_the_settings():
    settings = OrderSettings(search_k=4, kicks_per_document=1.5, max_kicks=7)
    assert ALGORITHMS["edge_matching"].options_from(settings) == {"search_k": 4, "kicks_per_document": 1.5, "max_kicks": 7}
    assert ALGORITHMS["iclm_greedy"].options_from(settings) == {}
    assert not ALGORITHMS["random"].partitioned and ALGORITHMS["edge_matching"].partitioned
    # the stage's choices are exactly the interface's algorithms
    assert set(OrderSettings.model_fields["algorithm"].annotation.__args__) == set(ALGORITHMS)


def test_a_stage_that_needs_an_earlier_stage_names_both(tmp_path):
    ctx = StageContext("pack", str(tmp_path), str(tmp_path / "pack.apply"), upstream=(("embed", "embed"),))
    with pytest.raises(MissingStageError, match="pack needs an earlier 'order' stage"):
        order_file(ctx)
    assert ctx.upstream_data_dir("neighbors", "search", required=False) is None
    assert ctx.upstream_data_dir("embed", "embed") == str(tmp_path / "embed.embed" / "data")
    later = StageContext("pack", str(tmp_path), str(tmp_path / "x"), upstream=(("order", "order"), ("order_2", "order")))
    assert order_file(later) == str(tmp_path / "order_2.stitch" / "data" / "order.parquet")


def test_order_store_round_trip(tmp_path):
    path = write_order(["b", "a", "c"], str(tmp_path))
    table = read_order(path)
    assert table["id"].to_list() == ["b", "a", "c"] and table["position"].to_list() == [0, 1, 2]
