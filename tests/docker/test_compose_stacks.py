"""`make test-docker`: both compose stacks, built and run for real.

A private Docker engine (deploy/docker/offline/engine.sh: its own data root, socket and pid)
builds both of our images and brings up compose.yml, then compose.prod.yml, unchanged. No
registry is reachable here, so the third-party images are local stand-ins
(deploy/docker/offline/standins.sh, tagged with the upstream names; Grafana has none and is
left out). Tests reach the stacks only through ports published on 127.0.0.1, and never pull.

Figures (image sizes, build and start times) go to test-artifacts/docker.json for
docs/deploy.md.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from rag_devstack import free_port

from tests.support.documents import make_image, make_pdf
from tests.support.query import read_sse

ROOT = Path(__file__).resolve().parents[2]
OFFLINE = ROOT / "deploy" / "docker" / "offline"
STATE = ROOT / ".dev" / "docker"
ARTIFACTS = ROOT / "test-artifacts"
DOCKER = "/usr/bin/docker"  # Debian's client: BuildKit and the compose plugin
# Everything but Grafana, which has no stand-in here.
SERVICES = [
    "redis",
    "chroma",
    "rag-ingest",
    "rag-ingest-worker",
    "rag-query",
    "rag-gateway",
    "nginx",
    "nginx-exporter",
    "redis-exporter",
    "prometheus",
]
ADMIN_KEY = "rag-docker-test-admin-" + secrets.token_hex(16)
FIGURES: dict[str, Any] = {}

pytestmark = pytest.mark.timeout(1800)


@dataclass
class Docker:
    env: dict[str, str]

    def run(
        self,
        *args: str,
        timeout: float = 900,
        check: bool = True,
        env: dict[str, str] | None = None,
    ) -> str:
        result = subprocess.run(
            [DOCKER, *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=ROOT,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"docker {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result.stdout

    def inspect(self, container: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = json.loads(self.run("inspect", container))
        return found[0]


@dataclass
class Stack:
    """One compose project of one file, on free loopback ports."""

    docker: Docker
    file: str
    project: str
    env: dict[str, str] = field(default_factory=dict)

    def compose(self, *args: str, timeout: float = 900, check: bool = True) -> str:
        return self.docker.run(
            "compose", "-p", self.project, "-f", self.file, *args,
            timeout=timeout, check=check, env=self.env,
        )  # fmt: skip

    def containers(self, service: str) -> list[str]:
        return self.compose("ps", "-q", service).split()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.env['API_PORT']}"

    def up(self) -> float:
        started = time.monotonic()
        self.compose("up", "-d", "--wait", "--wait-timeout", "600", *SERVICES, timeout=900)
        return round(time.monotonic() - started, 1)


@pytest.fixture(scope="module")
def docker() -> Iterator[Docker]:
    started = time.monotonic()
    out = subprocess.run(
        [str(OFFLINE / "engine.sh"), "start", str(STATE)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    env = dict(os.environ)
    env.update(line.partition("=")[::2] for line in out.stdout.splitlines() if "=" in line)
    env["DOCKER_BUILDKIT"] = "1"
    engine = Docker(env)
    FIGURES["engine_start_seconds"] = round(time.monotonic() - started, 1)
    try:
        yield engine
    finally:
        for project, file in (("ragtest-dev", "compose.yml"), ("ragtest-prod", "compose.prod.yml")):
            engine.run("compose", "-p", project, "-f", file, "down", "-v", check=False)
        subprocess.run([str(OFFLINE / "engine.sh"), "stop", str(STATE)], check=False)
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "docker.json").write_text(json.dumps(FIGURES, indent=2) + "\n")


@pytest.fixture(scope="module")
def images(docker: Docker) -> None:
    started = time.monotonic()
    out = subprocess.run(
        [str(OFFLINE / "standins.sh")],
        env=docker.env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    FIGURES["standins_seconds"] = round(time.monotonic() - started, 1)
    for name, file, tag in (
        ("dev", "compose.yml", "rag-engine:dev"),
        ("prod", "compose.prod.yml", "rag-engine:latest"),
    ):
        started = time.monotonic()
        docker.run("compose", "-f", file, "build", timeout=1800)
        FIGURES[f"{name}_build_seconds"] = round(time.monotonic() - started, 1)
        size = int(docker.run("image", "inspect", "-f", "{{.Size}}", tag).strip())
        FIGURES[f"{name}_image_mb"] = round(size / 1e6)


def _ports() -> dict[str, str]:
    return {
        "API_BIND": "127.0.0.1",
        **{
            name: str(free_port())
            for name in (
                "API_PORT",
                "GATEWAY_HEALTH_HOST_PORT",
                "REDIS_HOST_PORT",
                "CHROMA_HOST_PORT",
                "PROMETHEUS_HOST_PORT",
                "GRAFANA_HOST_PORT",
            )
        },
    }


def _new_key(url: str) -> str:
    """A key of tenant `docker` that may ingest and query, made with the admin key."""
    created = httpx.post(
        f"{url}/v1/admin/keys",
        json={"tenant": "docker", "scopes": ["ingest:write", "query:read"]},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        timeout=30,
    )
    assert created.status_code == 201, created.text
    key: str = created.json()["key"]
    return key


def _auth(url: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {_new_key(url)}"}


def _upload(
    http: httpx.Client, collection: str, auth: dict[str, str], file: tuple[str, bytes, str]
) -> list[Any]:
    """The events of the job of one uploaded file, to its end."""
    upload = http.post(
        f"/v1/collections/{collection}/documents/upload", files=[("file", file)], headers=auth
    )
    assert upload.status_code == 202, upload.text
    job_id = upload.json()["jobs"][0]["job_id"]
    with http.stream("GET", f"/v1/jobs/{job_id}/events", headers=auth) as events:
        return list(read_sse(events.iter_lines()))


def _user_flow(url: str, collection: str) -> None:
    """A key, a collection, a PDF and its job's events, a search, a streamed answer and the
    OpenAI SDK in strict mode, all through the containerised nginx."""
    http = httpx.Client(base_url=url, timeout=60)
    key = _new_key(url)
    auth = {"Authorization": f"Bearer {key}"}
    made = http.post("/v1/collections", json={"name": collection}, headers=auth)
    assert made.status_code == 201, made.text
    pdf = make_pdf(["The pump must be serviced every 500 hours.", "Spare filters are in bay 4."])
    events = _upload(http, collection, auth, ("pump.pdf", pdf, "application/pdf"))
    names = [event.event for event in events]
    assert names[0] == "queued", names
    assert names[-1] == "succeeded", names
    body = {"query": "pump service interval", "mode": "lexical"}
    deadline = time.monotonic() + 60
    while True:  # every query replica has followed the change
        found = [
            http.post(f"/v1/collections/{collection}/search", json=body, headers=auth)
            for _ in range(6)
        ]
        if all(r.status_code == 200 and r.json()["results"] for r in found):
            break
        assert time.monotonic() < deadline, [r.text for r in found]
        time.sleep(0.5)
    top = found[0].json()["results"][0]
    assert "500 hours" in top["text"]
    assert top["page"] == 1
    with http.stream(
        "POST",
        f"/v1/collections/{collection}/query",
        json={"query": "Where are the spare filters?", "stream": True},
        headers=auth,
    ) as answer:
        streamed = list(read_sse(answer.iter_lines()))
    assert streamed[0].event == "sources"
    assert streamed[-1].event == "done"
    assert "bay 4" in streamed[-1].data["answer"]
    sdk = openai.OpenAI(
        base_url=f"{url}/v1",
        api_key=key,
        max_retries=0,
        _strict_response_validation=True,
    )
    assert collection in {m.id for m in sdk.models.list()}
    reply = sdk.chat.completions.create(
        model=collection, messages=[{"role": "user", "content": "How often is the pump serviced?"}]
    )
    assert "500 hours" in (reply.choices[0].message.content or "")
    _scan_and_agent(http, collection, auth)
    _reembed(http, collection, auth)


def _reembed(http: httpx.Client, collection: str, auth: dict[str, str]) -> None:
    """The collection moved to the other local model by the containerised worker, its job
    followed as events; then searched with the new model."""
    current = http.get(f"/v1/collections/{collection}", headers=auth).json()["embedding_model"]
    other = "all-MiniLM-L6-v2" if current != "all-MiniLM-L6-v2" else "all-MiniLM-L6-v2-int8"
    started = http.post(
        f"/v1/collections/{collection}/reembed", json={"embedding_model": other}, headers=auth
    )
    assert started.status_code == 202, started.text
    with http.stream("GET", f"/v1/jobs/{started.json()['id']}/events", headers=auth) as events:
        final = list(read_sse(events.iter_lines()))[-1]
    assert final.event == "succeeded", final.data
    moved = http.get(f"/v1/collections/{collection}", headers=auth).json()
    assert moved["embedding_model"] == other
    assert moved["reembedding"] is None
    body = {"query": "pump service interval", "mode": "dense"}
    found = http.post(f"/v1/collections/{collection}/search", json=body, headers=auth)
    assert found.status_code == 200, found.text
    assert "500 hours" in found.json()["results"][0]["text"]


def _scan_and_agent(http: httpx.Client, collection: str, auth: dict[str, str]) -> None:
    """A photo of a page, read by the image's Tesseract; then an agent's MCP tool call."""
    photo = make_image([["The boiler room key hangs", "behind the blue door."]], "PNG")
    final = _upload(http, collection, auth, ("notice.png", photo, "image/png"))[-1]
    assert final.event == "succeeded", final.data
    call = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {
            "name": "search",
            "arguments": {"collection": collection, "query": "boiler room key", "mode": "lexical"},
        },
    }
    deadline = time.monotonic() + 60
    while True:  # every query replica has followed the change
        answer = http.post(
            "/mcp", json=call, headers={**auth, "Accept": "application/json, text/event-stream"}
        )
        assert answer.status_code == 200, answer.text
        [data] = [line[5:] for line in answer.text.splitlines() if line.startswith("data:")]
        result = json.loads(data)["result"]
        hits = result["structuredContent"]["results"] if not result["isError"] else []
        if hits and "blue door" in hits[0]["text"]:
            break
        assert time.monotonic() < deadline, result
        time.sleep(0.5)
    assert hits[0]["metadata"]["ocr"] is True


def test_the_development_stack(docker: Docker, images: None) -> None:
    """`make up`'s stack (compose.yml), including the health-check order that once
    deadlocked (the gateway's readiness needs query through nginx, which waits for it)."""
    stack = Stack(docker, "compose.yml", "ragtest-dev", {**_ports(), "ADMIN_API_KEY": ADMIN_KEY})
    FIGURES["dev_up_seconds"] = stack.up()
    _user_flow(stack.url, "manuals")
    stack.compose("down", "-v")


@pytest.fixture(scope="module")
def prod(docker: Docker, images: None) -> Stack:
    secrets_env = {
        "INTERNAL_TOKEN": secrets.token_hex(32),
        "JWT_SECRET": secrets.token_hex(32),
        "ADMIN_API_KEY": ADMIN_KEY,
        "RAG_VERSION": "latest",
    }
    stack = Stack(docker, "compose.prod.yml", "ragtest-prod", {**_ports(), **secrets_env})
    FIGURES["prod_up_seconds"] = stack.up()
    # As deploy.sh does: nginx resolves every query replica when it loads its configuration.
    _reload_nginx(stack)
    return stack


# The PIDs of nginx's worker processes (their titles say so), read from /proc in its container.
_WORKERS = (
    'for p in /proc/[0-9]*; do case "$(tr "\\0" " " < "$p/cmdline" 2>/dev/null)" in '
    '*"worker "process*) echo "${p#/proc/}" ;; esac; done'
)


def _reload_nginx(stack: Stack) -> None:
    """``nginx -s reload`` returns at once; the former workers finish what they serve, then
    close their kept-alive connections. A client that reused one of those got "Server
    disconnected without sending a response" on its next request (the user flow's upload, once
    in make test-docker). Returns once every former worker is gone."""

    def workers() -> set[str]:
        return set(stack.compose("exec", "-T", "nginx", "sh", "-c", _WORKERS).split())

    former = workers()
    assert former, "no nginx worker process found"
    stack.compose("exec", "-T", "nginx", "nginx", "-s", "reload")
    deadline = time.monotonic() + 60
    while (now := workers()) & former or not now:
        assert time.monotonic() < deadline, f"nginx workers {sorted(now & former)} still serve"
        time.sleep(0.2)


def test_the_production_stack_serves_a_user_flow(prod: Stack) -> None:
    _user_flow(prod.url, "handbook")


def test_production_hardening_is_in_force(prod: Stack) -> None:
    published = {}
    for container in prod.compose("ps", "-q").split():
        state = prod.docker.inspect(container)
        name = state["Config"]["Labels"]["com.docker.compose.service"]
        host = state["HostConfig"]
        assert host["ReadonlyRootfs"] is True, name
        assert host["CapDrop"] == ["ALL"], name
        assert "no-new-privileges:true" in host["SecurityOpt"], name
        if name != "nginx":  # its master starts as root to bind and drop to workers
            user = state["Config"]["User"]
            assert user, f"{name} runs as root"
            assert user.split(":")[0] not in ("0", "root"), f"{name} runs as {user!r}"
        ports = state["NetworkSettings"]["Ports"] or {}
        bound = [b for bindings in ports.values() if bindings for b in bindings]
        if bound:
            published[name] = bound
    assert set(published) == {"nginx"}, published
    assert all(b["HostIp"] == "127.0.0.1" for b in published["nginx"])


def test_a_query_replica_killed_under_load_costs_no_request(prod: Stack) -> None:
    auth = _auth(prod.url)
    replicas = prod.containers("rag-query")
    assert len(replicas) == 3, replicas
    http = httpx.Client(base_url=prod.url, timeout=30)
    body = {"query": "pump service interval", "mode": "hybrid"}
    failures: list[str] = []

    def search() -> None:
        response = http.post("/v1/collections/handbook/search", json=body, headers=auth)
        if response.status_code != 200:
            failures.append(f"{response.status_code} {response.text[:200]}")

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(search) for _ in range(40)]
        concurrent.futures.wait(futures)
        prod.docker.run("kill", replicas[0])
        futures = [pool.submit(search) for _ in range(160)]
        concurrent.futures.wait(futures)
    assert not failures, f"{len(failures)} of 200 failed: {failures[:3]}"


def test_backup_and_restore_in_docker_mode(prod: Stack, tmp_path: Path) -> None:
    auth = _auth(prod.url)
    http = httpx.Client(base_url=prod.url, timeout=60)
    query = {"query": "spare filters", "mode": "lexical"}

    def results() -> list[tuple[str, str]]:
        found = http.post("/v1/collections/handbook/search", json=query, headers=auth)
        assert found.status_code == 200, found.text
        return [(h["chunk_id"], h["text"]) for h in found.json()["results"]]

    before = results()
    assert before
    env = {**prod.docker.env, **prod.env, "COMPOSE_PROJECT_NAME": prod.project}
    backup = subprocess.run(
        [str(ROOT / "deploy/scripts/backup.sh"), "--compose", prod.file, str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=600, check=False, cwd=ROOT,
    )  # fmt: skip
    assert backup.returncode == 0, backup.stderr
    archive = backup.stdout.strip().splitlines()[-1]
    # backup.sh starts the writers again without waiting (ingest fails for those seconds).
    prod.compose("up", "-d", "--wait", "--wait-timeout", "300", *SERVICES)
    deleted = http.delete("/v1/collections/handbook", headers=auth)
    assert deleted.status_code == 200, deleted.text
    restore = subprocess.run(
        [str(ROOT / "deploy/scripts/restore.sh"), archive, "--compose", prod.file],
        env=env, capture_output=True, text=True, timeout=600, check=False, cwd=ROOT,
    )  # fmt: skip
    assert restore.returncode == 0, restore.stderr
    prod.compose("up", "-d", "--wait", "--wait-timeout", "300", *SERVICES)
    prod.compose("exec", "-T", "nginx", "nginx", "-s", "reload")
    deadline = time.monotonic() + 120
    while True:
        try:
            if results() == before:
                break
        except AssertionError:
            pass
        assert time.monotonic() < deadline, "the restored stack does not answer as before"
        time.sleep(1)


def test_production_down_needs_no_secrets(prod: Stack) -> None:
    """`docker compose -f compose.prod.yml down` works without the production secrets."""
    env = {k: v for k, v in prod.env.items() if k not in ("INTERNAL_TOKEN", "JWT_SECRET")}
    prod.docker.run("compose", "-p", prod.project, "-f", prod.file, "down", "-v", env=env)
    assert not prod.compose("ps", "-q").split()
