"""The gateway's anchored patterns match whole strings: `$` also matches before a final
newline, so a path, an API key or a token with one must not pass for the one without it."""

from __future__ import annotations

import pytest
from rag_gateway.auth.authenticate import _JWT_SHAPE
from rag_gateway.auth.keys import KEY_PATTERN
from rag_gateway.routing import NoRoute, classify

KEY = "rag_0123456789abcdef_" + "s" * 40


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/jobs\n"), ("GET", "/v1/collections\n"), ("POST", "/v1/chat/completions\n")],
)
def test_a_path_with_a_trailing_newline_is_not_a_route(method: str, path: str) -> None:
    assert classify(method, path.rstrip("\n")).upstream in ("ingest", "query")
    with pytest.raises(NoRoute):
        classify(method, path)


def test_a_key_or_token_with_a_trailing_newline_has_not_their_shape() -> None:
    assert KEY_PATTERN.match(KEY)
    assert KEY_PATTERN.match(KEY + "\n") is None
    assert _JWT_SHAPE.match("a.b.c")
    assert _JWT_SHAPE.match("a.b.c\n") is None
