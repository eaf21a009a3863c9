"""`python -m rag_ingest.worker` runs an ingest worker (its health port is HEALTH_PORT)."""

from __future__ import annotations

import asyncio

from rag_config import IngestSettings, load_settings_or_exit

PROGRAM = "rag-ingest-worker"


def main() -> None:
    settings = load_settings_or_exit(IngestSettings, PROGRAM)
    # Imported once the settings are known to be good: a bad variable is reported in a
    # fraction of a second, not after the seconds of CPU the worker's imports take.
    from rag_core.server import bind_socket, freeze_startup_objects  # noqa: PLC0415
    from rag_core.service import package_version  # noqa: PLC0415
    from rag_telemetry import setup_telemetry, shutdown_tracing  # noqa: PLC0415

    from rag_ingest.worker.runner import run_worker  # noqa: PLC0415

    ops_sock = bind_socket(settings.host, settings.health_port, "HEALTH_PORT", PROGRAM)
    setup_telemetry("ingest-worker", settings, version=package_version("rag-ingest"))
    freeze_startup_objects()
    try:
        raise SystemExit(asyncio.run(run_worker(settings, ops_sock)))
    finally:
        shutdown_tracing()


if __name__ == "__main__":
    main()
