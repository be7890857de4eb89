"""numba kernels compile once per machine and user: the cache lives in the user's cache folder, not
beside the source files (which a read-only install cannot write) and not in a run's output folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from helpers import REPO

PROBE = """
import json, os, numpy as np
from stages.dedup.hashing import _compiled_kernels, minhash_signature
a = np.arange(1, 17, dtype=np.uint64).reshape(1, -1)
minhash_signature(np.arange(10, dtype=np.uint64), a, a)
stats = _compiled_kernels()["sign"].stats
print(json.dumps({"hits": sum(stats.cache_hits.values()), "misses": sum(stats.cache_misses.values()),
                  "dir": os.environ.get("NUMBA_CACHE_DIR")}))
"""


def _probe(env: dict) -> dict:
    res = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_kernels_compile_once_into_the_user_cache_folder(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    first = _probe(env)
    folder = tmp_path / "cache" / "curate" / "numba"
    assert first["dir"] == str(folder)
    assert first["misses"] >= 1 and first["hits"] == 0  # compiled here, nothing cached before
    assert list(folder.rglob("*.nbi")) and list(folder.rglob("*.nbc"))
    second = _probe(env)  # a fresh process: loads the compiled kernel instead of compiling
    assert second["hits"] >= 1 and second["misses"] == 0


def test_a_numba_cache_dir_the_user_set_is_kept(tmp_path):
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "NUMBA_CACHE_DIR": str(tmp_path / "mine")}
    assert _probe(env)["dir"] == str(tmp_path / "mine")
    assert list((tmp_path / "mine").rglob("*.nbi")) and not (tmp_path / "cache" / "curate").exists()
