"""Query strategies that ask an LLM to rewrite the question before retrieval:

- ``multi_query`` (RAG-fusion): several rewordings, each searched, all rankings fused;
- ``hyde``: a hypothetical answer passage, searched by meaning, fused with the question;
- ``step_back``: a more general question, searched beside the original one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from rag_query.generation.base import Message, Usage
from rag_query.generation.llm import GoogleModel, OpenAIModel
from rag_query.generation.prompts import Prompts
from rag_query.retrieval.search import SearchRequest

Strategy = Literal["none", "multi_query", "hyde", "step_back"]
STRATEGIES: tuple[Strategy, ...] = ("none", "multi_query", "hyde", "step_back")
MULTI_QUERY_COUNT = 3
REWRITE_MAX_TOKENS = 300


@dataclass(frozen=True)
class Rewrite:
    """The searches a strategy runs (the original first) and what the LLM wrote."""

    searches: list[SearchRequest]
    generated: list[str]
    usage: Usage


async def rewrite(
    strategy: Strategy,
    request: SearchRequest,
    model: OpenAIModel | GoogleModel,
    prompts: Prompts,
) -> Rewrite:
    question = request.query
    if strategy == "multi_query":
        prompt = prompts.render("multi_query", question=question, count=MULTI_QUERY_COUNT)
        text, usage = await _ask(model, prompt)
        variants = _lines(text)[:MULTI_QUERY_COUNT]
        return Rewrite([request, *(replace(request, query=v) for v in variants)], variants, usage)
    if strategy == "hyde":
        text, usage = await _ask(model, prompts.render("hyde", question=question))
        passage = " ".join(text.split())
        searches = [request]
        if passage:
            searches.append(replace(request, query=passage, mode="dense"))
        return Rewrite(searches, [passage] if passage else [], usage)
    text, usage = await _ask(model, prompts.render("step_back", question=question))
    general = _lines(text)[:1]
    return Rewrite([request, *(replace(request, query=g) for g in general)], general, usage)


async def _ask(model: OpenAIModel | GoogleModel, prompt: str) -> tuple[str, Usage]:
    return await model.complete([Message("user", prompt)], max_tokens=REWRITE_MAX_TOKENS)


def _lines(text: str) -> list[str]:
    found = []
    for line in text.splitlines():
        cleaned = line.strip().lstrip("-*0123456789.) ").strip().strip('"').strip()
        if cleaned:
            found.append(cleaned)
    return found


def unique_queries(queries: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(q for q in queries if q.strip()))
