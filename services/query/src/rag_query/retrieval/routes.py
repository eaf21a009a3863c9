"""POST /v1/collections/{collection}/search: ranked passages with scores and metadata."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, KwargDefinition
from litestar.status_codes import HTTP_200_OK
from rag_config import QuerySettings
from rag_core.catalog import CollectionCatalog
from rag_core.errors import InvalidInput
from rag_core.filters import validate_filter

from rag_query.retrieval.search import Hit, Retriever, SearchRequest

# The static limits of a search, checked by search_request (a 422 naming the field) and shown
# in the OpenAPI document. (KwargDefinition only documents; a bound of 0 goes through
# schema_extra, which Litestar would otherwise drop as unset.)
MMR_LAMBDA = (0.0, 1.0)
RRF_K = (1, 1000)
WEIGHT = (0.0, 10.0)


def _between(low: float, high: float, description: str) -> KwargDefinition:
    return KwargDefinition(schema_extra={"minimum": low, "maximum": high}, description=description)


class SearchBody(msgspec.Struct, forbid_unknown_fields=True):
    query: Annotated[str, KwargDefinition(description="At most MAX_QUERY_CHARS characters")]
    top_k: Annotated[
        int, KwargDefinition(schema_extra={"minimum": 1}, description="1 to MAX_TOP_K")
    ] = 10
    mode: Literal["hybrid", "dense", "lexical"] | None = None
    filter: dict[str, Any] | None = None
    mmr: bool = False
    mmr_lambda: Annotated[
        float | None, _between(*MMR_LAMBDA, "MMR: 1 is relevance only, 0 diversity only")
    ] = None
    fusion: Annotated[
        Literal["rrf", "convex"] | None,
        KwargDefinition(
            description="How hybrid combines its two lists: reciprocal ranks (`rrf`) or a "
            "weighted sum of normalised scores (`convex`); default FUSION"
        ),
    ] = None
    rrf_k: Annotated[int | None, _between(*RRF_K, "Reciprocal rank fusion's k")] = None
    dense_weight: Annotated[float | None, _between(*WEIGHT, "Weight of the dense ranking")] = None
    lexical_weight: Annotated[float | None, _between(*WEIGHT, "Weight of the lexical ranking")] = (
        None
    )
    max_per_document: Annotated[
        int | None,
        KwargDefinition(
            schema_extra={"minimum": 1},
            description="At most this many hits of one document (1: each document once, at "
            "its best chunk)",
        ),
    ] = None


class Scores(msgspec.Struct, omit_defaults=True):
    dense: float | None = None
    lexical: float | None = None
    dense_rank: int | None = None
    lexical_rank: int | None = None


class SearchHit(msgspec.Struct, omit_defaults=True):
    chunk_id: str
    document_id: str
    score: float
    text: str
    position: int
    scores: Scores
    metadata: dict[str, Any]
    source: str | None = None
    title: str | None = None
    page: int | None = None
    heading: str | None = None

    @classmethod
    def of(cls, hit: Hit) -> SearchHit:
        chunk = hit.chunk
        assert chunk is not None, "the retriever returns completed hits only"
        return cls(
            chunk_id=hit.chunk_id,
            document_id=chunk.document_id,
            score=round(hit.score, 6),
            text=chunk.text,
            position=chunk.position,
            scores=Scores(hit.dense_score, hit.lexical_score, hit.dense_rank, hit.lexical_rank),
            metadata=dict(chunk.metadata),
            source=chunk.source,
            title=chunk.title,
            page=chunk.page,
            heading=chunk.heading,
        )


class SearchResponse(msgspec.Struct):
    collection: str
    query: str
    mode: str
    results: list[SearchHit]
    timings: dict[str, float]


def search_request(body: SearchBody, settings: QuerySettings) -> SearchRequest:
    """A validated search: every bad value is a 422 naming its field."""
    query, top_k = body.query, body.top_k
    if not query.strip():
        raise InvalidInput.for_field("query", "must not be empty")
    if len(query) > settings.max_query_chars:
        raise InvalidInput.for_field(
            "query", f"longer than {settings.max_query_chars} characters (MAX_QUERY_CHARS)"
        )
    if not 1 <= top_k <= settings.max_top_k:
        raise InvalidInput.for_field("top_k", f"must be 1-{settings.max_top_k} (MAX_TOP_K)")
    if body.mmr_lambda is not None and not MMR_LAMBDA[0] <= body.mmr_lambda <= MMR_LAMBDA[1]:
        raise InvalidInput.for_field("mmr_lambda", "must be between 0 and 1")
    if body.rrf_k is not None and not RRF_K[0] <= body.rrf_k <= RRF_K[1]:
        raise InvalidInput.for_field("rrf_k", f"must be {RRF_K[0]}-{RRF_K[1]}")
    weights = (("dense_weight", body.dense_weight), ("lexical_weight", body.lexical_weight))
    for name, weight in weights:
        if weight is not None and not WEIGHT[0] <= weight <= WEIGHT[1]:
            raise InvalidInput.for_field(name, "must be between 0 and 10")
    if body.max_per_document is not None and body.max_per_document < 1:
        raise InvalidInput.for_field("max_per_document", "must be at least 1")
    fusion = body.fusion or settings.fusion
    if fusion == "convex" and body.dense_weight is None and body.lexical_weight is None:
        dense_weight, lexical_weight = settings.convex_dense_share, 1 - settings.convex_dense_share
    else:  # weights the request sets are relative, in either fusion
        dense_weight = settings.dense_weight if body.dense_weight is None else body.dense_weight
        lexical_weight = (
            settings.lexical_weight if body.lexical_weight is None else body.lexical_weight
        )
    return SearchRequest(
        query=query,
        top_k=top_k,
        mode=body.mode or settings.search_mode,
        where=validate_filter(body.filter, path="filter") if body.filter is not None else None,
        mmr=body.mmr,
        mmr_lambda=settings.mmr_lambda if body.mmr_lambda is None else body.mmr_lambda,
        rrf_k=body.rrf_k or settings.rrf_k,
        fusion=fusion,
        dense_weight=dense_weight,
        lexical_weight=lexical_weight,
        # One hit per document needs more chunks to choose from (a document has several).
        candidates=max(
            settings.search_candidates, top_k * (2 if body.max_per_document is not None else 1)
        ),
        max_per_document=body.max_per_document,
    )


class SearchController(Controller):
    path = "/v1/collections/{collection:str}/search"
    tags = ["search"]

    @post("", status_code=HTTP_200_OK, summary="Search a collection (hybrid, dense or lexical)")
    async def search(
        self,
        collection: FromPath[str],
        data: JSONBody[SearchBody],
        catalog: NamedDependency[CollectionCatalog],
        retriever: NamedDependency[Retriever],
        settings: NamedDependency[QuerySettings],
        tenant: NamedDependency[str],
    ) -> SearchResponse:
        """Dense and BM25 retrieval fused by reciprocal rank, an optional metadata `filter`
        ($eq $ne $gt $gte $lt $lte $in $nin $and $or) and optional MMR diversity."""
        request = search_request(data, settings)
        found = await catalog.get(tenant, collection)
        result = await retriever.search(found, request)
        return SearchResponse(
            collection,
            data.query,
            request.mode,
            [SearchHit.of(h) for h in result.hits],
            result.timings,
        )
