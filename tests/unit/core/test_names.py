"""Tenant and collection names: a trailing newline (which `$` lets through) is no valid name."""

from __future__ import annotations

import pytest
from rag_core.errors import InvalidInput
from rag_core.tenancy import check_tenant
from rag_ingest.collections.registry import validate_name


@pytest.mark.parametrize("tenant", ["t2\n", "acme\n", "\nacme", "ac\nme"])
def test_a_tenant_with_a_newline_is_refused_naming_the_field(tenant: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_tenant(tenant)
    assert refused.value.extra["errors"][0]["field"] == "tenant"


@pytest.mark.parametrize("name", ["auditi-nl\n", "handbook\n", "\nhandbook", "hand\nbook"])
def test_a_collection_name_with_a_newline_is_refused_naming_the_field(name: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        validate_name(name)
    assert refused.value.extra["errors"][0]["field"] == "name"


def test_the_names_without_it_are_still_valid() -> None:
    assert check_tenant("t2") == "t2"
    assert validate_name("auditi-nl") == "auditi-nl"
