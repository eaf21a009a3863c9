"""The ``rag`` command line, on the public API through the gateway.

Exit codes: 0 done; 1 the API refused or failed the request (its problem details on stderr);
2 bad usage or an unreadable input file; 3 the server could not be reached; 4 the work ran and
failed (a job or an evaluation that failed, a deployment that is not ready)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from rag_client.client import DEFAULT_URL, Client, Settings
from rag_client.errors import APIError, ConnectionFailed
from rag_client.ingest_view import DEFAULT_MAX_FILE_BYTES, IngestRun, collect_files
from rag_client.models import DoneEvent, ErrorEvent, Job, Model, SourcesEvent, TokenEvent
from rag_client.terminal import plain

EXIT_API, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_FAILED = 1, 2, 3, 4
R = TypeVar("R")

app = typer.Typer(
    name="rag",
    help="RAG Engine from the command line (RAG_URL, RAG_API_KEY).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="markdown",  # docstrings are wrapped paragraphs
)
collections_app = typer.Typer(help="List, create, show and delete collections.")
keys_app = typer.Typer(help="API keys (needs an admin key).", no_args_is_help=True)
config_app = typer.Typer(help="The client's settings.", no_args_is_help=True)
app.add_typer(collections_app, name="collections")
app.add_typer(keys_app, name="keys")
app.add_typer(config_app, name="config")
out = Console()
err = Console(stderr=True)


@dataclass
class State:
    settings: Settings = field(default_factory=Settings)
    as_json: bool = False
    sources: dict[str, str] = field(default_factory=dict)  # setting -> where its value came from


state = State()


@app.callback()
def options(
    url: Annotated[
        str | None,
        typer.Option(help=f"The gateway (env RAG_URL; default {DEFAULT_URL})"),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            help="An API key, sent as a Bearer token (env RAG_API_KEY)", show_default=False
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON on stdout, for scripts")] = False,
) -> None:
    try:
        state.settings = Settings.from_env(url, api_key)
    except ValueError as exc:  # RAG_TIMEOUT or RAG_RETRIES that are not numbers
        raise fail(EXIT_USAGE, f"bad setting: {exc}") from None
    state.as_json = as_json

    def origin(given: object, env: str) -> str:
        return "option" if given else ("environment" if os.environ.get(env) else "default")

    state.sources = {
        "url": origin(url, "RAG_URL"),
        "api_key": origin(api_key, "RAG_API_KEY"),
        "timeout": origin(None, "RAG_TIMEOUT"),
        "retries": origin(None, "RAG_RETRIES"),
    }


def fail(code: int, message: str) -> typer.Exit:
    err.print(Text.assemble(("error:", "bold red"), " ", plain(message)), soft_wrap=True)
    return typer.Exit(code)


def api_failure(exc: APIError) -> typer.Exit:
    lines = [str(exc)]
    lines += [f"  {e.get('field', '?')}: {e.get('message', '')}" for e in exc.errors]
    return fail(EXIT_API, "\n".join(lines))


@contextmanager
def client() -> Iterator[Client]:
    """A client whose failures end the command with the right exit code."""
    try:
        with Client(settings=state.settings) as rag:
            yield rag
    except APIError as exc:
        raise api_failure(exc) from None
    except ConnectionFailed as exc:
        raise fail(EXIT_UNREACHABLE, f"cannot reach the API: {exc}") from None


def emit(value: Any) -> None:
    """JSON on stdout (models as their fields)."""
    if isinstance(value, Model):
        value = value.to_dict()
    elif isinstance(value, list):
        value = [v.to_dict() if isinstance(v, Model) else v for v in value]
    out.print_json(data=value)


def show(value: Any, human: Any) -> None:
    """``value`` as JSON with --json; otherwise ``human`` (text or a table) for people."""
    if state.as_json:
        emit(value)
    else:
        out.print(human)


# Far deeper than any filter (the server takes 8 levels), metadata or test case, and far from
# the recursion limit: JSON a little shallower than that decodes, then fails to encode.
MAX_JSON_DEPTH = 100


def nesting(value: Any) -> int:
    """How deeply lists and objects nest in ``value`` (counted without recursion)."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            inside = item.values() if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in inside)
    return deepest


def load_json(text: str) -> Any:
    """``json.loads``; ValueError for JSON nested deeper than MAX_JSON_DEPTH too."""
    try:
        value = json.loads(text)
    except RecursionError:
        value = None
    else:
        if nesting(value) <= MAX_JSON_DEPTH:
            return value
    raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")


def parse_json_option(name: str, text: str | None) -> Any:
    if text is None:
        return None
    try:
        return load_json(text)
    except ValueError as exc:
        raise fail(EXIT_USAGE, f"{name}: not JSON ({exc})") from None


def when(timestamp: float | None) -> str:
    if not timestamp:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S")


# Collections --------------------------------------------------------------------------------


def collections_table(rows: list[Any]) -> Table:
    table = Table(title="Collections", title_justify="left")
    for name, justify in (
        ("name", "left"),
        ("documents", "right"),
        ("chunks", "right"),
        ("embedding model", "left"),
        ("created (UTC)", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for c in rows:
        table.add_row(
            c.name, str(c.document_count), str(c.chunk_count), c.embedding_model, when(c.created_at)
        )
    return table


@collections_app.callback(invoke_without_command=True)
def collections_list(ctx: typer.Context) -> None:
    """Without a subcommand: list the collections."""
    if ctx.invoked_subcommand is not None:
        return
    with client() as rag:
        found = rag.list_collections()
    show(found, collections_table(found))


@collections_app.command("create")
def collections_create(
    name: str,
    description: Annotated[str | None, typer.Option(help="What it holds")] = None,
    embedding_model: Annotated[str | None, typer.Option(help="Default: the server's")] = None,
) -> None:
    """Create a collection."""
    with client() as rag:
        created = rag.create_collection(
            name, description=description, embedding_model=embedding_model
        )
    show(created, f"created collection {created.name} ({created.embedding_model})")


@collections_app.command("show")
def collections_show(name: str) -> None:
    """A collection with its counts."""
    with client() as rag:
        found = rag.get_collection(name)
    show(found, collections_table([found]))


@collections_app.command("delete")
def collections_delete(
    name: str,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask")] = False,
) -> None:
    """Delete a collection and everything in it."""
    if not yes and not typer.confirm(f"Delete collection {name} and all its documents?"):
        raise fail(EXIT_USAGE, "not confirmed (use --yes in scripts)")
    with client() as rag:
        deleted = rag.delete_collection(name)
    show(deleted, f"deleted collection {name}")


@collections_app.command("reembed")
def collections_reembed(
    name: str,
    embedding_model: Annotated[
        str | None, typer.Argument(help="The model to move to (see `rag collections create`)")
    ] = None,
    cancel: Annotated[
        bool, typer.Option("--cancel", help="Stop the running re-embedding instead")
    ] = False,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Follow the job")] = True,
) -> None:
    """Re-embed a collection with another model, without downtime: search keeps answering
    with the current model until the new one has every chunk, then switches at once. Its own
    model replaces vectors of an earlier revision of that model (after an upgrade)."""
    with client() as rag:
        if cancel:
            job = rag.cancel_reembedding(name)
            show(job, f"cancelled the re-embedding of {name} (job {job.id})")
            return
        if not embedding_model:
            raise fail(EXIT_USAGE, "name the model to move to, or use --cancel")
        job = rag.reembed_collection(name, embedding_model)
        if wait:
            job = follow_job(rag, job)
    if state.as_json:
        emit(job.to_dict())
    elif job.state == "succeeded":
        result = job.result or {}
        out.print(
            f"{name} now uses {embedding_model}: {result.get('documents', 0)} documents, "
            f"{result.get('chunks_embedded', 0)} chunks embedded in {result.get('seconds', 0)} s",
            highlight=False,
        )
    elif not wait:
        out.print(f"job {job.id}: re-embedding {name} with {embedding_model}", highlight=False)
    else:
        out.print(f"job {job.id}: {job.state}: {job.error or ''}", highlight=False)
    if wait and job.state != "succeeded":
        raise typer.Exit(EXIT_FAILED)


# Ingest -------------------------------------------------------------------------------------


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files and folders to upload")],
    collection: Annotated[str, typer.Option("--collection", "-c", help="Into this collection")],
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Into subfolders")] = False,
    pattern: Annotated[
        str | None, typer.Option(help="Only file names matching this glob, e.g. '*.pdf'")
    ] = None,
    metadata: Annotated[
        str | None, typer.Option(help="A JSON object of metadata for every file")
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Follow the jobs until they end")
    ] = True,
) -> None:
    """Upload files (PDF, DOCX, HTML, Markdown, text...), one job each, and follow them: a
    progress bar per file and overall on a terminal, plain lines otherwise; then a summary
    with every failure and its reason. Creates the collection if it does not exist."""
    meta = parse_json_option("--metadata", metadata)
    if meta is not None and not isinstance(meta, dict):
        raise fail(EXIT_USAGE, "--metadata: must be a JSON object")
    try:
        found = collect_files(paths, recursive=recursive, pattern=pattern)
    except FileNotFoundError as exc:
        raise fail(EXIT_USAGE, str(exc)) from None
    if not found.files:
        for left_out in found.skipped:
            err.print(plain(f"skipped {left_out.path}: {left_out.reason}", one_line=True))
        raise fail(EXIT_USAGE, "no files to upload (check the paths, --recursive and --pattern)")
    with client() as rag:
        try:
            rag.get_collection(collection)
        except APIError as exc:
            if exc.status != 404:
                raise
            rag.create_collection(collection)
            err.print(f"created collection {collection}", highlight=False)
        run = IngestRun(
            rag,
            collection,
            found.files,
            skipped=found.skipped,
            max_file_bytes=largest_file(rag),
            metadata=meta,
            console=err,
            live=err.is_terminal and not state.as_json,
        )
        results = run.execute(wait=wait)
    show(run.summary(), run.table())
    if any(r.state in ("failed", "dead", "refused") for r in results):
        raise typer.Exit(EXIT_FAILED)


def largest_file(rag: Client) -> int:
    """The largest file the server takes: ingest's MAX_FILE_BYTES as it tells it, or that
    setting's default when it does not (ingest not ready, an older server)."""
    try:
        told = rag.get_system_info().max_file_bytes
    except (APIError, ValueError):  # no GET /v1/system, or an answer of another shape
        told = None
    return told or DEFAULT_MAX_FILE_BYTES


def follow(
    wait: Callable[[Callable[[R], None]], R],
    *,
    label: str,
    fraction: Callable[[R], float],
    mark: Callable[[R], object],
    line: Callable[[R], str],
    detail: Callable[[R], str] = lambda _: "",
) -> R:
    """Run ``wait`` (polling until the work ends) showing its progress: a bar on a terminal;
    otherwise ``line`` each time ``mark`` changes (nothing with --json)."""
    if state.as_json or not err.is_terminal:
        last: list[object] = []

        def on_progress(record: R) -> None:
            current = mark(record)
            if not last or last[0] != current:
                if not state.as_json:
                    err.print(line(record), highlight=False)
                last[:] = [current]

        return wait(on_progress)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task(escape(label), total=1.0, detail="")
        return wait(lambda r: bar.update(task, completed=fraction(r), detail=detail(r)))


def follow_job(rag: Client, job: Job) -> Job:
    """Until the job ends: a bar on a terminal, a line per state or stage otherwise."""
    return follow(
        lambda on_progress: rag.wait_job(job.id, on_progress=on_progress),
        label=f"job {job.id}",
        fraction=lambda j: j.progress,
        mark=lambda j: (j.state, j.stage),
        line=lambda j: f"job {j.id}: {j.state} ({j.stage}) {round(j.progress * 100)}%",
        detail=lambda j: j.stage,
    )


@app.command("ingest-url")
def ingest_url(
    url: str,
    collection: Annotated[str, typer.Option("--collection", "-c", help="Into this collection")],
    depth: Annotated[
        int, typer.Option("--depth", "-d", help="Follow links this deep (0-3)", min=0, max=3)
    ] = 0,
    same_domain: Annotated[
        bool, typer.Option("--same-domain/--any-domain", help="Follow links off the site")
    ] = True,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Follow the job")] = True,
) -> None:
    """Fetch a web page (and the pages it links to) into a collection: the crawl job, then
    one job per page; every page's outcome is listed, and a page that fails is exit code 4."""
    pages: list[Job] = []
    with client() as rag:
        accepted = rag.ingest_url(collection, url, max_depth=depth, same_domain=same_domain)
        job = rag.get_job(accepted.job_ids[0])
        if wait:
            job = follow_job(rag, job)
            page_ids = [str(p["job_id"]) for p in (job.result or {}).get("pages", [])]
            if page_ids:
                pages = rag.wait_jobs(page_ids)
    result = job.result or {}
    skipped = result.get("skipped") or []
    if state.as_json:
        emit({"crawl": job.to_dict(), "pages": [p.to_dict() for p in pages]})
    elif job.state != "succeeded":
        out.print(f"{url}: {job.state}" + (f": {job.error}" if job.error else ""), highlight=False)
    else:
        table = Table(title=f"{url} into {collection}", title_justify="left")
        for name in ("page", "state", "chunks", "reason"):
            table.add_column(name)
        for page in pages:
            outcome = page.result or {}
            chunks = outcome.get("chunks", outcome.get("chunks_created"))
            table.add_row(
                plain(page.source or page.document_id or page.id),
                page.state,
                "-" if chunks is None else str(chunks),
                plain(page.error or ""),
            )
        for item in skipped:
            table.add_row(
                plain(str(item.get("url"))), "skipped", "-", plain(str(item.get("reason")))
            )
        out.print(table)
    if job.state in ("failed", "dead") or any(p.state in ("failed", "dead") for p in pages):
        raise typer.Exit(EXIT_FAILED)


# Search and answers -------------------------------------------------------------------------


class SearchMode(StrEnum):
    hybrid = "hybrid"
    dense = "dense"
    lexical = "lexical"


class GeneratorName(StrEnum):
    extractive = "extractive"
    openai = "openai"
    google = "google"


TopK = Annotated[int | None, typer.Option("--k", "-k", help="How many passages")]
Mode = Annotated[SearchMode | None, typer.Option(help="Default: the server's SEARCH_MODE")]
Filter = Annotated[str | None, typer.Option("--filter", help="A JSON metadata filter")]


@app.command()
def search(
    query: str,
    collection: Annotated[str, typer.Option("--collection", "-c", help="Search this collection")],
    k: TopK = None,
    mode: Mode = None,
    where: Filter = None,
) -> None:
    """Ranked passages for a query."""
    with client() as rag:
        found = rag.search(
            collection,
            query,
            top_k=k,
            mode=mode.value if mode else None,
            filter=parse_json_option("--filter", where),
        )
    if state.as_json:
        emit(found)
        return
    table = Table(title=f"{found.mode} search of {collection}", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("score", justify="right")
    table.add_column("document")
    table.add_column("passage")
    for rank, hit in enumerate(found.results, 1):
        text = " ".join(hit.text.split())
        table.add_row(
            str(rank),
            f"{hit.score:.4f}",
            plain(hit.document_id),
            plain(text[:200] + ("…" if len(text) > 200 else "")),
        )
    out.print(table)


def print_sources(sources: list[Any], cited: list[int]) -> None:
    if not sources:
        return
    out.print()
    out.print("[bold]Sources[/]")
    for source in sources:
        mark = "*" if source.number in cited else " "
        where = source.title or source.source or source.document_id
        page = f", page {source.page}" if source.page else ""
        quote = " ".join(source.quote.split())
        out.print(
            plain(
                f"{mark}[{source.number}] {where}{page}: "
                f"{quote[:160] + ('…' if len(quote) > 160 else '')}"
            )
        )


@app.command()
def query(
    question: str,
    collection: Annotated[str, typer.Option("--collection", "-c", help="Ask this collection")],
    stream: Annotated[
        bool, typer.Option("--stream/--no-stream", help="Print the answer as it is written")
    ] = False,
    k: TopK = None,
    mode: Mode = None,
    where: Filter = None,
    generator: Annotated[
        GeneratorName | None, typer.Option(help="Default: the server's GENERATOR")
    ] = None,
    session: Annotated[str | None, typer.Option(help="A session id: a conversation")] = None,
) -> None:
    """An answer citing its sources as [1], [2]...; the sources follow, numbered (* cited)."""
    options: dict[str, Any] = {
        "top_k": k,
        "mode": mode.value if mode else None,
        "filter": parse_json_option("--filter", where),
        "generator": generator.value if generator else None,
        "session_id": session,
    }
    with client() as rag:
        if not stream:
            answer = rag.query(collection, question, **options)
            if state.as_json:
                emit(answer)
                return
            out.print(plain(answer.answer))
            print_sources(answer.sources, answer.cited)
            return
        for event in rag.query_stream(collection, question, **options):
            if state.as_json:  # one JSON object per event, as it arrives
                line = json.dumps(event.to_dict())
                out.print(line, markup=False, highlight=False, soft_wrap=True)
                if isinstance(event, ErrorEvent):
                    raise typer.Exit(EXIT_FAILED)
                continue
            if isinstance(event, TokenEvent):
                out.print(plain(event.text), end="", soft_wrap=True)
            elif isinstance(event, DoneEvent):
                out.print()
                print_sources(event.answer.sources, event.answer.cited)
            elif isinstance(event, ErrorEvent):
                out.print()
                raise fail(EXIT_FAILED, f"the answer failed: {event.message}")
            elif isinstance(event, SourcesEvent):
                pass  # printed with the end of the answer


# Jobs ---------------------------------------------------------------------------------------


@app.command()
def jobs(
    failed: Annotated[bool, typer.Option("--failed", help="Only failed and dead jobs")] = False,
    job_state: Annotated[
        str | None, typer.Option("--state", help="queued, running, succeeded, failed or dead")
    ] = None,
    collection: Annotated[str | None, typer.Option("--collection", "-c")] = None,
    limit: Annotated[int, typer.Option(help="At most this many (1-500)", min=1, max=500)] = 20,
    retry: Annotated[
        str | None, typer.Option("--retry", help="Run this failed job again", metavar="ID")
    ] = None,
) -> None:
    """Recent jobs, newest first, with their failure reasons; or retry one."""
    with client() as rag:
        if retry is not None:
            job = rag.retry_job(retry)
            show(job, f"job {job.id}: {job.state} again (run {job.run})")
            return
        if failed:  # failed, and dead (failed every attempt): both can be retried
            found = [
                job
                for wanted in ("failed", "dead")
                for job in rag.list_jobs(state=wanted, collection=collection, limit=limit).jobs
            ]
            listed = sorted(found, key=lambda job: job.created_at, reverse=True)[:limit]
        else:
            listed = rag.list_jobs(state=job_state, collection=collection, limit=limit).jobs
    if state.as_json:
        emit(listed)
        return
    table = Table(title="Jobs", title_justify="left")
    table.add_column("id", no_wrap=True)  # whole: `rag jobs --retry ID` takes it
    for name in ("state", "collection", "document", "created (UTC)", "reason"):
        table.add_column(name)
    for job in listed:
        reason = job.error or ""
        table.add_row(
            job.id,
            job.state,
            job.collection,
            plain(job.filename or job.document_id or job.source or "-"),
            when(job.created_at),
            plain(reason),
        )
    out.print(table)


# Status and config --------------------------------------------------------------------------


@app.command()
def status() -> None:
    """Readiness and version of every service, the embedder, the queue and your collections.
    Exit code 4 when a service is not ready."""
    with client() as rag:
        info = rag.get_system_info()
        collections = rag.list_collections()
    if state.as_json:
        emit({**info.to_dict(), "collections": [c.name for c in collections]})
    else:
        table = Table(title=f"RAG Engine at {state.settings.url}", title_justify="left")
        table.add_column("service")
        table.add_column("status")
        table.add_column("version")
        table.add_column("facts")
        for name, service in info.services.items():
            colour = "green" if service.status == "ready" else "red"
            facts = ", ".join(f"{k}={v}" for k, v in service.facts.items())
            table.add_row(
                name, f"[{colour}]{service.status}[/]", service.version or "-", plain(facts)
            )
        out.print(table)
        out.print(f"embedder: {info.embedding_model or '-'}", highlight=False)
        out.print(
            f"queue: {info.queue.depth} waiting, {info.queue.workers} worker(s) reporting",
            highlight=False,
        )
        names = ", ".join(c.name for c in collections) or "none"
        out.print(f"collections of tenant {info.tenant}: {names}", highlight=False)
    if info.status != "ready":
        raise typer.Exit(EXIT_FAILED)


def masked(key: str | None) -> str | None:
    if not key:
        return None
    return key[:8] + "…" if len(key) > 12 else "…"


@config_app.command("show")
def config_show() -> None:
    """The settings in effect, and where each came from (the key is masked)."""
    settings = state.settings
    values = {
        "url": settings.url,
        "api_key": masked(settings.api_key),
        "timeout": settings.timeout,
        "retries": settings.retries,
    }
    if state.as_json:
        emit({name: {"value": v, "from": state.sources[name]} for name, v in values.items()})
        return
    table = Table(title="rag settings", title_justify="left")
    for name in ("setting", "value", "from"):
        table.add_column(name)
    for name, value in values.items():
        table.add_row(name, "-" if value is None else str(value), state.sources[name])
    out.print(table)


@config_app.command("validate")
def config_validate() -> None:
    """Check the settings: a usable URL and key, the server reachable, the key accepted."""
    settings = state.settings
    problems = []
    if not settings.url.startswith(("http://", "https://")):
        problems.append(f"url: {settings.url!r} is not an http(s) URL")
    if not settings.api_key:
        problems.append("api_key: none set (--api-key or RAG_API_KEY)")
    if settings.timeout <= 0:
        problems.append("timeout: must be above 0 (RAG_TIMEOUT)")
    if settings.retries < 0:
        problems.append("retries: must be 0 or more (RAG_RETRIES)")
    if problems:
        raise fail(EXIT_USAGE, "\n".join(problems))
    with client() as rag:
        info = rag.get_system_info()
    if state.as_json:
        emit({"valid": True, "tenant": info.tenant, "status": info.status})
    else:
        out.print(
            f"ok: {settings.url} answers, the key is valid (tenant {info.tenant}), "
            f"the deployment is {info.status}",
            highlight=False,
        )


# Keys ---------------------------------------------------------------------------------------


def keys_table(rows: list[Any]) -> Table:
    table = Table(title="API keys", title_justify="left")
    table.add_column("id", no_wrap=True)  # whole: `rag keys revoke ID` takes it
    for name in ("tenant", "name", "scopes", "collections", "created (UTC)", "revoked"):
        table.add_column(name)
    for k in rows:
        table.add_row(
            k.id,
            k.tenant,
            k.name or "-",
            " ".join(k.scopes),
            " ".join(k.collections) if k.collections is not None else "all",
            when(k.created_at),
            when(k.revoked_at) if k.revoked_at else "",
        )
    return table


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="The tenant the key acts in")],
    scope: Annotated[
        list[str],
        typer.Option(help="ingest:read, ingest:write, query:read or admin (repeat)"),
    ],
    name: Annotated[str | None, typer.Option(help="What it is for")] = None,
    collection: Annotated[
        list[str] | None, typer.Option(help="Only these collections (repeat)")
    ] = None,
    requests_per_minute: Annotated[int | None, typer.Option(help="Its own rate limit")] = None,
) -> None:
    """Create an API key; its secret is printed this once."""
    with client() as rag:
        created = rag.create_key(
            tenant,
            scope,
            name=name,
            collections=collection,
            requests_per_minute=requests_per_minute,
        )
    if state.as_json:
        emit(created)
    else:
        out.print(keys_table([created]))
        out.print(f"key (shown once): {created.key}", highlight=False, soft_wrap=True)


@keys_app.command("list")
def keys_list(tenant: Annotated[str | None, typer.Option(help="Only this tenant")] = None) -> None:
    """API keys, never their secrets."""
    with client() as rag:
        found = rag.list_keys(tenant=tenant)
    show(found, keys_table(found))


@keys_app.command("revoke")
def keys_revoke(key_id: str) -> None:
    """Revoke an API key: it stops working at once."""
    with client() as rag:
        revoked = rag.revoke_key(key_id)
    show(revoked, f"revoked key {revoked.id} of tenant {revoked.tenant}")


# Evaluation ---------------------------------------------------------------------------------


def read_cases(path: Path) -> list[dict[str, Any]]:
    """A JSON list of cases, an object with ``cases``, or JSON Lines of cases."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(EXIT_USAGE, f"cannot read {path}: {exc}") from None
    rows: Any
    try:
        if path.suffix == ".jsonl":
            # At newlines only: splitlines() also splits at U+2028, which a JSON string may hold.
            rows = []
            for number, line in enumerate(re.split(r"\r\n?|\n", text), 1):
                if not line.strip():
                    continue
                try:
                    rows.append(load_json(line))
                except ValueError as exc:  # its line in the file, not "line 1" of itself
                    where = f"{exc}: line {number}"
                    if isinstance(exc, json.JSONDecodeError):
                        where = f"{exc.msg}: line {number} column {exc.colno}"
                    raise fail(EXIT_USAGE, f"{path}: not JSON ({where})") from None
        else:
            loaded = load_json(text)
            rows = loaded.get("cases") if isinstance(loaded, dict) else loaded
    except ValueError as exc:
        raise fail(EXIT_USAGE, f"{path}: not JSON ({exc})") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise fail(EXIT_USAGE, f"{path}: expected a list of cases (objects with a query)")
    return rows


def show_evaluation(result: dict[str, Any]) -> None:
    if state.as_json:
        out.print_json(data=result)
        return
    table = Table(title=f"Evaluation of {result.get('collection')}", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("cases", str(result.get("cases")))
    table.add_row("judged cases", str(result.get("judged_cases")))
    for name, value in (result.get("retrieval") or {}).items():
        table.add_row(name, f"{value:.4f}")
    for name, value in (result.get("answers") or {}).items():
        table.add_row(name, "-" if value is None else f"{value:.4f}")
    table.add_row("seconds", str(result.get("seconds")))
    out.print(table)


def wait_with_progress(rag: Client, evaluation_id: str) -> dict[str, Any]:
    """A progress bar on a terminal; one line per change of progress otherwise."""

    def percent(record: dict[str, Any]) -> int:
        return round(float(record.get("progress", 0)) * 100)

    final: dict[str, Any] = follow(
        lambda on_progress: rag.wait_evaluation(evaluation_id, on_progress=on_progress),
        label="evaluating",
        fraction=lambda r: float(r.get("progress", 0)),
        mark=percent,
        line=lambda r: f"evaluation {evaluation_id}: {r.get('state')} {percent(r)}%",
    )
    return final


@app.command("eval")
def evaluate(
    file: Annotated[
        Path,
        typer.Argument(
            help="Test cases (JSON list, {cases: [...]}, or .jsonl), or with --qrels a BEIR "
            "queries.jsonl"
        ),
    ],
    collection: Annotated[str, typer.Option("--collection", "-c", help="Collection to evaluate")],
    qrels: Annotated[
        Path | None, typer.Option(help="BEIR qrels .tsv: FILE is then BEIR queries.jsonl")
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Results per query")] = 10,
    mode: Annotated[str | None, typer.Option(help="hybrid, dense or lexical")] = None,
    answers: Annotated[bool, typer.Option(help="Also generate and score answers")] = False,
    generator: Annotated[str | None, typer.Option(help="extractive, openai or google")] = None,
    judge: Annotated[bool, typer.Option(help="LLM-judged faithfulness (needs an LLM)")] = False,
    background: Annotated[
        bool | None, typer.Option("--background/--no-background", help="Run as a job")
    ] = None,
) -> None:
    """Evaluate retrieval (and answers) on test cases; waits for background runs with
    progress."""
    if not file.is_file():
        raise fail(EXIT_USAGE, f"{file}: no such file")
    if qrels is not None and not qrels.is_file():
        raise fail(EXIT_USAGE, f"{qrels}: no such file")
    options: dict[str, Any] = {
        "top_k": top_k,
        "mode": mode,
        "answers": answers,
        "generator": generator,
        "judge": judge,
        "background": background,
    }
    with client() as rag:
        if qrels is not None:
            try:
                result = rag.evaluate_beir(collection, file, qrels, **options)
            except OSError as exc:
                raise fail(EXIT_USAGE, f"cannot read {exc.filename}: {exc.strerror}") from None
        else:
            result = rag.evaluate(collection, read_cases(file), **options)
        if result.get("state") == "running":
            record = wait_with_progress(rag, result["id"])
            if record.get("state") == "failed":
                raise fail(EXIT_FAILED, f"evaluation failed: {record.get('error')}")
            result = record["result"]
    show_evaluation(result)


def main() -> None:
    """The ``rag`` entry point."""
    app()
