"""Ordering: documents along an approximate maximum-similarity Hamiltonian path (ICLM), at scale.

`algorithms` (plain functions over arrays, each an `OrderingAlgorithm`), `quality` (MAC, U2 bound,
label agreement), `partition` (k-means partitioned mode), `stitch` (joining the partitions' paths: DP
or OR-tools routing), `store` (the order as other stages read it), `stage` (the `order` global
stage). numba kernels load lazily.
"""

from stages.order import stage  # noqa: F401  (registers `order`)
