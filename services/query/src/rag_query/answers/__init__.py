"""Answering a question: retrieve (with strategies and reranking), cite, generate, stream."""
