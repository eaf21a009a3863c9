"""Redis keys are built in one place (``Keys``) from validated parts, and no two tenants'
keys can meet: generated tenant, collection and document names, colliding shapes included
(``acme`` + ``x-hbk`` against ``acme-x`` + ``hbk``)."""

from __future__ import annotations

import fnmatch
import inspect
from dataclasses import fields

from hypothesis import example, given, settings
from hypothesis import strategies as st
from rag_core.catalog import Keys
from rag_core.tenancy import TENANT_PATTERN
from rag_ingest.collections.registry import NAME_PATTERN
from rag_ingest.submissions import valid_document_id

KEYS = Keys("rag")
tenants = st.from_regex(TENANT_PATTERN, fullmatch=True)
collections = st.from_regex(NAME_PATTERN, fullmatch=True)
documents = st.text(
    st.characters(exclude_categories=("Cc", "Cs", "Zs"), exclude_characters="/\\?#%"),
    min_size=1,
    max_size=256,
).filter(valid_document_id)
# Shapes that collide when names are joined with '-': tenant "a-b" + "c" against "a" + "b-c".
dashed = st.sampled_from(["acme", "acme-x", "x-hbk", "hbk", "hbk-x", "a_b", "a-b", "b-c", "abc"])
places = st.tuples(tenants | dashed, collections | dashed.filter(NAME_PATTERN.match))


def test_keys_hold_no_tenant_of_their_own() -> None:
    """A store is told whose data each call is about: ``Keys`` has no tenant to fall back to,
    and every key of a tenant's data takes the tenant first."""
    assert [f.name for f in fields(Keys)] == ["prefix"]
    takes_tenant = [
        name
        for name, method in inspect.getmembers(Keys, inspect.isfunction)
        if "tenant" in inspect.signature(method).parameters
    ]
    assert len(takes_tenant) >= 20
    for name in takes_tenant:
        first = list(inspect.signature(getattr(Keys, name)).parameters)[1]
        assert first == "tenant", name


@settings(max_examples=300, deadline=None)
@given(places, places, documents, documents)
@example(("acme", "x-hbk"), ("acme-x", "hbk"), "d", "d")
@example(("acme", "hbk"), ("acme", "hbk-x"), "d", "d")
@example(("a", "b-c"), ("a-b", "c"), "d", "d")
def test_two_places_never_share_a_key(
    one: tuple[str, str], two: tuple[str, str], doc_one: str, doc_two: str
) -> None:
    if (one, doc_one) == (two, doc_two):
        return
    assert KEYS.document(*one, doc_one) != KEYS.document(*two, doc_two)
    assert KEYS.document_sequence(*one, doc_one) != KEYS.document_sequence(*two, doc_two)
    if one != two:
        for build in (Keys.collection, Keys.documents, Keys.content_hashes, Keys.changes):
            assert build(KEYS, *one) != build(KEYS, *two), build.__name__
        assert KEYS.jobs_by_collection(*one) != KEYS.jobs_by_collection(*two)
        # Deleting one collection's per-document keys (a SCAN by pattern) never reaches into
        # another's, whatever the document ids.
        for pattern in KEYS.per_document_patterns(*one):
            assert not fnmatch.fnmatchcase(KEYS.document(*two, doc_two), pattern)
            assert not fnmatch.fnmatchcase(KEYS.document_sequence(*two, doc_two), pattern)


@settings(max_examples=200, deadline=None)
@given(tenants | dashed, tenants | dashed, st.text(min_size=1, max_size=20))
def test_per_tenant_sets_never_meet(tenant: str, other: str, free: str) -> None:
    if tenant == other:
        return
    for build in (Keys.collections, Keys.jobs_all, Keys.tenant_streams, Keys.evaluation_slots):
        assert build(KEYS, tenant) != build(KEYS, other), build.__name__
    assert KEYS.session(tenant, free) != KEYS.session(other, free)
    assert KEYS.idempotency(tenant, free) != KEYS.idempotency(other, free)
    assert KEYS.evaluation(tenant, free) != KEYS.evaluation(other, free)
