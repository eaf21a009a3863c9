"""The ``rag`` command line, on the public API through the gateway.

Exit codes: 0 done; 1 the API refused or failed the request (its problem details on stderr);
2 bad usage or an unreadable input file; 3 the server could not be reached; 4 the work ran and
failed (an evaluation that ended in ``failed``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from rag_client.client import Client, Settings
from rag_client.errors import APIError, ConnectionFailed

EXIT_API, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_FAILED = 1, 2, 3, 4

app = typer.Typer(
    name="rag",
    help="RAG Engine from the command line (RAG_URL, RAG_API_KEY).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
out = Console()
err = Console(stderr=True)


class State:
    settings: Settings = Settings()
    as_json: bool = False


state = State()


@app.callback()
def options(
    url: Annotated[
        str | None,
        typer.Option(envvar="RAG_URL", help="The gateway (default http://127.0.0.1:8080)"),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(envvar="RAG_API_KEY", help="An API key (Bearer)", show_default=False),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON on stdout, for scripts")] = False,
) -> None:
    state.settings = Settings.from_env(url, api_key)
    state.as_json = as_json


def fail(code: int, message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def api_failure(exc: APIError) -> typer.Exit:
    lines = [str(exc)]
    lines += [f"  {e.get('field', '?')}: {e.get('message', '')}" for e in exc.errors]
    return fail(EXIT_API, "\n".join(lines))


def read_cases(path: Path) -> list[dict[str, Any]]:
    """A JSON list of cases, an object with ``cases``, or JSON Lines of cases."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(EXIT_USAGE, f"cannot read {path}: {exc}") from None
    rows: Any
    try:
        if path.suffix == ".jsonl":
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            loaded = json.loads(text)
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


def wait_with_progress(client: Client, evaluation_id: str) -> dict[str, Any]:
    """A progress bar on a terminal; one line per change of progress otherwise."""
    if state.as_json or not err.is_terminal:
        last = [-1.0]

        def line(record: dict[str, Any]) -> None:
            progress = round(float(record.get("progress", 0)) * 100)
            if progress != last[0] and not state.as_json:
                err.print(f"evaluation {evaluation_id}: {record.get('state')} {progress}%")
            last[0] = progress

        record: dict[str, Any] = client.wait_evaluation(evaluation_id, on_progress=line)
        return record
    with Progress(
        TextColumn("[bold]evaluating"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task("evaluate", total=1.0)
        final: dict[str, Any] = client.wait_evaluation(
            evaluation_id,
            on_progress=lambda r: bar.update(task, completed=float(r.get("progress", 0))),
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
    try:
        with Client(settings=state.settings) as client:
            if qrels is not None:
                result = client.evaluate_beir(collection, file, qrels, **options)
            else:
                result = client.evaluate(collection, read_cases(file), **options)
            if result.get("state") == "running":
                record = wait_with_progress(client, result["id"])
                if record.get("state") == "failed":
                    raise fail(EXIT_FAILED, f"evaluation failed: {record.get('error')}")
                result = record["result"]
    except APIError as exc:
        raise api_failure(exc) from None
    except ConnectionFailed as exc:
        raise fail(EXIT_UNREACHABLE, f"cannot reach the API: {exc}") from None
    show_evaluation(result)


def main() -> None:
    """The ``rag`` entry point."""
    app()
