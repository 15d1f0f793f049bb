"""DocumentService: documents, their chunks, and search over them."""
