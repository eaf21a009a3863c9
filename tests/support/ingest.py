"""A small client of the ingest API for tests: create collections, send documents (raw
responses, which tests inspect), and wait for jobs through the SDK, as users' code does."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
from rag_client import Client
from rag_devstack.processes import tls_context

from tests.support import budget

FINAL = {"succeeded", "failed", "dead"}
SHOWN_WHEN_LATE = 8  # jobs a failed wait names


def unique_name(prefix: str = "c") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class IngestClient:
    base_url: str

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.base_url, timeout=30, verify=tls_context())
        self.sdk = Client(self.base_url, transport=httpx.HTTPTransport(verify=tls_context()))

    def create_collection(self, name: str | None = None, **extra: Any) -> str:
        name = name or unique_name()
        response = self.http.post("/v1/collections", json={"name": name, **extra})
        assert response.status_code == 201, response.text
        return name

    def collection(self, name: str) -> dict[str, Any]:
        response = self.http.get(f"/v1/collections/{name}")
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def ingest(
        self, collection: str, documents: list[dict[str, Any]], **kwargs: Any
    ) -> httpx.Response:
        return self.http.post(
            f"/v1/collections/{collection}/documents", json={"documents": documents}, **kwargs
        )

    def ingest_ok(self, collection: str, documents: list[dict[str, Any]]) -> list[str]:
        response = self.ingest(collection, documents)
        assert response.status_code == 202, response.text
        return [job["job_id"] for job in response.json()["jobs"]]

    def upload(
        self, collection: str, files: list[tuple[str, bytes, str]], **form: str
    ) -> httpx.Response:
        return self.http.post(
            f"/v1/collections/{collection}/documents/upload",
            files=[("file", f) for f in files],
            data=form,
        )

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.http.get(f"/v1/jobs/{job_id}")
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def wait(self, job_ids: list[str], timeout: float = 120) -> list[dict[str, Any]]:
        """The jobs' final records (as JSON objects), waited for by the SDK's ``wait_jobs``."""
        seconds = max(0.0, budget.deadline(timeout) - time.monotonic())
        try:
            jobs = self.sdk.wait_jobs(job_ids, poll_seconds=0.2, max_seconds=seconds)
        except TimeoutError as exc:
            late = [
                job for job in map(self.job, dict.fromkeys(job_ids)) if job["state"] not in FINAL
            ]
            raise AssertionError(
                f"{exc} ({timeout} s or the test's budget); the first: "
                + "; ".join(
                    f"{j['id']} {j['state']} ({j['stage']})" for j in late[:SHOWN_WHEN_LATE]
                )
            ) from None
        return [msgspec.structs.asdict(job) for job in jobs]

    def document(self, collection: str, document_id: str) -> httpx.Response:
        return self.http.get(f"/v1/collections/{collection}/documents/{document_id}")
