"""A small client of the ingest API for tests: create collections, send documents, wait."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from rag_devstack.processes import tls_context

from tests.support import budget

FINAL = {"succeeded", "failed", "dead"}
UNFINISHED_PER_ROUND = 8


def unique_name(prefix: str = "c") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class IngestClient:
    base_url: str

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.base_url, timeout=30, verify=tls_context())

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
        """The jobs' final records. Jobs run roughly in the order sent, so each round polls
        the pending ones in order and stops after a few still running: a request per job
        plus a few per round, not one per pending job per round (that load slowed the worker
        it waited for)."""
        deadline = budget.deadline(timeout)
        pending = list(dict.fromkeys(job_ids))
        done: dict[str, dict[str, Any]] = {}
        while pending:
            running: list[dict[str, Any]] = []
            for job_id in list(pending):
                record = self.job(job_id)
                if record["state"] in FINAL:
                    done[job_id] = record
                    pending.remove(job_id)
                elif len(running := [*running, record]) >= UNFINISHED_PER_ROUND:
                    break
            if pending:
                assert time.monotonic() < deadline, (
                    f"{len(pending)} of {len(done) + len(pending)} jobs not ended after "
                    f"{timeout} s or the test's budget; the first: "
                    + "; ".join(f"{r['id']} {r['state']} ({r.get('stage')})" for r in running)
                )
                time.sleep(0.2)
        return [done[job_id] for job_id in job_ids]

    def document(self, collection: str, document_id: str) -> httpx.Response:
        return self.http.get(f"/v1/collections/{collection}/documents/{document_id}")
