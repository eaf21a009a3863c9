"""/v1/jobs: follow, list and retry ingest jobs; stream a job's progress as SSE."""

from __future__ import annotations

import math
import re
import weakref
from collections.abc import AsyncGenerator
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED
from rag_core.errors import InvalidInput, NotFound

from rag_ingest.documents.service import IngestService
from rag_ingest.jobs.events import EventStreams
from rag_ingest.jobs.model import FINAL_STATES, JobState, JobView
from rag_ingest.jobs.store import JobStore

HEARTBEAT_MS = 15_000
# A Redis stream id, as each event of /events is sent with: <milliseconds>-<sequence>, each
# an unsigned 64-bit number; Redis also reads <milliseconds> alone (sequence 0).
STREAM_ID = re.compile(r"(?P<ms>[0-9]{1,20})(?:-(?P<seq>[0-9]{1,20}))?")
UINT64_MAX = 2**64 - 1


def resume_after(last_event_id: str | None) -> str:
    """The stream id to read after: "0" (from the start) without a Last-Event-ID, else the
    header, which must be an id this API sends (``id:`` of its events); 422 naming it if not,
    before the stream starts (Redis would refuse it once the response had begun)."""
    if not last_event_id:
        return "0"
    found = STREAM_ID.fullmatch(last_event_id)
    if found is None or any(
        int(part) > UINT64_MAX for part in found.group("ms", "seq") if part is not None
    ):
        raise InvalidInput.for_field(
            "Last-Event-ID",
            "not an event id",
            detail="Last-Event-ID must be the id of an event of this stream (<ms>-<seq>, as "
            f"sent in its id: lines), not {last_event_id[:64]!r}",
        )
    return last_event_id


class JobList(msgspec.Struct):
    jobs: list[JobView]
    next_before: float | None = None


class JobController(Controller):
    path = "/v1/jobs"
    tags = ["jobs"]

    @get("/{job_id:str}", summary="A job: state, progress, result or failure reason")
    async def get_job(
        self, job_id: FromPath[str], jobs: NamedDependency[JobStore], tenant: NamedDependency[str]
    ) -> JobView:
        record = await jobs.get(tenant, job_id)
        if record is None:
            raise NotFound(f"job {job_id!r} does not exist (or has expired)")
        return JobView.of(record)

    @get("", summary="List jobs, newest first")
    async def list_jobs(
        self,
        jobs: NamedDependency[JobStore],
        tenant: NamedDependency[str],
        job_state: Annotated[JobState | None, QueryParameter(name="state")] = None,
        collection: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
        before: FromQuery[float | None] = None,
    ) -> JobList:
        if before is not None and not math.isfinite(before):
            # Redis refuses a NaN bound; infinities page nowhere (next_before is finite).
            raise InvalidInput.for_field(
                "before",
                "not a finite number",
                detail=f"before: a created_at from a listing (next_before), not {before!r}",
            )
        found = await jobs.find(
            tenant, state=job_state, collection=collection, limit=limit, before=before
        )
        return JobList(
            [JobView.of(j) for j in found], found[-1].created_at if len(found) == limit else None
        )

    @post(
        "/{job_id:str}/retry",
        status_code=HTTP_202_ACCEPTED,
        summary="Run a failed or dead-lettered job again",
    )
    async def retry_job(
        self,
        job_id: FromPath[str],
        ingest: NamedDependency[IngestService],
        tenant: NamedDependency[str],
    ) -> JobView:
        return JobView.of(await ingest.retry(tenant, job_id))

    @get(
        "/{job_id:str}/events",
        summary="Server-sent events of a job's progress until it ends",
        responses={
            HTTP_200_OK: ResponseSpec(
                str,
                description="Events named for what happened (`queued`, `started`, `progress`, "
                "`retrying`... then `succeeded`, `failed` or `dead`), each data a JSON object: "
                "`state`, `stage`, `progress`, `attempts`, `at`",
                media_type="text/event-stream",
                generate_examples=False,
            )
        },
    )
    async def job_events(
        self,
        job_id: FromPath[str],
        jobs: NamedDependency[JobStore],
        event_streams: NamedDependency[EventStreams],
        request: Request[Any, Any, Any],
        tenant: NamedDependency[str],
    ) -> ServerSentEvent:
        """Replays the job's events so far, then follows it; ends after its final state.
        ``Last-Event-ID`` (an event's id) resumes after a reconnect; 422 for any other value,
        before the stream starts. 429 when the tenant has
        MAX_EVENT_STREAMS_PER_TENANT open, 503 when the process has MAX_EVENT_STREAMS open."""
        after = resume_after(request.headers.get("last-event-id"))
        record = await jobs.get(tenant, job_id)
        if record is None:
            raise NotFound(f"job {job_id!r} does not exist (or has expired)")
        slot = event_streams.reserve(tenant)
        # A job already over has all its events written: read them without waiting (a client
        # resuming after the last one used to wait a whole heartbeat for the stream to end).
        block: int | None = None if record.state in FINAL_STATES else HEARTBEAT_MS

        async def stream() -> AsyncGenerator[ServerSentEventMessage, None]:
            cursor = after
            try:
                while True:
                    events = await event_streams.read(job_id, after=cursor, block_ms=block)
                    for event_id, fields in events:
                        cursor = event_id
                        yield ServerSentEventMessage(
                            data=msgspec.json.encode(fields).decode(),
                            event=fields["event"],
                            id=event_id,
                        )
                        if fields.get("state") in FINAL_STATES and fields["event"] != "progress":
                            return
                    if not events:
                        record = await jobs.get(tenant, job_id)
                        if record is None or record.state in FINAL_STATES:
                            return
                        yield ServerSentEventMessage(comment="keep-alive")
            finally:
                slot.release()

        events = stream()
        # A stream that never starts (its client went before the response did) gives it back.
        weakref.finalize(events, slot.release)
        return ServerSentEvent(events)
