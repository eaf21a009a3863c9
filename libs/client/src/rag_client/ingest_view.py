"""``rag ingest``: upload files one request each, follow their jobs, and show it: a bar per file
and one overall (bytes, jobs done and failed, ETA) on a terminal, one line per event
otherwise; then a summary with every failure and its reason."""

from __future__ import annotations

import errno
import fnmatch
import os
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
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
from rag_client.terminal import plain, visible

UPLOAD_SHARE = 20  # of a file's 100 progress units: the upload; the job's progress is the rest


# Ingest's MAX_FILE_BYTES default: the limit assumed when the server does not tell its own.
DEFAULT_MAX_FILE_BYTES = 25 * 1024 * 1024


@dataclass(frozen=True)
class FoundFile:
    """A file to upload. ``path`` is where it was found, its folder resolved but its own name
    kept (a link's, not its target's): that name is shown and sent. ``target`` is what is
    read: the file itself, or the file a link points to."""

    path: Path
    target: Path
    size: int


@dataclass(frozen=True)
class SkippedFile:
    path: Path
    reason: str


@dataclass
class Collected:
    files: list[FoundFile] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)


def collect_files(paths: list[Path], *, recursive: bool, pattern: str | None) -> Collected:
    """The files named, and those in the folders named (their subfolders with ``recursive``),
    matching ``pattern``. In folders, hidden files are left out without a word; links that
    lead out of the folder named or to a hidden file, links to folders (not followed), broken
    links and anything but a regular file are skipped, with the reason. A file named is read
    wherever a link leads. FileNotFoundError for a path that does not exist."""
    collected = Collected()
    for path in paths:
        if path.is_file():
            if pattern is None or fnmatch.fnmatch(path.name, pattern):
                _add(collected, path.parent.resolve() / path.name, Path(os.path.realpath(path)))
        elif path.is_dir():
            top = Path(os.path.realpath(path))
            _read_folder(collected, top, top, recursive=recursive, pattern=pattern)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    files: dict[Path, FoundFile] = {}
    for found in collected.files:  # named twice, or named and in a folder named: sent once
        files.setdefault(found.path, found)
    skipped: dict[Path, SkippedFile] = {}
    for left_out in collected.skipped:
        if left_out.path not in files:  # a link named is read, even if its folder's walk skips it
            skipped.setdefault(left_out.path, left_out)
    return Collected(list(files.values()), list(skipped.values()))


def _add(collected: Collected, path: Path, target: Path) -> None:
    try:
        size = target.stat().st_size
    except OSError as exc:
        collected.skipped.append(SkippedFile(path, f"cannot read it: {exc.strerror}"))
    else:
        collected.files.append(FoundFile(path, target, size))


def _read_folder(
    collected: Collected, folder: Path, top: Path, *, recursive: bool, pattern: str | None
) -> None:
    """``folder`` (a real path: no link in it) within ``top``, depth first in name order."""
    try:
        with os.scandir(folder) as listing:
            entries = sorted(listing, key=lambda entry: entry.name)
    except OSError as exc:
        collected.skipped.append(SkippedFile(folder, f"cannot read the folder: {exc.strerror}"))
        return
    for entry in entries:
        path = folder / entry.name
        if entry.name.startswith("."):
            continue  # hidden, and all it holds: left out without a word
        if entry.is_dir(follow_symlinks=False):
            if recursive:
                _read_folder(collected, path, top, recursive=recursive, pattern=pattern)
            continue
        if pattern is not None and not fnmatch.fnmatch(entry.name, pattern):
            continue
        if entry.is_symlink():
            target = _link_target(path, top)
            if isinstance(target, str):
                collected.skipped.append(SkippedFile(path, target))
            else:
                _add(collected, path, target)
        elif entry.is_file(follow_symlinks=False):
            _add(collected, path, path)
        else:  # a FIFO (opening it would wait for a writer), a socket, a device
            collected.skipped.append(SkippedFile(path, "not a regular file"))


def _link_target(link: Path, top: Path) -> Path | str:
    """The regular file ``link`` leads to within ``top``, or why it is not read."""
    try:
        target = Path(os.path.realpath(link, strict=True))
    except OSError as exc:  # missing, or a loop
        return f"a broken link ({exc.strerror})"
    if not target.is_relative_to(top):
        return "a link to outside the folder"
    if any(part.startswith(".") for part in target.relative_to(top).parts):
        return "a link to a hidden file or folder"
    if target.is_dir():
        return "a link to a folder (not followed)"
    if not target.is_file():
        return "not a regular file"
    return target


class FileTooLarge(Exception):
    pass


def read_within(path: Path, limit: int) -> bytes:
    """The content of the regular file ``path``, never more than ``limit`` bytes of it in
    memory: FileTooLarge from its size before reading, or if it grew past it since."""
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
    # Not through a link put there since it was listed (the path found has none).
    flags |= getattr(os, "O_NOFOLLOW", 0)
    with open(os.open(path, flags), "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):  # replaced since it was listed
            raise OSError(errno.EINVAL, "not a regular file")
        if info.st_size > limit:
            raise FileTooLarge
        content = file.read(info.st_size + 1)
        if len(content) > info.st_size:  # it grows: read on, to one byte past the limit
            content += file.read(limit + 1 - len(content))
    if len(content) > limit:
        raise FileTooLarge
    return content


def size_text(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass
class FileResult:
    path: Path  # as found: shown, and its name sent
    target: Path  # what is read
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
        files: list[FoundFile],
        *,
        skipped: Sequence[SkippedFile] = (),
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
        metadata: dict[str, Any] | None,
        console: Console,
        live: bool,
    ) -> None:
        self.client = client
        self.collection = collection
        self.metadata = metadata
        self.console = console
        self.live = live
        self.max_file_bytes = max_file_bytes
        self.results = [FileResult(f.path, f.target, f.size) for f in files]
        self.skipped = list(skipped)
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

    def say(self, text: str, *, live_too: bool = False) -> None:
        """One line per event (file names and the server's reasons in it made inert)."""
        if live_too or not self.live:
            self.console.print(plain(text, one_line=True), highlight=False, soft_wrap=True)

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
            if result.size > self.max_file_bytes:  # told from its size, never read
                raise FileTooLarge
            content = read_within(result.target, self.max_file_bytes)
            accepted = self.client.upload_files(
                self.collection, [(result.path.name, content)], metadata=self.metadata
            )
        except APIError as exc:
            if exc.status in (401, 403, 404):
                raise  # every other file would be refused the same way
            result.state, result.reason = "refused", f"{exc.status} {exc.detail or exc.title}"
            self.say(f"{result.path.name}: refused: {result.reason}")
        except FileTooLarge:
            result.state = "refused"
            result.reason = (
                f"larger than the server takes (MAX_FILE_BYTES, {self.max_file_bytes} bytes)"
            )
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
        for left_out in self.skipped:
            self.say(f"skipped {left_out.path.name}: {left_out.reason}", live_too=True)
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
                        escape(visible(result.path.name, one_line=True)),
                        total=100,
                        status="waiting",
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
            "skipped": [{"file": str(s.path), "reason": s.reason} for s in self.skipped],
            "succeeded": done,
            "failed": failed,
            "bytes": uploaded,
            "seconds": round(time.monotonic() - self.started, 2),
        }

    def table(self) -> Table:
        done, failed, _ = self.counts()
        skipped = f", {len(self.skipped)} skipped" if self.skipped else ""
        table = Table(
            title=f"Ingested into {self.collection}: {done} succeeded, {failed} failed{skipped}",
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
                plain(r.path.name, one_line=True),
                size_text(r.size),
                f"[{colour}]{r.state}[/]",
                "-" if r.chunks is None else str(r.chunks),
                plain(r.reason or ""),
            )
        for left_out in self.skipped:
            table.add_row(
                plain(left_out.path.name, one_line=True),
                "-",
                "[yellow]skipped[/]",
                "-",
                plain(left_out.reason),
            )
        return table
