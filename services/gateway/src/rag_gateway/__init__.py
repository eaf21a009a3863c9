"""RAG Engine gateway service."""
