"""Every built-in curate stage, one family per subpackage.

Importing this package registers the stages with `curate.registry`. Stage modules import their heavy
dependencies (torch, faiss, fasttext, ...) lazily, inside the steps, so listing stages stays fast.
"""

from importlib import import_module

# importing curate (here, for its caches) checks a script's `if __name__ == "__main__":` guard first
from curate.caches import configure_numba_cache

# before any stage module imports numba: compiled kernels go to the user's cache folder
configure_numba_cache()

FAMILIES = ("extract", "clean", "dedup", "embed", "neighbors", "order", "pack")

for _family in FAMILIES:
    import_module(f"{__name__}.{_family}")
