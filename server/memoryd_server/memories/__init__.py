"""MemoryService: long-term memories, vector/text/hybrid search, history, expiry."""
