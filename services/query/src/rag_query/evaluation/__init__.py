"""Evaluating a collection: retrieval metrics against relevance judgements, and answer metrics
that need no LLM (plus an LLM-judged faithfulness when one is configured)."""
