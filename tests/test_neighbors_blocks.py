"""The join's compiled CPU kernels against torch and numpy: the per-row selection of the best
bfloat16 columns (ties, the masked self column, rows shorter than `keep`), the float32 re-score of
stored float16 rows, and a whole bfloat16 block pass against the float32 one."""

from __future__ import annotations

import numpy as np
import torch

from stages.neighbors import blocks


def _bf16_bits(values: np.ndarray) -> np.ndarray:
    return torch.from_numpy(values.astype(np.float32)).to(torch.bfloat16).view(torch.int16).numpy()


def test_select_top_bf16_matches_a_stable_sort_with_ties_negatives_and_the_skipped_column():
    rng = np.random.default_rng(4)
    v = np.round(rng.standard_normal((50, 300)), 1)  # coarse values: many ties; negatives and zeros
    v[3, :] = -np.inf
    v[4, :] = 0.0
    bits = _bf16_bits(v)
    as_bf16 = torch.from_numpy(bits).view(torch.bfloat16).float().numpy()
    skip = rng.integers(-1, 300, 50)
    got = blocks.select_top_bf16(bits, 17, skip)
    for i in range(50):
        cols = np.array([j for j in range(300) if j != skip[i]])
        order = cols[np.argsort(-as_bf16[i, cols], kind="stable")][:17]  # lower column wins a tie
        np.testing.assert_array_equal(got[i], order)
    short = blocks.select_top_bf16(bits[:, :5], 8, np.full(50, 2))
    assert (short[:, 4:] == -1).all() and (short[:, :4] >= 0).all() and not (short == 2).any()


def test_rescore_f16_is_the_float32_product_of_the_stored_rows():
    rng = np.random.default_rng(1)
    q = rng.standard_normal((30, 64)).astype(np.float32)
    chunk = rng.standard_normal((200, 64)).astype(np.float16)
    cols = rng.integers(-1, 200, (30, 9))
    got = blocks.rescore_f16(q, chunk.view(np.uint16), cols, blocks.F16_TO_F32)
    want = np.einsum("md,mkd->mk", q, chunk.astype(np.float32)[np.maximum(cols, 0)])
    np.testing.assert_allclose(got[cols >= 0], want[cols >= 0], rtol=1e-5, atol=1e-5)
    assert np.isneginf(got[cols < 0]).all()
    np.testing.assert_array_equal(blocks.F16_TO_F32[chunk.view(np.uint16)], chunk.astype(np.float32))


def test_bfloat16_block_pass_finds_the_float32_neighbours_with_exact_similarities():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3000, 48)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x = x.astype(np.float16)
    queries = np.arange(0, 3000, 7)
    results = {}
    for precision in ("float32", "bfloat16"):
        top = blocks.BlockTopK(x[queries].astype(np.float32), 10, 40, precision)
        for lo in range(0, 3000, 1100):  # three chunks, the last one short
            hi = min(3000, lo + 1100)
            inside = (queries >= lo) & (queries < hi)
            top.add(x[lo:hi], np.arange(lo, hi), np.where(inside, queries - lo, -1))
        results[precision] = top.result()
    (s32, i32), (s16, i16) = results["float32"], results["bfloat16"]
    assert not (i16 == queries[:, None]).any()
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(i32, i16)])
    assert overlap > 0.99
    true = np.einsum("md,mkd->mk", x[queries].astype(np.float32), x.astype(np.float32)[i16])
    np.testing.assert_allclose(s16, true, rtol=1e-5, atol=1e-5)  # the written similarities are exact
    assert np.all(np.diff(s16, axis=1) <= 0)
