"""A corpus's own document ids, kept as they are, through nginx and the gateway with the SDK.

BEIR's DBPedia-entity names its documents `<dbpedia:Animalia_(book)>`, its FEVER sets by
Wikipedia titles (accents, apostrophes, brackets): ids were 1-256 of letters, digits and
`. _ : @ -`, so such a corpus was refused (422) or had to be renamed, and its judgements then
named nothing the collection held. Now an id is any 1-256 printable characters but
`/ \\ ? #` and U+FFFD (never `.`, `..`, `upload` or `url`): each such id is stored, fetched,
found, judged by a BEIR evaluation and deleted by its own name; the others are refused with
422 naming the field."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from mcp.client.session import ClientSession
from rag_client import APIError, Client

from tests.e2e.gateway.conftest import Edge
from tests.e2e.gateway.test_mcp import agent

pytestmark = pytest.mark.e2e

# id -> text; each text has words of its own, which its query asks for.
CORPUS = {
    "<dbpedia:Animalia_(book)>": "Animalia is an illustrated alphabet book by Graeme Base.",
    "Beyoncé": "Beyoncé Knowles rose to fame as the lead singer of Destiny's Child.",
    "Guns_N'_Roses": "Guns N' Roses released Appetite for Destruction, a hard rock album.",
    "1995\u201396_Bayern_Munich_season": "Bayern Munich won the UEFA Cup in 1996.",
    'AT&T;[x]{y}*!+=~^|`$,"q"<b>': "Telephone exchanges switched calls by relays and crossbars.",
    "-starts-with-a-dash": "Lichens are partnerships of fungi and algae on bare rock.",
    '"Heroes"_(album)': "Heroes is a studio album recorded at Hansa Studios in Berlin.",
    "Paris,_Texas": "Paris is a city in Lamar County in the northeast of Texas.",
    "c:notes": "Sourdough bread rises slowly with wild yeast and lactobacilli.",
    "100%_(album)": "A compilation of brass band marches pressed on red vinyl.",
    "x%2Fy": "Percent signs in a name are kept, never decoded a second time.",
}
QUERIES = {
    "<dbpedia:Animalia_(book)>": "illustrated alphabet book Graeme Base",
    "Beyoncé": "lead singer of Destiny's Child",
    "Guns_N'_Roses": "Appetite for Destruction hard rock album",
    "1995\u201396_Bayern_Munich_season": "Bayern Munich UEFA Cup season",
    'AT&T;[x]{y}*!+=~^|`$,"q"<b>': "telephone exchanges relays crossbars",
    "-starts-with-a-dash": "lichens fungi algae partnership",
    '"Heroes"_(album)': "studio album recorded at Hansa Studios Berlin",
    "Paris,_Texas": "city in Lamar County northeast Texas",
    "c:notes": "sourdough wild yeast lactobacilli",
    "100%_(album)": "brass band marches red vinyl",
    "x%2Fy": "percent signs decoded second time",
}
REFUSED = [
    "a/b",
    "a b",
    "a?b",
    "a#b",
    "a\\b",
    "zero\u200bwidth",
    "Beyonc\ufffd",  # what a Latin-1 "Beyonc%E9" decodes to: "Beyonc%E8" would be the same
    "tab\t",
    ".",
    "..",
    "upload",  # POST .../documents/upload is the upload route: no GET or DELETE could reach it
    "url",
    "x" * 257,
]


@pytest.fixture(scope="module")
def key(edge: Edge) -> str:
    return edge.new_key("corpus-ids", ["ingest:write", "query:read"])


@pytest.fixture(scope="module")
def client(edge: Edge, key: str) -> Iterator[Client]:
    with Client(edge.url, key) as sdk:
        yield sdk


@pytest.fixture(scope="module")
def collection(client: Client) -> str:
    client.create_collection("beir-ids")
    accepted = client.add_documents(
        "beir-ids", [{"id": i, "text": text} for i, text in CORPUS.items()]
    )
    jobs = client.wait_jobs([job.job_id for job in accepted.jobs], max_seconds=120)
    assert {job.state for job in jobs} == {"succeeded"}, jobs
    return "beir-ids"


def test_a_corpus_s_own_ids_are_stored_fetched_and_found_as_they_are(
    client: Client, collection: str
) -> None:
    for document_id, query in QUERIES.items():
        assert client.get_document(collection, document_id).id == document_id
        hits = client.search(collection, query, top_k=1, mode="lexical").results
        assert [hit.document_id for hit in hits] == [document_id], query
    listed = {d.id for d in client.list_documents(collection, limit=100).documents}
    assert listed == set(CORPUS)


def test_a_beir_evaluation_judges_documents_by_those_ids(
    client: Client, collection: str, tmp_path: Path
) -> None:
    queries = tmp_path / "queries.jsonl"
    # Lines ended as files made elsewhere end them: CR alone, CRLF (Windows).
    queries.write_bytes(
        "".join(
            json.dumps({"_id": f"q{n}", "text": text}, ensure_ascii=False) + "\r"
            for n, text in enumerate(QUERIES.values())
        ).encode()
    )
    qrels = tmp_path / "test.tsv"
    qrels.write_bytes(
        (
            "query-id\tcorpus-id\tscore\r\n"
            + "".join(f"q{n}\t{document_id}\t1\r\n" for n, document_id in enumerate(QUERIES))
        ).encode()
    )
    result = client.evaluate_beir(collection, queries, qrels, mode="lexical", background=False)
    assert result["judged_cases"] == len(QUERIES)
    assert result["retrieval"]["nDCG@10"] == 1.0, result


def test_an_agent_reads_such_a_document_as_an_mcp_resource(
    edge: Edge, key: str, collection: str
) -> None:
    """Through the MCP SDK: the template's document_id, percent-encoded as RFC 6570 expands
    it. "c:notes" was refused as a Windows drive path, "Paris,_Texas" unknown."""
    wanted = ["c:notes", "Paris,_Texas", "<dbpedia:Animalia_(book)>", "Beyoncé", "x%2Fy"]

    async def read(session: ClientSession) -> list[Any]:
        return [
            await session.read_resource(
                f"rag://{collection}/documents/{quote(document_id, safe='')}"
            )
            for document_id in wanted
        ]

    for document_id, found in zip(wanted, agent(edge, key, read), strict=True):
        [content] = found.contents
        assert CORPUS[document_id] in content.text, (document_id, content.text)


def test_ids_that_would_change_the_path_or_hide_a_character_are_refused(
    client: Client, edge: Edge
) -> None:
    for document_id in REFUSED:
        with pytest.raises(APIError) as refused:
            client.add_documents("beir-ids", [{"id": document_id, "text": "Refused."}])
        assert refused.value.status == 422, document_id
        assert refused.value.problem["errors"][0]["field"] == "documents[0].id", document_id
    # A replacement's id is the path's, and the error names it so.
    with pytest.raises(APIError) as named:
        client.replace_document("beir-ids", "a b", "Refused.")
    assert named.value.status == 422
    assert named.value.problem["errors"][0]["field"] == "document_id"


def test_a_document_is_deleted_by_its_own_id(client: Client, collection: str) -> None:
    document_id = "<dbpedia:Animalia_(book)>"
    client.delete_document(collection, document_id)
    with pytest.raises(APIError) as gone:
        client.get_document(collection, document_id)
    assert gone.value.status == 404
    assert client.get_document(collection, "Beyoncé").id == "Beyoncé"
