"""The SDK's models against the services' OpenAPI documents: a field the API adds, renames or
drops must reach the SDK (its Chunk once dropped `content_hash`). And every route declares what
it answers, so that the document (the gateway merges the three by schema name) is the contract."""

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
    models.Answer: "AnswerOut",
    models.Accepted: "IngestAccepted",
    models.ApiKey: "KeyOut",
    models.Chunk: "ChunkOut",
    models.Collection: "CollectionOut",
    models.Document: "DocumentOut",
    models.DocumentPage: "DocumentPage",
    models.Job: "JobView",
    models.JobPage: "JobList",
    models.JobRef: "JobRef",
    models.QueueState: "QueueState",
    models.Scores: "Scores",
    models.SearchHit: "SearchHit",
    models.SearchResult: "SearchResponse",
    models.ServiceState: "ServiceState",
    models.Source: "SourceOut",
    models.SystemInfo: "SystemInfo",
    models.Usage: "TokenUsage",
}
# Success responses without a declared model, until the routes that send them have one.
UNDECLARED: set[tuple[str, str, str]] = set()
APPS = {"ingest": ingest_app, "query": query_app, "gateway": gateway_app}


@pytest.fixture(scope="module")
def documents() -> dict[str, dict[str, Any]]:
    return {name: create_app().openapi_schema.to_schema() for name, create_app in APPS.items()}


@pytest.fixture(scope="module")
def schemas(documents: dict[str, dict[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for document in documents.values():
        found.update(document["components"]["schemas"])
    return found


@pytest.mark.parametrize("model", RESPONSES, ids=lambda model: model.__name__)
def test_each_sdk_model_reads_every_field_of_its_response(
    model: type[msgspec.Struct], schemas: dict[str, Any]
) -> None:
    declared = set(schemas[RESPONSES[model]]["properties"])
    read = {field.encode_name for field in msgspec.structs.fields(model)}
    assert read == declared, {"not in the SDK": declared - read, "not in the API": read - declared}


def test_every_route_declares_the_model_it_answers(documents: dict[str, dict[str, Any]]) -> None:
    undeclared = set()
    for service, document in documents.items():
        for path, operations in document["paths"].items():
            for method, operation in operations.items():
                for status, response in operation.get("responses", {}).items():
                    for media, content in (response.get("content") or {}).items():
                        declared = "$ref" in content.get("schema", {}) or (
                            media == "text/event-stream"
                        )
                        if status.startswith("2") and not declared:
                            undeclared.add((service, method.upper(), path))
    assert undeclared == UNDECLARED, {
        "undeclared": undeclared - UNDECLARED,
        "declared now (take them off UNDECLARED)": UNDECLARED - undeclared,
    }


def test_no_two_services_declare_different_schemas_under_one_name(
    documents: dict[str, dict[str, Any]],
) -> None:
    """The gateway's public document merges the services' schemas by name: a second
    definition would silently replace the first."""
    seen: dict[str, tuple[str, Any]] = {}
    for service, document in documents.items():
        for name, schema in document["components"]["schemas"].items():
            first = seen.setdefault(name, (service, schema))
            assert first[1] == schema, f"{name}: {first[0]} and {service} differ"
