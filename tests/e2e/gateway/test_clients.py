"""The Python SDK (sync and async) and the `rag` command line, end to end through nginx and the
gateway: every part of the public API, typed results, problem details as exceptions, streams,
progress on a terminal and as plain lines, and the exit codes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from rag_client import (
    APIError,
    AsyncClient,
    Client,
    DoneEvent,
    ErrorEvent,
    RAGEngine,
    SourcesEvent,
    TokenEvent,
)
from rag_devstack import free_port

from tests.e2e.gateway.conftest import ADMIN_KEY, Edge
from tests.support.cli import rag, rag_on_terminal

pytestmark = pytest.mark.e2e

CAPYBARA = "The capybara is the largest living rodent. It lives near rivers in South America."
RAVENS = "Ravens solve puzzles, use tools and remember human faces for years."
ORCHIDS = "Orchids are a large family of flowering plants; vanilla comes from an orchid."


@pytest.fixture(scope="module")
def admin(edge: Edge) -> Iterator[Client]:
    with Client(edge.url, ADMIN_KEY) as client:
        yield client


@pytest.fixture(scope="module")
def user(admin: Client, edge: Edge) -> Iterator[Client]:
    """A key of its own tenant, made with the SDK."""
    created = admin.create_key("clients", ["ingest:write", "query:read"], name="sdk test")
    assert created.key is not None
    assert created.tenant == "clients"
    with Client(edge.url, created.key) as client:
        yield client


def test_the_sdk_covers_the_api(user: Client, admin: Client, edge: Edge, tmp_path: Path) -> None:
    info = RAGEngine(edge.url, user.settings.api_key).get_system_info()
    assert info.status == "ready", info
    assert set(info.services) == {"gateway", "ingest", "query"}
    assert all(s.version for s in info.services.values())
    assert info.embedding_model == "all-MiniLM-L6-v2-int8"
    assert info.queue.workers >= 1
    assert isinstance(info.queue.depth, int)  # counted (no SCAN), whatever the queue holds
    assert info.tenant == "clients"

    created = user.create_collection("zoo", description="animals")
    assert (created.name, created.description) == ("zoo", "animals")
    assert "zoo" in [c.name for c in user.list_collections()]

    text_jobs = user.add_documents(
        "zoo", [{"id": "capybara", "text": CAPYBARA, "metadata": {"kind": "mammal"}}, RAVENS]
    )
    assert text_jobs.collection == "zoo"
    assert len(text_jobs.job_ids) == 2
    orchids = tmp_path / "orchids.md"
    orchids.write_text(f"# Orchids\n\n{ORCHIDS}\n")
    uploaded = user.upload_files("zoo", [orchids, ("notes.txt", b"Owls hunt at night.")])
    assert len(uploaded.jobs) == 2
    seen: list[tuple[str, str]] = []
    jobs = user.wait_jobs(
        [*text_jobs.job_ids, *uploaded.job_ids],
        max_seconds=60,
        on_progress=lambda job: seen.append((job.id, job.state)),
    )
    assert [job.state for job in jobs] == ["succeeded"] * 4, [j.error for j in jobs]
    assert {job_id for job_id, _ in seen} == {job.id for job in jobs}
    assert jobs[2].filename == "orchids.md"

    # A job's events, replayed from its start: they end with its final state.
    events = list(user.job_events(jobs[0].id))
    assert events
    assert events[-1].state == "succeeded"
    assert all(event.id for event in events)

    page = user.list_documents("zoo", limit=10)
    assert page.total == 4
    mammals = user.list_documents("zoo", where={"kind": "mammal"})
    assert [d.id for d in mammals.documents] == ["capybara"]
    document = user.get_document("zoo", "capybara")
    assert document.chunks
    assert "capybara" in document.chunks[0].text
    edge.wait_searchable("zoo", "largest rodent", Edge.bearer(str(user.settings.api_key)))

    found = user.search("zoo", "largest rodent", top_k=2)
    assert found.results[0].document_id == "capybara"
    assert found.results[0].scores.dense is not None
    dense = user.search("zoo", "flowering plants", mode="dense", filter={"kind": "mammal"})
    assert {hit.document_id for hit in dense.results} == {"capybara"}

    answer = user.query("zoo", "Which animal is the largest rodent?")
    assert "capybara" in answer.answer.lower()
    assert answer.citations
    assert answer.citations[0].document_id == "capybara"
    assert answer.citations[0].quote

    streamed = list(user.query_stream("zoo", "Which birds remember faces?", cache=False))
    assert isinstance(streamed[0], SourcesEvent)
    assert isinstance(streamed[-1], DoneEvent)
    tokens = "".join(e.text for e in streamed if isinstance(e, TokenEvent))
    final = streamed[-1].answer
    assert tokens == final.answer
    assert "Ravens" in tokens
    assert final.sources == streamed[0].sources
    assert final.citations

    # Problem details arrive as exceptions naming the field.
    with pytest.raises(APIError) as bad:
        user.search("zoo", "x", top_k=0)
    assert bad.value.status == 422
    assert bad.value.errors[0]["field"] == "top_k"
    with pytest.raises(APIError) as missing:
        user.get_collection("no-such")
    assert missing.value.status == 404

    # A URL the worker refuses to fetch: a failed job with its reason, that can be retried.
    refused = user.ingest_url("zoo", "http://127.0.0.1:9/")
    failed = user.wait_job(refused.job_ids[0], max_seconds=60)
    assert failed.state == "failed"
    assert "loopback" in (failed.error or "")
    assert refused.job_ids[0] in [j.id for j in user.list_jobs(state="failed").jobs]
    again = user.retry_job(failed.id)
    assert again.run == 2
    assert again.state == "queued"

    replaced = user.replace_document("zoo", "capybara", CAPYBARA + " It swims well.")
    assert user.wait_job(replaced.job_ids[0], max_seconds=60).state == "succeeded"
    assert user.get_document("zoo", "capybara").version == 2
    user.delete_document("zoo", "capybara")
    with pytest.raises(APIError):
        user.get_document("zoo", "capybara")

    keys = admin.list_keys(tenant="clients")
    mine = next(k for k in keys if k.name == "sdk test")
    assert mine.key is None  # never the secret again
    throwaway = admin.create_key("clients", ["query:read"])
    assert admin.revoke_key(throwaway.id).revoked_at
    with Client(edge.url, throwaway.key) as revoked, pytest.raises(APIError) as refused_key:
        revoked.list_collections()
    assert refused_key.value.status == 401

    user.delete_collection("zoo")
    assert "zoo" not in [c.name for c in user.list_collections()]


def test_the_async_client(user: Client, edge: Edge) -> None:
    async def scenario() -> tuple[str, list[object]]:
        async with AsyncClient(edge.url, user.settings.api_key) as client:
            await client.create_collection("async-zoo")
            accepted = await client.add_documents("async-zoo", [{"id": "r", "text": RAVENS}])
            [job] = await client.wait_jobs(accepted.job_ids, max_seconds=60)
            assert job.succeeded, job.error
            info = await client.get_system_info()
            events = [e async for e in client.query_stream("async-zoo", "What do ravens use?")]
            await client.delete_collection("async-zoo")
            return info.status, events

    status, events = asyncio.run(scenario())
    assert status == "ready"
    assert isinstance(events[-1], DoneEvent | ErrorEvent)
    assert isinstance(events[-1], DoneEvent), events[-1]
    assert "tools" in events[-1].answer.answer


@pytest.fixture(scope="module")
def cli_env(admin: Client, edge: Edge) -> dict[str, str]:
    created = admin.create_key("cli", ["ingest:write", "query:read"], name="cli test")
    assert created.key
    return {"RAG_URL": edge.url, "RAG_API_KEY": created.key}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("files")
    (root / "sub").mkdir()
    (root / "capybara.md").write_text(f"# Capybara\n\n{CAPYBARA}\n")
    (root / "sub" / "ravens.txt").write_text(RAVENS)
    (root / "sub" / "orchids.txt").write_text(ORCHIDS)
    (root / ".hidden.txt").write_text("never uploaded")
    (root / "photo.bin").write_bytes(bytes(range(256)) * 4)  # binary: refused with a reason
    return root


def test_cli_ingest_without_a_terminal(cli_env: dict[str, str], folder: Path) -> None:
    done = rag("ingest", str(folder), "--recursive", "-c", "cli-docs", env=cli_env)
    assert done.returncode == 4, done.stderr  # one file refused: the work failed in part
    assert "created collection cli-docs" in done.stderr
    assert "\x1b[" not in done.stderr  # plain lines, one per event
    for name in ("capybara.md", "ravens.txt", "orchids.txt"):
        assert f"uploaded {name}" in done.stderr
        assert f"{name}: succeeded" in done.stderr
    assert "photo.bin: refused: 415" in done.stderr
    assert ".hidden" not in done.stderr + done.stdout
    assert "overall: 4 files" in done.stderr
    assert "3 succeeded, 1 failed" in done.stderr
    # The summary, with the failure and its reason.
    assert "3 succeeded, 1 failed" in done.stdout
    assert "photo.bin" in done.stdout
    assert "not a supported" in " ".join(done.stdout.split())

    as_json = rag("--json", "ingest", str(folder / "sub"), "-c", "cli-docs", env=cli_env)
    assert as_json.returncode == 0, as_json.stderr
    summary = json.loads(as_json.stdout)
    assert summary["succeeded"] == 2
    assert summary["failed"] == 0
    assert {f["reason"] for f in summary["files"]} == {"unchanged"}  # same content again

    assert rag("ingest", str(folder / "absent"), "-c", "cli-docs", env=cli_env).returncode == 2
    only_pdf = rag("ingest", str(folder), "--pattern", "*.pdf", "-c", "cli-docs", env=cli_env)
    assert only_pdf.returncode == 2
    assert "no files" in only_pdf.stderr


def test_cli_ingest_on_a_terminal(cli_env: dict[str, str], folder: Path) -> None:
    code, text = rag_on_terminal(
        "ingest", str(folder / "sub"), "--pattern", "*.txt", "-c", "cli-tty", env=cli_env
    )
    assert code == 0, text
    assert "\x1b[" in text  # drawn with terminal control sequences
    assert "overall" in text
    assert "uploaded" in text
    assert "jobs 2/2 done" in text
    assert "orchids.txt" in text
    assert "ravens.txt" in text
    assert "Ingested into cli-tty: 2 succeeded, 0 failed" in text


def test_cli_reads_and_answers(cli_env: dict[str, str], folder: Path, edge: Edge) -> None:
    prepared = rag("ingest", str(folder / "capybara.md"), "-c", "cli-ask", env=cli_env)
    assert prepared.returncode == 0, prepared.stderr
    edge.wait_searchable("cli-ask", "largest rodent", Edge.bearer(cli_env["RAG_API_KEY"]))

    streamed = rag("query", "What is the largest rodent?", "-c", "cli-ask", "--stream", env=cli_env)
    assert streamed.returncode == 0, streamed.stderr
    assert "capybara" in streamed.stdout.lower()
    assert "Sources" in streamed.stdout
    assert "*[1] Capybara" in streamed.stdout

    lines = rag(
        "--json", "query", "largest rodent?", "-c", "cli-ask", "--stream", env=cli_env
    ).stdout.splitlines()
    kinds = [json.loads(line)["type"] for line in lines]
    assert kinds[0] == "sources"
    assert kinds[-1] == "done"
    assert "token" in kinds

    answer = json.loads(rag("--json", "query", "rodent?", "-c", "cli-ask", env=cli_env).stdout)
    assert answer["sources"][0]["document_id"]
    assert answer["cited"] == [1]

    hits = json.loads(
        rag("--json", "search", "rodent", "-c", "cli-ask", "-k", "1", env=cli_env).stdout
    )
    assert len(hits["results"]) == 1
    assert "capybara" in hits["results"][0]["text"].lower()
    table = rag("search", "rodent", "-c", "cli-ask", "--mode", "lexical", env=cli_env)
    assert table.returncode == 0
    assert "lexical search of cli-ask" in table.stdout
    assert rag("search", "x", "-c", "cli-ask", "--mode", "fuzzy", env=cli_env).returncode == 2

    # A failed job, listed with its reason, then retried.
    url = rag("ingest-url", "http://127.0.0.1:9/", "-c", "cli-ask", env=cli_env)
    assert url.returncode == 4
    assert "loopback" in " ".join(url.stdout.split())
    failed = json.loads(rag("--json", "jobs", "--failed", env=cli_env).stdout)
    assert failed
    assert failed[0]["state"] == "failed"
    assert "loopback" in failed[0]["error"]
    listed = rag("jobs", "--failed", env=cli_env)
    assert failed[0]["id"] in listed.stdout
    retried = rag("jobs", "--retry", failed[0]["id"], env=cli_env)
    assert retried.returncode == 0
    assert "again (run 2)" in retried.stdout

    collections = json.loads(rag("--json", "collections", env=cli_env).stdout)
    assert {"cli-ask", "cli-docs"} <= {c["name"] for c in collections}
    shown = json.loads(rag("--json", "collections", "show", "cli-ask", env=cli_env).stdout)
    assert shown["document_count"] == 1
    assert rag("collections", "create", "cli-tmp", env=cli_env).returncode == 0
    assert rag("collections", "delete", "cli-tmp", "--yes", env=cli_env).returncode == 0
    assert rag("collections", "show", "cli-tmp", env=cli_env).returncode == 1


def test_cli_status_config_keys_and_exit_codes(cli_env: dict[str, str], edge: Edge) -> None:
    status = rag("status", env=cli_env)
    assert status.returncode == 0, status.stderr
    for part in ("gateway", "ingest", "query", "ready", "all-MiniLM-L6-v2-int8"):
        assert part in status.stdout
    assert "0 worker(s)" not in status.stdout
    facts = json.loads(rag("--json", "status", env=cli_env).stdout)
    assert facts["status"] == "ready"
    assert facts["queue"]["workers"] >= 1

    shown = json.loads(rag("--json", "config", "show", env=cli_env).stdout)
    assert shown["url"] == {"value": edge.url, "from": "environment"}
    assert cli_env["RAG_API_KEY"] not in json.dumps(shown)  # masked
    assert rag("config", "validate", env=cli_env).returncode == 0
    wrong = rag("config", "validate", env={**cli_env, "RAG_API_KEY": "nope"})
    assert wrong.returncode == 1
    assert "401" in wrong.stderr
    keyless = rag("config", "validate", env={"RAG_URL": edge.url, "RAG_API_KEY": ""})
    assert keyless.returncode == 2
    assert "api_key" in keyless.stderr
    away = rag("--url", f"http://127.0.0.1:{free_port()}", "status", env=cli_env)
    assert away.returncode == 3
    assert "cannot reach" in away.stderr

    admin = {**cli_env, "RAG_API_KEY": ADMIN_KEY}
    made = json.loads(
        rag(
            "--json",
            "keys",
            "create",
            "--tenant",
            "cli-keys",
            "--scope",
            "query:read",
            "--scope",
            "ingest:read",
            "--name",
            "bot",
            env=admin,
        ).stdout
    )
    assert made["key"]
    assert sorted(made["scopes"]) == ["ingest:read", "query:read"]
    listed = rag("keys", "list", "--tenant", "cli-keys", env=admin)
    assert made["id"] in listed.stdout
    assert made["key"] not in listed.stdout
    assert rag("keys", "revoke", made["id"], env=admin).returncode == 0
    not_admin = rag("keys", "list", env=cli_env)
    assert not_admin.returncode == 1
    assert "403" in not_admin.stderr
    bad_scope = rag("keys", "create", "--tenant", "t", "--scope", "root", env=admin)
    assert bad_scope.returncode == 1
    assert "scopes" in bad_scope.stderr
