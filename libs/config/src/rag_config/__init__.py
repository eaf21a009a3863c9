"""Settings shared by every RAG Engine service."""

from rag_config.loading import (
    CONFIG_ERROR_EXIT_CODE,
    SettingsError,
    describe_validation_error,
    get_settings,
    load_settings,
    load_settings_or_exit,
)
from rag_config.settings import (
    ALL_SETTINGS,
    AuthSettings,
    ChromaSettings,
    GatewaySettings,
    IngestSettings,
    LLMSettings,
    PoolSettings,
    QuerySettings,
    RedisSettings,
    RuntimeSettings,
    ServerSettings,
    ServiceSettings,
    TelemetrySettings,
)

__all__ = [
    "ALL_SETTINGS",
    "CONFIG_ERROR_EXIT_CODE",
    "AuthSettings",
    "ChromaSettings",
    "GatewaySettings",
    "IngestSettings",
    "LLMSettings",
    "PoolSettings",
    "QuerySettings",
    "RedisSettings",
    "RuntimeSettings",
    "ServerSettings",
    "ServiceSettings",
    "SettingsError",
    "TelemetrySettings",
    "describe_validation_error",
    "get_settings",
    "load_settings",
    "load_settings_or_exit",
]
