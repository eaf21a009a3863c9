"""Tenant isolation, generated from the gateway's route table: every public route has a probe
(a new route without one fails `test_every_public_route_has_an_isolation_probe`), and each
probe has another tenant, and a key of the same tenant limited to other collections, aim at
tenant A's collections, documents, jobs, evaluation and chat session.

The tenants are chosen to collide under naive name building: A is ``acme`` with collection
``x-hbk``, B is ``acme-x`` with its own collection ``hbk`` (and a document of its own that
has the id of one of A's). Every response to an outsider is searched for A's distinctive
strings (texts, ids, metadata values, job, evaluation and session ids), except those the
outsider sent itself; after every request that could write, A's view of its data must not
have moved, and at the end it is byte for byte what it was before the outsiders came."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from rag_client import Client, calls
from rag_client.calls import Call
from rag_config import GatewaySettings
from rag_core.catalog import Keys
from rag_devstack import NativeStack
from rag_gateway.app import create_app as create_gateway
from rag_gateway.routing import TABLE, NoRoute, classify

from tests.e2e.gateway.conftest import Edge

pytestmark = pytest.mark.e2e

# The public API, generated ------------------------------------------------------------------

_VARIABLE = re.compile(r"\(\?P<\w+>\[\^/\]\+\)|\[\^/\]\+|\{\w+:\w+\}")
_ALTERNATIVES = re.compile(r"\(([\w-]+(?:\|[\w-]+)+)\)")
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def _template(path: str) -> str:
    """``/v1/sessions/(?P<session>[^/]+)`` and ``/v1/sessions/{key:str}`` alike become
    ``/v1/sessions/{session}``: each variable segment is named after the one before it, so
    renaming a regex group does not rename the route."""
    segments = _VARIABLE.sub("{}", path).split("/")
    for index, segment in enumerate(segments):
        if segment == "{}":
            segments[index] = "{" + segments[index - 1].removesuffix("s") + "}"
    return "/".join(segments)


@dataclass(frozen=True)
class PublicRoute:
    method: str
    template: str  # "/v1/collections/{collection}/documents/{document}"
    position: int  # its place in the gateway's table, where the first match wins
    table: tuple[str, str, str] | None  # (upstream, scope, kind) for the forwarded routes

    @property
    def key(self) -> tuple[str, str]:
        return (self.method, self.template)

    def matches(self, method: str, path: str) -> bool:
        pattern = _PLACEHOLDER.sub("[^/]+", self.template)
        return method == self.method and re.fullmatch(pattern, path) is not None

    def sample_path(self) -> str:
        return _PLACEHOLDER.sub("sample-1", self.template)


def _expand(path: str) -> list[str]:
    """``/documents/(upload|url)`` is two routes: each gets its own probe."""
    match = _ALTERNATIVES.search(path)
    if match is None:
        return [path]
    return [
        template
        for choice in match.group(1).split("|")
        for template in _expand(path[: match.start()] + choice + path[match.end() :])
    ]


def _public_routes() -> list[PublicRoute]:
    """Every route of the forwarding table, then the gateway's own /v1 routes (read from its
    app, not its forwarding catch-all)."""
    found: list[PublicRoute] = []
    for pattern, methods in TABLE:
        for template in _expand(_template(pattern.pattern.strip("^$"))):
            assert not re.search(r"[()\[\]?^$*+|\\]", template), template
            for method, target in methods.items():
                found.append(PublicRoute(method, template, len(found), target))
    app = create_gateway(GatewaySettings(_env_file=None))
    for route in app.routes:
        if not route.path.startswith("/v1/") or "{rest" in route.path:
            continue
        template = _template(route.path)
        for method in sorted(getattr(route, "methods", set()) - {"HEAD", "OPTIONS"}):
            found.append(PublicRoute(method, template, len(found), None))
    return found


ROUTES = _public_routes()


def _run_order(route: PublicRoute) -> tuple[int, int]:
    """Reads and writes first, deletes after them, B deleting its whole collection last: a
    delete that reaches A must not hide what the other probes would find."""
    if route.method != "DELETE":
        return (0, route.position)
    return (2 if route.template == "/v1/collections/{collection}" else 1, route.position)


# The tenants and their data -----------------------------------------------------------------

A_TENANT, B_TENANT = "acme", "acme-x"
SCOPES = ["ingest:read", "ingest:write", "query:read"]
UNLIMITED = 1_000_000  # requests per minute: the rate limit is not what this module tests


@dataclass(frozen=True)
class Doc:
    id: str
    text: str
    metadata: dict[str, str]

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text, "metadata": self.metadata}


A_DOCS: dict[str, list[Doc]] = {
    "x-hbk": [
        Doc(
            "acme-doc-quokka-81f3",
            "The quokka ledger quokka81f3 says the lighthouse keeper of Port Ellery is Oriel.",
            {"owner": "acme-meta-ledger-44c1"},
        ),
        Doc(
            "acme-doc-pelican-27d0",
            "Pelican flight logs pelican27d0 list the harbour pilots and their tide tables.",
            {"owner": "acme-meta-flight-9b02"},
        ),
    ],
    "secret": [
        Doc(
            "acme-doc-vault-93ab",
            "The vault combination vault93ab opens the northern depot safe after midnight.",
            {"clearance": "acme-meta-topsecret-6e2f"},
        ),
    ],
    "public": [
        Doc(
            "acme-doc-bulletin-5a10",
            "The public bulletin bulletin5a10 says the cafeteria opens at nine.",
            {"board": "acme-meta-public-3c88"},
        ),
    ],
}
# The fixed search of each of A's collections, whose result ids and texts must not move.
A_SEARCHES = {
    "x-hbk": "quokka ledger lighthouse keeper",
    "secret": "vault combination northern depot",
    "public": "cafeteria bulletin",
}
A_FAILED_URL = "http://127.0.0.1:9/acme-url-5d71"  # refused (loopback): a failed, retryable job
A_URL_METADATA = {"origin": "acme-meta-url-0b9e"}
A_SESSION = "acme-session-7c21"  # built on "secret"
A_SESSION_QUESTION = "Which combination opens the northern depot vault sessionq7c21?"
A_EVAL_CASE = {
    "id": "acme-evalcase-4d4d",
    "query": "depot vault combination evalq4d4d",
    "relevant": ["acme-doc-vault-93ab"],
}
# B's own collection, whose Chroma name used to be A's x-hbk's, and B's own documents: one
# with the id of one of A's (B's own object of the same name), one of its own.
B_OWN = "hbk"
B_DOCS = [
    Doc(
        "acme-doc-quokka-81f3",
        "Heron sightings heron6b19 at the estuary were counted by volunteers.",
        {"owner": "b-meta-heron-71aa"},
    ),
    Doc(
        "b-doc-otter-2c4e",
        "Otter dens otter2c4e line the river bank near the old mill.",
        {"owner": "b-meta-otter-5f0d"},
    ),
]
INTRUDER = "Intruder text intruder9e9e written by another tenant."


@dataclass
class Outsider:
    """Someone who must not reach A's data (except what ``own`` and ``allowed`` give it)."""

    name: str
    tenant: str
    http: httpx.Client
    limited: bool  # A's own key, limited to "public"
    targets: tuple[str, ...]  # A's collections it must not reach
    documents: dict[str, tuple[str, ...]]  # A's document ids in each target
    jobs: tuple[str, ...]  # A's job ids it must not reach
    own: str  # a collection it may use
    own_documents: frozenset[str]  # the document ids it may see in ``own``
    allowed: frozenset[str]  # the collection names it may see listed
    secrets: frozenset[str]  # A's strings no answer to it may hold

    def foreign_documents(self) -> list[str]:
        return [d for ids in self.documents.values() for d in ids]


@dataclass
class World:
    stack: NativeStack
    edge: Edge
    a_http: httpx.Client  # A's key with every collection: A's view of its data
    a_key_ids: tuple[str, ...]
    a_failed_job: str
    a_evaluation: str
    b_key: str
    outsiders: list[Outsider]
    beir_files: tuple[Path, Path]
    original: dict[str, Any] = field(default_factory=dict)  # A's full view, before
    baseline: dict[str, Any] = field(default_factory=dict)  # A's view after the last probe
    b_setup_findings: list[str] = field(default_factory=list)


def _http(edge: Edge, key: str) -> httpx.Client:
    return httpx.Client(base_url=edge.url, headers=Edge.bearer(key), timeout=60)


def _new_key(edge: Edge, tenant: str, **extra: Any) -> tuple[str, str]:
    """(secret, id) of a new key with every scope but admin."""
    response = edge.http.post(
        "/v1/admin/keys",
        json={"tenant": tenant, "scopes": SCOPES, "requests_per_minute": UNLIMITED, **extra},
        headers=edge.admin(),
    )
    assert response.status_code == 201, response.text
    return response.json()["key"], response.json()["id"]


def _until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _distinctive(doc: Doc) -> set[str]:
    """A document's id, text, metadata values and the marker words in its text."""
    return {doc.id, doc.text, *doc.metadata.values(), *re.findall(r"\w+\d\w+", doc.text)}


def _searchable(edge: Edge, collection: str, query: str, key: str, document_id: str) -> bool:
    try:
        edge.wait_searchable(collection, query, Edge.bearer(key), document_id)
    except AssertionError:
        return False
    return True


# A's view of its data -----------------------------------------------------------------------


def a_view(world: World, *, full: bool) -> dict[str, Any]:
    """What A sees: the fixed searches' hits (ids, texts, metadata), the session, the
    evaluation and the failed job; ``full`` adds each collection, its list of documents and
    each document. Answers are kept as the bytes the API sent."""
    a = world.a_http
    view: dict[str, Any] = {}

    def raw(label: str, response: httpx.Response) -> None:
        view[label] = (response.status_code, response.text)

    for collection, query in A_SEARCHES.items():
        found = a.post(f"/v1/collections/{collection}/search", json={"query": query})
        view[f"search {collection}"] = (
            [
                (h["document_id"], h["chunk_id"], h["text"], h.get("metadata"))
                for h in found.json()["results"]
            ]
            if found.status_code == 200
            else (found.status_code, found.text)
        )
        if full:
            raw(f"GET {collection}", a.get(f"/v1/collections/{collection}"))
            raw(f"GET {collection} documents", a.get(f"/v1/collections/{collection}/documents"))
            for doc in A_DOCS[collection]:
                raw(
                    f"GET {collection}/{doc.id}",
                    a.get(f"/v1/collections/{collection}/documents/{doc.id}"),
                )
    raw("GET session", a.get(f"/v1/sessions/{A_SESSION}"))
    raw("GET evaluation", a.get(f"/v1/evaluations/{world.a_evaluation}"))
    raw("GET failed job", a.get(f"/v1/jobs/{world.a_failed_job}"))
    return view


def view_changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    return [
        f"A's {label} changed: {_difference(str(before.get(label)), str(after.get(label)))}"
        for label in sorted(set(before) | set(after))
        if before.get(label) != after.get(label)
    ]


def _difference(before: str, after: str) -> str:
    """Both texts from a little before where they first differ."""
    start = next(
        (i for i, (x, y) in enumerate(zip(before, after, strict=False)) if x != y),
        min(len(before), len(after)),
    )
    start = max(0, start - 80)
    return f"was ...{before[start : start + 400]!r}, now ...{after[start : start + 400]!r}"


# Setup --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(
    full_stack: NativeStack, edge: Edge, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """Tenant A's data on every kind of object the API has, and A's view of it."""
    a_key, a_key_id = _new_key(edge, A_TENANT, name="acme everything")
    limited_key, limited_id = _new_key(edge, A_TENANT, name="acme public", collections=["public"])
    b_key, _ = _new_key(edge, B_TENANT, name="acme-x everything")
    a_jobs: dict[str, tuple[str, ...]] = {}
    with Client(edge.url, a_key) as a:
        for collection, docs in A_DOCS.items():
            a.create_collection(collection)
            accepted = a.add_documents(collection, [d.as_json() for d in docs])
            a_jobs[collection] = tuple(accepted.job_ids)
        jobs = a.wait_jobs([j for ids in a_jobs.values() for j in ids], max_seconds=90)
        assert [j.state for j in jobs] == ["succeeded"] * len(jobs), [j.error for j in jobs]
        refused = a.ingest_url("secret", A_FAILED_URL, metadata=A_URL_METADATA)
        failed_job = refused.job_ids[0]
        assert a.wait_job(failed_job, max_seconds=60).state == "failed"
        a_jobs["secret"] += (failed_job,)
        for collection, docs in A_DOCS.items():
            for doc in docs:
                assert _searchable(edge, collection, doc.text, a_key, doc.id), doc.id
        answer = a.query("secret", A_SESSION_QUESTION, session_id=A_SESSION, cache=False)
        assert "vault93ab" in answer.answer
        started = a.evaluate("secret", [A_EVAL_CASE], background=True)
        evaluation = a.wait_evaluation(started["id"], max_seconds=60)
        assert evaluation["state"] == "succeeded", evaluation

    beir = tmp_path_factory.mktemp("beir")
    (beir / "queries.jsonl").write_text(json.dumps({"_id": "b1", "text": "vault combination"}))
    (beir / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nb1\tacme-doc-vault-93ab\t1\n")

    everything = {
        *(s for docs in A_DOCS.values() for doc in docs for s in _distinctive(doc)),
        *(j for ids in a_jobs.values() for j in ids),
        "acme-url-5d71",
        *A_URL_METADATA.values(),
        A_SESSION,
        "sessionq7c21",
        evaluation["id"],
        A_EVAL_CASE["id"],
        "evalq4d4d",
        a_key,
        a_key_id,
        limited_key,
        limited_id,
    }
    public = {
        *(s for doc in A_DOCS["public"] for s in _distinctive(doc)),
        *a_jobs["public"],
        limited_key,
        limited_id,
    }
    outside_public = ("x-hbk", "secret")
    b_owns = {d.id for d in B_DOCS}
    outsiders = [
        Outsider(
            name=f"tenant {B_TENANT}",
            tenant=B_TENANT,
            http=_http(edge, b_key),
            limited=False,
            targets=tuple(A_DOCS),
            documents={c: tuple(d.id for d in docs) for c, docs in A_DOCS.items()},
            jobs=tuple(j for ids in a_jobs.values() for j in ids),
            own=B_OWN,
            own_documents=frozenset(b_owns),
            allowed=frozenset({B_OWN}),
            secrets=frozenset(everything - b_owns),
        ),
        Outsider(
            name="acme's key limited to public",
            tenant=A_TENANT,
            http=_http(edge, limited_key),
            limited=True,
            targets=outside_public,
            documents={c: tuple(d.id for d in A_DOCS[c]) for c in outside_public},
            jobs=tuple(j for c in outside_public for j in a_jobs[c]),
            own="public",
            own_documents=frozenset(d.id for d in A_DOCS["public"]),
            allowed=frozenset({"public"}),
            secrets=frozenset(everything - public),
        ),
    ]
    built = World(
        stack=full_stack,
        edge=edge,
        a_http=_http(edge, a_key),
        a_key_ids=(a_key_id, limited_id),
        a_failed_job=failed_job,
        a_evaluation=evaluation["id"],
        b_key=b_key,
        outsiders=outsiders,
        beir_files=(beir / "queries.jsonl", beir / "qrels.tsv"),
    )
    built.original = a_view(built, full=True)
    try:
        yield built
    finally:
        for client in (built.a_http, *(o.http for o in outsiders)):
            client.close()


@pytest.fixture(scope="module")
def tenant_b(world: World) -> World:
    """B builds its own collection ``hbk`` (once named like A's ``x-hbk`` in Chroma) with a
    document that has the id of one of A's; what that did to A's data is kept as findings."""
    findings = world.b_setup_findings
    with Client(world.edge.url, world.b_key) as b:
        b.create_collection(B_OWN)
        accepted = b.add_documents(B_OWN, [d.as_json() for d in B_DOCS])
        jobs = b.wait_jobs(accepted.job_ids, max_seconds=90)
        findings += [f"B's own job failed: {j.error}" for j in jobs if j.state != "succeeded"]
    for doc in B_DOCS:
        if not _searchable(world.edge, B_OWN, doc.text, world.b_key, doc.id):
            findings.append(f"B's own document {doc.id} never became searchable in {B_OWN}")
    after = a_view(world, full=True)
    findings += view_changes(world.original, after)
    world.baseline = a_view(world, full=False)
    return world


# The probes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    text: str  # headers and body, as the outsider received them
    body: Any


@dataclass
class Check:
    """One probe's requests and what went wrong with them, each finding naming who sent
    which request."""

    route: PublicRoute
    findings: list[str] = field(default_factory=list)
    reached: int = 0  # requests that were this probe's route

    def send(
        self,
        who: Outsider,
        call: Call[Any],
        *,
        expect: int | tuple[int, ...] | None,
        stream: bool = False,
    ) -> Reply:
        if self.route.matches(call.method, call.path.split("?")[0]):
            self.reached += 1
        kwargs = call.send_kwargs()
        if stream:
            with who.http.stream(call.method, call.path, **kwargs) as response:
                response.read()
        else:
            response = who.http.request(call.method, call.path, **kwargs)
        text = "\n".join(f"{k}: {v}" for k, v in response.headers.items()) + "\n" + response.text
        try:
            body = response.json()
        except ValueError:
            body = None
        request = _request_text(call)
        label = f"{who.name}: {call.method} {call.path} {_short(call)} -> {response.status_code}"
        leaked = sorted(s for s in who.secrets if s in text and s not in request)
        if leaked:
            self.findings.append(f"{label} showed A's {leaked}: {response.text[:400]!r}")
        wanted = (expect,) if isinstance(expect, int) else expect
        if wanted is not None and response.status_code not in wanted:
            self.findings.append(f"{label}, expected {wanted}: {response.text[:300]!r}")
        return Reply(response.status_code, text, body)

    def require(self, ok: bool, who: Outsider, what: str) -> None:
        if not ok:
            self.findings.append(f"{who.name}: {what}")


def _request_text(call: Call[Any]) -> str:
    parts = [call.method, call.path, json.dumps(call.json), json.dumps(call.params)]
    parts.append(json.dumps(dict(call.data or {})))
    for _field, (name, content, _kind) in call.files or []:
        parts += [name, content.decode("utf-8", "replace")]
    return "\n".join(parts)


def _short(call: Call[Any]) -> str:
    body = call.json if call.json is not None else call.data
    return "" if body is None else json.dumps(body)[:160]


def _results(reply: Reply, key: str) -> list[dict[str, Any]]:
    if not 200 <= reply.status < 300 or not isinstance(reply.body, dict):
        return []
    found: list[dict[str, Any]] = reply.body.get(key) or []
    return found


def _chat(model: str, question: str, **extra: Any) -> Call[Any]:
    body = {"model": model, "messages": [{"role": "user", "content": question}], **extra}
    return Call("POST", "/v1/chat/completions", lambda b: b, json=body)


def _own_status(who: Outsider) -> int | None:
    """B's own collection answers; what a limited key gets when it names A's session on a
    collection it may use is up to the fix (refused, or a session of its own)."""
    return None if who.limited else 200


Probe = Callable[[World, Outsider, Check], None]


def probe_list_collections(world: World, who: Outsider, check: Check) -> None:
    reply = check.send(who, calls.list_collections(), expect=200)
    names = {c["name"] for c in _results(reply, "collections")}
    check.require(names <= who.allowed, who, f"GET /v1/collections lists {names - who.allowed}")


def probe_create_collection(world: World, who: Outsider, check: Check) -> None:
    for name in who.targets:
        if who.limited:
            check.send(who, calls.create_collection(name), expect=404)
            continue
        # B may have a collection of that name, its own: empty, and gone again.
        check.send(who, calls.create_collection(name, description="B's own"), expect=201)
        got = check.send(who, calls.get_collection(name), expect=200)
        counts = got.body.get("document_count") if isinstance(got.body, dict) else None
        check.require(counts == 0, who, f"its new collection {name} has {counts} documents")
        found = check.send(who, calls.search(name, A_SEARCHES[name]), expect=200)
        check.require(not _results(found, "results"), who, f"its new {name} finds something")
        check.send(who, calls.delete_collection(name), expect=200)


def probe_get_collection(world: World, who: Outsider, check: Check) -> None:
    for name in who.targets:
        check.send(who, calls.get_collection(name), expect=404)
    got = check.send(who, calls.get_collection(who.own), expect=200)
    counts = got.body.get("document_count") if isinstance(got.body, dict) else None
    check.require(counts == len(who.own_documents), who, f"{who.own} counts {counts} documents")


def probe_delete_collection(world: World, who: Outsider, check: Check) -> None:
    for name in who.targets:
        check.send(who, calls.delete_collection(name), expect=404)
    if not who.limited:  # B deletes its own collection: A's x-hbk must not notice
        check.send(who, calls.delete_collection(who.own), expect=200)


OTHER_MODEL = "all-MiniLM-L6-v2"  # not the collections' (EMBEDDING_MODEL, the int8 one)


def probe_reembed(world: World, who: Outsider, check: Check) -> None:
    for name in who.targets:
        check.send(who, calls.reembed_collection(name, OTHER_MODEL), expect=404)
    if not who.limited:  # B moves its own collection (then stops): A's must not notice
        check.send(who, calls.reembed_collection(who.own, OTHER_MODEL), expect=202)
        check.send(who, calls.cancel_reembedding(who.own), expect=200)


def probe_cancel_reembedding(world: World, who: Outsider, check: Check) -> None:
    for name in who.targets:
        check.send(who, calls.cancel_reembedding(name), expect=404)
    if not who.limited:
        check.send(who, calls.cancel_reembedding(who.own), expect=404)  # none running


def probe_search(world: World, who: Outsider, check: Check) -> None:
    for name in who.targets:
        check.send(who, calls.search(name, A_SEARCHES[name]), expect=404)
    for name in who.targets:  # A's queries on its own collection find only its own
        found = check.send(who, calls.search(who.own, A_SEARCHES[name]), expect=200)
        ids = {hit["document_id"] for hit in _results(found, "results")}
        check.require(ids <= who.own_documents, who, f"search of {who.own} found {ids}")
    for doc in A_DOCS["x-hbk"]:  # filtering on A's metadata finds nothing
        found = check.send(
            who, calls.search(who.own, "ledger pilots", filter=doc.metadata), expect=200
        )
        hits = _results(found, "results")
        check.require(not hits, who, f"search of {who.own} filtered on {doc.metadata}: {hits}")


def probe_query(world: World, who: Outsider, check: Check) -> None:
    question = "Who keeps the lighthouse and what opens the vault?"
    for name in who.targets:
        check.send(who, calls.query(name, question, cache=False), expect=404)
        check.send(who, calls.query_stream(name, question, cache=False), expect=404, stream=True)
    # A's session id, on a collection the outsider may use: it must neither read A's history
    # nor add to it (A's view is compared after this probe).
    check.send(
        who,
        calls.query(who.own, question, session_id=A_SESSION, cache=False),
        expect=_own_status(who),
    )
    check.send(
        who,
        calls.query_stream(who.own, question, session_id=A_SESSION, cache=False),
        expect=_own_status(who),
        stream=True,
    )


def probe_list_documents(world: World, who: Outsider, check: Check) -> None:
    for name in who.targets:
        check.send(who, calls.list_documents(name), expect=404)
    listed = check.send(who, calls.list_documents(who.own), expect=200)
    ids = {d["id"] for d in _results(listed, "documents")}
    check.require(ids <= who.own_documents, who, f"{who.own} lists documents {ids}")
    for doc in A_DOCS["x-hbk"]:
        found = check.send(who, calls.list_documents(who.own, where=doc.metadata), expect=200)
        hits = _results(found, "documents")
        check.require(not hits, who, f"{who.own} filtered on {doc.metadata} lists {hits}")


def probe_add_documents(world: World, who: Outsider, check: Check) -> None:
    for name in who.targets:
        doc = {"id": who.documents[name][0], "text": INTRUDER, "metadata": {"by": who.tenant}}
        check.send(who, calls.add_documents(name, [doc]), expect=404)


def probe_upload(world: World, who: Outsider, check: Check) -> None:
    for name in who.targets:
        upload = calls.upload_files(
            name, [("intruder.txt", INTRUDER.encode())], document_id=who.documents[name][0]
        )
        check.send(who, upload, expect=404)


def probe_ingest_url(world: World, who: Outsider, check: Check) -> None:
    for name in who.targets:
        check.send(who, calls.ingest_url(name, "http://127.0.0.1:9/intruder"), expect=404)


def probe_get_document(world: World, who: Outsider, check: Check) -> None:
    for name in who.targets:
        for document_id in who.documents[name]:
            check.send(who, calls.get_document(name, document_id), expect=404)
    for document_id in who.foreign_documents():  # A's ids in its own collection
        expected = 200 if document_id in who.own_documents else 404
        check.send(who, calls.get_document(who.own, document_id), expect=expected)


def probe_replace_document(world: World, who: Outsider, check: Check) -> None:
    for name in who.targets:
        for document_id in who.documents[name]:
            check.send(who, calls.replace_document(name, document_id, INTRUDER), expect=404)


def probe_delete_document(world: World, who: Outsider, check: Check) -> None:
    for name in who.targets:
        for document_id in who.documents[name]:
            check.send(who, calls.delete_document(name, document_id), expect=404)
    for document_id in who.foreign_documents():
        if document_id in who.own_documents and not who.limited:
            # B deletes its own document that has A's id: A's must not notice.
            check.send(who, calls.delete_document(who.own, document_id), expect=200)
        elif document_id not in who.own_documents:
            check.send(who, calls.delete_document(who.own, document_id), expect=404)
    _wait_cleanups(world)


def _wait_cleanups(world: World) -> None:
    """Until the worker has removed the chunks of deleted documents (listed as due now)."""
    cleanups = Keys(GatewaySettings(_env_file=None).redis_prefix).cleanups()
    with redis.Redis.from_url(world.stack.redis_url) as store:
        _until(
            lambda: store.zcount(cleanups, "-inf", time.time()) == 0,
            "the worker to remove deleted chunks",
        )


def probe_list_jobs(world: World, who: Outsider, check: Check) -> None:
    for options in ({}, {"state": "failed"}):
        listed = check.send(who, calls.list_jobs(limit=200, **options), expect=200)
        names = {j["collection"] for j in _results(listed, "jobs")}
        check.require(names <= who.allowed, who, f"GET /v1/jobs {options} lists {names}")
    for name in who.targets:
        listed = check.send(who, calls.list_jobs(collection=name), expect=(200, 404))
        jobs = [j["id"] for j in _results(listed, "jobs")]
        check.require(not jobs, who, f"GET /v1/jobs?collection={name} lists {jobs}")


def probe_get_job(world: World, who: Outsider, check: Check) -> None:
    for job_id in who.jobs:
        check.send(who, calls.get_job(job_id), expect=404)


def probe_job_events(world: World, who: Outsider, check: Check) -> None:
    for job_id in who.jobs:
        check.send(who, calls.job_events(job_id), expect=404, stream=True)


def probe_retry_job(world: World, who: Outsider, check: Check) -> None:
    for job_id in who.jobs:  # A's failed job among them: it must stay at its first run
        check.send(who, calls.retry_job(job_id), expect=404)


def probe_models(world: World, who: Outsider, check: Check) -> None:
    listed = check.send(who, Call("GET", "/v1/models", lambda b: b), expect=200)
    names = {m["id"].partition(":")[0] for m in _results(listed, "data")}
    check.require(names <= who.allowed, who, f"GET /v1/models lists {names - who.allowed}")


def probe_model(world: World, who: Outsider, check: Check) -> None:
    for name in who.targets:
        for model in (name, f"{name}:extractive"):
            check.send(who, Call("GET", f"/v1/models/{model}", lambda b: b), expect=404)


def probe_chat(world: World, who: Outsider, check: Check) -> None:
    question = "What opens the northern depot vault?"
    for name in who.targets:
        check.send(who, _chat(name, question), expect=404)
        check.send(who, _chat(f"{name}:extractive", question, stream=True), expect=404)
    check.send(who, _chat(who.own, question, session_id=A_SESSION), expect=_own_status(who))
    check.send(
        who,
        _chat(who.own, question, session_id=A_SESSION, stream=True),
        expect=_own_status(who),
        stream=True,
    )


def probe_evaluate(world: World, who: Outsider, check: Check) -> None:
    cases = [
        {"id": "probe-case", "query": "vault combination", "relevant": who.foreign_documents()}
    ]
    for name in who.targets:
        check.send(who, calls.evaluate(name, cases), expect=404)
    check.send(who, calls.evaluate(who.own, cases), expect=200)


def probe_evaluate_beir(world: World, who: Outsider, check: Check) -> None:
    queries, qrels = world.beir_files
    for name in who.targets:
        # A limited key may not upload evaluation files at all (403).
        expected = (403, 404) if who.limited else 404
        check.send(who, calls.evaluate_beir(name, queries, qrels), expect=expected)


def probe_evaluation(world: World, who: Outsider, check: Check) -> None:
    check.send(who, calls.evaluation(world.a_evaluation), expect=404)


def probe_get_session(world: World, who: Outsider, check: Check) -> None:
    # B may hold a session of its own under the same id (the query probe made it).
    check.send(who, calls.get_session(A_SESSION), expect=404 if who.limited else (200, 404))


def probe_delete_session(world: World, who: Outsider, check: Check) -> None:
    check.send(who, calls.delete_session(A_SESSION), expect=404 if who.limited else (200, 404))


def probe_list_keys(world: World, who: Outsider, check: Check) -> None:
    check.send(who, calls.list_keys(), expect=403)
    check.send(who, calls.list_keys(tenant=A_TENANT), expect=403)


def probe_create_key(world: World, who: Outsider, check: Check) -> None:
    check.send(who, calls.create_key(A_TENANT, ["admin"]), expect=403)
    check.send(who, calls.create_key(A_TENANT, SCOPES, collections=["secret"]), expect=403)


def probe_revoke_key(world: World, who: Outsider, check: Check) -> None:
    for key_id in world.a_key_ids:  # A's view is read with the first: it must still work
        check.send(who, calls.revoke_key(key_id), expect=403)


def probe_system(world: World, who: Outsider, check: Check) -> None:
    reply = check.send(who, calls.get_system_info(), expect=200)
    tenant = reply.body.get("tenant") if isinstance(reply.body, dict) else None
    check.require(tenant == who.tenant, who, f"GET /v1/system says tenant {tenant!r}")


PROBES: dict[tuple[str, str], Probe] = {
    ("GET", "/v1/collections"): probe_list_collections,
    ("POST", "/v1/collections"): probe_create_collection,
    ("GET", "/v1/collections/{collection}"): probe_get_collection,
    ("DELETE", "/v1/collections/{collection}"): probe_delete_collection,
    ("POST", "/v1/collections/{collection}/reembed"): probe_reembed,
    ("DELETE", "/v1/collections/{collection}/reembed"): probe_cancel_reembedding,
    ("POST", "/v1/collections/{collection}/search"): probe_search,
    ("POST", "/v1/collections/{collection}/query"): probe_query,
    ("GET", "/v1/collections/{collection}/documents"): probe_list_documents,
    ("POST", "/v1/collections/{collection}/documents"): probe_add_documents,
    ("POST", "/v1/collections/{collection}/documents/upload"): probe_upload,
    ("POST", "/v1/collections/{collection}/documents/url"): probe_ingest_url,
    ("GET", "/v1/collections/{collection}/documents/{document}"): probe_get_document,
    ("PUT", "/v1/collections/{collection}/documents/{document}"): probe_replace_document,
    ("DELETE", "/v1/collections/{collection}/documents/{document}"): probe_delete_document,
    ("GET", "/v1/jobs"): probe_list_jobs,
    ("GET", "/v1/jobs/{job}"): probe_get_job,
    ("GET", "/v1/jobs/{job}/events"): probe_job_events,
    ("POST", "/v1/jobs/{job}/retry"): probe_retry_job,
    ("GET", "/v1/models"): probe_models,
    ("GET", "/v1/models/{model}"): probe_model,
    ("POST", "/v1/chat/completions"): probe_chat,
    ("POST", "/v1/evaluate"): probe_evaluate,
    ("POST", "/v1/evaluate/beir"): probe_evaluate_beir,
    ("GET", "/v1/evaluations/{evaluation}"): probe_evaluation,
    ("GET", "/v1/sessions/{session}"): probe_get_session,
    ("DELETE", "/v1/sessions/{session}"): probe_delete_session,
    ("GET", "/v1/admin/keys"): probe_list_keys,
    ("POST", "/v1/admin/keys"): probe_create_key,
    ("DELETE", "/v1/admin/keys/{key}"): probe_revoke_key,
    ("GET", "/v1/system"): probe_system,
}


# The tests ----------------------------------------------------------------------------------


def test_every_public_route_has_an_isolation_probe() -> None:
    routes = {route.key for route in ROUTES}
    assert len(routes) == len(ROUTES), "a route is listed twice"
    assert not routes - set(PROBES), f"routes without an isolation probe: {routes - set(PROBES)}"
    assert not set(PROBES) - routes, f"probes of routes that are gone: {set(PROBES) - routes}"
    # The templates are the table's own patterns: the gateway routes a sample path of each
    # to the table entry it came from.
    for route in ROUTES:
        if route.table is None:
            with pytest.raises(NoRoute):
                classify(route.method, route.sample_path())
            continue
        target = classify(route.method, route.sample_path())
        assert (target.upstream, target.scope, target.kind) == route.table, route


def test_b_building_its_own_hbk_leaves_a_untouched(tenant_b: World) -> None:
    """B's ``hbk`` and A's ``x-hbk`` once shared a Chroma collection: B's document with A's id
    overwrote A's chunks."""
    assert tenant_b.b_setup_findings == [], "\n".join(tenant_b.b_setup_findings)


@pytest.mark.parametrize(
    "route", sorted(ROUTES, key=_run_order), ids=lambda r: f"{r.method} {r.template}"
)
def test_outsiders_cannot_reach_a_through(route: PublicRoute, tenant_b: World) -> None:
    world = tenant_b
    probe = PROBES.get(route.key)
    assert probe is not None, f"no isolation probe for {route.method} {route.template}"
    check = Check(route)
    for who in world.outsiders:
        probe(world, who, check)
    assert check.reached, f"the probe never sent {route.method} {route.template}"
    if route.method != "GET":  # a request that could write: A's data must not have moved
        now = a_view(world, full=False)
        check.findings += [
            f"after {route.method} {route.template}: {change}"
            for change in view_changes(world.baseline, now)
        ]
        world.baseline = now  # the next probe is judged on what it does itself
    assert check.findings == [], "\n".join(check.findings)


def test_a_data_is_intact_byte_for_byte(tenant_b: World) -> None:
    """Runs after every probe: each of A's documents, lists, searches, its session, its
    evaluation and its failed job answer exactly what they answered before."""
    changes = view_changes(tenant_b.original, a_view(tenant_b, full=True))
    assert changes == [], "\n".join(changes)
