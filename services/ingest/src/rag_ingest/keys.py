"""Every Redis key the ingest service and its worker use, in one place."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_NAMESPACE = "default"


@dataclass(frozen=True)
class Keys:
    """Key names under ``prefix`` (REDIS_PREFIX). ``namespace`` isolates tenants."""

    prefix: str
    namespace: str = DEFAULT_NAMESPACE

    # Collections ----------------------------------------------------------------------------
    def collections(self) -> str:
        return f"{self.prefix}:cols:{self.namespace}"

    def collection(self, name: str) -> str:
        return f"{self.prefix}:col:{self.namespace}:{name}"

    def chroma_name(self, name: str) -> str:
        return f"{self.prefix}-{self.namespace}-{name}"

    # Documents ------------------------------------------------------------------------------
    def documents(self, collection: str) -> str:
        """Sorted set of document ids, scored by first ingest time."""
        return f"{self.prefix}:docs:{self.namespace}:{collection}"

    def document(self, collection: str, document_id: str) -> str:
        return f"{self.prefix}:doc:{self.namespace}:{collection}:{document_id}"

    def per_document_patterns(self, collection: str) -> list[str]:
        """Patterns matching every per-document key of a collection (for deleting it)."""
        return [
            f"{self.prefix}:{kind}:{self.namespace}:{collection}:*" for kind in ("doc", "docseq")
        ]

    def content_hashes(self, collection: str) -> str:
        """Hash content_hash -> document id: the dedup index."""
        return f"{self.prefix}:hashes:{self.namespace}:{collection}"

    def document_sequence(self, collection: str, document_id: str) -> str:
        """Counter giving each change to a document its order (the newest change wins)."""
        return f"{self.prefix}:docseq:{self.namespace}:{collection}:{document_id}"

    def document_lock(self, collection: str, document_id: str) -> str:
        return f"{self.prefix}:lock:{self.namespace}:{collection}:{document_id}"

    def changes(self, collection: str) -> str:
        """Stream of chunk changes that query replicas follow."""
        return f"{self.prefix}:changes:{self.namespace}:{collection}"

    # Jobs -----------------------------------------------------------------------------------
    def job(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def job_events(self, job_id: str) -> str:
        return f"{self.prefix}:jobev:{job_id}"

    def job_payload(self, job_id: str) -> str:
        return f"{self.prefix}:payload:{job_id}"

    # The job save script (jobs/store.py) derives the two state indexes from jobs_all().
    def jobs_all(self) -> str:
        return f"{self.prefix}:jobs:{self.namespace}"

    def jobs_by_state(self, state: str) -> str:
        return f"{self.prefix}:jobs:{self.namespace}:state:{state}"

    def jobs_by_collection(self, collection: str) -> str:
        return f"{self.prefix}:jobs:{self.namespace}:col:{collection}"

    def jobs_by_collection_state(self, collection: str, state: str) -> str:
        return f"{self.prefix}:jobs:{self.namespace}:col:{collection}:state:{state}"

    def idempotency(self, key: str) -> str:
        return f"{self.prefix}:idem:{self.namespace}:{key}"

    # Worker ---------------------------------------------------------------------------------
    def queue(self) -> str:
        return f"{self.prefix}:queue"

    def worker_heartbeat(self, worker_id: str) -> str:
        return f"{self.prefix}:worker:{worker_id}"

    def cleanups(self) -> str:
        """Sorted set of chunk sets to delete from Chroma, scored by when they may go (shared
        by every namespace: each member names its own)."""
        return f"{self.prefix}:cleanups"
