"""``rag ingest``: upload files one request each, follow their jobs, and show it: a bar per file
and one overall (bytes, jobs done and failed, ETA) on a terminal, one line per event
otherwise; then a summary with every failure and its reason."""

from __future__ import annotations

import fnmatch
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from rag_client.client import Client
from rag_client.errors import APIError
from rag_client.models import Job

UPLOAD_SHARE = 20  # of a file's 100 progress units: the upload; the job's progress is the rest


def collect_files(paths: list[Path], *, recursive: bool, pattern: str | None) -> list[Path]:
    """The files named, and those in the folders named (their subfolders with ``recursive``),
    matching ``pattern``; hidden files in folders are skipped. FileNotFoundError for a path
    that does not exist."""
    found: list[Path] = []
    for path in paths:
        if path.is_file():
            if pattern is None or fnmatch.fnmatch(path.name, pattern):
                found.append(path)
        elif path.is_dir():
            walk = path.rglob("*") if recursive else path.glob("*")
            for item in sorted(walk):
                relative = item.relative_to(path).parts
                if any(part.startswith(".") for part in relative) or not item.is_file():
                    continue
                if pattern is None or fnmatch.fnmatch(item.name, pattern):
                    found.append(item)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    unique: dict[Path, None] = dict.fromkeys(p.resolve() for p in found)
    return list(unique)


def size_text(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass
class FileResult:
    path: Path
    size: int
    job_id: str | None = None
    state: str = "pending"  # pending, queued, running, succeeded, failed, dead, refused
    stage: str = ""
    progress: float = 0.0
    chunks: int | None = None
    reason: str | None = None

    @property
    def finished(self) -> bool:
        return self.state in ("succeeded", "failed", "dead", "refused")


class IngestRun:
    def __init__(
        self,
        client: Client,
        collection: str,
        files: list[Path],
        *,
        metadata: dict[str, Any] | None,
        console: Console,
        live: bool,
    ) -> None:
        self.client = client
        self.collection = collection
        self.metadata = metadata
        self.console = console
        self.live = live
        self.results = [FileResult(path, path.stat().st_size) for path in files]
        self.by_job: dict[str, FileResult] = {}
        self.started = time.monotonic()
        self.progress: Progress | None = None
        self.tasks: dict[Path, TaskID] = {}
        self.overall: TaskID | None = None

    # What happened, as text ---------------------------------------------------------------

    def counts(self) -> tuple[int, int, int]:
        done = sum(r.state == "succeeded" for r in self.results)
        failed = sum(r.state in ("failed", "dead", "refused") for r in self.results)
        uploaded = sum(r.size for r in self.results if r.job_id is not None)
        return done, failed, uploaded

    def overall_text(self) -> str:
        done, failed, uploaded = self.counts()
        total = sum(r.size for r in self.results)
        return (
            f"{size_text(uploaded)}/{size_text(total)} uploaded · jobs {done}/"
            f"{len(self.results)} done · {failed} failed"
        )

    def say(self, text: str) -> None:
        if not self.live:
            self.console.print(text, highlight=False, markup=False, soft_wrap=True)

    # Progress -------------------------------------------------------------------------------

    def units(self, result: FileResult) -> float:
        if result.finished:
            return 100
        if result.job_id is None:
            return 0
        return UPLOAD_SHARE + (100 - UPLOAD_SHARE) * result.progress

    def refresh(self, result: FileResult) -> None:
        if self.progress is None:
            return
        task = self.tasks[result.path]
        status = result.state if not result.stage or result.finished else result.stage
        self.progress.update(
            task,
            completed=self.units(result),
            status=status,
            # A finished file gives its line to those still running; the summary lists it.
            visible=not result.finished or result.state != "succeeded",
        )
        assert self.overall is not None
        self.progress.update(
            self.overall,
            completed=sum(self.units(r) for r in self.results),
            description=f"[bold]overall[/] {self.overall_text()}",
        )

    def on_job(self, job: Job) -> None:
        result = self.by_job[job.id]
        before = result.state
        result.state, result.stage, result.progress = job.state, job.stage, job.progress
        if job.state == "succeeded":
            outcome = job.result or {}
            result.chunks = outcome.get("chunks", outcome.get("chunks_created"))
            if outcome.get("status") not in (None, "created", "replaced"):
                result.reason = str(outcome["status"])  # unchanged, duplicate
        if job.state in ("failed", "dead"):
            result.reason = job.error or f"{job.state} at {job.error_stage or job.stage}"
        self.refresh(result)
        if job.state != before:
            name = result.path.name
            if job.state == "succeeded":
                self.say(f"{name}: succeeded ({result.chunks} chunks)")
            elif job.state in ("failed", "dead"):
                self.say(f"{name}: {job.state}: {result.reason}")
            else:
                self.say(f"{name}: {job.state}")

    # The run --------------------------------------------------------------------------------

    def upload(self, result: FileResult) -> None:
        try:
            accepted = self.client.upload_files(
                self.collection, [result.path], metadata=self.metadata
            )
        except APIError as exc:
            if exc.status in (401, 403, 404):
                raise  # every other file would be refused the same way
            result.state, result.reason = "refused", f"{exc.status} {exc.detail or exc.title}"
            self.say(f"{result.path.name}: refused: {result.reason}")
        except OSError as exc:  # unreadable here (permissions, gone since it was listed)
            result.state, result.reason = "refused", f"cannot read it: {exc.strerror}"
            self.say(f"{result.path.name}: refused: {result.reason}")
        else:
            job = accepted.jobs[0]
            result.job_id, result.state = job.job_id, job.state
            self.by_job[job.job_id] = result
            self.say(f"uploaded {result.path.name} ({size_text(result.size)}) -> job {job.job_id}")
        self.refresh(result)

    def execute(self, *, wait: bool) -> list[FileResult]:
        if self.live:
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TextColumn("{task.fields[status]}"),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            ) as progress:
                self.progress = progress
                self.overall = progress.add_task(
                    f"[bold]overall[/] {self.overall_text()}",
                    total=100 * len(self.results),
                    status="",
                )
                for result in self.results:
                    self.tasks[result.path] = progress.add_task(
                        escape(result.path.name), total=100, status="waiting"
                    )
                self.run(wait=wait)
            self.progress = None
        else:
            self.run(wait=wait)
        return self.results

    def run(self, *, wait: bool) -> None:
        for result in self.results:
            self.upload(result)
        if wait and self.by_job:
            self.client.wait_jobs(list(self.by_job), on_progress=self.on_job)
        done, failed, uploaded = self.counts()
        self.say(
            f"overall: {len(self.results)} files, {size_text(uploaded)} uploaded, "
            f"{done} succeeded, {failed} failed, {time.monotonic() - self.started:.1f} s"
        )

    # The summary ----------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        done, failed, uploaded = self.counts()
        return {
            "collection": self.collection,
            "files": [
                {
                    "file": str(r.path),
                    "bytes": r.size,
                    "job_id": r.job_id,
                    "state": r.state,
                    "chunks": r.chunks,
                    "reason": r.reason,
                }
                for r in self.results
            ],
            "succeeded": done,
            "failed": failed,
            "bytes": uploaded,
            "seconds": round(time.monotonic() - self.started, 2),
        }

    def table(self) -> Table:
        done, failed, _ = self.counts()
        table = Table(
            title=f"Ingested into {self.collection}: {done} succeeded, {failed} failed",
            title_justify="left",
        )
        for name, justify in (
            ("file", "left"),
            ("size", "right"),
            ("state", "left"),
            ("chunks", "right"),
            ("reason", "left"),
        ):
            table.add_column(name, justify=justify)  # type: ignore[arg-type]
        for r in self.results:
            colour = {"succeeded": "green", "queued": "yellow", "running": "yellow"}.get(
                r.state, "red"
            )
            table.add_row(
                escape(r.path.name),
                size_text(r.size),
                f"[{colour}]{r.state}[/]",
                "-" if r.chunks is None else str(r.chunks),
                escape(r.reason or ""),
            )
        return table
