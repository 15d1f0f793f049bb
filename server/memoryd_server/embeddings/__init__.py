"""Server-side embeddings: the embedders, their micro-batcher and the model registry."""
