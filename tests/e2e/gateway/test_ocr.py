"""Scanned documents through nginx and the gateway, as a user sends them: a PDF of scanned
pages, a PNG photo of a page and a corrupt JPEG are uploaded with the SDK; the worker reads the
first two by OCR (Tesseract, in its parser pool), search finds their words with their page
numbers and confidence, and the corrupt one fails with its reason."""

from __future__ import annotations

from pathlib import Path

import pytest
from rag_client import Client

from tests.e2e.gateway.conftest import Edge
from tests.support.documents import make_image, make_scanned_pdf

pytestmark = pytest.mark.e2e

MEMO = [
    ["Memo to all crews.", "The quarterly safety audit found", "three blocked fire exits."],
    ["Repairs are due by the fourteenth of March.", "Contact the facilities desk."],
]
NOTICE = ["Notice: the north car park closes", "for resurfacing on Friday."]


def test_scans_and_photos_are_searchable_with_their_pages(edge: Edge, tmp_path: Path) -> None:
    key = edge.new_key("ocr-users", ["ingest:write", "query:read"])
    files = {
        "memo.pdf": make_scanned_pdf(MEMO),
        "notice.png": make_image([NOTICE], "PNG"),
        "broken.jpg": make_image([NOTICE], "JPEG")[:300] + b"\0" * 2000,
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    with Client(edge.url, key) as sdk:
        sdk.create_collection("scans")
        accepted = sdk.upload_files("scans", [tmp_path / name for name in files])
        jobs = {job.filename: job for job in sdk.wait_jobs(accepted.job_ids, max_seconds=120)}
        assert jobs["memo.pdf"].state == "succeeded", jobs["memo.pdf"].error
        assert jobs["notice.png"].state == "succeeded", jobs["notice.png"].error
        assert (jobs["memo.pdf"].result or {})["pages"] == 2
        assert (jobs["notice.png"].result or {})["format"] == "image"
        # Long OCR shows progress: the stage "ocr", page by page, in the job's events.
        stages = [e.data.get("stage") for e in sdk.job_events(jobs["memo.pdf"].id)]
        assert "ocr" in stages, stages
        broken = jobs["broken.jpg"]
        assert broken.state == "failed"
        assert broken.error is not None
        assert "not a readable image" in broken.error

        edge.wait_searchable(
            "scans", "facilities desk", edge.bearer(key), jobs["memo.pdf"].document_id, "lexical"
        )
        found = sdk.search("scans", "when are the fire exit repairs due", top_k=3)
        best = found.results[0]
        assert best.document_id == jobs["memo.pdf"].document_id
        assert best.page == 2
        assert "fourteenth of March" in best.text
        assert best.metadata["ocr"] is True
        assert 80 <= best.metadata["ocr_confidence"] <= 100

        # Filtered on: only what OCR read, and it carries its confidence in the document too.
        photo = sdk.search("scans", "car park", top_k=5, filter={"ocr": True})
        assert photo.results[0].document_id == jobs["notice.png"].document_id
        assert "north car park closes" in " ".join(photo.results[0].text.split())
        doubtful = sdk.search("scans", "fire exits", filter={"ocr_confidence": {"$lt": 60}})
        assert doubtful.results == []  # clean scans: nothing read with low confidence
        sure = sdk.search("scans", "fire exits", filter={"ocr_confidence": {"$gte": 60}})
        assert sure.results[0].document_id == jobs["memo.pdf"].document_id
        document = sdk.get_document("scans", jobs["memo.pdf"].document_id)
        assert [c.page for c in document.chunks or []] == [1, 2]
        assert all((c.ocr_confidence or 0) >= 80 for c in document.chunks or [])
        answer = sdk.query("scans", "How many fire exits were blocked?")
        assert "three blocked fire exits" in " ".join(answer.answer.split())
