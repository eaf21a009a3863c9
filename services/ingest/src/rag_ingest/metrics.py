"""Ingest metrics: jobs by outcome, durations by stage, embedding throughput, queue depth."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)

JOBS = Counter(
    "rag_ingest_jobs_total",
    "Ingest jobs finished, by kind and outcome (succeeded, failed, dead, retried).",
    ["kind", "outcome"],
)
JOB_DURATION = Histogram(
    "rag_ingest_job_duration_seconds",
    "Wall time of one job attempt.",
    ["kind"],
    buckets=STAGE_BUCKETS,
)
STAGE_DURATION = Histogram(
    "rag_ingest_stage_duration_seconds",
    "Wall time of each stage of a job.",
    ["stage"],
    buckets=STAGE_BUCKETS,
)
CHUNKS_EMBEDDED = Counter("rag_ingest_chunks_embedded_total", "Chunks embedded and stored.")
TOKENS_EMBEDDED = Counter("rag_ingest_tokens_embedded_total", "Tokens of the chunks embedded.")
EMBED_BATCH_SECONDS = Histogram(
    "rag_ingest_embedding_batch_seconds",
    "Time to embed one batch of chunks.",
    buckets=STAGE_BUCKETS,
)
DOCUMENTS_DEDUPLICATED = Counter(
    "rag_ingest_documents_deduplicated_total",
    "Documents whose content was already stored (unchanged or duplicate).",
)
QUEUE_DEPTH = Gauge("rag_ingest_queue_depth", "Jobs waiting in the queue.", multiprocess_mode="max")
DEAD_LETTERED = Gauge(
    "rag_ingest_dead_lettered_jobs",
    "Jobs that exhausted their retries (kept for retry).",
    multiprocess_mode="max",
)
CLEANED_CHUNKS = Counter(
    "rag_ingest_chunks_cleaned_total",
    "Chunks deleted from Chroma because no reader needs them any more "
    "(replaced or deleted versions, superseded or failed jobs).",
)
REEMBEDDED_CHUNKS = Counter(
    "rag_ingest_reembedded_chunks_total",
    "Chunks a re-embedding embedded with its new model and wrote to its shadow collection.",
)
DROPPED_COLLECTIONS = Counter(
    "rag_ingest_chroma_collections_dropped_total",
    "Whole Chroma collections dropped: the former one of a re-embedded collection, a "
    "cancelled re-embedding's shadow.",
)
