"""Deployment files checked by real tools: the Compose spec schema, hadolint, shellcheck."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from rag_devstack import executable

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
RAG_SERVICES = {
    "rag-gateway": "rag_gateway",
    "rag-ingest": "rag_ingest",
    "rag-ingest-worker": "rag_ingest.worker",
    "rag-query": "rag_query",
}


def run(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], cwd=ROOT, capture_output=True, text=True, check=False, timeout=60
    )


def validate_compose(path: Path) -> subprocess.CompletedProcess[str]:
    """Validate against the Compose Specification schema that check-jsonschema ships."""
    return run(BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", path)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yml").read_text())
    return loaded


def test_compose_file_is_valid() -> None:
    result = validate_compose(ROOT / "compose.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_validator_rejects_a_broken_file(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yml"
    broken.write_text("services:\n  x:\n    imagee: redis\n")
    assert validate_compose(broken).returncode != 0


def test_every_reference_in_compose_resolves(compose: dict[str, Any]) -> None:
    services = compose["services"]
    volumes = set(compose["volumes"])
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            assert source in volumes or source.startswith((".", "/")), f"{name}: {mount}"
        for network in service.get("networks", []):
            assert network in compose["networks"]
    builders = [name for name, service in services.items() if "build" in service]
    assert builders == ["chroma"], "exactly one service builds the shared image"
    for name in RAG_SERVICES:
        assert services[name]["image"] == services["chroma"]["image"]
        assert services[name]["pull_policy"] == "never"


def test_each_service_runs_its_module_against_redis_and_chroma(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, module in RAG_SERVICES.items():
        service = services[name]
        assert service["command"] == ["python", "-m", module]
        package = module.split(".")[0]
        main = ROOT / "services" / package.removeprefix("rag_") / "src" / Path(*module.split("."))
        assert (main / "__main__.py").exists(), main
        assert service["environment"]["REDIS_URL"] == "redis://redis:6379/0"
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        assert service["networks"] == ["rag-network"]
    for name in ("rag-ingest", "rag-ingest-worker", "rag-query"):
        assert services[name]["environment"]["CHROMA_HOST"] == "chroma"
        assert services[name]["depends_on"]["chroma"]["condition"] == "service_healthy"


def test_ports_and_volumes_follow_the_deployment_guide(compose: dict[str, Any]) -> None:
    services = compose["services"]
    # Clients reach the API through nginx on 8000; the gateway publishes only health/metrics.
    assert services["nginx"]["ports"] == ["8000:8080"]
    assert services["rag-gateway"]["ports"] == ["8089:8089"]
    # Unauthenticated stores are published on loopback only.
    assert services["chroma"]["ports"] == ["127.0.0.1:${CHROMA_HOST_PORT:-8001}:8000"]
    assert services["redis"]["ports"] == ["127.0.0.1:${REDIS_HOST_PORT:-6379}:6379"]
    assert "chroma_data:/data" in services["chroma"]["volumes"]
    redis = services["redis"]
    assert "--appendonly" in redis["command"]
    assert redis["command"][redis["command"].index("--maxmemory-policy") + 1] == "noeviction"
    assert {"rag_data", "rag_logs", "chroma_data", "redis_data"} <= set(compose["volumes"])


def test_dockerfile_passes_hadolint() -> None:
    result = run(BIN / "hadolint", DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_follows_the_house_rules() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"FROM ghcr\.io/astral-sh/uv:\d+\.\d+\.\d+ AS uv", text), "pin uv"
    assert "uv sync --frozen --no-dev" in text
    assert "python:3.13-slim" in text
    assert 'ENTRYPOINT ["tini", "--"]' in text
    assert "STOPSIGNAL SIGTERM" in text
    assert "HEALTHCHECK" in text
    assert "/health" in text
    assert re.search(r"^USER 10001:10001$", text, re.MULTILINE), "run as a non-root user"
    assert "org.opencontainers.image.title" in text
    for variable in ("PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1", "ORT_DISABLE_TELEMETRY=1"):
        assert variable in text
    # Every workspace member's pyproject is copied before the dependency layer is built.
    members = sorted(ROOT.glob("libs/*/pyproject.toml")) + sorted(
        ROOT.glob("services/*/pyproject.toml")
    )
    for member in members:
        relative = member.relative_to(ROOT)
        assert f"COPY {relative} {relative.parent}/" in text, f"{relative} not copied"


def test_shell_scripts_pass_shellcheck() -> None:
    scripts = [*sorted((ROOT / "deploy" / "scripts").glob("*.sh")), ROOT / ".ci" / "run"]
    assert scripts
    result = run(BIN / "shellcheck", "--severity=style", *scripts)
    assert result.returncode == 0, result.stdout


def test_make_help_lists_every_target_with_a_line() -> None:
    result = run("make", "--no-print-directory", "help")
    assert result.returncode == 0, result.stderr
    makefile = (ROOT / "Makefile").read_text()
    targets = re.findall(r"^([a-z][a-z-]*):", makefile, re.MULTILINE)
    assert {"setup", "dev", "test", "lint", "fmt", "up", "down", "logs", "ps"} <= set(targets)
    for target in targets:
        assert re.search(rf"^{target}:.*## \S", makefile, re.MULTILINE), f"{target} lacks ##"
        assert target in result.stdout


def test_the_docker_nginx_gets_every_variable_of_the_shared_template(
    compose: dict[str, Any],
) -> None:
    template = ROOT / "deploy" / "nginx" / "rag.conf.template"
    wanted = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)\}", template.read_text()))
    nginx = compose["services"]["nginx"]
    assert wanted == set(nginx["environment"])
    assert (
        f"./{template.relative_to(ROOT)}:/etc/nginx/templates/rag.conf.template:ro"
        in nginx["volumes"]
    )
    gateway = compose["services"]["rag-gateway"]["environment"]
    assert gateway["QUERY_URL"] == f"http://nginx:{nginx['environment']['QUERY_LB_LISTEN']}"


def test_prometheus_config_and_alert_rules_pass_promtool() -> None:
    promtool = executable("promtool")
    folder = ROOT / "deploy" / "prometheus"
    config = run(promtool, "check", "config", folder / "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr
    rules = run(promtool, "check", "rules", folder / "alerts.yml")
    assert rules.returncode == 0, rules.stdout + rules.stderr
    names = set(re.findall(r"alert: (\w+)", (folder / "alerts.yml").read_text()))
    assert {
        "ServiceDown",
        "HighErrorRate",
        "HighLatencyP95",
        "IngestQueueGrowing",
        "DeadLetteredJobs",
        "AnswerCacheHitRatioCollapsed",
    } <= names


def test_grafana_provisioning_points_the_dashboard_at_the_datasource() -> None:
    grafana = ROOT / "deploy" / "grafana"
    source = yaml.safe_load(
        (grafana / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    uid = source["datasources"][0]["uid"]
    dashboard = json.loads((grafana / "dashboards" / "rag-engine.json").read_text())
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == uid, panel["title"]
        assert panel["targets"], panel["title"]
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for topic in (
        "request",
        "error",
        "latency",
        "queue",
        "jobs",
        "chunks",
        "retrieval",
        "generation",
        "cache",
        "empty",
        "tokens",
        "memory",
    ):
        assert topic in titles, topic
