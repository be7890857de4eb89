"""k-nearest-neighbour graph of the document embeddings: a self-join of dense similarity blocks over
FAISS k-means lists (default, spread over tasks; torch blocks on CPU or CUDA), or FAISS index search."""

from stages.neighbors import stage  # noqa: F401
