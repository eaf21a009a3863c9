"""Document writes (uploads, batches, replacements, URL ingests) send bodies as slowly as their
clients like. Three bounds keep one tenant's slow bodies from taking what others need: each
tenant and each key may have only so many in progress (MAX_UPLOADS_PER_TENANT,
MAX_UPLOADS_PER_CREDENTIAL: 429, see streams.py), they travel on a pool of connections of
their own (MAX_UPLOAD_CONNECTIONS, proxy.py), and a body has UPLOAD_BODY_TIMEOUT_SECONDS to
arrive in full, however steadily it trickles (408). nginx cuts one that stalls sooner
(client_body_timeout)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from http import HTTPStatus

from rag_core.errors import RagError


class BodyTooSlow(RagError):
    status_code = HTTPStatus.REQUEST_TIMEOUT
    problem = "request-timeout"
    title = "Request timeout"


async def body_within(body: AsyncIterator[bytes], seconds: float) -> AsyncIterator[bytes]:
    """``body``'s chunks, as long as the whole of it arrives within ``seconds``."""
    deadline = asyncio.get_running_loop().time() + seconds
    chunks = aiter(body)
    while True:
        try:
            async with asyncio.timeout_at(deadline):  # around the wait only, never a yield
                chunk = await anext(chunks)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise BodyTooSlow(
                f"the body did not arrive within {seconds:g} seconds "
                "(UPLOAD_BODY_TIMEOUT_SECONDS): send it faster, or in smaller requests",
                extra={"limit": "UPLOAD_BODY_TIMEOUT_SECONDS", "seconds": seconds},
            ) from None
        yield chunk
