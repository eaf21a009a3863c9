"""RAG Engine ingest service."""
