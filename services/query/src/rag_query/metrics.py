"""Query metrics: retrieval and generation latency, tokens, cache, empty retrievals, answers
citing nothing, rerank."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

RETRIEVAL_SECONDS = Histogram(
    "rag_query_retrieval_seconds",
    "Time to retrieve and fuse the passages of one search, by mode.",
    ["mode"],
    buckets=LATENCY_BUCKETS,
)
EMPTY_RETRIEVALS = Counter(
    "rag_query_empty_retrievals_total", "Searches that found nothing, by mode.", ["mode"]
)
GENERATION_SECONDS = Histogram(
    "rag_query_generation_seconds",
    "Time to generate one answer, by generator and outcome.",
    ["generator", "outcome"],
    buckets=LATENCY_BUCKETS,
)
TOKENS = Counter(
    "rag_query_llm_tokens_total",
    "Tokens sent to (input) and received from (output) each generator.",
    ["generator", "direction"],
)
UNCITED_ANSWERS = Counter(
    "rag_query_uncited_answers_total",
    "Answers generated citing no source, by generator (none: nothing was found; extractive: "
    "the documents found do not answer; an LLM's: it cited nothing), evaluations' answers "
    "included, cached ones not.",
    ["generator"],
)
ANSWER_CACHE = Counter(
    "rag_query_answer_cache_total", "Answer cache lookups, by outcome (hit, miss).", ["outcome"]
)
RERANK_SECONDS = Histogram(
    "rag_query_rerank_seconds",
    "Time to rerank the candidates of one search, by reranker.",
    ["reranker"],
    buckets=LATENCY_BUCKETS,
)
