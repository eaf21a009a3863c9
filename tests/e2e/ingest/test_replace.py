"""Replacing a document under concurrent readers: always one whole version, never nothing."""

from __future__ import annotations

import re
import threading
import time

import httpx
import pytest

from tests.support.ingest import IngestClient

pytestmark = pytest.mark.e2e
VERSION = re.compile(r"[Vv]ersion (\d+)")


def _version_text(version: int) -> str:
    return "\n\n".join(
        f"Version {version} paragraph {p}. "
        + " ".join(f"In version {version} claim {p}.{s} holds." for s in range(10))
        for p in range(6)
    )


def test_replace_under_concurrent_reads_never_mixes_versions(client: IngestClient) -> None:
    collection = client.create_collection()
    client.wait(client.ingest_ok(collection, [{"id": "doc", "text": _version_text(1)}]))
    seen: list[tuple[int, set[str], int]] = []
    errors: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        with httpx.Client(base_url=client.base_url, timeout=10) as http:
            while not stop.is_set():
                response = http.get(f"/v1/collections/{collection}/documents/doc")
                if response.status_code != 200:
                    errors.append(f"{response.status_code} {response.text[:200]}")
                    continue
                body = response.json()
                versions = {v for c in body["chunks"] for v in VERSION.findall(c["text"])}
                seen.append((body["version"], versions, len(body["chunks"])))

    readers = [threading.Thread(target=reader) for _ in range(3)]
    for thread in readers:
        thread.start()
    try:
        for version in range(2, 6):
            response = client.http.put(
                f"/v1/collections/{collection}/documents/doc", json={"text": _version_text(version)}
            )
            assert response.status_code == 202, response.text
            [job] = client.wait([response.json()["jobs"][0]["job_id"]])
            assert job["result"]["status"] == "replaced"
            time.sleep(0.2)
    finally:
        stop.set()
        for thread in readers:
            thread.join()
    assert not errors
    assert len(seen) > 20
    for version, chunk_versions, count in seen:
        assert count > 0, "a read saw no chunks"
        assert chunk_versions == {str(version)}, f"mixed versions {chunk_versions} in v{version}"
    assert {version for version, _, _ in seen} >= {1, 5}
    final = client.document(collection, "doc").json()
    assert final["version"] == 5
    assert client.collection(collection)["chunk_count"] == final["chunk_count"]


def test_old_versions_chunks_are_removed_after_the_grace_period(client: IngestClient) -> None:
    collection = client.create_collection()
    client.wait(client.ingest_ok(collection, [{"id": "d", "text": _version_text(1)}]))
    response = client.http.put(
        f"/v1/collections/{collection}/documents/d", json={"text": _version_text(2)}
    )
    client.wait([response.json()["jobs"][0]["job_id"]])
    expected = client.document(collection, "d").json()["chunk_count"]
    deadline = time.monotonic() + 30
    while True:  # VERSION_GRACE_SECONDS=2 in these tests
        listing = client.http.get(
            f"/v1/collections/{collection}/documents", params={"where": '{"_x": 1}'}
        )
        assert listing.status_code == 422  # internal fields cannot be filtered
        stored = client.collection(collection)["chunk_count"]
        if stored == expected:
            break
        assert time.monotonic() < deadline
        time.sleep(0.5)


def test_newest_request_wins_when_replacements_race(client: IngestClient) -> None:
    collection = client.create_collection()
    ids = []
    for version in range(1, 6):
        response = client.http.put(
            f"/v1/collections/{collection}/documents/race", json={"text": _version_text(version)}
        )
        ids.append(response.json()["jobs"][0]["job_id"])
    jobs = client.wait(ids)
    assert jobs[-1]["result"]["status"] in ("created", "replaced")
    final = client.document(collection, "race").json()
    assert {v for c in final["chunks"] for v in VERSION.findall(c["text"])} == {"5"}
    statuses = [job["result"]["status"] for job in jobs]
    assert all(s in ("created", "replaced", "superseded") for s in statuses)


def test_delete_document_is_immediate(client: IngestClient) -> None:
    collection = client.create_collection()
    client.wait(client.ingest_ok(collection, [{"id": "gone", "text": "Short lived."}]))
    response = client.http.delete(f"/v1/collections/{collection}/documents/gone")
    assert response.status_code == 200
    assert response.json()["deleted"] == "gone"
    assert client.document(collection, "gone").status_code == 404
    assert client.collection(collection)["chunk_count"] == 0
    assert client.http.delete(f"/v1/collections/{collection}/documents/gone").status_code == 404
