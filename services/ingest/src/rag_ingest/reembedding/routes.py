"""/v1/collections/{name}/reembed: move a collection to another embedding model, live."""

from __future__ import annotations

import msgspec
from litestar import Controller, delete, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED
from rag_telemetry import current_request_id, current_traceparent

from rag_ingest.jobs.model import JobView
from rag_ingest.reembedding.service import ReembedService


class ReembedRequest(msgspec.Struct, forbid_unknown_fields=True):
    embedding_model: str


class ReembedController(Controller):
    path = "/v1/collections/{name:str}/reembed"
    tags = ["collections"]

    @post(
        "",
        status_code=HTTP_202_ACCEPTED,
        summary="Re-embed a collection with another model, without downtime",
    )
    async def start_reembedding(
        self,
        name: FromPath[str],
        data: JSONBody[ReembedRequest],
        reembedding: NamedDependency[ReembedService],
        tenant: NamedDependency[str],
    ) -> JobView:
        """A job (kind `reembed`) builds a shadow collection from the stored chunks with the new
        model while the collection serves as before, applies the writes made meanwhile, then
        switches at once. Follow it at /v1/jobs/{id} or /v1/jobs/{id}/events. The collection's
        own model is taken while some of its vectors are of an earlier revision of that model
        (the int8 model's former 8-bit weights): all are made again with the current one."""
        record = await reembedding.start(
            tenant,
            name,
            data.embedding_model,
            request_id=current_request_id(),
            traceparent=current_traceparent(),
        )
        return JobView.of(record)

    @delete("", status_code=HTTP_200_OK, summary="Cancel a collection's re-embedding")
    async def cancel_reembedding(
        self,
        name: FromPath[str],
        reembedding: NamedDependency[ReembedService],
        tenant: NamedDependency[str],
    ) -> JobView:
        """The collection keeps its model; the shadow collection is dropped."""
        return JobView.of(await reembedding.cancel(tenant, name))
