"""Re-sending never duplicates; Idempotency-Key replays return the very same jobs."""

from __future__ import annotations

import uuid

import httpx
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


def test_same_content_under_another_file_name_is_the_same_document(
    client: IngestClient,
) -> None:
    collection = client.create_collection()
    body = b"The same report, whatever the file is called."
    first = client.upload(collection, [("report.txt", body, "text/plain")])
    client.wait([j["job_id"] for j in first.json()["jobs"]])
    renamed = client.upload(collection, [("report-final-v2.txt", body, "text/plain")])
    [job] = client.wait([j["job_id"] for j in renamed.json()["jobs"]])
    assert job["result"]["status"] == "unchanged"
    assert client.collection(collection)["chunk_count"] == 1


def test_same_text_under_two_named_ids_keeps_both_and_embeds_once(client: IngestClient) -> None:
    """Ids the caller chose are documents of their own, with their own metadata, whatever their
    text (about 1% of a public corpus shares text across ids): dedup saves the embedding, it
    never drops a named document. Unnamed copies of that text stay duplicates."""
    collection = client.create_collection()
    text = "The same abstract, filed under two identifiers. " * 20
    [a] = client.wait(
        client.ingest_ok(collection, [{"id": "A", "text": text, "metadata": {"who": "a"}}])
    )
    [b] = client.wait(
        client.ingest_ok(collection, [{"id": "B", "text": text, "metadata": {"who": "b"}}])
    )
    assert (a["result"]["status"], b["result"]["status"]) == ("created", "created")
    assert b["result"]["same_text_as"] == "A"
    assert b["result"]["chunks_reused"] == b["result"]["chunks_created"] > 0
    assert client.document(collection, "A").json()["metadata"] == {"who": "a"}
    assert client.document(collection, "B").json()["metadata"] == {"who": "b"}
    listed = client.http.get(f"/v1/collections/{collection}/documents").json()
    assert {d["id"] for d in listed["documents"]} == {"A", "B"}

    unnamed = client.upload(collection, [("copy.txt", text.encode(), "text/plain")])
    [dup] = client.wait([j["job_id"] for j in unnamed.json()["jobs"]])
    assert dup["result"]["status"] == "duplicate"
    assert dup["result"]["duplicate_of"] == "A"
    found = client.collection(collection)
    assert found["document_count"] == 2
    assert found["chunk_count"] == 2 * a["result"]["chunks_created"]


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


def test_an_upload_that_differs_in_any_part_under_the_same_key_is_409(
    client: IngestClient,
) -> None:
    """The fingerprint covers what changes the result: the part's content type and charset
    (how its bytes are read), its file name and the form's fields."""
    collection = client.create_collection()
    key = {"Idempotency-Key": f"upload-{uuid.uuid4()}"}
    data = "Cr\u00e8me br\u00fbl\u00e9e".encode("latin-1")

    def upload(content_type: str, filename: str = "menu.txt", **form: str) -> httpx.Response:
        return client.http.post(
            f"/v1/collections/{collection}/documents/upload",
            files=[("file", (filename, data, content_type))],
            data=form,
            headers=key,
        )

    first = upload("text/plain")
    assert first.status_code == 202, first.text
    replay = upload("text/plain")
    assert replay.status_code == 202
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == first.json()
    for changed in (
        upload("text/plain; charset=latin-1"),
        upload("text/markdown"),
        upload("text/plain", filename="other.txt"),
        upload("text/plain", title="Menu"),
        upload("text/plain", id="menu"),
        upload("text/plain", source="kitchen"),
        upload("text/plain", metadata='{"lang": "fr"}'),
    ):
        assert changed.status_code == 409, changed.text
        assert changed.headers["content-type"] == "application/problem+json"
        assert "different request" in changed.json()["detail"]
    # Under a key of its own, the declared charset is honoured: the text is read as Latin-1.
    own_key = {"Idempotency-Key": f"upload-{uuid.uuid4()}"}
    latin = client.http.post(
        f"/v1/collections/{collection}/documents/upload",
        files=[("file", ("menu.txt", data, "text/plain; charset=latin-1"))],
        headers=own_key,
    )
    assert latin.status_code == 202, latin.text
    [job] = client.wait([latin.json()["jobs"][0]["job_id"]])
    assert job["state"] == "succeeded", job
