"""What a credential's limits still hold through the front door: an admin key limited to some
collections (or to its tenant) mints, lists and revokes no key more powerful than itself; a
limited key's job listing pages through its own jobs and nothing else; a refused upload spends
none of the daily quota; a name with a trailing newline is refused."""

from __future__ import annotations

import secrets

import httpx
import pytest

from tests.e2e.gateway.conftest import Edge, make_jwt

pytestmark = pytest.mark.e2e


def _tenant(what: str) -> str:
    return f"{what}-{secrets.token_hex(4)}"


def _problem(response: httpx.Response, status: int, field: str) -> None:
    """A problem+json ``status`` that names ``field``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in response.text, response.text


def _post_document(edge: Edge, auth: dict[str, str], collection: str, doc_id: str) -> str:
    posted = edge.http.post(
        f"/v1/collections/{collection}/documents",
        json={"documents": [{"id": doc_id, "text": f"Notes on {doc_id} and its enzymes."}]},
        headers=auth,
    )
    assert posted.status_code == 202, posted.text
    job_id: str = posted.json()["jobs"][0]["job_id"]
    assert edge.wait_job(job_id, auth)["state"] == "succeeded"
    return job_id


def _collections(edge: Edge, auth: dict[str, str], *names: str) -> None:
    for name in names:
        created = edge.http.post("/v1/collections", json={"name": name}, headers=auth)
        assert created.status_code == 201, created.text


# Defect: a collection-limited admin key minted an unlimited key -------------------------------


def test_a_limited_admin_key_mints_no_key_more_powerful_than_itself(edge: Edge) -> None:
    tenant = _tenant("mint")
    owner = edge.bearer(edge.new_key(tenant, ["ingest:write"]))
    _collections(edge, owner, "open", "secret")
    _post_document(edge, owner, "secret", "s1")
    limited_admin = edge.bearer(
        edge.new_key(tenant, ["admin"], collections=["open"], requests_per_minute=1000)
    )
    assert (
        edge.http.get("/v1/collections/secret/documents/s1", headers=limited_admin).status_code
        == 404
    )

    def mint(**body: object) -> httpx.Response:
        return edge.http.post("/v1/admin/keys", json=body, headers=limited_admin)

    # Every collection (no `collections`), or one it may not use itself: refused.
    _problem(mint(tenant=tenant, scopes=["ingest:read"]), 403, "collections")
    _problem(
        mint(tenant=tenant, scopes=["ingest:read"], collections=["secret"]), 403, "collections"
    )
    _problem(
        mint(tenant=tenant, scopes=["ingest:read"], collections=["open", "secret"]),
        403,
        "collections",
    )
    # Another tenant than the one it acts in, a higher rate than its own: refused.
    _problem(
        mint(tenant=_tenant("other"), scopes=["ingest:read"], collections=["open"]), 403, "tenant"
    )
    _problem(
        mint(tenant=tenant, scopes=["ingest:read"], collections=["open"], requests_per_minute=5000),
        403,
        "requests_per_minute",
    )
    # A credential on the deployment's rate (RATE_LIMIT_PER_MINUTE, 1,000,000 here) makes no
    # key above it either.
    on_default = edge.bearer(edge.new_key(tenant, ["admin"], collections=["open"]))
    above = {"tenant": tenant, "scopes": ["ingest:read"], "collections": ["open"]}
    _problem(
        edge.http.post(
            "/v1/admin/keys", json={**above, "requests_per_minute": 2_000_000}, headers=on_default
        ),
        403,
        "requests_per_minute",
    )
    # Within its own limits: made, and the new key cannot read the secret collection either.
    made = mint(tenant=tenant, scopes=["ingest:read"], collections=["open"])
    assert made.status_code == 201, made.text
    child = edge.bearer(made.json()["key"])
    assert edge.http.get("/v1/collections/secret/documents/s1", headers=child).status_code == 404
    assert edge.http.get("/v1/collections/open/documents", headers=child).status_code == 200


def test_a_tenant_admin_key_lists_and_revokes_only_keys_it_could_have_made(edge: Edge) -> None:
    tenant, elsewhere = _tenant("keys"), _tenant("keys-other")
    unlimited = edge.new_key(tenant, ["ingest:read"], name="unlimited")
    foreign = edge.new_key(elsewhere, ["ingest:read"], name="foreign")
    within = edge.new_key(tenant, ["ingest:read"], name="within", collections=["open"])
    limited_admin = edge.bearer(edge.new_key(tenant, ["admin"], collections=["open"]))
    tenant_admin = edge.bearer(edge.new_key(tenant, ["admin"]))

    def listed(auth: dict[str, str], query: str = "") -> set[str]:
        answer = edge.http.get(f"/v1/admin/keys{query}", headers=auth)
        assert answer.status_code == 200, answer.text
        return {k["id"] for k in answer.json()["keys"]}

    def key_id(key: str) -> str:
        return key.split("_")[1]

    seen = listed(limited_admin)
    assert key_id(within) in seen
    assert key_id(unlimited) not in seen, "a key with every collection of the tenant is listed"
    assert key_id(foreign) not in seen, "another tenant's key is listed"
    # A tenant's admin key (every collection) sees its tenant's keys, no other tenant's.
    seen = listed(tenant_admin)
    assert {key_id(within), key_id(unlimited)} <= seen
    assert key_id(foreign) not in seen, "another tenant's key is listed"
    _problem(
        edge.http.get(f"/v1/admin/keys?tenant={elsewhere}", headers=tenant_admin), 403, "tenant"
    )
    # Acting in the other tenant (X-RAG-Tenant), it is that tenant's keys it sees.
    assert key_id(foreign) in listed({**tenant_admin, "X-RAG-Tenant": elsewhere})
    # Revoking a key it could not have made is as for a key that does not exist.
    refused = edge.http.delete(f"/v1/admin/keys/{key_id(unlimited)}", headers=limited_admin)
    _problem(refused, 404, key_id(unlimited))
    assert edge.http.get("/v1/collections", headers=edge.bearer(unlimited)).status_code == 200
    revoked = edge.http.delete(f"/v1/admin/keys/{key_id(within)}", headers=limited_admin)
    assert revoked.status_code == 200, revoked.text
    assert edge.http.get("/v1/collections", headers=edge.bearer(within)).status_code == 401
    # The bootstrap admin still sees every tenant's keys.
    assert {key_id(foreign), key_id(unlimited)} <= listed(edge.admin())


# Defect: a limited key's job listing was paged before it was filtered -------------------------


def test_a_limited_keys_job_listing_pages_through_its_own_jobs_only(edge: Edge) -> None:
    tenant = _tenant("jobs")
    owner = edge.bearer(edge.new_key(tenant, ["ingest:write"]))
    _collections(edge, owner, "mine", "secret")
    older = _post_document(edge, owner, "mine", "m1")
    _post_document(edge, owner, "secret", "s1")
    newer = _post_document(edge, owner, "mine", "m2")
    _post_document(edge, owner, "secret", "s2")
    _post_document(edge, owner, "secret", "s3")
    limited = edge.bearer(edge.new_key(tenant, ["ingest:read"], collections=["mine"]))

    def page(query: str) -> dict:
        answer = edge.http.get(f"/v1/jobs?{query}", headers=limited)
        assert answer.status_code == 200, answer.text
        body: dict = answer.json()
        return body

    first = page("limit=1")
    assert [j["id"] for j in first["jobs"]] == [newer]
    assert first["next_before"] is not None
    second = page(f"limit=1&before={first['next_before']}")
    assert [j["id"] for j in second["jobs"]] == [older]
    third = page(f"limit=1&before={second['next_before']}")
    assert third == {"jobs": [], "next_before": None}
    everything = page("limit=50")
    assert [j["id"] for j in everything["jobs"]] == [newer, older]
    assert everything["next_before"] is None
    assert [j["id"] for j in page("state=succeeded&limit=5")["jobs"]] == [newer, older]
    # A collection it may not use answers as one that does not exist: 404, nothing about it.
    for query in (
        "collection=secret&limit=1",
        "collection=nowhere",
        "collection=mine&collection=secret",
    ):
        _problem(edge.http.get(f"/v1/jobs?{query}", headers=limited), 404, "does not exist")
    assert [j["id"] for j in page("collection=mine")["jobs"]] == [newer, older]
    # Bad paging input is still the service's 4xx naming the field.
    _problem(edge.http.get("/v1/jobs?limit=0", headers=limited), 400, "limit")


# Defect: refused uploads spent the daily ingest quota ----------------------------------------


def test_a_refused_upload_spends_none_of_the_daily_quota(edge: Edge) -> None:
    tenant = _tenant("quota")
    auth = edge.bearer(edge.new_key(tenant, ["ingest:write"], ingest_bytes_per_day=3000))
    _collections(edge, auth, "docs")
    filler = "x" * 1300
    bad_metadata = {"documents": [{"text": filler, "metadata": {"nested": {"no": 1}}}]}
    for _ in range(2):
        refused = edge.http.post("/v1/collections/docs/documents", json=bad_metadata, headers=auth)
        assert refused.status_code in (400, 422), refused.text
    missing = {"documents": [{"text": filler}]}
    refused = edge.http.post("/v1/collections/nowhere/documents", json=missing, headers=auth)
    assert refused.status_code == 404, refused.text
    # 4 KB refused so far; the quota of 3000 bytes is untouched.
    accepted = edge.http.post(
        "/v1/collections/docs/documents", json={"documents": [{"text": filler}]}, headers=auth
    )
    assert accepted.status_code == 202, accepted.text
    accepted = edge.http.post(
        "/v1/collections/docs/documents", json={"documents": [{"text": filler}]}, headers=auth
    )
    assert accepted.status_code == 202, accepted.text
    # What was stored does count: a third 1.3 KB would pass 3000 bytes.
    over = edge.http.post(
        "/v1/collections/docs/documents", json={"documents": [{"text": filler}]}, headers=auth
    )
    assert over.status_code == 429, over.text


# Defect: names with a trailing newline passed validation -------------------------------------


def test_names_with_a_trailing_newline_are_refused(edge: Edge) -> None:
    made = edge.http.post(
        "/v1/admin/keys", json={"tenant": "t2\n", "scopes": ["ingest:read"]}, headers=edge.admin()
    )
    _problem(made, 422, "tenant")
    auth = edge.bearer(edge.new_key(_tenant("newline"), ["ingest:write"]))
    created = edge.http.post("/v1/collections", json={"name": "auditi-nl\n"}, headers=auth)
    _problem(created, 422, "name")
    # A token whose tenant claim ends in a newline is no valid credential (it was a 500).
    token = edge.bearer(make_jwt("t2\n", "ingest:read"))
    _problem(edge.http.get("/v1/collections", headers=token), 401, "tenant")


def test_a_key_names_only_collections_that_can_exist(edge: Edge) -> None:
    """Names no collection can have ("", "NOT VALID/NAME") were kept as written (201)."""
    tenant = _tenant("names")
    for names, field in ((["ok-1", ""], "collections[1]"), (["NOT VALID/NAME"], "collections[0]")):
        made = edge.http.post(
            "/v1/admin/keys",
            json={"tenant": tenant, "scopes": ["ingest:read"], "collections": names},
            headers=edge.admin(),
        )
        _problem(made, 422, field)
        assert made.json()["errors"][0]["field"] == field
