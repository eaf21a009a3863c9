"""Shared domain and service plumbing for RAG Engine."""
