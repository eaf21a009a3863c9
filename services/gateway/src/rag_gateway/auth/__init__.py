"""Who is calling: API keys and JWT bearer tokens, resolved to a principal."""
