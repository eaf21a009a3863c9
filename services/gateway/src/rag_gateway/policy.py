"""The gateway's one policy point. Every /v1 route declares what it asks of its caller: the
forwarded ones in the route table (rag_gateway.routing: a scope, the collection in the path,
their kind's Policy), the gateway's own where they are defined (/v1/system: any valid
credential; /v1/admin/keys: the `admin` scope). ``admit`` applies it, in this order:

1. a valid credential (401); an administrator may act in another tenant (X-RAG-Tenant), and
   only the tenant changes: its key's collections, rate and quota still hold;
2. the route's scope (403);
3. one request off the caller's rate limit (429);
4. the collection the path names (404, the answer for a collection that does not exist);
5. an upload's place under the uploads-in-progress limits (429), taken before the daily ingest
   quota is spent, so that a refused upload uses none of it; then that quota (411 without a
   Content-Length, 429 over it), given back if the request is refused after all (here, or by
   its service: rag_gateway.forwarding); a route closed to keys limited to some collections
   (403).

Handlers receive the outcome as the dependency ``principal`` (the gateway's own routes) or
``admission`` (forwarded ones); /v1/admin/keys admits in a guard, before its body is read.
What only the body or the answer can tell (the collection a JSON field names, the one a job or
session belongs to, what a listing may show) the Admission judges when forwarding gets there,
from the same Policy."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qsl, urlencode

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from rag_core.errors import NotFound, RagError
from rag_core.quota import QuotaGrant
from rag_core.tenancy import TENANT_HEADER, check_tenant

from rag_gateway.auth.authenticate import Authenticator
from rag_gateway.auth.principal import Forbidden, Principal
from rag_gateway.limits import Limits, QuotaCharge
from rag_gateway.proxy import Forwarder, Whole, buffered
from rag_gateway.routing import Policy, Route, Upstream
from rag_gateway.streams import Lease, StreamLeases

# GET /v1/jobs for a key limited to some collections asks ingest once per collection: at most
# this many at a time, on the pool of ordinary requests. The page size is ingest's default.
JOB_LISTING_FAN_OUT = 8
JOB_PAGE_DEFAULT = 50


class ModelNotFound(NotFound):
    """As the query service says of a model that does not exist (OpenAI's code): a model of
    another collection must read the same."""

    problem = "model_not_found"


class LengthRequired(RagError):
    status_code = 411
    problem = "length-required"
    title = "Length required"


@dataclass(frozen=True)
class Admission:
    """A request let in: who asks, on which forwarded route, and what it holds."""

    principal: Principal
    route: Route | None = None  # None: one of the gateway's own routes
    upload: Lease | None = None  # its place under the uploads-in-progress limits
    ingest_grant: QuotaGrant | None = None  # whose daily ingest bytes it spends, and how many
    ingest_charge: QuotaCharge | None = None  # the bytes of its body counted against them

    @property
    def policy(self) -> Policy:
        return self.route.policy if self.route is not None else Policy()

    async def refund_ingest(self) -> None:
        """The request was refused (a 4xx or 5xx answer, or none): its body's bytes go back
        to the daily quota."""
        if self.ingest_charge is not None:
            await self.ingest_charge.refund()

    @property
    def limited(self) -> bool:
        """Whether the caller is limited to some collections of its tenant."""
        return self.principal.collections is not None

    @property
    def reads_body(self) -> bool:
        """Whether the body must be read for the collection it names."""
        return self.limited and self.policy.collection_field is not None

    @property
    def filters_answer(self) -> bool:
        """Whether the answer must be read for the collections it names."""
        return self.limited and self.policy.answer is not None

    def check_body(self, body: bytes) -> None:
        """404 unless the collection the JSON body names is one the caller may use."""
        field = self.policy.collection_field
        if not self.limited or field is None:
            return
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            return  # the upstream explains what is wrong with it
        if isinstance(data, dict):
            name = data.get(field)
            if isinstance(name, str):
                self.principal.require_collection(name.partition(":")[0])

    async def check_owner(self, forwarder: Forwarder, headers: dict[str, str]) -> None:
        """404 unless the job or chat session the path names belongs to a collection the
        caller may use (asked of the service that keeps it)."""
        route = self.route
        if not self.limited or route is None or route.policy.owner is None:
            return
        upstream: Upstream
        if route.policy.owner == "job":
            upstream, what, path = "ingest", f"job {route.job_id!r}", f"/v1/jobs/{route.job_id}"
        else:
            upstream, what = "query", f"session {route.session_id!r}"
            path = f"/v1/sessions/{route.session_id}"
        status, found = await forwarder.json(upstream, "GET", path, headers)
        if status != 200 or not self.principal.may_use(str(found.get("collection"))):
            raise NotFound(f"{what} does not exist (or has expired)")

    @property
    def lists_own_jobs(self) -> bool:
        """Whether the answer is a job listing the gateway assembles from the caller's own
        collections (a listing filtered after ingest paged it would miss jobs)."""
        return self.limited and self.policy.answer == "jobs"

    async def own_jobs(
        self, forwarder: Forwarder, headers: dict[str, str], query: str
    ) -> dict[str, Any] | Whole:
        """GET /v1/jobs as a key limited to some collections sees it: ingest lists each of them
        (`collection=`), and the pages are merged newest first, so `limit` and `next_before`
        count only the caller's jobs. A `collection` it may not use is 404, as one that does not
        exist; a refusal of the service (a bad `limit`) comes back as it is."""
        first: dict[str, str] = {}
        named: list[str] = []
        for key, value in parse_qsl(query, keep_blank_values=True):
            if key == "collection":
                named.append(value)
            else:
                first.setdefault(key, value)  # as the service reads a repeated parameter
        for name in named:
            self.principal.require_collection(name)
        first.setdefault("limit", str(JOB_PAGE_DEFAULT))
        wanted = sorted(set(named) or (self.principal.collections or frozenset()))
        if not wanted:  # a key limited to no collection at all
            return {"jobs": [], "next_before": None}
        slots = asyncio.Semaphore(JOB_LISTING_FAN_OUT)

        async def page(collection: str) -> Whole:
            path = "/v1/jobs?" + urlencode({**first, "collection": collection})
            async with slots:
                answer = await forwarder.exchange(
                    "ingest", "GET", path, headers, None, reads_only=True
                )
                return answer if isinstance(answer, Whole) else await buffered(answer)

        jobs: list[dict[str, Any]] = []
        for answer in await asyncio.gather(*(page(c) for c in wanted)):
            if answer.status != 200:
                return answer
            jobs += json.loads(answer.body)["jobs"]
        limit = int(first["limit"])  # the service took it: 1 to its maximum
        jobs.sort(key=lambda job: float(job["created_at"]), reverse=True)
        shown = [j for j in jobs[:limit] if self.principal.may_use(str(j["collection"]))]
        return {
            "jobs": shown,
            "next_before": jobs[limit - 1]["created_at"] if len(jobs) >= limit else None,
        }

    def visible(self, body: Any) -> Any:
        """The answer (decoded JSON) as the caller may see it: listings keep only its
        collections' items; a model or an evaluation of another collection is 404."""
        principal, answer = self.principal, self.policy.answer
        if answer == "collections":
            body["collections"] = [c for c in body["collections"] if principal.may_use(c["name"])]
        elif answer == "jobs":
            body["jobs"] = [j for j in body["jobs"] if principal.may_use(j["collection"])]
        elif answer == "models":
            body["data"] = [m for m in body["data"] if principal.may_use(m["id"].partition(":")[0])]
        elif answer == "model":
            model = str(body.get("id"))
            if not principal.may_use(model.partition(":")[0]):
                raise ModelNotFound(f"the model {model!r} does not exist")
        elif answer == "evaluation":
            principal.require_collection(str(body.get("collection")))
        return body


async def admit(
    connection: ASGIConnection[Any, Any, Any, Any], scope: str | None, route: Route | None = None
) -> Admission:
    """Let the request in under its route's policy, in the module's order, or refuse it.
    ``scope`` None: any valid credential; ``route``: the route table's entry, if forwarded."""
    state = connection.app.state
    limits: Limits = state.limits
    principal = await _caller(connection, state.authenticator)
    if scope is not None:
        principal.require(scope)
    await limits.request(principal)
    if route is None:
        return Admission(principal)
    if route.collection is not None:
        principal.require_collection(route.collection)
    policy = route.policy
    grant = limits.ingest_grant(principal) if policy.ingest_quota else None
    uploads: StreamLeases = state.upload_leases
    upload = await uploads.open(principal) if policy.upload else None
    charge: QuotaCharge | None = None
    try:
        if grant is not None:
            charge = await _spend_ingest_quota(connection, limits, principal)
        if policy.closed_to_limited_keys is not None and principal.collections is not None:
            raise Forbidden(policy.closed_to_limited_keys)
    except BaseException:
        if charge is not None:
            await charge.refund()
        if upload is not None:
            upload.close()
        raise
    return Admission(principal, route, upload, grant, charge)


async def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    """The dependency ``principal`` of the gateway's own routes: any valid credential."""
    return (await admit(request, None)).principal


async def provide_admission(
    request: Request[Any, Any, Any], target: NamedDependency[Route]
) -> Admission:
    """The dependency ``admission`` of a forwarded route, under the route table's policy."""
    return await admit(request, target.scope, target)


async def _caller(
    connection: ASGIConnection[Any, Any, Any, Any], authenticator: Authenticator
) -> Principal:
    principal = await authenticator.authenticate(
        connection.headers.get("authorization"), connection.headers.get("x-api-key")
    )
    acting_as = connection.headers.get(TENANT_HEADER)
    if acting_as and "admin" in principal.scopes:
        # An administrator may act in any tenant; for anyone else the header is ignored. Only
        # the tenant changes: the key's collections, rate and quota still hold.
        principal = replace(principal, tenant=check_tenant(acting_as, TENANT_HEADER))
    return principal


async def _spend_ingest_quota(
    connection: ASGIConnection[Any, Any, Any, Any], limits: Limits, principal: Principal
) -> QuotaCharge:
    length = connection.headers.get("content-length")
    if length is None or not length.isdigit():
        raise LengthRequired(
            "send documents with a Content-Length (it counts against the daily quota)"
        )
    return await limits.ingest_bytes(principal, int(length))
