"""GET /v1/system: what a client may know about the deployment."""
