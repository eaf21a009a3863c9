"""The search request's static limits are in the OpenAPI document, and they are the limits the
service enforces: a value just past a documented bound is a 422 naming the field; the bound
itself is accepted."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from rag_config import QuerySettings
from rag_core.errors import InvalidInput
from rag_query.app import create_app
from rag_query.retrieval.routes import SearchBody, search_request

BOUNDED = ("mmr_lambda", "rrf_k", "dense_weight", "lexical_weight")


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    document = create_app(QuerySettings(_env_file=None)).openapi_schema.to_schema()
    properties: dict[str, Any] = document["components"]["schemas"]["SearchBody"]["properties"]
    return properties


@pytest.mark.parametrize("field", BOUNDED)
def test_documented_bounds_are_the_enforced_ones(field: str, schema: dict[str, Any]) -> None:
    settings = QuerySettings(_env_file=None)
    low, high = schema[field]["minimum"], schema[field]["maximum"]
    step = 1 if isinstance(low, int) and isinstance(high, int) else 0.001
    for accepted in (low, high):
        body = msgspec.convert({"query": "q", field: accepted}, SearchBody)
        search_request(body, settings)
    for refused in (low - step, high + step):
        body = msgspec.convert({"query": "q", field: refused}, SearchBody)
        with pytest.raises(InvalidInput) as caught:
            search_request(body, settings)
        assert caught.value.extra["errors"][0]["field"] == field


def test_top_k_documents_its_lower_bound(schema: dict[str, Any]) -> None:
    assert schema["top_k"]["minimum"] == 1
    body = msgspec.convert({"query": "q", "top_k": 0}, SearchBody)
    with pytest.raises(InvalidInput):
        search_request(body, QuerySettings(_env_file=None))
