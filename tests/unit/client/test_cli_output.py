"""`rag query` and `rag search` print what documents say as plain text: brackets are not markup
(a document holding "[/etc]" crashed the command), `:name:` is not an emoji code, and control
sequences a document carries (ESC, BEL, CSI, carriage returns) never reach the terminal; they
show as visible escapes instead. The server's answers are recorded responses."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from rag_client import Client, cli
from typer.testing import CliRunner

# What a hostile (or merely odd) document may hold: markup, an emoji code, a terminal title
# change (OSC ... BEL), clear-screen (CSI 2J), a C1 CSI, a carriage return hiding a line.
HOSTILE = (
    "See [/etc] and [bold red]this[/]. :smile:\x1b]0;pwned\x07\x1b[2J\x9b31m"
    "hidden\rshown\tafter tab\nsecond line"
)
ENV = {"RAG_URL": "http://127.0.0.1:9", "RAG_API_KEY": "k", "RAG_RETRIES": "0"}
SOURCE = {
    "number": 1,
    "chunk_id": "c1",
    "document_id": "doc-[/x]",
    "quote": HOSTILE,
    "title": "Title [/etc]\x1b[31m",
}


def run(
    monkeypatch: pytest.MonkeyPatch,
    handle: Callable[[httpx.Request], httpx.Response],
    *args: str,
) -> str:
    """``rag ARGS`` against recorded answers; what it printed (stdout and stderr)."""
    transport = httpx.MockTransport(handle)
    monkeypatch.setattr(cli, "Client", functools.partial(Client, transport=transport))
    result = CliRunner().invoke(cli.app, list(args), env=ENV)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert result.exit_code == 0, result.output
    return result.output


def words(output: str) -> str:
    """The output with each run of spaces and line breaks as one space (lines wrap at 80)."""
    return " ".join(output.split())


def harmless(output: str) -> None:
    """Nothing a terminal would act on: no C0 control but newline, no DEL, no C1."""
    acted_on = [c for c in output if c != "\n" and (ord(c) < 32 or 127 <= ord(c) < 160)]
    assert acted_on == [], acted_on


def test_an_answer_prints_as_plain_text(monkeypatch: pytest.MonkeyPatch) -> None:
    answer = {"answer": HOSTILE, "sources": [SOURCE], "cited": [1], "generator": "extractive"}
    output = run(
        monkeypatch,
        lambda _: httpx.Response(200, json=answer),
        "query",
        "what is there?",
        "-c",
        "docs",
    )
    harmless(output)
    shown = words(output)
    assert "See [/etc] and [bold red]this[/]. :smile:" in shown  # as written
    assert "\\x1b]0;pwned\\x07\\x1b[2J\\x9b31m" in shown  # visible, and inert
    assert "second line" in shown
    assert "Title [/etc]" in shown


def test_a_streamed_answer_prints_as_plain_text(monkeypatch: pytest.MonkeyPatch) -> None:
    pieces = [HOSTILE[:9], HOSTILE[9:40], HOSTILE[40:]]  # markup and escapes cut across tokens
    events = [("sources", {"sources": [SOURCE]})]
    events += [("token", {"text": piece}) for piece in pieces]
    events += [("done", {"answer": HOSTILE, "cited": [1], "generator": "extractive"})]
    body = "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)
    output = run(
        monkeypatch,
        lambda _: httpx.Response(
            200, content=body.encode(), headers={"content-type": "text/event-stream"}
        ),
        "query",
        "what is there?",
        "-c",
        "docs",
        "--stream",
    )
    harmless(output)
    assert "See [/etc] and [bold red]this[/]. :smile:" in words(output)
    assert "Title [/etc]" in words(output)


def test_search_results_print_as_plain_text(monkeypatch: pytest.MonkeyPatch) -> None:
    found = {
        "collection": "docs",
        "query": "q",
        "mode": "hybrid",
        "results": [
            {"chunk_id": "c1", "document_id": "[/etc]\x1b[2J", "score": 0.5, "text": HOSTILE}
        ],
    }
    output = run(
        monkeypatch, lambda _: httpx.Response(200, json=found), "search", "q", "-c", "docs"
    )
    harmless(output)
    assert "[/etc]" in output


def test_a_refusal_from_the_server_prints_as_plain_text(monkeypatch: pytest.MonkeyPatch) -> None:
    problem = {"title": "Not found", "status": 404, "detail": "no [/etc] here\x1b[2J\x07"}
    transport = httpx.MockTransport(lambda _: httpx.Response(404, json=problem))
    monkeypatch.setattr(cli, "Client", functools.partial(Client, transport=transport))
    result = CliRunner().invoke(cli.app, ["query", "q", "-c", "docs"], env=ENV)
    assert result.exit_code == cli.EXIT_API, repr(result.exception)
    harmless(result.output)
    assert "no [/etc] here\\x1b[2J\\x07" in result.output


def test_an_error_is_one_line_whatever_its_length(tmp_path: Path) -> None:
    """An error naming a long path is printed whole on one line (it once broke inside the
    path, at the terminal width), so it can be read, grepped and copied."""
    deep = tmp_path / ("a-rather-long-folder-name-" * 4) / "broken.json"
    deep.parent.mkdir(parents=True)
    deep.write_text("{broken")
    result = CliRunner().invoke(cli.app, ["eval", str(deep), "-c", "docs"], env=ENV)
    assert result.exit_code == cli.EXIT_USAGE, result.output
    [line] = [row for row in result.output.splitlines() if row.startswith("error:")]
    assert f"{deep}: not JSON" in line


def test_evaluation_cases_split_at_newlines_only(tmp_path: Path) -> None:
    """A case's query holding U+2028 (JSON allows it raw in a string) was split in two by
    splitlines() and refused as "not JSON"; CRLF and CR-only files still read."""
    cases = [{"query": "line\u2028separated"}, {"query": "next\u0085one"}]
    for end in ("\n", "\r\n", "\r"):
        path = tmp_path / "cases.jsonl"
        path.write_text(end.join(json.dumps(c, ensure_ascii=False) for c in cases), newline="")
        assert cli.read_cases(path) == cases, repr(end)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    "depth",
    [
        100_000,  # past what the decoder follows: a RecursionError traceback (exit 1)
        980,  # decoded, then past what the encoder follows when sent: the same
        101,  # the bound: 100 levels
    ],
)
def test_json_nested_too_deeply_is_bad_usage(tmp_path: Path, depth: int) -> None:
    """JSON nested too deeply is refused like other bad JSON: exit 2, "not JSON"."""
    (tmp_path / "cases.json").write_text(nested(depth))
    (tmp_path / "cases.jsonl").write_text('{"query": "q"}\n' + nested(depth))
    (tmp_path / "file.txt").write_text("text")
    option = nested(min(depth, 5000))  # an argument of 200,000 characters is refused by exec
    for args, said in (
        (["eval", str(tmp_path / "cases.json"), "-c", "docs"], "cases.json: not JSON"),
        (["eval", str(tmp_path / "cases.jsonl"), "-c", "docs"], "cases.jsonl: not JSON"),
        (["search", "q", "-c", "docs", "--filter", option], "--filter: not JSON"),
        (["query", "q", "-c", "docs", "--filter", option], "--filter: not JSON"),
        (["ingest", str(tmp_path), "-c", "docs", "--metadata", option], "--metadata: not JSON"),
    ):
        result = CliRunner().invoke(cli.app, args, env=ENV)
        assert result.exit_code == cli.EXIT_USAGE, (args, repr(result.exception))
        assert f"{said} (nested deeper than 100 levels" in words(result.output), args
    jsonl = CliRunner().invoke(cli.app, ["eval", str(tmp_path / "cases.jsonl"), "-c", "d"], env=ENV)
    assert "(nested deeper than 100 levels: line 2)" in words(jsonl.output)


def test_json_nested_within_the_bound_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[object] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.read())["filter"])
        found = {"collection": "docs", "query": "q", "mode": "hybrid", "results": []}
        return httpx.Response(200, json=found)

    run(monkeypatch, answer, "search", "q", "-c", "docs", "--filter", nested(100))
    assert sent == [json.loads(nested(100))]


def test_a_bad_json_lines_case_is_named_by_its_line_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    path.write_text('{"query": "a"}\n\n{"query": "b"}\n{"query": }\n{"query": "c"}\n')
    result = CliRunner().invoke(cli.app, ["eval", str(path), "-c", "docs"], env=ENV)
    assert result.exit_code == cli.EXIT_USAGE, result.output
    assert f"{path}: not JSON (Expecting value: line 4 column 11)" in words(result.output)
