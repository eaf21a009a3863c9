"""App factory of the query service."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.di import Provide
from rag_config import QuerySettings, get_settings
from rag_core.catalog import CollectionCatalog, Keys
from rag_core.chunks import ChromaChunkStore
from rag_core.embedding.models import EmbedderFactory
from rag_core.service import (
    Lifespan,
    ServiceSpec,
    build_service_app,
    chroma_lifespan,
    from_state,
    provide_redis,
    redis_lifespan,
)
from rag_core.tenancy import tenant_of

from rag_query.answers.cache import AnswerCache
from rag_query.answers.generators import Generators
from rag_query.answers.routes import QueryController, SessionController
from rag_query.answers.service import AnswerService
from rag_query.answers.sessions import SessionStore
from rag_query.evaluation.routes import EvaluationController
from rag_query.evaluation.service import EvaluationJobs, Evaluator
from rag_query.evaluation.slots import EvaluationSlots
from rag_query.generation.prompts import Prompts
from rag_query.openai_api.routes import OpenAIController
from rag_query.retrieval.rerank import CohereReranker
from rag_query.retrieval.routes import SearchController
from rag_query.retrieval.search import Retriever
from rag_query.retrieval.served import ServedCollections


def _query_lifespan(settings: QuerySettings) -> Lifespan:
    @asynccontextmanager
    async def components(app: Litestar) -> AsyncIterator[None]:
        keys = Keys(settings.redis_prefix)
        catalog = CollectionCatalog(app.state.redis, keys)
        chunks = ChromaChunkStore(app.state.chroma)
        served = ServedCollections(
            app.state.redis, chunks, keys, k1=settings.bm25_k1, b=settings.bm25_b
        )
        embedders = EmbedderFactory(settings)
        retriever = Retriever(chunks, catalog, served, embedders.get, settings)
        prompts = Prompts(settings.prompts_dir)
        generators = Generators(settings, prompts, served.analyzer)
        sessions = SessionStore(
            app.state.redis,
            keys,
            ttl_seconds=settings.session_ttl_seconds,
            max_turns=settings.session_max_turns,
        )
        cohere = (
            CohereReranker(
                api_key=settings.cohere_api_key.get_secret_value(),
                base_url=settings.cohere_base_url,
                model=settings.cohere_rerank_model,
                timeout=settings.llm_timeout_seconds,
                max_retries=settings.llm_max_retries,
            )
            if settings.cohere_api_key is not None
            else None
        )
        answers = AnswerService(
            retriever=retriever,
            catalog=catalog,
            served=served,
            generators=generators,
            prompts=prompts,
            analyzer=served.analyzer,
            sessions=sessions,
            cache=AnswerCache(app.state.redis, keys, ttl_seconds=settings.answer_cache_ttl_seconds),
            cohere=cohere,
            settings=settings,
        )
        evaluator = Evaluator(retriever, answers, generators, prompts, served.analyzer)
        evaluations = EvaluationJobs(
            app.state.redis,
            keys,
            evaluator,
            EvaluationSlots(
                app.state.redis,
                keys,
                per_tenant=settings.max_evaluations_per_tenant,
                lease_seconds=settings.evaluation_lease_seconds,
            ),
        )
        app.state.update(
            evaluator=evaluator,
            evaluations=evaluations,
            catalog=catalog,
            served=served,
            embedders=embedders,
            retriever=retriever,
            generators=generators,
            sessions=sessions,
            answers=answers,
        )
        app.state.readiness.checks["lexical"] = served.check_ready
        follower = asyncio.create_task(served.run())
        try:
            yield
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
            served.close()
            await embedders.close()
            await evaluations.close()
            if cohere is not None:
                await cohere.close()

    return components


def create_app(settings: QuerySettings | None = None) -> Litestar:
    """Build the query app; nothing connects until its lifespan starts."""
    settings = settings or get_settings(QuerySettings)
    return build_service_app(
        SERVICE,
        settings,
        route_handlers=[
            SearchController,
            QueryController,
            SessionController,
            OpenAIController,
            EvaluationController,
        ],
        lifespan=[
            redis_lifespan(settings),
            chroma_lifespan(settings, settings),
            _query_lifespan(settings),
        ],
        dependencies={
            "redis": Provide(provide_redis, sync_to_thread=False),
            "settings": Provide(lambda: settings, sync_to_thread=False),
            "tenant": Provide(tenant_of, sync_to_thread=False),
            **{
                name: from_state(name)
                for name in (
                    "catalog",
                    "sessions",
                    "retriever",
                    "generators",
                    "evaluator",
                    "evaluations",
                )
            },
            # Not "answers": a dependency named like a body field (the evaluation's `answers`)
            # turns that field's validation errors into 500s (Litestar takes them for its own).
            "answer_service": from_state("answers"),
        },
        description="Hybrid retrieval and grounded answers with citations.",
        behind_gateway=True,
        facts={
            "search_mode": settings.search_mode,
            "generator": settings.generator,
            # The generators configured besides extractive, and their models.
            "llm_models": {
                name: model
                for name, model, configured in (
                    (
                        "openai",
                        settings.openai_model,
                        settings.openai_api_key is not None or bool(settings.openai_base_url),
                    ),
                    ("google", settings.google_model, settings.google_api_key is not None),
                )
                if configured
            },
        },
    )


SERVICE = ServiceSpec(name="query", settings_cls=QuerySettings, app_factory=create_app)
