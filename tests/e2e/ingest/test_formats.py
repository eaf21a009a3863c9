"""Every supported format, uploaded as a file, ends as chunks with their page/heading data."""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.support.documents import make_docx, make_pdf
from tests.support.ingest import IngestClient

pytestmark = pytest.mark.e2e

MARKDOWN = b"# Manual\n\nWelcome.\n\n## Setup\n\nInstall the engine with make setup.\n"
HTML = (
    b"<html><head><title>Plans</title></head><body><nav>Home | About</nav>"
    b"<main><h1>Plans</h1><p>Two plans exist.</p><h2>Pro</h2><p>Pro costs ten euros.</p>"
    b"</main><footer>Copyright</footer></body></html>"
)


def _chunks(client: IngestClient, collection: str, job: dict) -> list[dict]:
    assert job["state"] == "succeeded", job
    response = client.document(collection, job["document_id"])
    assert response.status_code == 200
    return response.json()["chunks"]


def test_each_format_is_ingested_with_its_structure(client: IngestClient) -> None:
    collection = client.create_collection()
    pdf = make_pdf(["Cells divide by mitosis.", "Genes are made of DNA."], title="Biology")
    docx = make_docx(
        [
            ("Heading 1", "Leave"),
            ("", "Staff get 25 days."),
            ("Heading 2", "Sick"),
            ("", "Call your manager."),
        ]
    )
    files = [
        ("notes.txt", b"Plain text about retrieval.", "text/plain"),
        ("manual.md", MARKDOWN, "text/markdown"),
        ("plans.html", HTML, "text/html"),
        ("paper.pdf", pdf, "application/pdf"),
        ("handbook.docx", docx, "application/octet-stream"),
        ("people.csv", b"name,city\nAda,London\nGrace,New York\n", "text/csv"),
        (
            "faq.json",
            json.dumps([{"q": "What is RAG?"}, {"q": "Why?"}]).encode(),
            "application/json",
        ),
    ]
    response = client.upload(collection, files, metadata=json.dumps({"team": "docs"}))
    assert response.status_code == 202, response.text
    jobs = client.wait([j["job_id"] for j in response.json()["jobs"]])
    by_name = {job["filename"]: job for job in jobs}
    assert {job["result"]["format"] for job in jobs} == {
        "text",
        "markdown",
        "html",
        "pdf",
        "docx",
        "csv",
        "json",
    }

    pdf_chunks = _chunks(client, collection, by_name["paper.pdf"])
    assert [(c["page"], c["text"]) for c in pdf_chunks] == [
        (1, "Cells divide by mitosis."),
        (2, "Genes are made of DNA."),
    ]
    assert by_name["paper.pdf"]["result"]["pages"] == 2
    digest = hashlib.sha256(pdf).hexdigest()
    assert {c["content_hash"] for c in pdf_chunks} == {digest}
    assert by_name["paper.pdf"]["result"]["title"] == "Biology"

    md_chunks = _chunks(client, collection, by_name["manual.md"])
    assert [c.get("heading") for c in md_chunks] == ["Manual", "Manual > Setup"]
    html_text = " ".join(c["text"] for c in _chunks(client, collection, by_name["plans.html"]))
    assert "Pro costs ten euros." in html_text
    assert "Copyright" not in html_text
    assert "Home" not in html_text
    docx_chunks = _chunks(client, collection, by_name["handbook.docx"])
    assert [c.get("heading") for c in docx_chunks] == ["Leave", "Leave > Sick"]
    csv_text = _chunks(client, collection, by_name["people.csv"])[0]["text"]
    assert "name: Grace; city: New York" in csv_text

    document = client.document(collection, by_name["manual.md"]["document_id"]).json()
    assert document["metadata"] == {"team": "docs"}
    assert document["source"] == "manual.md"
    assert client.collection(collection)["document_count"] == 7


def test_long_documents_are_chunked_within_the_token_budget(client: IngestClient) -> None:
    collection = client.create_collection()
    text = "\n\n".join(
        f"Section {i}. "
        + " ".join(f"Sentence {i}.{j} explains point {j} carefully." for j in range(12))
        for i in range(10)
    )
    [job] = client.wait(client.ingest_ok(collection, [{"id": "long", "text": text}]))
    chunks = client.document(collection, "long").json()["chunks"]
    assert job["result"]["chunks_created"] == len(chunks) > 5
    assert all(c["tokens"] <= 200 for c in chunks)
    assert [c["position"] for c in chunks] == list(range(len(chunks)))
    assert all(c["text"].rstrip().endswith(".") for c in chunks[:-1]), "cut at sentence ends"


def test_the_charset_declared_for_an_uploaded_file_is_honoured(client: IngestClient) -> None:
    collection = client.create_collection()
    text = "Cr\u00e8me br\u00fbl\u00e9e co\u00fbte cinq \u00e9cus."
    files = [
        ("menu-latin1.txt", text.encode("latin-1"), "text/plain; charset=latin-1"),
        # No byte-order mark: every other byte is zero, and it is still text.
        ("menu-utf16.txt", text.encode("utf-16-le"), "text/plain; charset=utf-16-le"),
    ]
    response = client.upload(collection, files)
    assert response.status_code == 202, response.text
    jobs = client.wait([j["job_id"] for j in response.json()["jobs"]])
    for job in jobs:
        assert [c["text"] for c in _chunks(client, collection, job)] == [text], job["filename"]
