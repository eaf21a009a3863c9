"""RAG Engine's Python SDK: ``Client`` (sync) and ``AsyncClient`` for the public API behind
the gateway, configured by ``RAG_URL`` and ``RAG_API_KEY``; typed results in
``rag_client.models``."""

from rag_client.client import AsyncClient, Client, RAGEngine, Settings
from rag_client.errors import APIError, ConnectionFailed, RAGError
from rag_client.models import (
    Accepted,
    Answer,
    AnswerEvent,
    ApiKey,
    Collection,
    Document,
    DoneEvent,
    ErrorEvent,
    Job,
    JobEvent,
    SearchHit,
    SearchResult,
    Source,
    SourcesEvent,
    SystemInfo,
    TokenEvent,
)

__all__ = [
    "APIError",
    "Accepted",
    "Answer",
    "AnswerEvent",
    "ApiKey",
    "AsyncClient",
    "Client",
    "Collection",
    "ConnectionFailed",
    "Document",
    "DoneEvent",
    "ErrorEvent",
    "Job",
    "JobEvent",
    "RAGEngine",
    "RAGError",
    "SearchHit",
    "SearchResult",
    "Settings",
    "Source",
    "SourcesEvent",
    "SystemInfo",
    "TokenEvent",
]
