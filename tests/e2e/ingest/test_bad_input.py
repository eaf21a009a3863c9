"""Bad input: a clear problem+json naming the field or limit, or a failed job with a reason,
and nothing of a bad document ever becomes visible."""

from __future__ import annotations

import io
import json
import zipfile

import httpx
import pytest
from rag_devstack import NativeStack

from tests.support.documents import make_docx, make_docx_bomb, make_pdf
from tests.support.ingest import IngestClient

pytestmark = pytest.mark.e2e


def _problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict = response.json()
    assert body["status"] == status
    return body


@pytest.mark.parametrize(
    ("documents", "status", "names"),
    [
        ([{"text": "x", "metadata": {"_doc": "steal"}}], 422, "documents[0].metadata._doc"),
        ([{"text": "x", "metadata": {"nested": {"a": 1}}}], 400, "metadata"),
        ([{"text": "x", "id": "has space"}], 422, "documents[0].id"),
        ([{"text": "a", "id": "same"}, {"text": "b", "id": "same"}], 422, "documents[1]"),
        ([{"text": "x", "colour": "red"}], 400, "colour"),
        ([{"text": "x", "metadata": {"big": "v" * 20_000}}], 413, "MAX_METADATA_BYTES"),
        # What Chroma refuses or changes is refused here, not retried five times as a crash.
        ([{"text": "x", "metadata": {"$where": 1}}], 422, "documents[0].metadata.$where"),
        ([{"text": "x", "metadata": {"#tag": 1}}], 422, "documents[0].metadata.#tag"),
        ([{"text": "x", "metadata": {"chroma:document": "y"}}], 422, "chroma:document"),
        ([{"text": "x", "metadata": {"n": 2**63}}], 422, "documents[0].metadata.n"),
        ([{"text": "x", "metadata": {"n": -(2**63) - 1}}], 422, "documents[0].metadata.n"),
        # Free text is bounded where it enters (it used to be copied into every chunk).
        ([{"text": "x", "source": "s" * 3000}], 422, "documents[0].source"),
        ([{"text": "x"}, {"text": "y", "title": "t" * 501}], 422, "documents[1].title"),
        ([{"text": "x", "title": 7}], 400, "title"),
    ],
)
def test_invalid_documents_are_refused_naming_the_field(
    client: IngestClient, documents: list, status: int, names: str
) -> None:
    collection = client.create_collection()
    body = _problem(client.ingest(collection, documents), status)
    assert names in json.dumps(body)
    # Nothing was accepted, not even the valid documents of the batch.
    assert client.http.get("/v1/jobs", params={"collection": collection}).json()["jobs"] == []


def test_limits_are_problem_json_naming_the_limit(client: IngestClient) -> None:
    collection = client.create_collection()
    too_many = [{"text": f"d{i}"} for i in range(501)]
    assert "MAX_DOCUMENTS_PER_BATCH" in _problem(client.ingest(collection, too_many), 413)["detail"]
    big = client.upload(collection, [("big.txt", b"a" * (25 * 1024 * 1024 + 1), "text/plain")])
    assert "MAX_FILE_BYTES" in _problem(big, 413)["detail"]


def test_unknown_collection_and_bad_names(client: IngestClient) -> None:
    assert _problem(client.ingest("nope-nope", [{"text": "x"}]), 404)["title"] == "Not found"
    bad = client.http.post("/v1/collections", json={"name": "Bad Name!"})
    assert "name" in _problem(bad, 422)["errors"][0]["field"]
    name = client.create_collection()
    assert _problem(client.http.post("/v1/collections", json={"name": name}), 409)
    model = client.http.post("/v1/collections", json={"name": "m-x", "embedding_model": "gpt-9"})
    assert "unknown embedding model" in _problem(model, 422)["detail"]


def test_unsupported_binary_is_415(client: IngestClient) -> None:
    collection = client.create_collection()
    response = client.upload(collection, [("x.txt", b"\x7fELF\x00\x01binary", "text/plain")])
    assert "binary content" in _problem(response, 415)["detail"]


@pytest.mark.parametrize(
    ("filename", "data", "stage", "reason"),
    [
        ("broken.pdf", make_pdf(["some text"])[:200], "parsing", "not a readable PDF"),
        ("locked.pdf", make_pdf(["secret"], password="pw"), "parsing", "encrypted"),
        ("bomb.docx", make_docx_bomb(120 * 1024 * 1024), "parsing", "expands"),
        ("latin.txt", "caf\u00e9 cr\u00e8me".encode("latin-1"), "parsing", "not valid UTF-8"),
    ],
)
def test_bad_files_fail_with_a_reason_and_leave_nothing_visible(
    client: IngestClient, filename: str, data: bytes, stage: str, reason: str
) -> None:
    collection = client.create_collection()
    response = client.upload(collection, [(filename, data, "application/octet-stream")])
    assert response.status_code == 202, response.text
    [job] = client.wait([response.json()["jobs"][0]["job_id"]])
    assert job["state"] == "failed"
    assert job["error_stage"] == stage
    assert reason in job["error"]
    assert job["attempts"] == 1, "bad input is not retried"
    assert client.document(collection, job["document_id"]).status_code == 404
    assert client.collection(collection)["chunk_count"] == 0


def test_a_parse_that_runs_too_long_fails_the_job_and_spares_the_others(
    client: IngestClient,
) -> None:
    collection = client.create_collection()
    depth = 50_000  # html.parser needs minutes for this; PARSE_TIMEOUT_SECONDS is 5 here
    nested = b"<html><body>" + b"<div>" * depth + b"deep" + b"</div>" * depth + b"</body></html>"
    hostile = client.upload(collection, [("nested.html", nested, "text/html")])
    assert hostile.status_code == 202, hostile.text
    fine = client.ingest_ok(collection, [{"id": "fine", "text": "Ordinary text arrives."}])
    [stuck, ok] = client.wait([hostile.json()["jobs"][0]["job_id"], *fine], timeout=60)
    assert stuck["state"] == "failed"
    assert stuck["error_stage"] == "parsing"
    assert "PARSE_TIMEOUT_SECONDS" in stuck["error"]
    assert ok["state"] == "succeeded"
    after = client.ingest_ok(collection, [{"id": "later", "text": "The worker still works."}])
    assert client.wait(after)[0]["state"] == "succeeded"


def test_request_body_over_the_limit_is_refused(
    ingest_stack: NativeStack, client: IngestClient
) -> None:
    collection = client.create_collection()
    huge = b"x" * (50 * 1024 * 1024 + 10)
    response = httpx.post(
        f"{ingest_stack.api_url('ingest')}/v1/collections/{collection}/documents",
        content=huge,
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert _problem(response, 413)


def test_edge_values_of_metadata_are_kept_exactly(client: IngestClient) -> None:
    collection = client.create_collection()
    metadata = {"big": 2**63 - 1, "small": -(2**63), "flag": False, "dollar": "$x", "hash#": 1}
    client.wait(client.ingest_ok(collection, [{"id": "d", "text": "Edges.", "metadata": metadata}]))
    assert client.document(collection, "d").json()["metadata"] == metadata


def test_long_names_urls_and_zip_directories_are_refused_before_any_work(
    client: IngestClient, ingest_stack: NativeStack
) -> None:
    collection = client.create_collection()
    long_name = client.upload(collection, [("n" * 5000 + ".txt", b"text", "text/plain")])
    body = _problem(long_name, 422)
    assert body["errors"][0]["field"] == "file[0].filename"
    assert "MAX_FILENAME_CHARS" in body["detail"]
    huge_name = client.upload(collection, [("n" * 20_000 + ".txt", b"text", "text/plain")])
    assert "MAX_FILENAME_CHARS" in _problem(huge_name, 422)["detail"]
    two = [("a.txt", b"one", "text/plain"), ("b.txt", b"two", "text/plain")]
    titled = _problem(client.upload(collection, two, title="One title"), 422)
    assert titled["errors"][0]["field"] == "title"
    long_title = _problem(
        client.upload(collection, [("a.txt", b"one", "text/plain")], title="t" * 501), 422
    )
    assert long_title["errors"][0]["field"] == "file[0].title"
    assert "MAX_TITLE_CHARS" in long_title["detail"]
    long_url = client.http.post(
        f"/v1/collections/{collection}/documents/url",
        json={"url": "https://example.org/" + "p" * 3000},
    )
    assert _problem(long_url, 422)["errors"][0]["field"] == "url"

    # A DOCX-looking archive of 20,000 empty files: its end record says so, and that is all
    # the API reads (it used to list the whole directory in the request).
    many = io.BytesIO()
    with zipfile.ZipFile(many, "w") as archive:
        archive.writestr("word/document.xml", "<w:document/>")
        for i in range(20_000):
            archive.writestr(f"x/{i}", b"")
    refused = client.upload(collection, [("many.docx", many.getvalue(), "application/zip")])
    assert "MAX_ARCHIVE_ENTRIES" in _problem(refused, 415)["detail"]


def _lying_docx(extra_entries: int) -> bytes:
    """A real DOCX whose central directory holds ``extra_entries`` more entries (copies of
    its first) than its end record says."""
    data = make_docx([("Heading 1", "Leave"), ("", "Staff get 25 days.")])
    end = data.rfind(b"PK\x05\x06")
    size = int.from_bytes(data[end + 12 : end + 16], "little")
    offset = int.from_bytes(data[end + 16 : end + 20], "little")
    directory = data[offset : offset + size]
    lengths = sum(int.from_bytes(directory[i : i + 2], "little") for i in (28, 30, 32))
    grown = directory + directory[: 46 + lengths] * extra_entries
    record = data[end : end + 12] + len(grown).to_bytes(4, "little") + data[end + 16 :]
    return data[:offset] + grown + record


def test_a_zip_that_lies_about_its_entry_count_is_refused_unlisted(client: IngestClient) -> None:
    """Its end record said a handful of files, its directory held 300,000 more: the API
    listed all of them in its event loop (500,000 held it 2.3 s) and took the archive. It
    reads no more entries than the end record declares, and finds the directory longer."""
    collection = client.create_collection()
    lying = _lying_docx(300_000)
    refused = client.upload(collection, [("lying.docx", lying, "application/zip")])
    assert "damaged ZIP archive" in _problem(refused, 415)["detail"]


def _multipart(parts: list[tuple[str, str | None, bytes]]) -> tuple[bytes, str]:
    """A multipart body written by hand, as an attacker would (headers verbatim)."""
    boundary = "hostile-boundary-7f3a"
    body = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
        body += data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def test_multipart_bodies_get_the_reason_they_fail(client: IngestClient) -> None:
    collection = client.create_collection()
    url = f"/v1/collections/{collection}/documents/upload"
    body, content_type = _multipart([("file", f"f{i}.txt", b"x") for i in range(10_000)])
    many = client.http.post(url, content=body, headers={"content-type": content_type})
    assert "MAX_DOCUMENTS_PER_BATCH" in _problem(many, 413)["detail"]

    body, content_type = _multipart([("file", "evil\r\nX-Injected: 1\r\n.txt", b"text")])
    broken = client.http.post(url, content=body, headers={"content-type": content_type})
    assert "line breaks" in _problem(broken, 422)["detail"]

    body, content_type = _multipart([("file", "ok.txt", b"Fine text."), ("source", None, b"s")])
    fine = client.http.post(url, content=body, headers={"content-type": content_type})
    assert fine.status_code == 202, fine.text
    assert client.http.get("/v1/jobs", params={"collection": collection}).json()["jobs"]


@pytest.mark.parametrize(
    ("path", "params", "status", "field"),
    [
        ("/v1/jobs", {"before": "nan"}, 422, "before"),
        ("/v1/jobs", {"before": "inf"}, 422, "before"),
        ("/v1/jobs", {"before": "-inf"}, 422, "before"),
        ("/v1/jobs", {"before": "1e400"}, 400, "before"),  # not a number it can read
        ("/v1/collections/{c}/documents", {"offset": str(10**20)}, 400, "offset"),
        ("/v1/collections/{c}/documents", {"offset": str(2**63)}, 400, "offset"),
        ("/v1/collections/{c}/documents", {"offset": str(2**31)}, 400, "offset"),
    ],
)
def test_paging_parameters_out_of_range_are_refused_naming_them(
    client: IngestClient, path: str, params: dict, status: int, field: str
) -> None:
    """Redis refuses them (a NaN score, an index past 64 bits): a 4xx naming the parameter,
    not a 500."""
    collection = client.create_collection()
    body = _problem(client.http.get(path.format(c=collection), params=params), status)
    assert body["errors"][0]["field"] == field


def test_the_largest_allowed_offset_and_a_finite_before_still_page(client: IngestClient) -> None:
    collection = client.create_collection()
    [job_id] = client.ingest_ok(collection, [{"text": "one document"}])
    client.wait([job_id])
    listed = client.http.get(
        f"/v1/collections/{collection}/documents", params={"offset": 2**31 - 1}
    )
    assert listed.status_code == 200, listed.text
    assert listed.json()["documents"] == []
    created = client.job(job_id)["created_at"]
    older = client.http.get("/v1/jobs", params={"collection": collection, "before": created})
    assert older.status_code == 200, older.text
    assert older.json()["jobs"] == []
    newer = client.http.get("/v1/jobs", params={"collection": collection, "before": created + 1})
    assert [j["id"] for j in newer.json()["jobs"]] == [job_id]
