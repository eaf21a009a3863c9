"""Fetching documents from URLs for URL ingest."""
