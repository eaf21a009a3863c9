"""The knowledge base as tools for agents: a Model Context Protocol server at /mcp."""
