"""What a user does, through nginx only: a key, a collection, a PDF, its job's progress as SSE,
a search, a streamed answer, and the OpenAI SDK."""

from __future__ import annotations

import base64
import hashlib
import re
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import openai
import pytest
from rag_devstack import ManagedProcess, NativeStack, free_port
from rag_devstack.nginx import write_native_config

from tests.e2e.gateway.conftest import Edge
from tests.support.documents import make_pdf
from tests.support.query import read_sse

pytestmark = pytest.mark.e2e
REPO_ROOT = Path(__file__).resolve().parents[3]


def test_nginx_accepts_the_generated_configuration(full_stack: NativeStack) -> None:
    config = full_stack.workdir / "nginx" / "nginx.conf"
    result = subprocess.run(
        ["nginx", "-t", "-p", str(config.parent), "-c", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_a_user_flow_through_nginx(edge: Edge, full_stack: NativeStack) -> None:
    key = edge.new_key("flow", ["ingest:write", "query:read"], name="flow test")
    auth = edge.bearer(key)
    assert (
        edge.http.post("/v1/collections", json={"name": "manuals"}, headers=auth).status_code == 201
    )
    pdf = make_pdf(["The pump must be serviced every 500 hours.", "Spare filters are in bay 4."])
    upload = edge.http.post(
        "/v1/collections/manuals/documents/upload",
        files=[("file", ("pump.pdf", pdf, "application/pdf"))],
        headers=auth,
    )
    assert upload.status_code == 202, upload.text
    job_id = upload.json()["jobs"][0]["job_id"]
    with edge.http.stream("GET", f"/v1/jobs/{job_id}/events", headers=auth) as events:
        assert events.headers["content-type"].startswith("text/event-stream")
        names = [event.event for event in read_sse(events.iter_lines())]
    assert names[0] == "queued"
    assert names[-1] == "succeeded"
    assert "progress" in names
    edge.wait_searchable("manuals", "pump service interval", auth, mode="lexical")

    hits = edge.http.post(
        "/v1/collections/manuals/search", json={"query": "pump service interval"}, headers=auth
    )
    assert hits.status_code == 200, hits.text
    top = hits.json()["results"][0]
    assert "500 hours" in top["text"]
    assert top["page"] == 1

    with edge.http.stream(
        "POST",
        "/v1/collections/manuals/query",
        json={"query": "Where are the spare filters?", "stream": True},
        headers=auth,
    ) as answer:
        streamed = list(read_sse(answer.iter_lines()))
    assert next(e.event for e in streamed) == "sources"
    assert streamed[-1].event == "done"
    assert "bay 4" in streamed[-1].data["answer"]

    sdk = openai.OpenAI(
        base_url=f"{full_stack.edge_url}/v1",
        api_key=key,
        max_retries=0,
        _strict_response_validation=True,
    )
    assert "manuals" in {m.id for m in sdk.models.list()}
    assert sdk.models.retrieve("manuals").id == "manuals"
    with pytest.raises(openai.NotFoundError) as missing:
        sdk.models.retrieve("no-such-manuals")
    assert missing.value.code == "model_not_found"
    # Any path under OpenAI's routes answers in OpenAI's shape, an unknown one too.
    unknown = edge.http.get("/v1/chat/nothing-here", headers=auth)
    assert unknown.status_code == 404
    assert set(unknown.json()["error"]) == {"message", "type", "param", "code"}
    reply = sdk.chat.completions.create(
        model="manuals", messages=[{"role": "user", "content": "How often is the pump serviced?"}]
    )
    assert "500 hours" in (reply.choices[0].message.content or "")
    # A chat UI's placeholder or an OpenAI key is a wrong API key, said as OpenAI says it.
    for wrong in ("sk-placeholder", "sk-proj-" + "x" * 40):
        stranger = openai.OpenAI(base_url=f"{full_stack.edge_url}/v1", api_key=wrong, max_retries=0)
        with pytest.raises(openai.AuthenticationError) as refused:
            stranger.models.list()
        assert refused.value.code == "invalid_api_key"
        assert refused.value.type == "invalid_request_error"
        assert "API key is not valid" in refused.value.message
        assert "JWT" not in refused.value.message
        assert "token" not in refused.value.message
    # Every hop logged the same request id: nginx's access log has it with the upstream time.
    response = edge.http.get("/v1/collections", headers={**auth, "X-Request-ID": "flow-check-1"})
    assert response.headers["x-request-id"] == "flow-check-1"
    for log, text in (
        ("nginx-access.log", '"request_id":"flow-check-1"'),
        ("gateway.log", '"request_id": "flow-check-1"'),
        ("ingest.log", '"request_id": "flow-check-1"'),
    ):
        deadline = time.monotonic() + 5  # summary lines are written as the response ends
        while text not in (full_stack.log_dir / log).read_text():
            assert time.monotonic() < deadline, f"{text} not in {log}"
            time.sleep(0.1)


def test_the_public_schema_describes_the_whole_api(edge: Edge) -> None:
    document = edge.http.get("/schema/openapi.json").json()
    paths = set(document["paths"])
    for path in (
        "/v1/collections",
        "/v1/collections/{collection}/documents/upload",
        "/v1/jobs/{job_id}/events",
        "/v1/collections/{collection}/search",
        "/v1/collections/{collection}/query",
        "/v1/chat/completions",
        "/v1/models",
        "/v1/models/{model}",
        "/v1/admin/keys",
    ):
        assert path in paths, path
    assert "/health" not in paths
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    page = edge.http.get("/schema")
    assert page.status_code == 200
    assert "SwaggerUIBundle" in page.text
    assert "/v1/chat/completions" in page.text  # the whole document, browsable
    # The page shares the playground's origin and tab storage (its API key): its CDN files
    # are held to their hashes, nothing else may run or be reached, nothing from a mutable
    # path (it loaded Swagger UI unhashed, and an icon from a branch).
    policy = page.headers["content-security-policy"]
    inline = re.search(r"<script type='text/javascript'>(.*?)</script>", page.text, re.S)
    assert inline is not None
    digest = base64.b64encode(hashlib.sha256(inline.group(1).encode()).digest()).decode()
    assert f"'sha256-{digest}'" in policy
    assert "connect-src 'self'" in policy
    assert "'unsafe-inline'" not in policy.split("script-src", 1)[1].split(";")[0]
    sources = re.findall(r'<(?:script src|link href)="(https://[^"]+)"([^>]*)>', page.text)
    assert len(sources) == 3, sources
    for url, attributes in sources:
        assert "@5.18.2/" in url, url
        assert 'integrity="sha384-' in attributes, url
    assert "@main" not in page.text
    # Litestar's own pages (Redoc, RapiDoc, Elements, Swagger: CDN scripts without hashes) are
    # not served on this origin; the gateway's own document still is.
    for other in ("redoc", "rapidoc", "elements", "swagger"):
        assert edge.http.get(f"/schema/gateway/{other}").status_code == 404, other
    assert edge.http.get("/schema/gateway/openapi.json").status_code == 200


def test_readiness_covers_what_the_gateway_routes_to(edge: Edge) -> None:
    ready = edge.http.get("/ready").json()
    assert ready["status"] == "ready"
    assert set(ready["checks"]) == {"redis", "ingest", "query"}


def test_the_edge_serves_tls_with_the_self_signed_certificate(
    full_stack: NativeStack, tmp_path: Path
) -> None:
    script = REPO_ROOT / "deploy" / "scripts" / "make-cert.sh"
    subprocess.run([str(script), str(tmp_path / "certs")], check=True, capture_output=True)
    port = free_port()
    config = write_native_config(
        tmp_path / "nginx",
        tmp_path / "logs",
        edge_listen=f"127.0.0.1:{free_port()}",
        query_lb_listen=f"127.0.0.1:{free_port()}",
        gateways=[f"127.0.0.1:{full_stack.ports.gateway}"],
        queries=[f"127.0.0.1:{full_stack.ports.query}"],
        tls=(f"127.0.0.1:{port}", tmp_path / "certs" / "rag.crt", tmp_path / "certs" / "rag.key"),
    )
    checked = subprocess.run(
        ["nginx", "-t", "-p", str(config.parent), "-c", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    nginx = ManagedProcess(
        "nginx-tls",
        ["nginx", "-p", str(config.parent), "-c", str(config), "-g", "daemon off;"],
        log_path=tmp_path / "nginx-tls.log",
    ).start()
    try:
        url = f"https://127.0.0.1:{port}/health"
        trust = ssl.create_default_context(cafile=str(tmp_path / "certs" / "rag.crt"))
        nginx.wait_until(lambda: _answers(url, trust), timeout=20, what="TLS")
        response = httpx.get(url, verify=trust)
        assert response.status_code == 200
        assert response.headers["strict-transport-security"].startswith("max-age=")
        assert response.headers["x-content-type-options"] == "nosniff"
    finally:
        nginx.stop()


def _answers(url: str, trust: ssl.SSLContext) -> bool:
    try:
        return httpx.get(url, verify=trust, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
