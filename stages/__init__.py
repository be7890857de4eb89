"""Every built-in curate stage, one family per subpackage.

Importing this package registers the stages with `curate.registry`. Stage modules import their heavy
dependencies (torch, faiss, fasttext, ...) lazily, inside the steps, so listing stages stays fast.
"""

from importlib import import_module

from curate.caches import configure_numba_cache
from curate.mainguard import check_script_guard

# before any stage module imports numba: compiled kernels go to the user's cache folder
configure_numba_cache()
# a script that would start worker processes outside `if __name__ == "__main__":` stops here, with
# the line to fix, instead of looping (see curate/mainguard.py)
check_script_guard()

FAMILIES = ("extract", "clean", "dedup", "embed", "neighbors", "order", "pack")

for _family in FAMILIES:
    import_module(f"{__name__}.{_family}")
