"""No dependency may share its name with a top-level field of a JSON body: Litestar would
take that field's validation errors for errors in the server's own values and answer 500
instead of 400 (schemathesis found `answers` and `documents` this way)."""

from __future__ import annotations

import typing
from typing import Any

import msgspec
import pytest
from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from rag_config import GatewaySettings, IngestSettings, QuerySettings
from rag_gateway.app import create_app as gateway_app
from rag_ingest.app import create_app as ingest_app
from rag_query.app import create_app as query_app


def _body_fields(handler: HTTPRouteHandler) -> set[str]:
    data = handler.parsed_fn_signature.parameters.get("data")
    if data is None:
        return set()
    annotation: Any = data.annotation
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct):
        return set(annotation.__struct_fields__)
    return set()


@pytest.mark.parametrize(
    "app",
    [
        pytest.param(lambda: ingest_app(IngestSettings(_env_file=None)), id="ingest"),
        pytest.param(lambda: query_app(QuerySettings(_env_file=None)), id="query"),
        pytest.param(lambda: gateway_app(GatewaySettings(_env_file=None)), id="gateway"),
    ],
)
def test_no_dependency_is_named_like_a_body_field(app: Any) -> None:
    built: Litestar = app()
    checked = 0
    for route in built.routes:
        for handler in getattr(route, "route_handlers", []):
            fields = _body_fields(handler)
            if not fields:
                continue
            checked += 1
            clash = fields & set(handler.resolve_dependencies())
            assert clash == set(), f"{route.path}: dependencies named like body fields {clash}"
    assert checked > 0
