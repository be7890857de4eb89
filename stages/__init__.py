"""Every built-in curate stage, one family per subpackage.

Importing this package registers the stages with `curate.registry`. Stage modules import their heavy
dependencies (torch, faiss, fasttext, ...) lazily, inside the steps, so listing stages stays fast.
"""

from importlib import import_module

FAMILIES = ("clean", "dedup", "embed", "neighbors", "order", "pack")

for _family in FAMILIES:
    import_module(f"{__name__}.{_family}")
