"""The OpenAI-compatible API: any chat UI or OpenAI SDK can talk to a collection."""
