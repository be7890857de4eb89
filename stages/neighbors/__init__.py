"""k-nearest-neighbour graph of the document embeddings (FAISS, CPU or GPU)."""

from stages.neighbors import stage  # noqa: F401
