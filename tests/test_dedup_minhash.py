"""minhash_dedup: shingling and signatures behave as MinHash must (equal sets -> equal signatures,
agreement rate tracks the exact Jaccard), planted near-duplicates above the LSH threshold are
clustered and reduced to their smallest id, pairs far below it and unrelated documents survive."""

from __future__ import annotations

import random

import numpy as np
import polars as pl
import pytest

from stages.dedup import hashing
from stage_runs import run_stage, write_documents
from stages.dedup.minhash import MinhashDedupSettings, MinhashSigner

VOCAB = [
    "".join(random.Random(i).choice("abcdefghijklmnopqrstuvwxyz") for _ in range(random.Random(-i).randint(3, 9)))
    for i in range(3000)
]


def _text(rng: random.Random, words: int = 250) -> str:
    return " ".join(rng.choice(VOCAB) for _ in range(words))


def _mutate(rng: random.Random, text: str, fraction: float) -> str:
    words = text.split()
    for i in rng.sample(range(len(words)), max(1, int(fraction * len(words)))):
        words[i] = rng.choice(VOCAB)
    return " ".join(words)


def exact_jaccard(a: str, b: str, ngram: int = 13, unit: str = "char") -> float:
    sa, sb = (set(hashing.shingle_hashes(t, ngram, unit).tolist()) for t in (a, b))
    return len(sa & sb) / len(sa | sb)


def test_normalisation_follows_map_neo():
    assert hashing.normalize_for_minhash("  Hello,\tWORLD!!  ÉTÉ\n\nfin. ") == "hello world été fin"
    # NFC: a decomposed e + combining acute equals the composed character
    assert hashing.normalize_for_minhash("e\u0301") == hashing.normalize_for_minhash("\u00e9")
    # non-ASCII punctuation is kept (the reference strips ASCII punctuation only)
    assert "。" in hashing.normalize_for_minhash("你好。")


def test_window_hashes_depend_only_on_window_content():
    text = "abcdefgh-abcdefgh-xbcdefgh"
    h = hashing.window_hashes(hashing.codepoints(text), 8)
    assert len(h) == len(text) - 7
    assert h[0] == h[9]  # same 8 characters at different offsets
    assert h[0] != h[18]  # one character differs
    windows = [text[i : i + 8] for i in range(len(h))]
    # equal hashes exactly where the windows are equal
    assert all((h[i] == h[j]) == (windows[i] == windows[j]) for i in range(len(h)) for j in range(len(h)))
    assert len(hashing.window_hashes(hashing.codepoints("abc"), 8)) == 1  # shorter than n: one shingle
    assert len(hashing.window_hashes(hashing.codepoints(""), 8)) == 0


def test_numba_signature_equals_numpy_reference():
    rng = np.random.default_rng(0)
    a, b = hashing.permutations(64, seed=3)
    for size in (1, 17, 5000):
        shingles = rng.integers(0, 2**63, size=size, dtype=np.uint64)
        assert np.array_equal(
            hashing.minhash_signature(shingles, a, b), hashing.minhash_signature_numpy(shingles, a, b)
        )


def test_fused_kernel_equals_shingles_then_signature():
    a, b = hashing.permutations(128, seed=5)
    for text in ("x", "short text", _text(random.Random(0), 300)):
        codes = hashing.codepoints(text)
        for n in (5, 13):
            expected = hashing.minhash_signature(hashing.window_hashes(codes, n, seed=9), a, b)
            assert np.array_equal(hashing.signature_of_codes(codes, n, a, b, seed=9), expected)
    assert hashing.signature_of_codes(hashing.codepoints(""), 13, a, b) is None


def test_signature_agreement_tracks_exact_jaccard():
    rng = random.Random(1)
    signer = MinhashSigner(MinhashDedupSettings(num_perm=256, bands=16, rows=16), seed=0)
    for fraction in (0.01, 0.05, 0.2, 0.5):
        a = _text(rng)
        b = _mutate(rng, a, fraction)
        agreement = float(np.mean(signer.signature(a) == signer.signature(b)))
        assert abs(agreement - exact_jaccard(a, b)) < 0.1  # std of the estimate is <= 0.032 at 256 perms


def test_threshold_picks_a_geometry_whose_s_curve_straddles_it():
    bands, rows = hashing.lsh_params_for_threshold(0.8, 128)
    assert bands * rows <= 128
    assert hashing.lsh_probability(0.6, bands, rows) < 0.05
    assert hashing.lsh_probability(0.95, bands, rows) > 0.95
    with pytest.raises(ValueError):
        MinhashDedupSettings(bands=20, rows=13)


def _corpus(seed: int = 5):
    rng = random.Random(seed)
    docs, near, far = [], {}, []
    for i in range(60):
        docs.append({"id": f"doc{i:03d}", "text": _text(rng)})
    for k, src in enumerate(docs[:12]):
        if k % 3 == 2:  # far variant: a third of the words replaced
            vid, text = f"v_far{k:02d}", _mutate(rng, src["text"], 0.3)
            far.append((vid, src["id"], exact_jaccard(text, src["text"])))
        else:  # near variant: one or two words replaced
            vid, text = f"v_near{k:02d}", _mutate(rng, src["text"], 0.005 * (1 + k % 2))
            near[vid] = (src["id"], exact_jaccard(text, src["text"]))
        docs.append({"id": vid, "text": text})
    rng.shuffle(docs)
    return docs, near, far


@pytest.mark.parametrize("parts", [1, 3])
def test_planted_near_duplicates_are_removed_keeping_smallest_id(tmp_path, parts):
    docs, near, far = _corpus()
    assert all(j >= 0.95 for _, j in near.values()) and all(j <= 0.5 for _, _, j in far)
    inp = write_documents(docs, str(tmp_path / "in"), shards=3)
    run = run_stage("minhash_dedup", dict(parts=parts), inp, str(tmp_path / "out"), tasks=3)
    out = run.documents
    kept = {d["id"] for d in out}
    assert kept == {d["id"] for d in docs} - set(near)
    clusters = pl.read_parquet(run.data_dir("clusters") + "/clusters.parquet")
    assert dict(zip(clusters["id"], clusters["kept_id"])) == {v: src for v, (src, _) in near.items()}
    assert set(clusters["cluster_size"].to_list()) == {2}
    stats = {k.split("/")[-1]: v for k, v in run.stats("apply").items() if "minhash" in k}
    texts = {d["id"]: d["text"] for d in docs}
    assert stats["documents_removed"] == len(near)
    assert stats["chars_removed"] == sum(len(texts[v]) for v in near)


def test_no_near_duplicates_removes_nothing(tmp_path):
    rng = random.Random(11)
    docs = [{"id": f"d{i:02d}", "text": _text(rng, 120)} for i in range(40)]
    inp = write_documents(docs, str(tmp_path / "in"), shards=2)
    run = run_stage("minhash_dedup", dict(parts=2), inp, str(tmp_path / "out"), tasks=2)
    out = run.documents
    assert len(out) == len(docs)
    assert pl.read_parquet(run.data_dir("clusters") + "/clusters.parquet").height == 0


def test_word_shingles_with_threshold_and_chained_clusters(tmp_path):
    rng = random.Random(2)
    base = _text(rng, 400)
    chain = [base]
    for _ in range(3):  # each step changes ~1% of words: a chain of near-duplicates is one cluster
        chain.append(_mutate(rng, chain[-1], 0.01))
    docs = [{"id": f"c{i}", "text": t} for i, t in enumerate(chain)]
    docs += [{"id": f"u{i}", "text": _text(rng, 400)} for i in range(10)]
    settings = dict(unit="word", ngram=5, threshold=0.7)
    inp = write_documents(docs, str(tmp_path / "in"), shards=2)
    run = run_stage("minhash_dedup", settings, inp, str(tmp_path / "out"), tasks=2)
    out = run.documents
    assert {d["id"] for d in out} == {"c0"} | {f"u{i}" for i in range(10)}
    clusters = pl.read_parquet(run.data_dir("clusters") + "/clusters.parquet")
    assert set(clusters["kept_id"]) == {"c0"} and set(clusters["cluster_size"]) == {4}


def test_bbc_exact_duplicates_all_land_in_clusters(shared_data, tmp_path):
    import gzip
    import json

    with gzip.open(shared_data / "bbc_news.jsonl.gz", "rt") as f:
        docs = [{"id": str(d["id"]), "text": d["text"]} for d in map(json.loads, f)]
    by_text: dict[str, list[str]] = {}
    for d in docs:
        by_text.setdefault(hashing.normalize_for_minhash(d["text"]), []).append(d["id"])
    groups = [sorted(g) for g in by_text.values() if len(g) > 1]
    assert groups  # the corpus is known to hold exact duplicates
    inp = write_documents(docs, str(tmp_path / "in"), shards=2)
    run = run_stage("minhash_dedup", {}, inp, str(tmp_path / "out"), tasks=2)
    out = run.documents
    kept = {d["id"] for d in out}
    for g in groups:  # each group of identical texts keeps at most one member
        assert sum(i in kept for i in g) <= 1
    assert len(out) <= len(docs) - sum(len(g) - 1 for g in groups)


def test_lone_surrogates_do_not_crash_signing():
    for unit in ("char", "word"):
        signer = MinhashSigner(MinhashDedupSettings(unit=unit, ngram=3), seed=0)
        assert signer.signature("broken \ud800 surrogate text here") is not None


def test_clusters_do_not_depend_on_sharding(tmp_path):
    docs, _, _ = _corpus(seed=8)
    tables = []
    for shards in (1, 4):
        inp = write_documents(docs, str(tmp_path / f"in{shards}"), shards=shards)
        run = run_stage("minhash_dedup", {}, inp, str(tmp_path / f"out{shards}"), tasks=shards)
        tables.append(pl.read_parquet(run.data_dir("clusters") + "/clusters.parquet"))
    assert tables[0].height > 0 and tables[0].equals(tables[1])
