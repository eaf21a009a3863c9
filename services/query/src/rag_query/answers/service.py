"""Answering: prepare (session, cache, retrieval with strategy and rerank, sources), then
generate with the fallback chain, as a stream of typed events.

Preparing raises ordinary errors (404, 422, 503), so a request that cannot be answered gets a
problem response before any stream starts. Once generation streams, a failure becomes an
``error`` event; before the first token, the next generator of the chain takes over.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from rag_config import QuerySettings
from rag_core.catalog import Collection, CollectionCatalog
from rag_core.embedding.models import MODELS
from rag_core.errors import DependencyUnavailable, InvalidInput
from rag_core.tokens import count_tokens
from rag_telemetry import get_logger

from rag_query.answers.cache import AnswerCache
from rag_query.answers.generators import Generators
from rag_query.answers.sessions import SessionStore
from rag_query.generation.base import GenerationError, Message, Usage, word_pieces
from rag_query.generation.extractive import ExtractiveGenerator
from rag_query.generation.prompts import Prompts
from rag_query.generation.sources import Source, cited_numbers, select_sources
from rag_query.metrics import GENERATION_SECONDS, TOKENS, UNCITED_ANSWERS
from rag_query.retrieval.analyzer import Analyzer
from rag_query.retrieval.fusion import fuse_rankings
from rag_query.retrieval.history import history_queries
from rag_query.retrieval.rerank import (
    RERANK_CANDIDATES,
    CohereReranker,
    Reranker,
    rerank_with_llm,
)
from rag_query.retrieval.search import Hit, Retriever, SearchRequest
from rag_query.retrieval.served import ServedCollections
from rag_query.retrieval.strategies import Strategy, rewrite

log = get_logger("rag.answers")


@dataclass(frozen=True)
class AnswerOptions:
    search: SearchRequest
    generator: str | None = None
    strategy: Strategy = "none"
    rerank: Reranker = "none"
    session_id: str | None = None
    use_cache: bool = True
    history: tuple[Message, ...] = ()  # earlier turns the caller sent (OpenAI chat)


@dataclass
class SourcesEvent:
    sources: list[dict[str, Any]]


@dataclass
class TokenEvent:
    text: str


@dataclass
class DoneEvent:
    result: dict[str, Any]


@dataclass
class ErrorEvent:
    message: str
    transient: bool


Event = SourcesEvent | TokenEvent | DoneEvent | ErrorEvent


@dataclass
class Prepared:
    collection: Collection
    options: AnswerOptions
    question: str  # standalone (rewritten from the session's history when an LLM can)
    history: list[Message]
    sources: list[Source]
    timings: dict[str, float]
    rewrites: list[str] = field(default_factory=list)
    cache_key: str | None = None
    cached: dict[str, Any] | None = None
    llm_usage: Usage = field(default_factory=Usage)
    warnings: list[str] = field(default_factory=list)
    condensed: bool = False  # an LLM made ``question`` standalone

    def degrade(self, step: str, exc: Exception) -> None:
        """An optional LLM step failed: carry on without it, and say so in the answer."""
        log.warning("optional_step_failed", step=step, error=str(exc))
        self.warnings.append(f"{step} skipped: {exc}")


def source_dict(source: Source) -> dict[str, Any]:
    found = {
        "number": source.number,
        "chunk_id": source.chunk_id,
        "document_id": source.document_id,
        "title": source.title,
        "source": source.source,
        "page": source.page,
        "heading": source.heading,
        "quote": source.text,
    }
    return {k: v for k, v in found.items() if v is not None}


class AnswerService:
    def __init__(
        self,
        *,
        retriever: Retriever,
        catalog: CollectionCatalog,
        served: ServedCollections,
        generators: Generators,
        prompts: Prompts,
        analyzer: Analyzer,
        sessions: SessionStore,
        cache: AnswerCache,
        cohere: CohereReranker | None,
        settings: QuerySettings,
    ) -> None:
        self.retriever = retriever
        self.catalog = catalog
        self.served = served
        self.generators = generators
        self.prompts = prompts
        self.analyzer = analyzer
        self.sessions = sessions
        self.cache = cache
        self.cohere = cohere
        self.settings = settings

    def check(self, options: AnswerOptions) -> None:
        """What can be refused before anything runs (422 naming the field)."""
        self.generators.check(options.generator or self.settings.generator)
        needs_llm = [
            (name, value)
            for name, value in (("strategy", options.strategy), ("rerank", options.rerank))
            if value not in ("none", "cohere")
        ]
        if needs_llm and self.generators.language_model(options.generator) is None:
            name, value = needs_llm[0]
            raise InvalidInput.for_field(
                name,
                "needs an LLM",
                detail=f"{name}: {value!r} needs an LLM (set OPENAI_API_KEY, OPENAI_BASE_URL or "
                "GOOGLE_API_KEY)",
            )
        if options.rerank == "cohere" and self.cohere is None:
            raise InvalidInput.for_field(
                "rerank", "not configured", detail="rerank: 'cohere' needs COHERE_API_KEY"
            )
        if options.session_id is not None:
            self.sessions.check_id(options.session_id)

    async def prepare(
        self, collection_name: str, options: AnswerOptions, namespace: str
    ) -> Prepared:
        """Everything before generation, in the tenant's ``namespace``."""
        self.check(options)
        started = time.perf_counter()
        collection = await self.catalog.get(namespace, collection_name)
        history = list(options.history)
        if options.session_id:
            history = (
                await self.sessions.history(namespace, options.session_id, collection.name)
                + history
            )
        question = options.search.query
        prepared = Prepared(collection, options, question, history, [], {})
        if history:
            model = self.generators.language_model(options.generator)
            if model is not None:
                transcript = "\n".join(f"{m.role}: {m.content}" for m in history)
                prompt = self.prompts.render("condense", history=transcript, question=question)
                try:
                    text, usage = await model.complete([Message("user", prompt)], max_tokens=200)
                except GenerationError as exc:
                    prepared.degrade("making the question standalone", exc)
                else:
                    prepared.question = " ".join(text.split()) or question
                    prepared.llm_usage = usage
                    prepared.condensed = True
        elif options.use_cache and self.cache.enabled:
            version = self.served.version(collection)
            if version is not None:
                params = _cache_params(
                    options, options.generator or self.settings.generator, self.settings
                )
                prepared.cache_key = self.cache.key(collection, version, question, params)
                prepared.cached = await self.cache.get(prepared.cache_key)
                if prepared.cached is not None:
                    prepared.timings["total_ms"] = _ms(started)
                    return prepared
        hits = await self._retrieve(prepared)
        prepared.sources = select_sources(hits, self.settings.context_max_tokens, count_tokens)
        prepared.timings["retrieve_ms"] = _ms(started)
        return prepared

    async def _retrieve(self, prepared: Prepared) -> list[Hit]:
        options = prepared.options
        search = replace(options.search, query=prepared.question)
        if options.rerank != "none":
            search = replace(search, top_k=max(search.top_k, RERANK_CANDIDATES))
        plan = None
        if options.strategy != "none":
            model = self.generators.language_model(options.generator)
            assert model is not None  # checked
            try:
                plan = await rewrite(options.strategy, search, model, self.prompts)
            except GenerationError as exc:
                prepared.degrade(f"the {options.strategy} strategy", exc)
        if plan is not None:
            prepared.rewrites = plan.generated
            prepared.llm_usage.input_tokens += plan.usage.input_tokens
            prepared.llm_usage.output_tokens += plan.usage.output_tokens
            hits = await self._fused(prepared, [(request, 1.0) for request in plan.searches])
        elif prepared.history and not prepared.condensed:
            queries = history_queries(
                prepared.question, prepared.history, self.settings.history_search_turns
            )
            hits = await self._fused(
                prepared, [(replace(search, query=query), weight) for query, weight in queries]
            )
        else:
            hits = (await self.retriever.search(prepared.collection, search)).hits
        try:
            if options.rerank == "llm" and hits:
                model = self.generators.language_model(options.generator)
                assert model is not None
                hits = await rerank_with_llm(prepared.question, hits, model, self.prompts)
            elif options.rerank == "cohere" and hits:
                assert self.cohere is not None
                hits = await self.cohere.rerank(prepared.question, hits)
        except (GenerationError, DependencyUnavailable) as exc:
            prepared.degrade(f"the {options.rerank} reranker", exc)
        return hits[: options.search.top_k]

    async def _fused(
        self, prepared: Prepared, searches: list[tuple[SearchRequest, float]]
    ) -> list[Hit]:
        """The searches' hits fused by weighted RRF (one search: its own hits)."""
        if len(searches) == 1:
            return (await self.retriever.search(prepared.collection, searches[0][0])).hits
        found: dict[str, Hit] = {}
        rankings: dict[str, list[str]] = {}
        weights: dict[str, float] = {}
        for i, (request, weight) in enumerate(searches):
            result = await self.retriever.search(prepared.collection, request)
            rankings[str(i)], weights[str(i)] = [hit.chunk_id for hit in result.hits], weight
            for hit in result.hits:
                found.setdefault(hit.chunk_id, hit)
        top_k, rrf_k = searches[0][0].top_k, searches[0][0].rrf_k
        fused = fuse_rankings(rankings, weights, rrf_k)
        hits = [found[chunk_id] for chunk_id, _ in fused[:top_k]]
        for hit, (_, score) in zip(hits, fused, strict=False):
            hit.score = score
        return hits

    async def events(self, prepared: Prepared, *, streaming: bool) -> AsyncIterator[Event]:
        """The answer as events: sources, then tokens (only when ``streaming``), then done; or
        an error event once nothing else can be tried."""
        if prepared.cached is not None:
            # The asker's session, not the one of whoever's answer was cached (it was handed
            # to every later asker, who could then read and continue that conversation).
            cached = {k: v for k, v in prepared.cached.items() if k != "session_id"}
            if prepared.options.session_id:
                cached["session_id"] = prepared.options.session_id
            yield SourcesEvent(cached["sources"])
            if streaming:  # as a fresh answer streams, not in one piece
                for piece in word_pieces(cached["answer"]):
                    yield TokenEvent(piece)
            # Before the done event: a caller stops reading at it (the turn was never kept).
            await self._remember(prepared, cached["answer"])
            yield DoneEvent({**cached, "cached": True, "timings": prepared.timings})
            return
        sources = [source_dict(s) for s in prepared.sources]
        yield SourcesEvent(sources)
        if not prepared.sources:
            if streaming:
                yield TokenEvent(self.settings.answer_no_documents)
            UNCITED_ANSWERS.labels("none").inc()
            await self._remember(prepared, self.settings.answer_no_documents)
            yield DoneEvent(
                self._result(prepared, self.settings.answer_no_documents, "none", Usage(), [])
            )
            return
        index = self.served.get(prepared.collection.namespace, prepared.collection.name)
        extractive = ExtractiveGenerator(
            self.analyzer,
            idf=index.idf if index else None,
            embed=self.retriever.embedder_for(prepared.collection.embedding_model).embed_documents
            if self.settings.extractive_embed_sentences
            else None,
            max_embedded=self.settings.extractive_embed_sentences,
            # A question an LLM made standalone needs no earlier turns to be understood.
            history_turns=0 if prepared.condensed else self.settings.history_search_turns,
            min_similarity=self._min_answer_similarity(prepared.collection.embedding_model),
            not_answered=self.settings.answer_not_answered,
        )
        failures: list[str] = []
        for generator in self.generators.chain(prepared.options.generator, extractive=extractive):
            started = time.perf_counter()
            usage = Usage()
            pieces: list[str] = []
            try:
                async for piece in generator.answer(
                    prepared.question, prepared.sources, prepared.history, usage
                ):
                    pieces.append(piece)
                    if streaming:
                        yield TokenEvent(piece)
            except GenerationError as exc:
                GENERATION_SECONDS.labels(generator.name, "error").observe(
                    time.perf_counter() - started
                )
                log.warning("generation_failed", generator=generator.name, error=str(exc))
                if pieces and streaming:
                    yield ErrorEvent(f"{generator.name} failed mid-answer: {exc}", exc.transient)
                    return
                failures.append(f"{generator.name}: {exc}")
                continue
            GENERATION_SECONDS.labels(generator.name, "ok").observe(time.perf_counter() - started)
            TOKENS.labels(generator.name, "input").inc(usage.input_tokens)
            TOKENS.labels(generator.name, "output").inc(usage.output_tokens)
            prepared.timings["generate_ms"] = _ms(started)
            answer = "".join(pieces).strip()
            result = self._result(prepared, answer, generator.name, usage, failures)
            if not result["cited"]:
                UNCITED_ANSWERS.labels(generator.name).inc()
            if prepared.cache_key is not None:  # for any asker: without this one's session
                await self.cache.put(
                    prepared.cache_key, {k: v for k, v in result.items() if k != "session_id"}
                )
            await self._remember(prepared, answer)
            yield DoneEvent({**result, "timings": prepared.timings})
            return
        yield ErrorEvent("no generator could answer: " + "; ".join(failures), True)

    def _min_answer_similarity(self, model: str) -> float:
        """EXTRACTIVE_MIN_SIMILARITY, or else the level measured for the collection's model."""
        if self.settings.extractive_min_similarity is not None:
            return self.settings.extractive_min_similarity
        spec = MODELS.get(model)
        return spec.min_answer_similarity if spec is not None else 0.0

    def _result(
        self,
        prepared: Prepared,
        answer: str,
        generator: str,
        usage: Usage,
        failures: Sequence[str],
    ) -> dict[str, Any]:
        result: dict[str, Any] = {
            "answer": answer,
            "sources": [source_dict(s) for s in prepared.sources],
            "cited": cited_numbers(answer, prepared.sources),
            "generator": generator,
            "usage": {
                "input_tokens": usage.input_tokens + prepared.llm_usage.input_tokens,
                "output_tokens": usage.output_tokens + prepared.llm_usage.output_tokens,
            },
            "cached": False,
        }
        if failures:
            result["fallback_from"] = list(failures)
        if prepared.rewrites:
            result["rewrites"] = prepared.rewrites
        if prepared.question != prepared.options.search.query:
            result["standalone_question"] = prepared.question
        if prepared.options.session_id:
            result["session_id"] = prepared.options.session_id
        if prepared.warnings:
            result["warnings"] = prepared.warnings
        return result

    async def _remember(self, prepared: Prepared, answer: str) -> None:
        if prepared.options.session_id:
            await self.sessions.append(
                prepared.collection.namespace,
                prepared.options.session_id,
                prepared.collection.name,
                prepared.options.search.query,
                answer,
            )


def _cache_params(
    options: AnswerOptions, generator: str, settings: QuerySettings
) -> dict[str, Any]:
    search = options.search
    return {
        "top_k": search.top_k,
        "mode": search.mode,
        "where": search.where,
        "mmr": search.mmr,
        "mmr_lambda": search.mmr_lambda,
        "rrf_k": search.rrf_k,
        "fusion": search.fusion,
        "weights": [search.dense_weight, search.lexical_weight],
        "max_per_document": search.max_per_document,
        "generator": generator,
        "strategy": options.strategy,
        "rerank": options.rerank,
        # The offline generator's settings (it is every chain's last resort): a changed one
        # must not find the answers it would no longer give.
        "extractive": [
            settings.extractive_embed_sentences,
            settings.extractive_min_similarity,
            settings.answer_not_answered,
        ],
    }


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
