"""RAG Engine's Python SDK: ``Client`` (sync) and ``AsyncClient`` for the public API behind
the gateway, configured by ``RAG_URL`` and ``RAG_API_KEY``."""

from rag_client.client import AsyncClient, Client, Settings
from rag_client.errors import APIError, ConnectionFailed, RAGError

__all__ = ["APIError", "AsyncClient", "Client", "ConnectionFailed", "RAGError", "Settings"]
