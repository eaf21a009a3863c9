"""`python -m rag_gateway` runs the gateway service."""

from rag_config import GatewaySettings, load_settings_or_exit


def main() -> None:
    # The settings first: a bad variable is reported in a fraction of a second, not after the
    # seconds of CPU that importing the app (Litestar, Redis, telemetry...) takes.
    settings = load_settings_or_exit(GatewaySettings, "rag-gateway")
    from rag_core.server import run_service  # noqa: PLC0415

    from rag_gateway.app import SERVICE  # noqa: PLC0415

    run_service(SERVICE, settings)


if __name__ == "__main__":
    main()
