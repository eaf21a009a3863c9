"""The Kubernetes manifests: valid against the Kubernetes schemas (kubernetes-validate, strict),
and holding to what docs/deploy.md promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
BASE = ROOT / "deploy" / "k8s" / "base"
APPS = ("rag-gateway", "rag-ingest", "rag-ingest-worker", "rag-query")


def _resources() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    found = []
    for name in kustomization["resources"]:
        found += [doc for doc in yaml.safe_load_all((BASE / name).read_text()) if doc]
    return found


def _by(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in _resources() if doc["kind"] == kind}


def test_every_manifest_validates_against_the_kubernetes_schema() -> None:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    files = [str(BASE / name) for name in kustomization["resources"]]
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "kubernetes-validate"),
            "-k",
            "1.30.0",
            "--strict",
            *files,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == len(_resources())


def test_deployments_have_probes_limits_and_no_privileges() -> None:
    deployments = _by("Deployment")
    assert set(deployments) == set(APPS)
    assert deployments["rag-query"]["spec"]["replicas"] == 3
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        [container] = pod["containers"]
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True, name
        assert security["allowPrivilegeEscalation"] is False, name
        assert security["capabilities"]["drop"] == ["ALL"], name
        assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
        assert {"cpu", "memory"} <= set(container["resources"]["limits"]), name
        assert container["readinessProbe"]["httpGet"]["path"] == "/ready", name
        if name == "rag-ingest-worker":
            assert "arq" in container["livenessProbe"]["exec"]["command"]
        else:
            assert container["livenessProbe"]["httpGet"]["path"] == "/health", name
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
        refs = [ref for source in container["envFrom"] for ref in source.values()]
        assert {"name": "rag-secrets"} in refs
        assert {"name": "rag-config"} in refs


def test_query_scales_horizontally_and_the_stores_keep_their_data() -> None:
    [hpa] = _by("HorizontalPodAutoscaler").values()
    assert hpa["spec"]["scaleTargetRef"]["name"] == "rag-query"
    assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    stores = _by("StatefulSet")
    assert set(stores) == {"redis", "chroma"}
    for name, store in stores.items():
        assert store["spec"]["replicas"] == 1, f"{name} does not scale horizontally"
        assert store["spec"]["volumeClaimTemplates"], name
    redis = stores["redis"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert "noeviction" in redis
    assert "--appendonly" in redis


def test_only_the_gateway_reaches_the_internal_services() -> None:
    policies = _by("NetworkPolicy")
    assert policies["default-deny-ingress"]["spec"] == {
        "podSelector": {},
        "policyTypes": ["Ingress"],
    }
    internal = policies["internal-services-only-from-the-gateway"]["spec"]
    guarded = internal["podSelector"]["matchExpressions"][0]["values"]
    assert sorted(guarded) == ["rag-ingest", "rag-query"]
    [rule] = internal["ingress"]
    assert rule["from"][0]["podSelector"]["matchExpressions"][0]["values"] == ["rag-gateway"]
    [ingress] = _by("Ingress").values()
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == "rag-gateway"
    services = _by("Service")
    for name in (*APPS, "redis", "chroma"):
        assert name in services, name
    secrets = (BASE / "secrets.env.example").read_text()
    assert "INTERNAL_TOKEN=" in secrets
    assert (ROOT / ".gitignore").read_text().count("secrets.env") >= 1
