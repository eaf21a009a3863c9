"""aiohttp connection pools that keep at most POOL_SIZE idle connections per host for reuse
(aiohttp keeps every released connection until its keep-alive timeout): a burst of 100
requests leaves POOL_SIZE connections open afterwards, not 100."""

from __future__ import annotations

from typing import Any

import aiohttp


class KeepAliveConnector(aiohttp.TCPConnector):
    """A TCPConnector that closes the oldest idle connections of a host beyond ``keep``."""

    def __init__(self, *, keep: int, **options: Any) -> None:
        super().__init__(**options)
        self.keep = keep

    def _release(self, key: Any, protocol: Any, *, should_close: bool = False) -> None:
        super()._release(key, protocol, should_close=should_close)
        idle = self._conns.get(key)
        while idle is not None and len(idle) > self.keep:
            oldest, _ = idle.popleft()
            oldest.close()

    def idle_connections(self) -> int:
        """Connections kept open for reuse, over every host."""
        return sum(len(idle) for idle in self._conns.values())
