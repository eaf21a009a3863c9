"""`python -m rag_ingest.worker` runs an ingest worker (its health port is HEALTH_PORT)."""

from __future__ import annotations

import asyncio

from rag_config import IngestSettings, load_settings_or_exit
from rag_core.server import bind_socket
from rag_core.service import package_version
from rag_telemetry import setup_telemetry, shutdown_tracing

from rag_ingest.worker.runner import run_worker

PROGRAM = "rag-ingest-worker"


def main() -> None:
    settings = load_settings_or_exit(IngestSettings, PROGRAM)
    ops_sock = bind_socket(settings.host, settings.health_port, "HEALTH_PORT", PROGRAM)
    setup_telemetry("ingest-worker", settings, version=package_version("rag-ingest"))
    try:
        raise SystemExit(asyncio.run(run_worker(settings, ops_sock)))
    finally:
        shutdown_tracing()


if __name__ == "__main__":
    main()
