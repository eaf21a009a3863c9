"""Settings pieces and the per-service settings composed from them.

Every field maps to one environment variable of the same name in upper case (no prefix), so the
names the deployment guide uses (``CHROMA_HOST``, ``REDIS_URL``...) work unchanged. A ``.env``
file in the working directory is read too; real environment variables win over it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Environment = Literal["development", "testing", "production"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
LogFormat = Literal["auto", "json", "console"]
Port = Annotated[int, Field(ge=1, le=65535)]

REDIS_SCHEMES = ("redis", "rediss", "unix")


class _EnvSettings(BaseSettings):
    """Common reading rules: flat upper-case variable names, ``.env`` beside the process."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        validate_default=True,
        hide_input_in_errors=True,
    )


MIN_SECRET_CHARS = 32


def _secret_text(value: SecretStr | None) -> str:
    return value.get_secret_value() if value is not None else ""


def _blank_to_none(value: Any) -> Any:
    """An empty variable (``OPENAI_API_KEY=``) means "not set", not an empty secret."""
    if (
        isinstance(value, str | SecretStr)
        and not str(value.get_secret_value() if isinstance(value, SecretStr) else value).strip()
    ):
        return None
    return value


class RuntimeSettings(_EnvSettings):
    environment: Environment = Field(
        "development", description="Deployment environment: development, testing or production."
    )

    @field_validator("environment", mode="before")
    @classmethod
    def _lower_environment(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value


class ServerSettings(_EnvSettings):
    host: str = Field("0.0.0.0", description="Address the API and health ports listen on.")  # noqa: S104
    port: Port = Field(8000, description="API port.")
    health_port: Port = Field(8089, description="Port serving /health, /ready and /metrics.")
    workers: int = Field(
        1, ge=1, le=64, description="Worker processes serving the API (each binds both ports)."
    )
    graceful_shutdown_seconds: float = Field(
        15.0, gt=0, le=600, description="How long in-flight requests may finish after SIGTERM."
    )
    ready_check_timeout_seconds: float = Field(
        2.0, gt=0, le=60, description="Time limit of each dependency check behind /ready."
    )

    @model_validator(mode="after")
    def _distinct_ports(self) -> ServerSettings:
        if self.port == self.health_port:
            raise ValueError(
                f"PORT and HEALTH_PORT must differ (both are {self.port}); "
                "allowed: two different ports"
            )
        return self


class TelemetrySettings(_EnvSettings):
    log_level: LogLevel = Field("INFO", description="DEBUG, INFO, WARNING, ERROR or CRITICAL.")
    log_format: LogFormat = Field(
        "auto", description="auto (JSON unless stdout is a terminal), json or console."
    )
    otel_exporter_otlp_endpoint: str | None = Field(
        None,
        description="OTLP/HTTP collector URL (e.g. http://otel-collector:4318); unset: no export.",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower_format(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("otel_exporter_otlp_endpoint", mode="before")
    @classmethod
    def _check_endpoint(cls, value: Any) -> Any:
        value = _blank_to_none(value)
        if isinstance(value, str) and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("must be an http:// or https:// URL")
        return value


class PoolSettings(_EnvSettings):
    max_connections: int = Field(
        100, ge=1, le=100_000, description="Most connections a pool (Redis, HTTP) opens at once."
    )
    pool_size: int = Field(
        20,
        ge=1,
        le=100_000,
        description="Idle keep-alive connections an HTTP client pool keeps for reuse.",
    )

    @model_validator(mode="after")
    def _pool_within_max(self) -> PoolSettings:
        if self.pool_size > self.max_connections:
            if "pool_size" not in self.model_fields_set:
                # Only MAX_CONNECTIONS was lowered: the default pool follows it down.
                self.pool_size = self.max_connections
                return self
            raise ValueError(
                f"POOL_SIZE ({self.pool_size}) must not exceed MAX_CONNECTIONS "
                f"({self.max_connections})"
            )
        return self


class RedisSettings(_EnvSettings):
    redis_url: SecretStr = Field(
        SecretStr("redis://localhost:6379/0"),
        description="Redis URL (redis://, rediss:// or unix://); may carry a password.",
    )

    @field_validator("redis_url", mode="after")
    @classmethod
    def _check_redis_url(cls, value: SecretStr) -> SecretStr:
        parts = urlsplit(value.get_secret_value())
        if parts.scheme not in REDIS_SCHEMES:
            raise ValueError("must start with redis://, rediss:// or unix://")
        if parts.scheme != "unix" and not parts.hostname:
            raise ValueError("must name a host, e.g. redis://localhost:6379/0")
        return value

    @property
    def redis_url_display(self) -> str:
        """The Redis URL with any password replaced, safe for logs."""
        parts = urlsplit(self.redis_url.get_secret_value())
        if parts.password is None:
            return urlunsplit(parts)
        netloc = parts.netloc.rsplit("@", 1)[1]
        user = parts.username or ""
        return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


class ChromaSettings(_EnvSettings):
    chroma_host: str = Field("localhost", description="Chroma server host.")
    chroma_port: Port = Field(8000, description="Chroma server port.")
    chroma_ssl: bool = Field(False, description="Talk to Chroma over HTTPS.")
    chroma_timeout_seconds: float = Field(
        30.0, gt=0, le=600, description="Time limit of each request to Chroma."
    )

    @field_validator("chroma_host")
    @classmethod
    def _check_host(cls, value: str) -> str:
        value = value.strip()
        if not value or "/" in value or any(ch.isspace() for ch in value):
            raise ValueError("must be a bare host name or address, without scheme, path or port")
        return value


class LLMSettings(_EnvSettings):
    openai_api_key: SecretStr | None = Field(None, description="OpenAI (or compatible) API key.")
    google_api_key: SecretStr | None = Field(None, description="Google Gemini API key.")
    cohere_api_key: SecretStr | None = Field(None, description="Cohere API key (reranking).")
    openai_base_url: str | None = Field(
        None, description="OpenAI-compatible API URL (vLLM, Ollama, llama.cpp); empty: OpenAI."
    )
    google_base_url: str | None = Field(
        None, description="Gemini API URL override (a proxy); empty: Google's default."
    )
    cohere_base_url: str | None = Field(
        None, description="Cohere API URL override (a proxy); empty: Cohere's default."
    )
    cohere_rerank_model: str = Field("rerank-v3.5", description="Cohere reranking model.")

    _blank_llm = field_validator(
        "openai_api_key",
        "google_api_key",
        "cohere_api_key",
        "openai_base_url",
        "google_base_url",
        "cohere_base_url",
        mode="before",
    )(_blank_to_none)


class AuthSettings(_EnvSettings):
    jwt_secret: SecretStr | None = Field(
        None, description="HS256 key for bearer tokens; at least 32 characters in production."
    )
    jwt_audience: str | None = Field(
        None, description="When set, bearer tokens must carry this 'aud' claim; empty: not checked."
    )
    jwt_issuer: str | None = Field(
        None, description="When set, bearer tokens must carry this 'iss' claim; empty: not checked."
    )

    _blank_jwt_secret = field_validator("jwt_secret", mode="before")(_blank_to_none)
    _blank_jwt_claims = field_validator("jwt_audience", "jwt_issuer", mode="before")(_blank_to_none)


class StorageSettings(_EnvSettings):
    redis_prefix: str = Field(
        "rag", pattern=r"^[a-z][a-z0-9_-]{0,31}$", description="Prefix of every Redis key we use."
    )
    data_dir: str = Field(
        ".data", description="Directory for local files (the embedder's cached ONNX model)."
    )
    model_dir: str | None = Field(
        None,
        description="Where the local embedder's ONNX files are (built there if missing); "
        "empty: DATA_DIR/models. The Docker image ships them in /opt/models.",
    )

    _blank_model_dir = field_validator("model_dir", mode="before")(_blank_to_none)

    @property
    def models_path(self) -> str:
        return self.model_dir or f"{self.data_dir}/models"


EmbeddingModel = Literal[
    "all-MiniLM-L6-v2",
    "all-MiniLM-L6-v2-int8",
    "openai/text-embedding-3-small",
    "openai/text-embedding-3-large",
    "google/gemini-embedding-001",
    "google/text-embedding-004",
]


class EmbeddingSettings(_EnvSettings):
    embedding_model: EmbeddingModel = Field(
        "all-MiniLM-L6-v2-int8",
        description="Model of new collections (a collection keeps the one it was created with).",
    )
    embed_batch_size: int = Field(
        32,
        ge=1,
        le=1024,
        description="A worker combines concurrent jobs' chunks into embedding calls of up to "
        "8x this many (the local model then runs each chunk on its own, unpadded).",
    )
    embed_threads: int = Field(
        0,
        ge=0,
        le=256,
        description="Local embedding runs at once, one thread each (0: one per core).",
    )
    embedding_timeout_seconds: float = Field(
        30.0, gt=0, le=600, description="Time limit of each call to a hosted embedding API."
    )
    embedding_max_retries: int = Field(
        2, ge=0, le=10, description="Retries of a failed hosted embedding call, within one try."
    )


class IngestLimits(_EnvSettings):
    max_request_bytes: int = Field(
        50 * 1024 * 1024, ge=1024, description="Largest request body the ingest API accepts."
    )
    max_file_bytes: int = Field(
        25 * 1024 * 1024, ge=1, description="Largest single document or uploaded file."
    )
    max_documents_per_batch: int = Field(
        500, ge=1, le=100_000, description="Most documents in one ingest request."
    )
    max_chunks_per_document: int = Field(
        5000, ge=1, description="A document that would make more chunks fails."
    )
    max_metadata_bytes: int = Field(
        16 * 1024, ge=64, description="Largest metadata object of one document (as JSON)."
    )
    max_uncompressed_bytes: int = Field(
        100 * 1024 * 1024, ge=1024, description="Most a DOCX may expand to when unpacked."
    )
    max_pdf_pages: int = Field(5000, ge=1, description="Most pages read from one PDF.")
    max_archive_entries: int = Field(
        10_000, ge=1, description="Most files a DOCX (a ZIP archive) may hold."
    )
    max_source_chars: int = Field(
        2048, ge=16, le=65_536, description="Longest `source` (or URL) of a document."
    )
    max_filename_chars: int = Field(
        255, ge=16, le=4096, description="Longest file name of an uploaded file."
    )
    max_title_chars: int = Field(
        500,
        ge=16,
        le=4096,
        description="Longest `title` of a document (a longer title parsed from a file is cut).",
    )
    parse_timeout_seconds: float = Field(
        120.0, gt=0, le=3600, description="Longest parsing one document may take; then it fails."
    )
    parse_max_memory_mb: int = Field(
        2048, ge=0, description="Address space of a parser process (0: no limit)."
    )
    parse_workers: int = Field(
        0, ge=0, le=64, description="Parser processes per worker (0: one per core, at most 4)."
    )
    ocr_enabled: bool = Field(
        True,
        description="Read scanned PDF pages and images (PNG, JPEG, TIFF) with Tesseract OCR; "
        "false: images are refused (415) and PDF pages without text are skipped.",
    )
    ocr_languages: str = Field(
        "eng",
        pattern=r"^[a-z_]{3,20}(\+[a-z_]{3,20}){0,7}$",
        description="Tesseract's languages, joined by '+' (eng+deu); each needs its Debian "
        "package (tesseract-ocr-deu).",
    )
    ocr_max_pages: int = Field(
        20,
        ge=1,
        le=10_000,
        description="Most pages read by OCR in one document (PDF pages without text, image "
        "frames); a document with more fails. A dense page takes about 5 s: raise "
        "PARSE_TIMEOUT_SECONDS with it.",
    )
    ocr_max_pixels: int = Field(
        40_000_000,
        ge=10_000,
        le=500_000_000,
        description="Most pixels of one page read by OCR: a larger image is refused unread, a "
        "PDF page is rendered smaller.",
    )
    ocr_dpi: int = Field(
        300, ge=72, le=1200, description="Resolution a PDF page is rendered at for OCR."
    )
    ocr_page_timeout_seconds: float = Field(
        60.0, gt=0, le=3600, description="Longest OCR of one page may take; then the job fails."
    )
    chunk_size_tokens: int = Field(
        200, ge=16, le=254, description="Most tokens in a chunk (the model reads at most 254)."
    )
    chunk_overlap_tokens: int = Field(
        40, ge=0, le=100, description="Tokens a chunk repeats from the end of the previous one."
    )
    chunk_max_chars: int = Field(
        4000,
        ge=256,
        le=100_000,
        description="Most characters in a chunk, whatever its tokens (a word with no spaces "
        "is split).",
    )
    chunk_header_max_chars: int = Field(
        200,
        ge=0,
        le=1000,
        description="Each chunk is indexed after a header of its document's title and heading "
        "path, cut to this many characters (0: no header): by BM25, and by the embedder unless "
        "CHUNK_HEADER_EMBEDDED is false. The text stored, returned and quoted is the chunk's "
        "own.",
    )
    chunk_header_embedded: bool = Field(
        True,
        description="Whether the embedder reads each chunk's header too (true), or its text "
        "alone (false: the header is for BM25 only). Chunks keep the vectors they were stored "
        "with until their document is ingested again or their collection re-embedded to "
        "another model.",
    )

    @model_validator(mode="after")
    def _overlap_below_half(self) -> IngestLimits:
        if self.chunk_overlap_tokens >= self.chunk_size_tokens // 2:
            raise ValueError(
                f"CHUNK_OVERLAP_TOKENS ({self.chunk_overlap_tokens}) must be below half of "
                f"CHUNK_SIZE_TOKENS ({self.chunk_size_tokens})"
            )
        return self


class JobSettings(_EnvSettings):
    job_max_tries: int = Field(
        5, ge=1, le=50, description="Attempts of a job before it is dead-lettered."
    )
    job_timeout_seconds: int = Field(
        900, ge=1, le=86_400, description="Longest one attempt of a job may run."
    )
    job_retention_days: int = Field(
        14, ge=1, le=3650, description="How long job records and their events are kept."
    )
    worker_concurrency: int = Field(
        64,
        ge=1,
        le=256,
        description="Jobs one worker process runs at once (their chunks are embedded together).",
    )
    worker_heartbeat_seconds: int = Field(
        15,
        ge=3,
        le=600,
        description="A worker silent for this long is taken for dead and its running jobs go "
        "to a live worker (it beats every third of it).",
    )
    reconcile_interval_seconds: int = Field(
        10,
        ge=1,
        le=60,
        description="How often each worker reconciles: frees the jobs of dead workers, "
        "re-enqueues lost ones, deletes chunks nobody needs (a divisor of 60).",
    )
    version_grace_seconds: int = Field(
        60,
        ge=0,
        le=86_400,
        description="How long a replaced version's chunks stay readable (and a re-embedded "
        "collection's former Chroma collection).",
    )
    reembed_timeout_seconds: int = Field(
        21_600,
        ge=60,
        le=604_800,
        description="Longest one attempt of a re-embedding may run (it resumes from what it "
        "copied when retried).",
    )
    reembed_batch_documents: int = Field(
        50,
        ge=1,
        le=1000,
        description="Documents a re-embedding copies per step: progress is saved, and a "
        "cancel noticed, after each.",
    )
    idempotency_ttl_hours: int = Field(
        24, ge=1, le=720, description="How long an Idempotency-Key is remembered."
    )
    max_event_streams: int = Field(
        200, ge=1, le=10_000, description="Job event streams (SSE) one process serves at once."
    )
    max_event_streams_per_tenant: int = Field(
        50,
        ge=1,
        le=10_000,
        description="Job event streams (SSE) one tenant may hold open on one process, so one "
        "tenant cannot take all of MAX_EVENT_STREAMS.",
    )

    @field_validator("reconcile_interval_seconds")
    @classmethod
    def _divides_a_minute(cls, value: int) -> int:
        if 60 % value:
            raise ValueError("allowed: a divisor of 60 (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60)")
        return value


class FetchSettings(_EnvSettings):
    fetch_timeout_seconds: float = Field(
        20.0, gt=0, le=600, description="Time limit of each URL fetch."
    )
    fetch_max_redirects: int = Field(5, ge=0, le=20, description="Redirects a URL fetch follows.")
    fetch_max_pages: int = Field(
        50, ge=1, le=10_000, description="Most pages one URL ingest (with max_depth) fetches."
    )
    fetch_allow_networks: str = Field(
        "",
        description="Comma-separated CIDRs URL ingest may reach although private or loopback.",
    )


class InternalAuthSettings(_EnvSettings):
    internal_token: SecretStr | None = Field(
        None,
        description="Shared secret the gateway sends to ingest and query, which refuse "
        "requests without it (required in production).",
    )

    _blank_internal_token = field_validator("internal_token", mode="before")(_blank_to_none)


class ServiceSettings(
    RuntimeSettings,
    ServerSettings,
    TelemetrySettings,
    RedisSettings,
    PoolSettings,
    InternalAuthSettings,
):
    """What every service reads."""

    @model_validator(mode="after")
    def _production_secrets(self) -> ServiceSettings:
        """In production the shared secrets must be set, and long enough to resist guessing."""
        if self.environment != "production":
            return self
        weak = [
            name.upper()
            for name in ("jwt_secret", "internal_token")
            if name in type(self).model_fields
            and len(_secret_text(getattr(self, name))) < MIN_SECRET_CHARS
        ]
        if weak:
            raise ValueError(
                "; ".join(
                    f"{name} must be set to at least {MIN_SECRET_CHARS} characters when "
                    "ENVIRONMENT=production"
                    for name in weak
                )
            )
        return self

    def secret_values(self) -> list[str]:
        """Every secret this process holds, so telemetry can mask it wherever it shows up."""
        found: list[str] = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                found.append(value.get_secret_value())
        password = urlsplit(self.redis_url.get_secret_value()).password
        if password:
            found.append(password)
        return [secret for secret in found if secret]


class GatewaySettings(ServiceSettings, AuthSettings, StorageSettings):
    ingest_url: str = Field(
        "http://127.0.0.1:8110", description="Where the gateway reaches the ingest API."
    )
    query_url: str = Field(
        "http://127.0.0.1:8120",
        description="Where the gateway reaches the query replicas (nginx's internal listener).",
    )
    admin_api_key: SecretStr | None = Field(
        None,
        description="Bootstrap admin key (tenant 'default', every scope) for first start; "
        "at least 32 characters in production.",
    )
    rate_limit_per_minute: int = Field(
        600, ge=1, le=1_000_000, description="Requests per minute of a key without its own limit."
    )
    ingest_bytes_per_day: int = Field(
        1024**3, ge=1, description="Bytes of documents a key may send per UTC day by default."
    )
    upstream_timeout_seconds: float = Field(
        120.0, gt=0, le=3600, description="Longest the gateway waits for ingest or query."
    )
    upstream_retries: int = Field(
        1, ge=0, le=5, description="Retries of an idempotent request whose upstream failed."
    )
    upstream_buffer_bytes: int = Field(
        1024 * 1024,
        ge=0,
        le=64 * 1024 * 1024,
        description="Largest answer (by its Content-Length) the gateway reads whole before "
        "replying, so a service that dies half-way is a 502 (or, for a read, a retry), never a "
        "cut body; longer answers and streams pass through as they arrive.",
    )
    max_stream_connections: int = Field(
        200,
        ge=1,
        le=100_000,
        description="Connections for long-lived streams (job events, streamed answers), a pool "
        "apart from MAX_CONNECTIONS so open streams never hold up other requests.",
    )
    max_streams_per_tenant: int = Field(
        32,
        ge=1,
        le=100_000,
        description="Long-lived streams one tenant may have open at once (over every gateway).",
    )
    max_streams_per_credential: int = Field(
        16,
        ge=1,
        le=100_000,
        description="Long-lived streams one API key or token may have open at once.",
    )
    max_inspected_body_bytes: int = Field(
        1024 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        description="Largest JSON body the gateway reads itself (answers and chat, to see "
        "whether they stream; searches, to send them again; collection names of keys limited "
        "to some collections).",
    )
    max_upload_connections: int = Field(
        64,
        ge=1,
        le=100_000,
        description="Connections for document writes (uploads, batches, replacements, URL "
        "ingests), a pool apart from MAX_CONNECTIONS so slow uploads never hold up other "
        "requests.",
    )
    max_uploads_per_tenant: int = Field(
        8,
        ge=1,
        le=100_000,
        description="Document writes one tenant may have in progress at once (over every gateway).",
    )
    max_uploads_per_credential: int = Field(
        4,
        ge=1,
        le=100_000,
        description="Document writes one API key or token may have in progress at once.",
    )
    upload_body_timeout_seconds: float = Field(
        600.0,
        gt=0,
        le=86_400,
        description="Longest the body of a document write may take to arrive, however "
        "steadily it trickles (nginx's CLIENT_BODY_TIMEOUT ends one that stalls).",
    )
    mcp_enabled: bool = Field(
        True, description="Serve the MCP server (tools for agents) at /mcp: docs/mcp.md."
    )
    mcp_max_document_chunks: int = Field(
        200,
        ge=1,
        le=10_000,
        description="Most chunks the MCP tool get_document returns of one document (the rest "
        "are read a passage at a time, with chunk_id).",
    )
    mcp_max_result_bytes: int = Field(
        16 * 1024 * 1024,
        ge=64 * 1024,
        le=1024 * 1024 * 1024,
        description="Largest answer of the API an MCP tool reads (a document with all its "
        "chunks, say); over it the tool refuses.",
    )

    _blank_admin_api_key = field_validator("admin_api_key", mode="before")(_blank_to_none)

    @model_validator(mode="after")
    def _production_admin_key(self) -> GatewaySettings:
        """The bootstrap key holds every scope in every tenant: no short one in production."""
        key = _secret_text(self.admin_api_key)
        if self.environment == "production" and key and len(key) < MIN_SECRET_CHARS:
            raise ValueError(
                f"ADMIN_API_KEY must be at least {MIN_SECRET_CHARS} characters when "
                "ENVIRONMENT=production (or left empty)"
            )
        return self


class IngestSettings(
    ServiceSettings,
    ChromaSettings,
    LLMSettings,
    StorageSettings,
    EmbeddingSettings,
    IngestLimits,
    JobSettings,
    FetchSettings,
):
    pass


class RetrievalSettings(_EnvSettings):
    search_mode: Literal["hybrid", "dense", "lexical"] = Field(
        "hybrid", description="Retrieval of requests that do not choose: hybrid, dense, lexical."
    )
    fusion: Literal["rrf", "convex"] = Field(
        "convex",
        description="How hybrid search combines its lists: a weighted sum of scores "
        "normalised from each scorer's least (convex) or reciprocal ranks (rrf).",
    )
    convex_dense_share: float = Field(
        0.8,
        ge=0,
        le=1,
        description="Convex fusion: the dense list's share of the score (the lexical list "
        "has the rest), unless a request sets its own weights.",
    )
    rrf_k: int = Field(60, ge=1, le=1000, description="Reciprocal-rank fusion constant k.")
    dense_weight: float = Field(
        1.0, ge=0, le=10, description="Weight of dense ranks in reciprocal-rank fusion."
    )
    lexical_weight: float = Field(
        1.0, ge=0, le=10, description="Weight of lexical (BM25) ranks in reciprocal-rank fusion."
    )
    bm25_k1: float = Field(1.2, ge=0, le=10, description="BM25 term-frequency saturation k1.")
    bm25_b: float = Field(0.75, ge=0, le=1, description="BM25 length normalisation b.")
    search_candidates: int = Field(
        100, ge=1, le=2000, description="Candidates each retriever hands to fusion."
    )
    max_top_k: int = Field(100, ge=1, le=1000, description="Most results one search returns.")
    mmr_lambda: float = Field(
        0.5, ge=0, le=1, description="MMR trade-off: 1 relevance only, 0 diversity only."
    )
    max_query_chars: int = Field(
        16_000,
        ge=16,
        le=100_000,
        description="Longest query text (or chat message) accepted: a query may be a whole "
        "passage (search by example; BEIR's ArguAna asks with arguments of 1,200 characters on "
        "average), a chat message a pasted page.",
    )


class GenerationSettings(_EnvSettings):
    generator: Literal["extractive", "openai", "google"] = Field(
        "extractive", description="Answer generator of requests that do not choose."
    )
    extractive_embed_sentences: int = Field(
        64,
        ge=0,
        le=1000,
        description="Sentences of the sources the offline generator scores by meaning (the "
        "collection's embedder) per answer, in source order; 0: by shared words only.",
    )
    extractive_min_similarity: float | None = Field(
        None,
        ge=0,
        le=1,
        description="The offline generator answers that the documents found do not answer the "
        "question when no sentence scored by meaning is this similar to it; unset or empty: "
        "each collection's embedding model's own measured level (0.25 for all-MiniLM-L6-v2; 0 "
        "for hosted models: always answers); set, it is every collection's, whatever its model "
        "(models' similarities run on different scales); 0: always answers.",
    )

    _blank_min_similarity = field_validator("extractive_min_similarity", mode="before")(
        _blank_to_none
    )
    answer_not_answered: str = Field(
        "The documents found do not answer this question.",
        min_length=1,
        max_length=500,
        description="The offline generator's answer when the documents found do not answer "
        "the question (EXTRACTIVE_MIN_SIMILARITY): in your documents' language; it cites "
        "nothing, so it holds no square brackets.",
    )
    answer_no_documents: str = Field(
        "No relevant documents were found in this collection for the question.",
        min_length=1,
        max_length=500,
        description="The answer, whatever the generator, when the search finds nothing: in "
        "your documents' language; no square brackets.",
    )

    @property
    def no_claims(self) -> tuple[str, str]:
        """The answers that cite nothing and claim nothing (not judged, and known when a
        frontend's task quotes one)."""
        return (self.answer_not_answered, self.answer_no_documents)

    @field_validator("answer_not_answered", "answer_no_documents", mode="before")
    @classmethod
    def _one_plain_line(cls, value: Any) -> Any:
        """Stripped; one line, and no bracket a citation could be read from ("[1]")."""
        if not isinstance(value, str):
            return value
        value = value.strip()
        if any(ch in value for ch in "[]") or any(ch.isspace() and ch != " " for ch in value):
            raise ValueError("allowed: one line of text without square brackets")
        return value

    generator_fallback: str = Field(
        "extractive",
        description="Comma-separated generators tried in order when the chosen one fails.",
    )
    openai_model: str = Field("gpt-4o-mini", description="Chat model of the openai generator.")
    google_model: str = Field("gemini-2.0-flash", description="Model of the google generator.")
    llm_timeout_seconds: float = Field(
        60.0, gt=0, le=600, description="Time limit of each call to an LLM."
    )
    llm_max_retries: int = Field(
        2, ge=0, le=10, description="Retries of an LLM call that failed with 429, 5xx or timeout."
    )
    context_max_tokens: int = Field(
        3000, ge=100, le=200_000, description="Tokens of retrieved text given to the generator."
    )
    answer_max_tokens: int = Field(
        512, ge=16, le=32_000, description="Longest answer an LLM may write."
    )
    prompts_dir: str | None = Field(
        None, description="Directory whose prompt files override the built-in templates."
    )
    answer_cache_ttl_seconds: int = Field(
        3600, ge=0, le=30 * 86_400, description="How long answers are cached (0: no cache)."
    )
    session_ttl_seconds: int = Field(
        86_400, ge=60, le=90 * 86_400, description="How long an idle chat session is kept."
    )
    session_max_turns: int = Field(
        20, ge=1, le=500, description="Earlier turns of a session given as context."
    )
    history_search_turns: int = Field(
        2,
        ge=0,
        le=20,
        description="Without an LLM to condense a conversation, a follow-up is also searched "
        "together with this many earlier user turns, the rankings fused (0: the latest "
        "message alone).",
    )
    chat_citations: Literal["list", "none"] = Field(
        "list",
        description="What the OpenAI-compatible chat API adds to an answer for its citations: "
        "list (a Markdown list of the cited sources after the answer) or none (the bare [n]); "
        "a request's `citations` field chooses for itself.",
    )

    _blank_prompts_dir = field_validator("prompts_dir", mode="before")(_blank_to_none)


class EvaluationSettings(_EnvSettings):
    eval_sync_max_cases: int = Field(
        50, ge=1, le=10_000, description="Evaluations with more cases run in the background."
    )
    eval_max_cases: int = Field(
        20_000, ge=1, le=1_000_000, description="Most cases one evaluation may have."
    )
    eval_max_expected_answers: int = Field(
        20,
        ge=1,
        le=1000,
        description="Most expected answers one evaluation case may list (each is scored "
        "against the answer).",
    )
    eval_max_grade: int = Field(
        100,
        ge=1,
        le=1_000_000,
        description="Highest relevance grade a judgement may give (and the lowest, negated; a "
        "negative grade, such as TREC's -2 for junk, counts as 0): the scorer, trec_eval, takes "
        "memory in proportion to it.",
    )
    max_evaluations_per_tenant: int = Field(
        2,
        ge=1,
        le=1000,
        description="Background evaluations one tenant may run at once, over every query replica.",
    )
    evaluation_lease_seconds: int = Field(
        30,
        ge=2,
        le=3600,
        description="How long a background evaluation's slot outlives a query replica that died "
        "running it (the replica renews it every third of this).",
    )


class QuerySettings(
    ServiceSettings,
    EvaluationSettings,
    ChromaSettings,
    LLMSettings,
    StorageSettings,
    EmbeddingSettings,
    RetrievalSettings,
    GenerationSettings,
):
    pass


ALL_SETTINGS: tuple[type[ServiceSettings], ...] = (GatewaySettings, IngestSettings, QuerySettings)
