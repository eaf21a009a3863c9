"""RAG Engine query service."""
