"""Re-embedding a collection with another model while it serves (issue 20): through nginx and
the gateway, with the SDK and the `rag` CLI as a user would.

Search must answer on every request during the migration (never an error, never empty), the
writes made meanwhile must all be there after the switch, and the former Chroma collection must
go after the grace period (VERSION_GRACE_SECONDS is 2 here). A worker killed mid-migration is
tested with the other worker faults (tests/e2e/ingest/test_worker_faults.py)."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import pytest
from rag_client import Client
from rag_devstack import NativeStack
from rag_devstack.processes import tls_context

from tests.e2e.gateway.conftest import Edge
from tests.support.chroma import chroma_collections, chroma_count, chroma_id_of
from tests.support.cli import rag

pytestmark = pytest.mark.e2e
FROM, TO = "all-MiniLM-L6-v2", "all-MiniLM-L6-v2-int8"
TOPICS = ("otters", "glaciers", "volcanoes", "orchids", "comets", "beetles", "tides", "lichens")


def wait_until(what: str, ready: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def corpus(count: int) -> list[dict[str, str]]:
    return [
        {
            "id": f"note-{i:03d}",
            "text": f"Field note {i} on {TOPICS[i % len(TOPICS)]}. "
            + " ".join(
                f"Observation {p}: the {TOPICS[(i + p) % len(TOPICS)]} near site {i} changed "
                f"over season {p}."
                for p in range(8)
            ),
        }
        for i in range(count)
    ]


@dataclass
class Readers:
    """Searches (hybrid and dense) and answers in a loop on a thread of their own; every
    failure and every empty result is kept."""

    edge: Edge
    collection: str
    headers: dict[str, str]
    done: int = 0
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        requests = (
            ("search", {"query": "otters near the site", "mode": "hybrid"}),
            ("search", {"query": "glaciers changing over the seasons", "mode": "dense"}),
            ("query", {"query": "What changed near the comets?"}),
        )
        with httpx.Client(base_url=self.edge.url, timeout=60, verify=tls_context()) as http:
            while not self.stop.is_set():
                kind, body = requests[self.done % len(requests)]
                try:
                    got = http.post(
                        f"/v1/collections/{self.collection}/{kind}",
                        json=body,
                        headers=self.headers,
                    )
                    found = got.json() if got.status_code == 200 else {}
                except (httpx.HTTPError, ValueError) as exc:
                    self.failures.append(f"{kind} {body}: {type(exc).__name__}: {exc}")
                    continue
                finally:
                    self.done += 1
                if got.status_code != 200:
                    self.failures.append(f"{kind} {body}: {got.status_code} {got.text[:300]}")
                elif not found.get("results" if kind == "search" else "sources"):
                    self.failures.append(f"{kind} {body}: nothing found: {got.text[:300]}")

    def __enter__(self) -> Readers:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(timeout=60)


def test_search_answers_throughout_a_reembedding_and_writes_made_meanwhile_are_kept(
    edge: Edge, full_stack: NativeStack
) -> None:
    key = edge.new_key(
        "reembed", ["ingest:read", "ingest:write", "query:read"], requests_per_minute=1_000_000
    )
    headers = edge.bearer(key)
    http = edge.http
    made = http.post(
        "/v1/collections", json={"name": "notes", "embedding_model": FROM}, headers=headers
    )
    assert made.status_code == 201, made.text
    transport = httpx.HTTPTransport(verify=tls_context())
    with Client(edge.url, key, transport=transport) as sdk:
        accepted = sdk.add_documents("notes", corpus(120))
        assert {j.state for j in sdk.wait_jobs(accepted.job_ids, max_seconds=180)} == {"succeeded"}
        edge.wait_searchable("notes", "otters", headers, mode="lexical")
        before = sdk.get_collection("notes")
        old_chroma = chroma_id_of(full_stack, "notes", "reembed")
        collections_before = set(chroma_collections(full_stack))

        with Readers(edge, "notes", headers) as readers:
            wait_until("the readers to start", lambda: readers.done >= 3)
            job = sdk.reembed_collection("notes", TO)
            assert job.kind == "reembed"
            assert job.state == "queued"
            shown = sdk.get_collection("notes")
            assert shown.embedding_model == FROM
            assert shown.reembedding is not None
            assert shown.reembedding.job_id == job.id
            assert shown.reembedding.embedding_model == TO
            # A second one while it runs: refused, naming the running job.
            again = http.post(
                "/v1/collections/notes/reembed", json={"embedding_model": TO}, headers=headers
            )
            assert again.status_code == 409, again.text
            assert again.json()["job_id"] == job.id
            # Writes while it runs: new documents, a replaced one, a deleted one.
            added = sdk.add_documents(
                "notes",
                [
                    {"id": f"late-{i}", "text": f"A late note about quasar{i} telescopes."}
                    for i in range(5)
                ],
            )
            replaced = sdk.replace_document("notes", "note-000", "The kelp forest note, rewritten.")
            sdk.delete_document("notes", "note-001")
            # Progress as the job's event stream (SSE), through nginx, until it ends.
            events = list(sdk.job_events(job.id))
            writes = sdk.wait_jobs([*added.job_ids, *replaced.job_ids], max_seconds=120)
            assert {j.state for j in writes} == {"succeeded"}
            finished = sdk.wait_job(job.id, max_seconds=180)
            # The readers keep going a little after the switch.
            served = readers.done
            wait_until("searches after the switch", lambda: readers.done >= served + 6)
        assert readers.failures == [], readers.failures[:5]
        assert readers.done >= 10

        assert finished.state == "succeeded", finished
        result = finished.result or {}
        assert result["status"] == "switched"
        assert result["previous_model"] == FROM
        assert result["embedding_model"] == TO
        stages = [e.data.get("stage") for e in events]
        assert "copying" in stages
        assert stages.index("copying") < len(stages) - 1
        progress = [float(e.data["progress"]) for e in events if e.data.get("stage") == "copying"]
        assert progress == sorted(progress)
        assert events[-1].data["state"] == "succeeded"

        after = sdk.get_collection("notes")
        assert after.embedding_model == TO
        assert after.reembedding is None
        assert after.document_count == 120 + 5 - 1
        assert after.version > before.version
        new_chroma = chroma_id_of(full_stack, "notes", "reembed")
        assert new_chroma != old_chroma
        assert chroma_count(full_stack, new_chroma) >= after.chunk_count
        # Every write made during the migration is there, found with the new model.
        for i in range(5):
            found = sdk.search("notes", f"quasar{i} telescopes", mode="dense", top_k=3)
            assert found.results[0].document_id == f"late-{i}", found
        kelp = sdk.search("notes", "kelp forest", mode="dense", top_k=1)
        assert kelp.results[0].document_id == "note-000"
        assert "kelp" in kelp.results[0].text
        assert sdk.get_document("notes", "note-000").version == 2
        gone = http.get("/v1/collections/notes/documents/note-001", headers=headers)
        assert gone.status_code == 404
        lexical = sdk.search("notes", "note-001 otters", mode="lexical", top_k=50)
        assert "note-001" not in {hit.document_id for hit in lexical.results}
        # The former Chroma collection is dropped after the grace period, and only it.
        wait_until(
            "the former collection to be dropped",
            lambda: old_chroma not in chroma_collections(full_stack),
        )
        assert new_chroma in chroma_collections(full_stack)
        assert set(chroma_collections(full_stack)) == collections_before - {old_chroma} | {
            new_chroma
        }
        # Sending a document again after the switch still works as before.
        resent = sdk.add_documents("notes", [{"id": "late-0", "text": "Quasar0, revisited."}])
        assert sdk.wait_jobs(resent.job_ids)[0].state == "succeeded"


def test_a_reembedding_is_cancelled_and_bad_requests_are_refused(
    edge: Edge, full_stack: NativeStack
) -> None:
    key = edge.new_key("reembed-cancel", ["ingest:read", "ingest:write", "query:read"])
    headers = edge.bearer(key)
    http = edge.http
    assert http.post("/v1/collections", json={"name": "drafts"}, headers=headers).is_success
    model = http.get("/v1/collections/drafts", headers=headers).json()["embedding_model"]
    other = FROM if model == TO else TO
    accepted = http.post(
        "/v1/collections/drafts/documents", json={"documents": corpus(60)}, headers=headers
    )
    assert accepted.status_code == 202, accepted.text
    for job in accepted.json()["jobs"]:
        assert edge.wait_job(job["job_id"], headers, timeout=120)["state"] == "succeeded"

    def reembed(name: str, body: object) -> httpx.Response:
        return http.post(f"/v1/collections/{name}/reembed", json=body, headers=headers)

    unknown = reembed("drafts", {"embedding_model": "no-such-model"})
    assert unknown.status_code == 422, unknown.text
    assert unknown.headers["content-type"].startswith("application/problem+json")
    assert unknown.json()["errors"][0]["field"] == "embedding_model"
    same = reembed("drafts", {"embedding_model": model})
    assert same.status_code == 409, same.text
    assert same.json()["errors"][0]["field"] == "embedding_model"
    for body in ({}, {"embedding_model": 7}, {"embedding_model": other, "extra": 1}):
        assert reembed("drafts", body).status_code == 400, body
    assert reembed("nothing-here", {"embedding_model": other}).status_code == 404
    nothing = http.delete("/v1/collections/drafts/reembed", headers=headers)
    assert nothing.status_code == 404, nothing.text
    reader = edge.new_key("reembed-cancel", ["ingest:read", "query:read"])
    started = reembed("drafts", {"embedding_model": other})
    assert started.status_code == 202, started.text
    # A key that may read but not write may neither start one nor cancel it.
    for method in ("POST", "DELETE"):
        refused = http.request(
            method,
            "/v1/collections/drafts/reembed",
            json={"embedding_model": other} if method == "POST" else None,
            headers=edge.bearer(reader),
        )
        assert refused.status_code == 403, refused.text

    # Cancelled while it copies: the worker is paused once the job shows it is copying, so
    # the cancel surely comes before the switch.
    worker = full_stack.processes["worker"]
    job_id = started.json()["id"]

    def copying() -> bool:
        job = http.get(f"/v1/jobs/{job_id}", headers=headers).json()
        assert job["state"] in ("queued", "running"), job
        return bool(job["stage"] == "copying")

    try:
        wait_until("the re-embedding to copy", copying, timeout=120)
        worker.signal(signal.SIGSTOP)
        shown = http.get("/v1/collections/drafts", headers=headers).json()
        assert shown["reembedding"]["job_id"] == job_id
        cancelled = http.delete("/v1/collections/drafts/reembed", headers=headers)
    finally:
        worker.signal(signal.SIGCONT)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["state"] == "failed"
    assert cancelled.json()["stage"] == "cancelled"
    assert "cancelled" in cancelled.json()["error"]
    final = edge.wait_job(job_id, headers)
    assert final["state"] == "failed"
    assert final["error_stage"] == "cancelled"
    shown = http.get("/v1/collections/drafts", headers=headers).json()
    assert shown["embedding_model"] == model
    assert shown["reembedding"] is None
    # The shadow is dropped; the collection's own Chroma collection stays and serves.
    live = chroma_id_of(full_stack, "drafts", "reembed-cancel")
    shadows = [
        cid
        for cid, meta in chroma_collections(full_stack).items()
        if meta.get("rag_model") == other and cid != live
    ]
    wait_until(
        "the shadow to be dropped",
        lambda: not set(shadows) & set(chroma_collections(full_stack)),
    )
    assert live in chroma_collections(full_stack)
    found = http.post(
        "/v1/collections/drafts/search", json={"query": "otters", "mode": "dense"}, headers=headers
    )
    assert found.status_code == 200
    assert found.json()["results"]


def test_the_cli_reembeds_a_collection_and_follows_the_job(
    edge: Edge, full_stack: NativeStack
) -> None:
    key = edge.new_key("reembed-cli", ["ingest:read", "ingest:write", "query:read"])
    headers = edge.bearer(key)
    made = edge.http.post(
        "/v1/collections", json={"name": "cli-notes", "embedding_model": TO}, headers=headers
    )
    assert made.status_code == 201, made.text
    accepted = edge.http.post(
        "/v1/collections/cli-notes/documents", json={"documents": corpus(10)}, headers=headers
    )
    for job in accepted.json()["jobs"]:
        assert edge.wait_job(job["job_id"], headers)["state"] == "succeeded"
    env = {"RAG_URL": edge.url, "RAG_API_KEY": key}
    done = rag("--json", "collections", "reembed", "cli-notes", FROM, env=env)
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["state"] == "succeeded"
    assert job["result"]["embedding_model"] == FROM
    assert job["result"]["documents"] == 10
    shown = rag("--json", "collections", "show", "cli-notes", env=env)
    assert json.loads(shown.stdout)["embedding_model"] == FROM
    none = rag("collections", "reembed", "cli-notes", "--cancel", env=env)
    assert none.returncode != 0
    assert "no re-embedding to cancel" in none.stderr
