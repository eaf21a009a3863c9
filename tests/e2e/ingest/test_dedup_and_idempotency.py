"""Re-sending never duplicates; Idempotency-Key replays return the very same jobs."""

from __future__ import annotations

import uuid

import pytest

from tests.support.ingest import IngestClient

pytestmark = pytest.mark.e2e


def _documents(count: int) -> list[dict]:
    return [
        {
            "text": f"Fact {i}: the enzyme number {i} speeds up reaction {i * 7}.",
            "metadata": {"n": i},
        }
        for i in range(count)
    ]


def test_resending_50_documents_creates_no_new_chunks(client: IngestClient) -> None:
    collection = client.create_collection()
    first = client.wait(client.ingest_ok(collection, _documents(50)))
    assert all(job["result"]["status"] == "created" for job in first)
    before = client.collection(collection)

    again = client.wait(client.ingest_ok(collection, _documents(50)))
    assert {job["result"]["status"] for job in again} == {"unchanged"}
    assert all(job["result"]["chunks_created"] == 0 for job in again)
    after = client.collection(collection)
    assert after["chunk_count"] == before["chunk_count"] == 50
    assert after["document_count"] == 50


def test_same_content_under_another_name_is_a_duplicate(client: IngestClient) -> None:
    collection = client.create_collection()
    body = b"The same report, whatever the file is called."
    first = client.upload(collection, [("report.txt", body, "text/plain")])
    client.wait([j["job_id"] for j in first.json()["jobs"]])
    renamed = client.upload(collection, [("report-final-v2.txt", body, "text/plain")])
    [job] = client.wait([j["job_id"] for j in renamed.json()["jobs"]])
    assert job["result"]["status"] == "unchanged"
    other_id = client.ingest_ok(collection, [{"id": "copy", "text": body.decode()}])
    [dup] = client.wait(other_id)
    assert dup["result"]["status"] == "duplicate"
    assert dup["result"]["duplicate_of"] == first.json()["jobs"][0]["document_id"]
    assert client.collection(collection)["chunk_count"] == 1


def test_metadata_change_is_a_new_version(client: IngestClient) -> None:
    collection = client.create_collection()
    client.wait(client.ingest_ok(collection, [{"id": "d", "text": "Text.", "metadata": {"v": 1}}]))
    [job] = client.wait(
        client.ingest_ok(collection, [{"id": "d", "text": "Text.", "metadata": {"v": 2}}])
    )
    assert job["result"]["status"] == "replaced"
    assert client.document(collection, "d").json()["metadata"] == {"v": 2}


def test_idempotency_key_replays_the_same_jobs(client: IngestClient) -> None:
    collection = client.create_collection()
    key = {"Idempotency-Key": f"batch-{uuid.uuid4()}"}
    first = client.ingest(collection, _documents(3), headers=key)
    replay = client.ingest(collection, _documents(3), headers=key)
    assert first.status_code == replay.status_code == 202
    assert replay.json() == first.json()
    assert replay.headers["idempotent-replayed"] == "true"
    different = client.ingest(collection, _documents(4), headers=key)
    assert different.status_code == 409
    assert different.headers["content-type"] == "application/problem+json"
    assert "different request" in different.json()["detail"]
    jobs = client.wait([j["job_id"] for j in first.json()["jobs"]])
    assert all(job["state"] == "succeeded" for job in jobs)
