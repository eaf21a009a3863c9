"""``arq --check rag_ingest.worker.check.WorkerSettings``: the container health check of an
ingest worker. Each worker refreshes a health key of its own host every 10 s; the check
passes while that key exists (arq expires it if the worker stops refreshing it)."""

from __future__ import annotations

import socket

from arq.connections import RedisSettings
from rag_config import IngestSettings, get_settings
from rag_core.catalog import Keys


def health_check_key(queue: str, host: str | None = None) -> str:
    return f"{queue}:health-check:{host or socket.gethostname()}"


class WorkerSettings:
    """Only what ``arq --check`` reads: where Redis is and which key to look for."""

    _settings = get_settings(IngestSettings)
    redis_settings = RedisSettings.from_dsn(_settings.redis_url.get_secret_value())
    queue_name = Keys(_settings.redis_prefix).queue()
    health_check_key = health_check_key(queue_name)
