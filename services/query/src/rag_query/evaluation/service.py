"""Running an evaluation: every case searched (and answered, when asked), scored, and the
scores aggregated; large sets run in the background with their progress in Redis."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import msgspec
from rag_core.catalog import Keys
from rag_telemetry import get_logger
from redis.asyncio import Redis

from rag_query.answers.generators import Generators
from rag_query.answers.service import AnswerOptions, AnswerService, DoneEvent, ErrorEvent
from rag_query.evaluation import metrics
from rag_query.evaluation.slots import EvaluationSlots
from rag_query.generation.base import GenerationError, Message
from rag_query.generation.prompts import Prompts
from rag_query.generation.sources import format_sources
from rag_query.retrieval.analyzer import Analyzer
from rag_query.retrieval.search import Retriever, SearchRequest

log = get_logger("rag.evaluation")
MEASURES = ("nDCG@10", "R@10", "R@100", "RR@10")  # in ir_measures' notation
RETRIEVAL_DEPTH = 100
Progress = Callable[[float], Awaitable[None]]


@dataclass
class Case:
    id: str
    query: str
    relevant: dict[str, int] = field(default_factory=dict)
    # Every answer that is right (one, or several: the answer is scored against its best).
    expected_answers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    collection: str
    cases: list[Case]
    search: SearchRequest  # its query is replaced by each case's
    answers: bool = False
    generator: str | None = None
    judge: bool = False


class Evaluator:
    def __init__(
        self,
        retriever: Retriever,
        answers: AnswerService,
        generators: Generators,
        prompts: Prompts,
        analyzer: Analyzer,
    ) -> None:
        self.retriever = retriever
        self.answers = answers
        self.generators = generators
        self.prompts = prompts
        self.analyzer = analyzer

    async def run(
        self, plan: Plan, namespace: str, progress: Progress | None = None
    ) -> dict[str, Any]:
        import ir_measures  # noqa: PLC0415 - only evaluations use it (0.1 s of CPU to import)

        collection = await self.retriever.catalog.get(namespace, plan.collection)
        run: list[ir_measures.ScoredDoc] = []
        per_case = []
        answer_scores: dict[str, list[float | None]] = {
            "answered": [],
            "citation_precision": [],
            "answer_support": [],
            "exact_match": [],
            "fuzzy_match": [],
            "answer_recall": [],
            "faithfulness": [],
        }
        started = time.perf_counter()
        for done, case in enumerate(plan.cases, start=1):
            # The measures are of documents: the best RETRIEVAL_DEPTH, each at its best chunk.
            search = replace(
                plan.search,
                query=case.query,
                top_k=RETRIEVAL_DEPTH,
                max_per_document=1,
                candidates=max(plan.search.candidates, 2 * RETRIEVAL_DEPTH),
            )
            hits = (await self.retriever.search(collection, search)).hits
            ranked: dict[str, float] = {}
            for rank, hit in enumerate(hits, start=1):
                ranked.setdefault(hit.document_id, 1.0 / rank)
            run += [ir_measures.ScoredDoc(case.id, doc, score) for doc, score in ranked.items()]
            row: dict[str, Any] = {"id": case.id, "retrieved": list(ranked)[: plan.search.top_k]}
            if plan.answers:
                row.update(await self._answer(plan, case, namespace, answer_scores))
            per_case.append(row)
            if progress is not None:
                await progress(done / len(plan.cases))
        judged = [case for case in plan.cases if case.relevant]
        retrieval: dict[str, float] = {}
        if judged:
            qrels = [
                ir_measures.Qrel(case.id, doc, relevance)
                for case in judged
                for doc, relevance in case.relevant.items()
            ]
            wanted = {case.id for case in judged}
            scores = ir_measures.calc_aggregate(
                [ir_measures.parse_measure(measure) for measure in MEASURES],
                qrels,
                [r for r in run if r.query_id in wanted],
            )
            retrieval = {str(measure): round(float(value), 4) for measure, value in scores.items()}
        result: dict[str, Any] = {
            "collection": plan.collection,
            "cases": len(plan.cases),
            "judged_cases": len(judged),
            "retrieval": retrieval,
            "seconds": round(time.perf_counter() - started, 2),
            "per_case": per_case,
        }
        if plan.answers:
            result["answers"] = {
                name: metrics.mean(values) for name, values in answer_scores.items()
            }
        return result

    async def _answer(
        self, plan: Plan, case: Case, namespace: str, scores: dict[str, list[float | None]]
    ) -> dict[str, Any]:
        options = AnswerOptions(
            search=replace(plan.search, query=case.query), generator=plan.generator, use_cache=False
        )
        prepared = await self.answers.prepare(plan.collection, options, namespace)
        answer, cited_docs = "", []
        async for event in self.answers.events(prepared, streaming=False):
            if isinstance(event, DoneEvent):
                answer = event.result["answer"]
                by_number = {s["number"]: s["document_id"] for s in event.result["sources"]}
                cited_docs = [by_number[n] for n in event.result["cited"] if n in by_number]
            elif isinstance(event, ErrorEvent):
                return {"answer_error": event.message}
        sources = {s.number: s.text for s in prepared.sources}
        row: dict[str, Any] = {"answer": answer}
        values = {
            # Cites a source: an answer that says the documents do not answer cites none.
            "answered": 1.0 if cited_docs else 0.0,
            "citation_precision": metrics.citation_precision(cited_docs, case.relevant)
            if case.relevant
            else None,
            "answer_support": metrics.answer_support(
                answer, sources, self.analyzer, self.answers.settings.no_claims
            ),
            **metrics.against_expected(answer, case.expected_answers, self.analyzer),
            "faithfulness": await self._judge(prepared.sources, answer) if plan.judge else None,
        }
        for name, value in values.items():
            scores[name].append(value)
            if value is not None:
                row[name] = round(value, 4)
        return row

    async def _judge(self, sources: Any, answer: str) -> float | None:
        model = self.generators.language_model()
        if model is None or not answer:
            return None
        prompt = self.prompts.render("faithfulness", sources=format_sources(sources), answer=answer)
        try:
            text, _usage = await model.complete([Message("user", prompt)], max_tokens=10)
        except GenerationError as exc:
            log.warning("faithfulness_judge_failed", error=str(exc))
            return None
        match = re.search(r"[01](?:\.\d+)?", text)
        return min(1.0, max(0.0, float(match.group(0)))) if match else None


class EvaluationRecord(msgspec.Struct, omit_defaults=True):
    id: str
    state: str  # running, succeeded, failed
    progress: float
    created_at: float
    updated_at: float
    collection: str
    cases: int
    result: dict[str, Any] | None = None
    error: str | None = None


class EvaluationJobs:
    """Evaluations running in the background of this process, their state in Redis (so any
    replica can report on them) for EVALUATION_RETENTION_SECONDS. Each holds one of its
    tenant's MAX_EVALUATIONS_PER_TENANT slots while it runs (``slots``)."""

    RETENTION_SECONDS = 7 * 86_400

    def __init__(
        self, redis: Redis, keys: Keys, evaluator: Evaluator, slots: EvaluationSlots
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.evaluator = evaluator
        self.slots = slots
        self._tasks: set[asyncio.Task[None]] = set()

    def _key(self, namespace: str, evaluation_id: str) -> str:
        return self.keys.evaluation(namespace, evaluation_id)

    async def _save(self, namespace: str, record: EvaluationRecord) -> None:
        record.updated_at = time.time()
        await self.redis.set(
            self._key(namespace, record.id), msgspec.json.encode(record), ex=self.RETENTION_SECONDS
        )

    async def start(self, plan: Plan, namespace: str) -> EvaluationRecord:
        """Start ``plan`` in the background; 429 when its tenant runs as many as it may."""
        now = time.time()
        record = EvaluationRecord(
            id=uuid.uuid4().hex,
            state="running",
            progress=0.0,
            created_at=now,
            updated_at=now,
            collection=plan.collection,
            cases=len(plan.cases),
        )
        await self.slots.take(namespace, record.id)
        try:
            await self._save(namespace, record)
        except BaseException:
            await self.slots.give_back(namespace, record.id)
            raise

        async def progress(fraction: float) -> None:
            record.progress = round(fraction, 3)
            await self._save(namespace, record)

        async def work() -> None:
            lease = asyncio.create_task(self.slots.keep(namespace, record.id))
            try:
                record.result = await self.evaluator.run(plan, namespace, progress)
                record.state = "succeeded"
            except asyncio.CancelledError:
                # The service is stopping: say so, instead of "running" until the record expires.
                record.state, record.error = "failed", "interrupted: the query service stopped"
                await self._save(namespace, record)
                raise
            except Exception as exc:
                log.exception("evaluation_failed", evaluation_id=record.id)
                record.state, record.error = "failed", f"{type(exc).__name__}: {exc}"[:500]
            finally:
                lease.cancel()
                await self.slots.give_back(namespace, record.id)
            await self._save(namespace, record)

        task = asyncio.create_task(work())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return record

    async def run_held(self, plan: Plan, namespace: str) -> dict[str, Any]:
        """Run ``plan`` within the request, holding one of its tenant's slots as a background
        run does (429 when none is free): more cases than EVAL_SYNC_MAX_CASES asked to run
        synchronously ran outside MAX_EVALUATIONS_PER_TENANT, as many at once as a tenant
        sent."""
        slot = uuid.uuid4().hex
        await self.slots.take(namespace, slot)
        lease = asyncio.create_task(self.slots.keep(namespace, slot))
        try:
            return await self.evaluator.run(plan, namespace)
        finally:
            lease.cancel()
            await self.slots.give_back(namespace, slot)

    async def get(self, namespace: str, evaluation_id: str) -> EvaluationRecord | None:
        raw = await self.redis.get(self._key(namespace, evaluation_id))
        return msgspec.json.decode(raw, type=EvaluationRecord) if raw else None

    async def close(self) -> None:
        """Cancel running evaluations; each records that it was interrupted before this returns."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
