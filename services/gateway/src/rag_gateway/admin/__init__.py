"""Administration: API keys."""
