"""The SDK's models against the services' OpenAPI documents: a field the API adds, renames or
drops must reach the SDK (its Chunk once dropped `content_hash`). Responses the API does not
declare yet (answers, accepted batches) are not listed: issue 16, part 2."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from rag_client import models
from rag_gateway.app import create_app as gateway_app
from rag_ingest.app import create_app as ingest_app
from rag_query.app import create_app as query_app

# SDK model -> the schema of the response it reads, in the services' OpenAPI documents.
RESPONSES: dict[type[msgspec.Struct], str] = {
    models.ApiKey: "KeyOut",
    models.Chunk: "ChunkOut",
    models.Collection: "CollectionOut",
    models.Document: "DocumentOut",
    models.DocumentPage: "DocumentPage",
    models.Job: "JobView",
    models.JobPage: "JobList",
    models.QueueState: "QueueState",
    models.Scores: "Scores",
    models.SearchHit: "SearchHit",
    models.SearchResult: "SearchResponse",
    models.ServiceState: "ServiceState",
    models.SystemInfo: "SystemInfo",
}


@pytest.fixture(scope="module")
def schemas() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for create_app in (ingest_app, query_app, gateway_app):
        found.update(create_app().openapi_schema.to_schema()["components"]["schemas"])
    return found


@pytest.mark.parametrize("model", RESPONSES, ids=lambda model: model.__name__)
def test_each_sdk_model_reads_every_field_of_its_response(
    model: type[msgspec.Struct], schemas: dict[str, Any]
) -> None:
    declared = set(schemas[RESPONSES[model]]["properties"])
    read = {field.encode_name for field in msgspec.structs.fields(model)}
    assert read == declared, {"not in the SDK": declared - read, "not in the API": read - declared}
