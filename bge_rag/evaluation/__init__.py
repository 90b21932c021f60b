"""bge_rag.evaluation: retrieval quality on your own data, equal to FlagEmbedding's evaluation."""
