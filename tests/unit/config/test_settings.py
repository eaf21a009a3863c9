"""Settings: defaults, validation messages, secrets kept secret, .env handling."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import SecretStr
from rag_config import (
    ALL_SETTINGS,
    GatewaySettings,
    IngestSettings,
    QuerySettings,
    SettingsError,
    load_settings,
)
from rag_config.settings import ServiceSettings

REPO_ROOT = Path(__file__).resolve().parents[3]
ENV_VARS = {name.upper() for cls in ALL_SETTINGS for name in cls.model_fields}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each test starts with none of our variables set and no .env in the working dir."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def test_defaults_load_without_any_environment() -> None:
    settings = load_settings(QuerySettings)
    assert settings.environment == "development"
    assert (settings.port, settings.health_port) == (8000, 8089)
    assert settings.workers == 1
    assert settings.openai_api_key is None


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("CHROMA_PORT", "abc", "CHROMA_PORT='abc'"),
        ("CHROMA_PORT", "70000", "an integer >= 1 and <= 65535"),
        ("ENVIRONMENT", "prod", "'development', 'testing' or 'production'"),
        ("WORKERS", "0", "WORKERS='0'"),
        ("LOG_LEVEL", "loud", "DEBUG"),
        ("LOG_FORMAT", "xml", "LOG_FORMAT='xml'"),
        ("REDIS_URL", "http://localhost:6379", "redis://, rediss:// or unix://"),
        ("CHROMA_HOST", "http://chroma:8000", "bare host name"),
        ("CHROMA_SSL", "maybe", "true or false"),
        ("MAX_CONNECTIONS", "-1", "MAX_CONNECTIONS='-1'"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318", "http:// or https://"),
    ],
)
def test_bad_value_names_the_variable_and_what_is_allowed(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings(QuerySettings)
    message = str(caught.value)
    assert variable in message
    assert expected in message
    assert "\n" not in message


@pytest.mark.parametrize("value", ["Voir [1].", "Voir [2", "Deux\nlignes.", "   "])
@pytest.mark.parametrize("variable", ["ANSWER_NOT_ANSWERED", "ANSWER_NO_DOCUMENTS"])
def test_an_answer_text_is_one_line_that_cites_nothing(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    """Its brackets would be read as citations ("[1]" would cite the first source)."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=variable):
        load_settings(QuerySettings)
    monkeypatch.setenv(variable, "  Les documents trouvés ne répondent pas.  ")
    settings = load_settings(QuerySettings)
    assert getattr(settings, variable.lower()) == "Les documents trouvés ne répondent pas."


def test_cross_field_rules_name_both_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POOL_SIZE", "50")
    monkeypatch.setenv("MAX_CONNECTIONS", "10")
    with pytest.raises(SettingsError, match=r"POOL_SIZE \(50\) must not exceed MAX_CONNECTIONS"):
        load_settings(IngestSettings)
    monkeypatch.delenv("POOL_SIZE")
    # Lowering only MAX_CONNECTIONS brings the default pool size down with it.
    assert load_settings(IngestSettings).pool_size == 10
    monkeypatch.setenv("PORT", "9000")
    monkeypatch.setenv("HEALTH_PORT", "9000")
    with pytest.raises(SettingsError, match="PORT and HEALTH_PORT must differ"):
        load_settings(IngestSettings)


def test_several_bad_values_are_reported_together(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHROMA_PORT", "abc")
    monkeypatch.setenv("ENVIRONMENT", "prod")
    with pytest.raises(SettingsError) as caught:
        load_settings(QuerySettings)
    assert "CHROMA_PORT" in str(caught.value)
    assert "ENVIRONMENT" in str(caught.value)


def test_values_are_normalised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", " Testing ")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    settings = load_settings(QuerySettings)
    assert settings.environment == "testing"
    assert settings.log_level == "DEBUG"


def test_secrets_never_show_in_repr_dump_or_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-live-0123456789abcdef"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2-password@redis:6379/0")
    settings = load_settings(QuerySettings)
    shown = repr(settings) + str(settings) + settings.model_dump_json()
    assert secret not in shown
    assert "hunter2-password" not in shown
    assert settings.openai_api_key == SecretStr(secret)
    assert settings.redis_url_display == "redis://:***@redis:6379/0"
    redis_url = settings.redis_url.get_secret_value()
    assert set(settings.secret_values()) == {secret, "hunter2-password", redis_url}

    monkeypatch.setenv("REDIS_URL", "http://:hunter2-password@redis:6379/0")
    with pytest.raises(SettingsError) as caught:
        load_settings(QuerySettings)
    assert "hunter2-password" not in str(caught.value)


def test_blank_secret_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_API_KEY", "")
    monkeypatch.setenv("JWT_SECRET", "  ")
    assert load_settings(QuerySettings).google_api_key is None
    assert load_settings(GatewaySettings).jwt_secret is None
    # .env.example's "# EXTRACTIVE_MIN_SIMILARITY=" uncommented as it stands: the model's own.
    monkeypatch.setenv("EXTRACTIVE_MIN_SIMILARITY", "")
    assert load_settings(QuerySettings).extractive_min_similarity is None


def test_production_gateway_requires_a_strong_jwt_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    with pytest.raises(SettingsError, match="JWT_SECRET must be set to at least 32 characters"):
        load_settings(GatewaySettings)
    monkeypatch.setenv("JWT_SECRET", "x" * 31)
    with pytest.raises(SettingsError, match="JWT_SECRET"):
        load_settings(GatewaySettings)
    monkeypatch.setenv("JWT_SECRET", "x" * 32)
    with pytest.raises(SettingsError, match="INTERNAL_TOKEN must be set"):
        load_settings(GatewaySettings)
    with pytest.raises(SettingsError, match="INTERNAL_TOKEN must be set"):
        load_settings(QuerySettings)  # ingest and query trust only the gateway's token
    monkeypatch.setenv("INTERNAL_TOKEN", "t" * 32)
    assert load_settings(GatewaySettings).environment == "production"
    # Services that never verify tokens do not need the JWT secret.
    monkeypatch.delenv("JWT_SECRET")
    assert load_settings(QuerySettings).environment == "production"


def test_production_gateway_refuses_a_short_admin_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bootstrap admin key holds every scope in every tenant: a short one would be guessed."""
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("JWT_SECRET", "x" * 32)
    monkeypatch.setenv("INTERNAL_TOKEN", "t" * 32)
    monkeypatch.setenv("ADMIN_API_KEY", "a" * 31)
    with pytest.raises(SettingsError) as caught:
        load_settings(GatewaySettings)
    message = str(caught.value)
    assert "ADMIN_API_KEY must be at least 32 characters" in message
    assert "\n" not in message
    assert "a" * 31 not in message  # the value itself is never shown
    monkeypatch.setenv("ADMIN_API_KEY", "a" * 32)
    assert load_settings(GatewaySettings).admin_api_key is not None
    monkeypatch.setenv("ADMIN_API_KEY", "")  # unset: no bootstrap key at all, which is fine
    assert load_settings(GatewaySettings).admin_api_key is None
    # Outside production a short key is allowed (make dev, tests).
    monkeypatch.setenv("ENVIRONMENT", "development")
    monkeypatch.setenv("ADMIN_API_KEY", "short")
    assert load_settings(GatewaySettings).admin_api_key is not None


def test_dotenv_is_read_and_the_environment_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("CHROMA_HOST=chroma-from-dotenv\nWORKERS=3\n")
    settings = load_settings(QuerySettings)
    assert (settings.chroma_host, settings.workers) == ("chroma-from-dotenv", 3)
    monkeypatch.setenv("WORKERS", "2")
    assert load_settings(QuerySettings).workers == 2


def _env_example() -> dict[str, str]:
    documented: dict[str, str] = {}
    for line in (REPO_ROOT / ".env.example").read_text().splitlines():
        match = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match:
            documented[match.group(1)] = match.group(2)
    return documented


def _default_text(cls: type[ServiceSettings], name: str) -> str:
    default = cls.model_fields[name].default
    if isinstance(default, SecretStr):
        default = default.get_secret_value()
    if default is None:
        return ""
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, float) and default.is_integer():
        return str(int(default))
    return str(default)


@pytest.mark.parametrize("settings_cls", ALL_SETTINGS, ids=lambda cls: cls.__name__)
def test_env_example_documents_every_variable_with_its_default(
    settings_cls: type[ServiceSettings],
) -> None:
    documented = _env_example()
    for name in settings_cls.model_fields:
        variable = name.upper()
        assert variable in documented, f"{variable} is missing from .env.example"
        assert documented[variable] == _default_text(settings_cls, name), variable


def test_env_example_names_the_deployment_guide_variables() -> None:
    guide = {
        "ENVIRONMENT",
        "LOG_LEVEL",
        "WORKERS",
        "GOOGLE_API_KEY",
        "OPENAI_API_KEY",
        "COHERE_API_KEY",
        "CHROMA_HOST",
        "CHROMA_PORT",
        "REDIS_URL",
        "JWT_SECRET",
        "GRAFANA_PASSWORD",
        "MAX_CONNECTIONS",
        "POOL_SIZE",
        "PYTHONUNBUFFERED",
        "PYTHONDONTWRITEBYTECODE",
    }
    assert guide <= set(_env_example())
