"""API keys for a running stack, made the way a user makes them: through the admin API."""

from __future__ import annotations

from collections.abc import Sequence

import httpx


def create_api_key(
    edge_url: str, admin_key: str, scopes: Sequence[str], name: str, tenant: str = "default"
) -> str:
    """A new key of ``tenant`` with ``scopes``; its secret (shown once)."""
    response = httpx.post(
        f"{edge_url}/v1/admin/keys",
        json={"tenant": tenant, "scopes": list(scopes), "name": name},
        headers={"Authorization": f"Bearer {admin_key}"},
        timeout=30,
    )
    response.raise_for_status()
    key: str = response.json()["key"]
    return key
