"""Ordering: documents along an approximate maximum-similarity Hamiltonian path (ICLM), at scale.

`algorithms` (plain functions over arrays), `quality` (MAC, U2 bound, label agreement), `partition`
(k-means partitioned mode), `stage` (the `order` global stage). numba kernels load lazily.
"""

from stages.order import stage  # noqa: F401  (registers `order`)
