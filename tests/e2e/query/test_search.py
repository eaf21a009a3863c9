"""Search through the real query service over documents the real worker ingested."""

from __future__ import annotations

import re
import threading
import time

import httpx
import pytest
from rag_devstack import NativeStack, free_port, http_ok

from tests.support.chroma import CHROMA_API, chroma_id_of
from tests.support.ingest import IngestClient
from tests.support.query import QueryClient

pytestmark = pytest.mark.e2e


def test_each_mode_finds_the_passage_with_scores_and_metadata(
    query: QueryClient, handbook: str
) -> None:
    for mode in ("hybrid", "dense", "lexical"):
        [top, *_] = query.hits(handbook, "how many days of annual leave", mode=mode, top_k=3)
        assert top["document_id"] == "leave", mode
        assert "25 days" in top["text"]
        assert top["metadata"] == {"dept": "hr", "year": 2024}
        assert top["score"] > 0
    hybrid = query.hits(handbook, "annual leave days", top_k=2)[0]["scores"]
    assert hybrid["dense_rank"] >= 1
    assert hybrid["lexical_rank"] >= 1
    # Meaning without shared words: only dense retrieval can find it.
    dense = query.hits(handbook, "holiday vacation time off work", mode="dense", top_k=2)
    assert "leave" in {hit["document_id"] for hit in dense}
    assert query.hits(handbook, "holiday vacation", mode="lexical") == []


def test_filters_apply_to_dense_and_lexical_hits_alike(query: QueryClient, handbook: str) -> None:
    where = {"$and": [{"year": {"$gte": 2023}}, {"dept": {"$nin": ["hr"]}}]}
    for mode in ("dense", "lexical", "hybrid"):
        found = {
            h["document_id"]
            for h in query.hits(handbook, "days laptops expenses", mode=mode, filter=where)
        }
        assert found <= {"expenses", "laptops"}, mode
        assert found, mode


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"filter": {"year": {"$regex": "x"}}}, "filter.year.$regex"),
        ({"filter": {"$or": [{"a": 1}]}}, "filter.$or"),
        ({"filter": {"_doc": "leave"}}, "filter._doc"),
        ({"top_k": 0}, "top_k"),
        ({"mmr_lambda": 2}, "mmr_lambda"),
        ({"query": "  "}, "query"),
        ({"max_per_document": 0}, "max_per_document"),
        # Beyond 64 bits: Chroma's 400 "Invalid where clause" naming nothing (dense), and
        # 200 with nothing found (lexical).
        ({"filter": {"year": 2**63}}, "filter.year"),
        ({"filter": {"year": {"$in": [1, -(2**63) - 1]}}, "mode": "lexical"}, "filter.year.$in[1]"),
    ],
)
def test_invalid_requests_are_422_naming_the_field(
    query: QueryClient, handbook: str, body: dict, field: str
) -> None:
    response = query.search(handbook, **{"query": "leave", **body})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["field"] == field


def test_an_empty_filter_field_is_said_to_be_empty(query: QueryClient, handbook: str) -> None:
    """It was refused as a field "starting with '_'"."""
    response = query.search(handbook, query="leave", filter={"": 1})
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["message"] == "a field name must not be empty"


def test_unknown_collection_is_404(query: QueryClient) -> None:
    assert query.search("no-such-collection", "x").status_code == 404


def test_mmr_prefers_different_passages(ingest: IngestClient, query: QueryClient) -> None:
    name = ingest.create_collection()
    docs = [
        {"id": f"copy-{i}", "text": f"Solar panels convert sunlight into electricity ({i})."}
        for i in range(3)
    ] + [{"id": "wind", "text": "Wind turbines convert moving air into electricity."}]
    ingest.wait(ingest.ingest_ok(name, docs))
    query.wait_for(name, "turbines", "wind")
    plain = [
        h["document_id"]
        for h in query.hits(name, "electricity from sunlight", top_k=2, mode="dense")
    ]
    diverse = [
        h["document_id"]
        for h in query.hits(
            name, "electricity from sunlight", top_k=2, mode="dense", mmr=True, mmr_lambda=0.3
        )
    ]
    assert all(d.startswith("copy") for d in plain)
    assert "wind" in diverse


def test_max_per_document_gives_each_document_once_at_its_best_chunk(
    ingest: IngestClient, query: QueryClient
) -> None:
    name = ingest.create_collection()
    long = "\n\n".join(
        f"Part {i}: tides rise and fall twice a day by the moon. " * 8 for i in range(5)
    )
    docs = [{"id": "tides", "text": long}] + [
        {"id": f"short-{i}", "text": f"Note {i}: the moon pulls the tides of the sea."}
        for i in range(3)
    ]
    ingest.wait(ingest.ingest_ok(name, docs))
    query.wait_for(name, "note 2", "short-2")
    every = query.hits(name, "tides and the moon", top_k=20)
    assert [h["document_id"] for h in every].count("tides") >= 3
    once = query.hits(name, "tides and the moon", top_k=20, max_per_document=1)
    documents = [h["document_id"] for h in once]
    assert sorted(documents) == sorted({d["id"] for d in docs})  # each once, none missing
    best = next(h for h in every if h["document_id"] == "tides")
    assert next(h for h in once if h["document_id"] == "tides")["chunk_id"] == best["chunk_id"]
    twice = query.hits(name, "tides and the moon", top_k=20, max_per_document=2)
    assert [h["document_id"] for h in twice].count("tides") == 2


def test_a_replace_under_concurrent_searches_never_mixes_versions(
    ingest: IngestClient, query: QueryClient
) -> None:
    name = ingest.create_collection()
    versions = [
        "\n\n".join(f"Version {v} paragraph {p}: the policy number is {v}." * 6 for p in range(8))
        for v in range(4)
    ]
    ingest.wait(ingest.ingest_ok(name, [{"id": "policy", "text": versions[0]}]))
    query.wait_for(name, "policy number", "policy")
    seen: list[set[str]] = []
    stop = threading.Event()

    def read() -> None:
        reader = QueryClient(query.base_url)
        while not stop.is_set():
            hits = reader.hits(name, "policy number paragraph", top_k=20)
            seen.append({v for h in hits for v in re.findall(r"(?:Version|is) (\d)", h["text"])})

    readers = [threading.Thread(target=read) for _ in range(2)]
    for thread in readers:
        thread.start()
    try:
        for version, text in enumerate(versions[1:], start=1):
            response = ingest.http.put(
                f"/v1/collections/{name}/documents/policy", json={"text": text}
            )
            ingest.wait([response.json()["jobs"][0]["job_id"]])
            # Readers keep reading until a few of their searches have seen this version.
            deadline = time.monotonic() + 30
            while sum(found == {str(version)} for found in seen[-10:]) < 3:
                assert time.monotonic() < deadline, seen[-5:]
                time.sleep(0.05)
    finally:
        stop.set()
        for thread in readers:
            thread.join()
    assert len(seen) > 20
    assert all(len(versions_in_one_answer) == 1 for versions_in_one_answer in seen), [
        s for s in seen if len(s) != 1
    ][:3]
    assert seen[-1] == {"3"}


def test_every_replica_follows_changes_and_a_restart_rebuilds(
    query_stack: NativeStack, ingest: IngestClient, query: QueryClient, handbook: str
) -> None:
    port, health = free_port(), free_port()
    replica = query_stack.start_service(
        "query", {"PORT": str(port), "HEALTH_PORT": str(health)}, name="query-2"
    )
    replica.wait_until(
        lambda: http_ok(f"http://127.0.0.1:{health}/ready"), timeout=60, what="ready"
    )
    second = QueryClient(f"http://127.0.0.1:{port}")
    assert second.hits(handbook, "bicycles shed")[0]["document_id"] == "parking"  # built at start
    [job] = ingest.wait(
        ingest.ingest_ok(handbook, [{"id": "canteen", "text": "The canteen serves zucchini soup."}])
    )
    assert job["state"] == "succeeded"
    # How soon they follow is measured by make bench; here: they do, without a restart.
    for client in (query, second):
        client.wait_for(handbook, "zucchini", "canteen")
    # Same answers on both replicas, down to the order and the scores.
    for text in ("zucchini soup canteen", "annual leave", "laptops encryption"):
        assert query.hits(handbook, text, mode="lexical") == second.hits(
            handbook, text, mode="lexical"
        )
    # Deleted documents disappear from both.
    assert ingest.http.delete(f"/v1/collections/{handbook}/documents/canteen").status_code == 200
    for client in (query, second):
        client.wait_for(handbook, "zucchini canteen", "canteen", present=False)
        assert "canteen" not in {
            h["document_id"] for h in client.hits(handbook, "zucchini canteen")
        }
    replica.stop()


def test_title_and_source_come_from_the_document_not_from_every_chunk(
    ingest: IngestClient, query: QueryClient, query_stack: NativeStack
) -> None:
    """A document's source was copied into each of its chunks: 0.4 MB of request grew Chroma
    by 135 MB. It is kept once, in the document's record, and hits still show it."""
    name = ingest.create_collection()
    text = "# Otter handbook\n\n" + "\n\n".join(
        f"Section {i}: otters hold hands while sleeping so they do not drift apart. " * 12
        for i in range(8)
    )
    response = ingest.upload(
        name, [("otters.md", text.encode(), "text/markdown")], source="https://example.org/o"
    )
    assert response.status_code == 202, response.text
    ingest.wait([job["job_id"] for job in response.json()["jobs"]])
    query.wait_for(name, "otters drift apart", response.json()["jobs"][0]["document_id"])
    hits = query.hits(name, "otters hold hands", top_k=3)
    assert len(hits) > 1
    assert {(h["source"], h["title"]) for h in hits} == {
        ("https://example.org/o", "Otter handbook")
    }
    answer = query.answer(name, "Why do otters hold hands?", cache=False)
    assert answer["sources"][0]["source"] == "https://example.org/o"

    stored = _stored_metadata(query_stack, name)
    assert len(stored["metadatas"]) > 1
    assert not any("_source" in m or "_title" in m for m in stored["metadatas"])


def test_a_title_and_headings_reach_every_chunk_as_its_header(
    ingest: IngestClient, query: QueryClient, query_stack: NativeStack
) -> None:
    """A chunk deep in a document is found by the words of its title and of the headings above
    it (both indexes read them in the chunk's header), while the text it returns and answers
    quote is its own."""
    name = ingest.create_collection()
    body = "\n\n".join(
        f"Paragraph {i}: the herd crossed the river at dawn and grazed until the heat came. " * 6
        for i in range(6)
    )
    jobs = ingest.ingest_ok(
        name, [{"id": "census", "title": "Quarterly zebra census", "text": body}]
    )
    (job,) = ingest.wait(jobs)
    assert job["state"] == "succeeded", job
    document = ingest.document(name, "census").json()
    assert document["title"] == "Quarterly zebra census"
    assert len(document["chunks"]) >= 3
    assert {c["header"] for c in document["chunks"]} == {"Quarterly zebra census"}
    query.wait_for(name, "zebra", "census")
    hits = query.hits(name, "zebra census", mode="lexical", top_k=20)
    assert {h["chunk_id"] for h in hits} == {c["id"] for c in document["chunks"]}
    assert not any("zebra" in h["text"] for h in hits)  # the stored text is the chunk's own

    markdown = "# Field guide\n\n## Okapi\n\n" + "The animal browses leaves in dense forest. " * 40
    response = ingest.upload(name, [("guide.md", markdown.encode(), "text/markdown")], id="guide")
    assert response.status_code == 202, response.text
    ingest.wait([j["job_id"] for j in response.json()["jobs"]])
    query.wait_for(name, "okapi", "guide")
    found = query.hits(name, "okapi", mode="lexical", top_k=20)
    guide = ingest.document(name, "guide").json()["chunks"]
    under_okapi = {c["id"] for c in guide if c.get("heading") == "Field guide > Okapi"}
    assert len(under_okapi) >= 2
    assert {h["chunk_id"] for h in found} >= under_okapi

    stored = _stored_metadata(query_stack, name)
    headers = {m.get("_header") for m in stored["metadatas"]}
    assert {"Quarterly zebra census", "Field guide > Okapi"} <= headers
    assert headers <= {"Quarterly zebra census", "Field guide", "Field guide > Okapi"}


def test_a_document_of_a_title_alone_is_indexed_by_its_title_and_one_of_neither_is_empty(
    ingest: IngestClient, query: QueryClient
) -> None:
    """A record with a title and no text (a paper without its abstract), or with neither (FiQA's
    BEIR corpus has five), refused the whole batch: 422 "documents[i] is empty". A title alone
    is the document's text now, said once (no header repeating it); with neither, the document
    is stored empty (no chunks, found by no search), and a PUT with neither empties one. An
    empty file is still refused."""
    name = ingest.create_collection()
    jobs = ingest.ingest_ok(
        name,
        [
            {"id": "zinc", "title": "Zinc deficiency stunts maize seedlings", "text": " \n"},
            {"id": "otters", "title": "Otter census", "text": "Otters were counted on the river."},
        ],
    )
    assert {job["state"] for job in ingest.wait(jobs)} == {"succeeded"}
    document = ingest.document(name, "zinc").json()
    assert document["title"] == "Zinc deficiency stunts maize seedlings"
    [chunk] = document["chunks"]
    assert chunk["text"] == "Zinc deficiency stunts maize seedlings"
    assert "header" not in chunk
    query.wait_for(name, "zinc maize", "zinc")
    for mode in ("lexical", "dense", "hybrid"):
        assert query.hits(name, "zinc deficiency in maize", mode=mode, top_k=1)[0][
            "document_id"
        ] == ("zinc"), mode
    replaced = ingest.http.put(
        f"/v1/collections/{name}/documents/otters", json={"text": "", "title": "Otter tally"}
    )
    assert replaced.status_code == 202, replaced.text
    assert ingest.wait([j["job_id"] for j in replaced.json()["jobs"]])[0]["state"] == "succeeded"
    [chunk] = ingest.document(name, "otters").json()["chunks"]
    assert chunk["text"] == "Otter tally"
    blank = [{"id": "none", "title": " ", "text": ""}, {"id": "nbsp", "title": "\u00a0"}]
    for job in ingest.wait(ingest.ingest_ok(name, [{"text": "", **doc} for doc in blank])):
        assert job["state"] == "succeeded", job
        assert job["result"]["empty"] is True
        assert "same_text_as" not in job["result"], job  # no two empty documents are copies
        none = ingest.document(name, job["document_id"]).json()
        assert (none["chunk_count"], none["chunks"]) == (0, [])
    unnamed = ingest.ingest(name, [{"text": "x"}, {"text": " "}])  # its bytes cannot name it
    assert unnamed.status_code == 422, unnamed.text
    assert unnamed.json()["errors"][0]["field"] == "documents[1].id"
    long_title = "Effects of " + " and ".join(f"compound {i}" for i in range(30))  # > 200
    [job] = ingest.wait(ingest.ingest_ok(name, [{"id": "long", "title": long_title, "text": ""}]))
    assert job["state"] == "succeeded", job
    assert not any("header" in c for c in ingest.document(name, "long").json()["chunks"])
    emptied = ingest.http.put(f"/v1/collections/{name}/documents/zinc", json={"text": "\t"})
    assert emptied.status_code == 202, emptied.text
    assert ingest.wait([j["job_id"] for j in emptied.json()["jobs"]])[0]["state"] == "succeeded"
    assert ingest.document(name, "zinc").json()["chunks"] == []
    query.wait_for(name, "zinc maize", "zinc", present=False)
    assert "zinc" not in {h["document_id"] for h in query.hits(name, "zinc maize", top_k=10)}
    file = ingest.upload(name, [("empty.txt", b" ", "text/plain")])
    assert file.status_code == 422, file.text
    assert file.json()["errors"][0]["field"] == "file[0]"


def _stored_metadata(stack: NativeStack, collection: str) -> dict:
    """Every chunk's metadata as Chroma holds it (read from Chroma itself, not the API)."""
    chroma = f"http://127.0.0.1:{stack.ports.chroma}{CHROMA_API}"
    response = httpx.post(
        f"{chroma}/collections/{chroma_id_of(stack, collection)}/get",
        json={"include": ["metadatas"]},
        timeout=30,
    )
    result: dict = response.json()
    return result
