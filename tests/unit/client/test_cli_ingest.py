"""`rag ingest` reads only what the folder holds, never a file whole past the server's limit,
and prints file names inert. The server is a recorded one at the HTTP layer: it answers the
collection, the system facts (ingest's ``max_file_bytes``), each upload and each job."""

from __future__ import annotations

import functools
import json
import os
import re
import resource
import subprocess
import sys
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path
from typing import Any

import httpx
import pytest
from rag_client import Client, cli
from rich.console import Console
from typer.testing import CliRunner

ENV = {"RAG_URL": "http://127.0.0.1:9", "RAG_API_KEY": "k", "RAG_RETRIES": "0"}
REPO = Path(__file__).resolve().parents[3]
PART = re.compile(rb'filename="([^"]*)"\r\nContent-Type: [^\r]*\r\n\r\n(.*?)\r\n--', re.DOTALL)
ESCAPED = re.compile(rb"%([01][0-9A-F]|22)")


@dataclass
class RecordedServer:
    """Answers what `rag ingest` asks; keeps every uploaded file as (name, content)."""

    facts: dict[str, Any] = field(default_factory=lambda: {"max_file_bytes": 25 * 1024 * 1024})
    uploads: list[tuple[str, bytes]] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/system":
            ingest = {"status": "ready", "facts": self.facts}
            info = {"status": "ready", "tenant": "t", "services": {"ingest": ingest}}
            return httpx.Response(200, json={**info, "queue": {"depth": 0, "workers": 1}})
        if path.endswith("/documents/upload"):
            for sent, content in PART.findall(request.read()):
                # The form encoding httpx uses: control characters but ESC and '"' as %XX.
                name = ESCAPED.sub(lambda m: bytes([int(m.group(1), 16)]), sent)
                self.uploads.append((name.decode(), content))
            job = f"job{len(self.uploads)}"
            return httpx.Response(202, json={"collection": "c", "jobs": [{"job_id": job}]})
        if path.startswith("/v1/jobs/"):
            job = {"id": path.rsplit("/", 1)[1], "state": "succeeded", "stage": "done"}
            return httpx.Response(200, json={**job, "progress": 1.0, "result": {"chunks": 1}})
        if path.startswith("/v1/collections/"):
            return httpx.Response(200, json={"name": "c"})
        return httpx.Response(404, json={"title": "Not found", "status": 404})

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.uploads]


def ingest(
    monkeypatch: pytest.MonkeyPatch, server: RecordedServer, *args: str
) -> tuple[int, str, str]:
    """``rag ingest ARGS -c c`` against ``server``: exit code, stdout, stderr."""
    transport = httpx.MockTransport(server)
    monkeypatch.setattr(cli, "Client", functools.partial(Client, transport=transport))
    result = CliRunner().invoke(cli.app, ["ingest", *args, "-c", "c"], env=ENV)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    return result.exit_code, result.stdout, result.stderr


def harmless(output: str) -> None:
    """Nothing a terminal would act on: no C0 control but newline, no DEL, no C1."""
    acted_on = [c for c in output if c != "\n" and (ord(c) < 32 or 127 <= ord(c) < 160)]
    assert acted_on == [], acted_on


def words(output: str) -> str:
    return " ".join(output.split())


# A folder's links -------------------------------------------------------------------------


@pytest.fixture
def linked(tmp_path: Path) -> Path:
    """The audit's folder: links to a hidden file outside it and to a file of its hidden
    .git; beside them a real file, a link to it (inside the folder: kept, under its own name)
    and a link to a visible file outside."""
    folder, outside = tmp_path / "d2", tmp_path / "outside"
    folder.mkdir()
    outside.mkdir()
    (outside / ".hidden-secret.txt").write_text("CANARY private")
    (outside / "visible.txt").write_text("CANARY outside")
    (folder / "notes.txt").symlink_to("../outside/.hidden-secret.txt")
    (folder / "away.txt").symlink_to(outside / "visible.txt")
    (folder / ".git").mkdir()
    (folder / ".git" / "config").write_text("CANARY git")
    (folder / "gitconf.txt").symlink_to(".git/config")
    (folder / "real.txt").write_text("a real file")
    (folder / "alias.txt").symlink_to("real.txt")
    return folder


def test_links_out_of_the_folder_or_to_hidden_files_are_skipped(
    monkeypatch: pytest.MonkeyPatch, linked: Path
) -> None:
    server = RecordedServer()
    code, stdout, stderr = ingest(monkeypatch, server, str(linked))
    assert code == 0, stderr  # a skipped file is not a failure
    assert sorted(server.names) == ["alias.txt", "real.txt"]  # the link's own name
    assert all(b"CANARY" not in content for _, content in server.uploads)
    said = words(stderr)
    assert "skipped notes.txt: a link to outside the folder" in said
    assert "skipped away.txt: a link to outside the folder" in said
    assert "skipped gitconf.txt: a link to a hidden file or folder" in said
    shown = words(stdout)
    assert "2 succeeded, 0 failed, 3 skipped" in shown
    for name in ("notes.txt", "away.txt", "gitconf.txt"):
        assert re.search(rf"{name} .*skipped", stdout), stdout
    assert "config" not in shown.replace("gitconf", "")
    assert ".hidden-secret" not in stdout + stderr


def test_links_skipped_are_in_the_json_summary(
    monkeypatch: pytest.MonkeyPatch, linked: Path
) -> None:
    transport = httpx.MockTransport(RecordedServer())
    monkeypatch.setattr(cli, "Client", functools.partial(Client, transport=transport))
    result = CliRunner().invoke(cli.app, ["--json", "ingest", str(linked), "-c", "c"], env=ENV)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert [Path(f["file"]).name for f in summary["files"]] == ["alias.txt", "real.txt"]
    assert {Path(s["file"]).name: s["reason"] for s in summary["skipped"]} == {
        "away.txt": "a link to outside the folder",
        "gitconf.txt": "a link to a hidden file or folder",
        "notes.txt": "a link to outside the folder",
    }


def test_a_link_named_on_the_command_line_is_uploaded(
    monkeypatch: pytest.MonkeyPatch, linked: Path
) -> None:
    """What the user names is theirs to send, under the name they gave."""
    server = RecordedServer()
    code, _, stderr = ingest(monkeypatch, server, str(linked / "notes.txt"))
    assert code == 0, stderr
    assert server.uploads == [("notes.txt", b"CANARY private")]


@pytest.mark.timeout(30)
def test_loops_broken_links_and_fifos_are_skipped_without_hanging(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    folder = tmp_path / "odd"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "deep.txt").write_text("deep")
    (folder / "loop-a.txt").symlink_to("loop-b.txt")
    (folder / "loop-b.txt").symlink_to("loop-a.txt")
    (folder / "gone.txt").symlink_to("nowhere.txt")
    (folder / "up").symlink_to("..")  # a folder that holds itself
    (folder / "sub" / "again").symlink_to("../sub")
    os.mkfifo(folder / "pipe.txt")  # opening it would wait for a writer
    server = RecordedServer()
    code, _, stderr = ingest(monkeypatch, server, str(folder), "--recursive")
    assert code == 0, stderr
    assert server.names == ["deep.txt"]
    said = words(stderr)
    for name in ("loop-a.txt", "loop-b.txt", "gone.txt"):
        assert f"skipped {name}: a broken link" in said
    assert "skipped pipe.txt: not a regular file" in said
    assert "skipped up: a link to outside the folder" in said
    assert "skipped again: a link to a folder (not followed)" in said


def test_a_file_found_twice_is_uploaded_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "a.txt").write_text("a")
    server = RecordedServer()
    code, _, stderr = ingest(
        monkeypatch, server, str(tmp_path), str(tmp_path / "a.txt"), f"{tmp_path}/./a.txt"
    )
    assert code == 0, stderr
    assert server.names == ["a.txt"]


# The server's size limit --------------------------------------------------------------------


def test_a_file_over_the_servers_limit_is_refused_and_the_others_go_on(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "big.txt").write_bytes(b"x" * 1001)
    (tmp_path / "fits.txt").write_bytes(b"y" * 1000)
    server = RecordedServer(facts={"max_file_bytes": 1000})
    code, stdout, stderr = ingest(monkeypatch, server, str(tmp_path))
    assert code == cli.EXIT_FAILED, stderr
    assert server.names == ["fits.txt"]
    reason = "larger than the server takes (MAX_FILE_BYTES, 1000 bytes)"
    assert f"big.txt: refused: {reason}" in words(stderr)
    assert re.search(r"big\.txt .*refused .*larger than the server", stdout), stdout
    assert "1 succeeded, 1 failed" in words(stdout)


def test_without_the_servers_limit_its_default_applies(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A server that does not tell its limit (ingest not ready, an older one) gets files up
    to MAX_FILE_BYTES' default, 25 MiB."""
    with (tmp_path / "big.txt").open("wb") as big:
        big.truncate(25 * 1024 * 1024 + 1)  # sparse: no disk used
    (tmp_path / "small.txt").write_text("small")
    server = RecordedServer(facts={})
    code, _, stderr = ingest(monkeypatch, server, str(tmp_path))
    assert code == cli.EXIT_FAILED, stderr
    assert server.names == ["small.txt"]
    assert "(MAX_FILE_BYTES, 26214400 bytes)" in words(stderr)


HUGE_RUN = """
import functools, sys
from rag_client import Client, cli
import httpx
from tests.unit.client.test_cli_ingest import ENV, RecordedServer
from typer.testing import CliRunner

server = RecordedServer()
transport = httpx.MockTransport(server)
cli.Client = functools.partial(Client, transport=transport)
result = CliRunner().invoke(cli.app, ["ingest", sys.argv[1], "-c", "c"], env=ENV)
if result.exception is not None and not isinstance(result.exception, SystemExit):
    raise result.exception
print(result.output)
print("uploaded:", server.names)
sys.exit(result.exit_code)
"""


def test_a_huge_file_is_never_read_whole(tmp_path: Path) -> None:
    """4 GiB (sparse) with 1 GiB of address space: it is refused from its size and the run
    goes on (it was read whole: MemoryError, a traceback and no summary)."""
    folder = tmp_path / "huge"
    folder.mkdir()
    with (folder / "big.txt").open("wb") as big:
        big.truncate(4 * 1024**3)
    (folder / "small.txt").write_text("small")

    def bounded() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1024**3, 1024**3))

    done = subprocess.run(
        [sys.executable, "-c", HUGE_RUN, str(folder)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=bounded,
        check=False,
    )
    assert done.returncode == cli.EXIT_FAILED, done.stderr
    assert "Traceback" not in done.stderr
    assert "big.txt: refused: larger than the server takes" in words(done.stdout)
    assert "uploaded: ['small.txt']" in done.stdout


# Names printed inert ------------------------------------------------------------------------

HOSTILE_NAMES = ["esc\x1b]0;PWNED\x07\x1b[31mred.txt", "bin\x1b[2Jclear.txt", "new\nline.txt"]


def test_file_names_print_as_escapes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in HOSTILE_NAMES:
        (tmp_path / name).write_text(name)
    server = RecordedServer()
    code, stdout, stderr = ingest(monkeypatch, server, str(tmp_path))
    assert code == 0, stderr
    assert sorted(server.names) == sorted(HOSTILE_NAMES)  # sent as they are
    harmless(stdout)
    harmless(stderr)
    for shown in (stdout, stderr):
        assert "esc\\x1b]0;PWNED\\x07\\x1b[31mred.txt" in words(shown)
        assert "bin\\x1b[2Jclear.txt" in words(shown)
    # One line per event: the newline in a name does not start another.
    assert "uploaded new\\x0aline.txt (12 B) -> job" in stderr
    assert "new\\x0aline.txt: succeeded (1 chunks)" in stderr


def test_file_names_on_the_progress_bars_print_as_escapes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in HOSTILE_NAMES:
        (tmp_path / name).write_text(name)
    screen = StringIO()
    monkeypatch.setattr(cli, "err", Console(file=screen, force_terminal=True, width=200))
    code, _, _ = ingest(monkeypatch, RecordedServer(), str(tmp_path))
    assert code == 0, screen.getvalue()
    drawn = screen.getvalue()
    assert "\x1b[" in drawn  # bars, drawn with the terminal's control sequences
    for raw in ("\x1b]0;PWNED", "\x07", "\x1b[2Jclear", "new\nline"):
        assert raw not in drawn, raw
    assert "esc\\x1b]0;PWNED\\x07" in drawn
    assert "new\\x0aline.txt" in drawn
