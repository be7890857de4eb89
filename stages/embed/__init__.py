"""Document embeddings (sentence-transformers), written as per-task shards of L2-normalised vectors."""

from stages.embed import stage  # noqa: F401
