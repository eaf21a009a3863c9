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


def load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / name).read_text())
    return loaded


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load("compose.yml")


@pytest.fixture(scope="module")
def prod() -> dict[str, Any]:
    return load("compose.prod.yml")


@pytest.mark.parametrize("name", ["compose.yml", "compose.prod.yml"])
def test_compose_files_are_valid(name: str) -> None:
    result = validate_compose(ROOT / name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_validator_rejects_a_broken_file(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yml"
    broken.write_text("services:\n  api:\n    image: 42\n    ports: nope\n")
    assert validate_compose(broken).returncode != 0


@pytest.mark.parametrize("name", ["compose.yml", "compose.prod.yml"])
def test_every_reference_resolves(name: str) -> None:
    document = load(name)
    services, volumes = document["services"], set(document["volumes"])
    for service_name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{service_name} -> {dependency}"
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{service_name}: {mount}"
            else:
                assert source in volumes, f"{service_name}: {mount}"
        for network in service.get("networks", []):
            assert network in document["networks"]
    builders = [n for n, service in services.items() if "build" in service]
    assert builders == ["chroma"], "exactly one service builds the shared image"
    for service_name in RAG_SERVICES:
        assert services[service_name]["image"] == services["chroma"]["image"]
        assert services[service_name]["pull_policy"] == "never"


def test_development_runs_each_service_from_the_mounted_source(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["chroma"]["build"]["dockerfile"] == "deploy/docker/Dockerfile.dev"
    for name, module in RAG_SERVICES.items():
        service = services[name]
        if name == "rag-ingest-worker":
            assert f"python -m {module}" in service["command"]
        else:
            assert f"rag_{service['environment']['RAG_SERVICE']}" == module
        assert "./libs:/app/libs" in service["volumes"]
        assert "./services:/app/services" in service["volumes"]
        assert service["environment"]["REDIS_URL"] == "redis://redis:6379/0"
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        assert service["networks"] == ["rag-network"]
        assert service["healthcheck"]["test"], name
    worker = services["rag-ingest-worker"]["healthcheck"]["test"]
    assert worker == ["CMD", "arq", "--check", "rag_ingest.worker.check.WorkerSettings"]
    for name in ("rag-ingest", "rag-ingest-worker", "rag-query"):
        assert services[name]["environment"]["CHROMA_HOST"] == "chroma"
        assert services[name]["depends_on"]["chroma"]["condition"] == "service_healthy"
    for name, service in services.items():
        assert "healthcheck" in service or name in ("nginx-exporter", "redis-exporter"), name


def test_ports_and_volumes_follow_the_deployment_guide(compose: dict[str, Any]) -> None:
    services = compose["services"]
    # Clients reach the API through nginx on 8000; the gateway publishes only health/metrics.
    # Every host port has a variable (a taken port is moved, not fought over), and everything
    # is on loopback unless API_BIND opens the API.
    assert services["nginx"]["ports"] == ["${API_BIND:-127.0.0.1}:${API_PORT:-8000}:8080"]
    assert services["rag-gateway"]["ports"] == ["127.0.0.1:${GATEWAY_HEALTH_HOST_PORT:-8089}:8089"]
    assert services["chroma"]["ports"] == ["127.0.0.1:${CHROMA_HOST_PORT:-8001}:8000"]
    assert services["redis"]["ports"] == ["127.0.0.1:${REDIS_HOST_PORT:-6379}:6379"]
    assert services["prometheus"]["ports"] == ["127.0.0.1:${PROMETHEUS_HOST_PORT:-9090}:9090"]
    assert services["grafana"]["ports"] == ["127.0.0.1:${GRAFANA_HOST_PORT:-3000}:3000"]
    assert "chroma_data:/data" in services["chroma"]["volumes"]
    redis = services["redis"]
    assert "--appendonly" in redis["command"]
    assert redis["command"][redis["command"].index("--maxmemory-policy") + 1] == "noeviction"
    assert {
        "rag_data",
        "rag_logs",
        "chroma_data",
        "redis_data",
        "prometheus_data",
        "grafana_data",
    } <= set(compose["volumes"])


def test_production_is_hardened_service_by_service(prod: dict[str, Any]) -> None:
    services = prod["services"]
    for name, service in services.items():
        assert service["restart"] == "unless-stopped", name
        assert service["read_only"] is True, name
        assert "/tmp" in service["tmpfs"], name
        assert service["security_opt"] == ["no-new-privileges:true"], name
        assert service["cap_drop"] == ["ALL"], name
        assert service["logging"]["driver"] == "json-file", name
        assert {"max-size", "max-file"} <= set(service["logging"]["options"]), name
        resources = service["deploy"]["resources"]
        assert {"cpus", "memory"} <= set(resources["limits"]), name
        assert {"cpus", "memory"} <= set(resources["reservations"]), name
        assert "rag-internal" in service["networks"], name
        assert not any(
            str(m).startswith(("./libs", "./services")) for m in service.get("volumes", [])
        )
        if name != "nginx":
            assert "ports" not in service, f"{name} publishes a port"
    assert services["nginx"]["ports"] == ["${API_BIND:-0.0.0.0}:${API_PORT:-8000}:8080"]
    assert prod["networks"]["rag-internal"]["internal"] is True
    assert services["rag-query"]["deploy"]["replicas"] == 3
    assert services["rag-ingest-worker"]["deploy"]["replicas"] == 2
    assert services["chroma"]["build"]["dockerfile"] == "deploy/docker/Dockerfile"
    for name, module in RAG_SERVICES.items():
        assert services[name]["command"] == ["python", "-m", module]
        assert services[name]["environment"]["ENVIRONMENT"] == "production"


def test_production_takes_every_secret_from_the_environment(prod: dict[str, Any]) -> None:
    text = (ROOT / "compose.prod.yml").read_text()
    services = prod["services"]
    gateway = services["rag-gateway"]["environment"]
    # From the environment, without a default; not `${X:?}`, which would make even
    # `docker compose down` refuse: the services check their secrets themselves at start
    # (rag_config), and Grafana's entrypoint refuses to start without its password.
    assert gateway["JWT_SECRET"] == "${JWT_SECRET:-}"
    assert gateway["INTERNAL_TOKEN"] == "${INTERNAL_TOKEN:-}"
    grafana = services["grafana"]
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == "${GRAFANA_PASSWORD:-}"
    assert 'test -n "$$GF_SECURITY_ADMIN_PASSWORD" ||' in grafana["entrypoint"][-1]
    for secret in ("OPENAI_API_KEY", "GOOGLE_API_KEY", "COHERE_API_KEY", "ADMIN_API_KEY"):
        assert re.search(rf"{secret}: \$\{{{secret}:-\}}", text) or secret not in text, secret
    assert not re.search(r"(password|secret|token|key)\s*[:=]\s*['\"]?[A-Za-z0-9]{12,}", text, re.I)


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.dev", "offline/Dockerfile.standins"])
def test_dockerfiles_pass_hadolint(name: str) -> None:
    result = run(BIN / "hadolint", DOCKERFILE.parent / name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_images_carry_the_embedder_so_containers_start_offline() -> None:
    for name in ("Dockerfile", "Dockerfile.dev"):
        text = DOCKERFILE.with_name(name).read_text()
        assert "ensure_onnx_model(Path('/opt/models')" in text, name
        assert "MODEL_DIR=/opt/models" in text, name


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
    scripts = [
        *sorted((ROOT / "deploy" / "scripts").glob("*.sh")),
        *sorted((ROOT / "deploy" / "docker" / "offline").glob("*.sh")),
        ROOT / ".ci" / "run",
    ]
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
