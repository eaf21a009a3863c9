"""A real Prometheus scrapes the native stack; after some traffic every panel of the Grafana
dashboard gets data, and the alert rules load."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from rag_devstack import ManagedProcess, NativeStack, StackPorts, executable, free_port, http_ok

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
ADMIN = "observability-admin-key-0123456789"


def native_prometheus_config(stack: NativeStack, folder: Path) -> Path:
    """The Docker stack's prometheus.yml with the native stack's loopback targets."""
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    ports = {
        "gateway": stack.ports.gateway_health,
        "ingest": stack.ports.ingest_health,
        "worker": stack.ports.worker_health,
        "query": stack.ports.query_health,
    }
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["scrape_configs"] = [
        {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
        for job, port in ports.items()
    ]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "alerts.yml").write_text((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    path = folder / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def observed(
    tmp_path_factory: pytest.TempPathFactory, model_cache: Path
) -> Iterator[tuple[NativeStack, str]]:
    workdir = tmp_path_factory.mktemp("observed")
    stack = NativeStack(
        workdir, StackPorts.free(), env={"DATA_DIR": str(model_cache), "ADMIN_API_KEY": ADMIN}
    )
    with stack:
        stack.start()
        config = native_prometheus_config(stack, workdir / "prometheus")
        port = free_port()
        prometheus = ManagedProcess(
            "prometheus",
            [
                executable("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'prometheus' / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            log_path=stack.log_dir / "prometheus.log",
        ).start()
        try:
            url = f"http://127.0.0.1:{port}"
            prometheus.wait_until(lambda: http_ok(f"{url}/-/ready"), timeout=60, what="ready")
            yield stack, url
        finally:
            prometheus.stop()


def _traffic(stack: NativeStack) -> None:
    http = httpx.Client(base_url=stack.api_url("gateway"), timeout=60)
    admin = {"Authorization": f"Bearer {ADMIN}"}
    key = http.post(
        "/v1/admin/keys",
        json={"tenant": "default", "scopes": ["ingest:write", "query:read"]},
        headers=admin,
    ).json()["key"]
    auth = {"Authorization": f"Bearer {key}"}
    assert http.post("/v1/collections", json={"name": "observed"}, headers=auth).status_code == 201
    docs = [{"text": f"Fact {i}: the valve {i} opens at {i * 10} bar."} for i in range(12)]
    jobs = http.post("/v1/collections/observed/documents", json={"documents": docs}, headers=auth)
    for job in jobs.json()["jobs"]:
        while http.get(job["status_url"], headers=auth).json()["state"] not in ("succeeded",):
            time.sleep(0.2)
    deadline = time.monotonic() + 30  # the lexical index follows the change
    while not http.post(
        "/v1/collections/observed/search",
        json={"query": "valve bar", "mode": "lexical"},
        headers=auth,
    ).json()["results"]:
        assert time.monotonic() < deadline, "the lexical index never followed"
        time.sleep(0.05)
    for mode in ("dense", "lexical", "hybrid"):
        assert (
            http.post(
                "/v1/collections/observed/search",
                json={"query": "valve bar", "mode": mode},
                headers=auth,
            ).status_code
            == 200
        )
    for _ in range(2):  # the second is a cache hit
        http.post(
            "/v1/collections/observed/query",
            json={"query": "When does valve 3 open?"},
            headers=auth,
        )
    http.post(
        "/v1/collections/observed/query",
        json={"query": "valve", "filter": {"x": 1}, "cache": False},
        headers=auth,
    )
    http.get("/v1/collections/nope", headers=auth)


def test_every_dashboard_panel_gets_data_from_a_real_prometheus(
    observed: tuple[NativeStack, str],
) -> None:
    stack, prometheus = observed
    _traffic(stack)
    dashboard = json.loads(
        (ROOT / "deploy" / "grafana" / "dashboards" / "rag-engine.json").read_text()
    )
    targets = [
        (panel["title"], t["expr"]) for panel in dashboard["panels"] for t in panel["targets"]
    ]
    assert len(targets) >= 13
    missing = []
    deadline = time.monotonic() + 60
    for title, expr in targets:
        while True:
            reply = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}).json()
            assert reply["status"] == "success", (title, reply)
            if reply["data"]["result"]:
                break
            if time.monotonic() > deadline:
                missing.append(title)
                break
            time.sleep(1)
    assert missing == [], f"panels without data: {missing}"
    up = httpx.get(f"{prometheus}/api/v1/query", params={"query": "up"}).json()["data"]["result"]
    assert {s["metric"]["job"]: s["value"][1] for s in up} == {
        "gateway": "1",
        "ingest": "1",
        "worker": "1",
        "query": "1",
    }
    rules = httpx.get(f"{prometheus}/api/v1/rules").json()["data"]["groups"][0]["rules"]
    assert {rule["name"] for rule in rules} >= {"ServiceDown", "DeadLetteredJobs", "HighErrorRate"}
    assert all(rule["health"] == "ok" for rule in rules), rules
