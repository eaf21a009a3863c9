"""`make open-webui-check`: Open WebUI, run offline against a RAG Engine stack, checked
through Open WebUI's own API.

It installs Open WebUI (OPEN_WEBUI_VERSION) into a cache folder once (OPEN_WEBUI_HOME, default
.dev/frontends; its environment is about 7 GB, so this is not part of `make test`), starts the
native stack on free loopback ports with README.md and docs/ (but benchmarks.md) ingested as
the collection `docs`, starts Open WebUI pointed at the stack's /v1 with a fresh data folder,
and creates its first user. Then, through Open WebUI, it lists the models, asks "How are API
keys stored?" streamed and not, asks a follow-up, runs its title, tags and follow-up tasks,
and checks the answers (the sentence, the list of sources, Markdown). It prints what it saw;
exit code 0 when every check passed. docs/frontends.md records a run.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from rag_client import Client
from rag_devstack import (
    ManagedProcess,
    NativeStack,
    ProcessFailed,
    StackPorts,
    create_api_key,
    free_port,
    http_ok,
)

ROOT = Path(__file__).resolve().parents[2]
VERSION = os.environ.get("OPEN_WEBUI_VERSION", "0.12.4")
HOME = Path(os.environ.get("OPEN_WEBUI_HOME") or ROOT / ".dev" / "frontends").resolve()
QUESTION = "How are API keys stored?"
FOLLOW_UP = "And how do I revoke one?"
SENTENCE = (
    "An API key is stored as a SHA-256 of its secret, in Redis, never the key itself; the key "
    "is shown once, when it is created."
)
START_TIMEOUT = 300.0  # Open WebUI's first start migrates its database and loads its modules

Check = tuple[str, bool, str]


def install() -> Path:
    """Open WebUI's environment, installed with uv when missing or of another version."""
    venv = HOME / "open-webui"
    python = venv / "bin" / "python"
    if python.exists():
        found = subprocess.run(
            [python, "-c", "import importlib.metadata as m; print(m.version('open-webui'))"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        if found == VERSION:
            return venv
    uv = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
    print(f"open-webui-check: installing Open WebUI {VERSION} into {venv} (about 7 GB)")
    HOME.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [uv, "venv", "-q", "--allow-existing", "--python", sys.executable, venv], check=True
    )
    subprocess.run(
        [uv, "pip", "install", "-q", "--python", python, f"open-webui=={VERSION}"], check=True
    )
    return venv


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout:.0f} s")
        time.sleep(0.5)


def ingest_docs(edge_url: str, key: str) -> None:
    # Not benchmarks.md: its figures change with every run, and it quotes the questions asked.
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    files = [f for f in files if f.name != "benchmarks.md"]
    with Client(edge_url, key) as client:
        client.create_collection("docs", description="RAG Engine's documentation")
        uploaded = client.upload_files("docs", files)
        jobs = client.wait_jobs(uploaded.job_ids, max_seconds=600)
    failed = [job.error for job in jobs if job.state != "succeeded"]
    if failed:
        raise RuntimeError(f"ingest failed: {failed}")
    # Until every query replica has indexed the last file.
    with Client(edge_url, key) as client:
        wait_until(
            lambda: any(
                SENTENCE in " ".join(hit.text.split())
                for hit in client.search("docs", SENTENCE, top_k=3, mode="lexical").results
            ),
            120,
            "the docs searchable",
        )


def start_open_webui(venv: Path, edge_url: str, key: str) -> tuple[ManagedProcess, str]:
    data = HOME / "open-webui-data"
    shutil.rmtree(data, ignore_errors=True)  # a fresh install: the first user is its admin
    data.mkdir(parents=True)
    port = free_port()
    env = {
        **os.environ,
        "DATA_DIR": str(data),
        "PORT": str(port),
        "WEBUI_SECRET_KEY": secrets.token_urlsafe(32),
        # Offline: nothing fetched from a model hub, no telemetry, no Ollama.
        "OFFLINE_MODE": "true",
        "HF_HUB_OFFLINE": "1",
        "ANONYMIZED_TELEMETRY": "false",
        "DO_NOT_TRACK": "true",
        "SCARF_NO_ANALYTICS": "true",
        "ENABLE_OLLAMA_API": "false",
        # Open WebUI's own document store would load a local embedding model; it is not
        # used here (RAG Engine retrieves), so point it at an API it never calls.
        "RAG_EMBEDDING_ENGINE": "openai",
        # RAG Engine as its OpenAI connection.
        "ENABLE_OPENAI_API": "true",
        "OPENAI_API_BASE_URL": f"{edge_url}/v1",
        "OPENAI_API_KEY": key,
    }
    process = ManagedProcess(
        "open-webui",
        [str(venv / "bin" / "open-webui"), "serve", "--host", "127.0.0.1", "--port", str(port)],
        log_path=HOME / "open-webui.log",
        env=env,
        cwd=HOME,
    ).start()
    url = f"http://127.0.0.1:{port}"
    try:
        process.wait_until(lambda: http_ok(f"{url}/health"), timeout=START_TIMEOUT, what="ready")
    except ProcessFailed:
        process.stop()
        raise
    return process, url


def _sse_text(response: httpx.Response) -> tuple[str, int]:
    text, chunks = "", 0
    for line in response.iter_lines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        body = json.loads(line[6:])
        for choice in body.get("choices") or []:
            text += (choice.get("delta") or {}).get("content") or ""
            chunks += 1
    return text, chunks


def run_checks(url: str, edge_url: str) -> list[Check]:
    http = httpx.Client(base_url=url, timeout=120)
    signup = http.post(
        "/api/v1/auths/signup",
        json={"name": "Admin", "email": "admin@example.org", "password": secrets.token_hex(16)},
    )
    signup.raise_for_status()
    http.headers["Authorization"] = f"Bearer {signup.json()['token']}"
    checks: list[Check] = []

    def check(name: str, ok: bool, seen: str) -> None:
        checks.append((name, ok, seen))
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {seen}", flush=True)

    models = [m["id"] for m in http.get("/api/models").json()["data"]]
    check("models list the collection", "docs" in models, ", ".join(models))

    question = [{"role": "user", "content": QUESTION}]
    reply = http.post(
        "/api/chat/completions", json={"model": "docs", "messages": question, "stream": False}
    )
    answer = reply.json()["choices"][0]["message"]["content"] if reply.is_success else reply.text
    body, heading, listed = answer.partition("\n\n**Sources**\n")
    check("answer holds the sentence", SENTENCE in " ".join(answer.split()), answer[:160])
    check("citations visible in the text", bool(heading) and "gateway.md" in listed, listed)
    check(
        "readable Markdown (no headings, comments, images)",
        not re.search(r"^#|<!--|!\[", body, re.M),
        f"{len(body)} characters",
    )

    with http.stream(
        "POST",
        "/api/chat/completions",
        json={"model": "docs", "messages": question, "stream": True},
    ) as streamed:
        text, chunks = _sse_text(streamed)
    check("streamed answer is the same", text == answer, f"{chunks} chunks")

    conversation = [
        {"role": "system", "content": "Answer from the documents."},
        *question,
        {"role": "assistant", "content": answer},
        {"role": "user", "content": FOLLOW_UP},
    ]
    follow = http.post("/api/chat/completions", json={"model": "docs", "messages": conversation})
    follow_text = follow.json()["choices"][0]["message"]["content"] if follow.is_success else ""
    check(
        "follow-up answered with sources",
        "**Sources**" in follow_text and "gateway.md" in follow_text,
        follow_text[:160].replace("\n", " "),
    )

    def ask(**extra: Any) -> dict[str, Any]:
        done = http.post(
            "/api/chat/completions", json={"model": "docs", "messages": question, **extra}
        )
        body: dict[str, Any] = done.json() if done.is_success else {"status": done.status_code}
        return body

    cut = ask(max_tokens=5)
    choice = (cut.get("choices") or [{}])[0]
    check(
        "max_tokens 5: cut, finish_reason length",
        choice.get("finish_reason") == "length"
        and answer.startswith(choice["message"]["content"])
        and len(choice["message"]["content"]) < len(answer),
        f"{choice.get('finish_reason')}: {choice.get('message', {}).get('content')!r}",
    )
    stopped = ask(stop=["."])
    choice = (stopped.get("choices") or [{}])[0]
    content = choice.get("message", {}).get("content") or ""
    check(
        'stop ".": ends before it',
        bool(content) and "." not in content and answer.startswith(content),
        repr(content),
    )
    missing = http.post(
        "/api/chat/completions", json={"model": "docs-missing", "messages": question}
    )
    check(
        "a wrong model is refused",
        missing.status_code in (400, 404),
        f"{missing.status_code} {missing.text[:100]}",
    )
    # What an admin sees checking a connection with a wrong key: RAG Engine's answer.
    verify = http.post("/openai/verify", json={"url": edge_url + "/v1", "key": "sk-placeholder"})
    error = (
        verify.json().get("error", {})
        if verify.headers.get("content-type", "").startswith("application/json")
        else {}
    )
    check(
        "a wrong key: the connection check says invalid_api_key",
        verify.status_code == 401 and error.get("code") == "invalid_api_key",
        f"{verify.status_code} {error.get('message')}",
    )

    history = [*question, {"role": "assistant", "content": answer}]
    for task in ("title", "tags", "follow_up"):
        done = http.post(
            f"/api/v1/tasks/{task}/completions",
            json={"model": "docs", "messages": history},
        )
        content = ""
        if done.is_success and done.json().get("choices"):
            content = done.json()["choices"][0]["message"]["content"]
        check(
            f"{task} task gets a short reply, not passages",
            done.is_success and len(content) < 200 and "**Sources**" not in content,
            content or f"{done.status_code} {done.text[:120]}",
        )
    return checks


def main() -> int:
    venv = install()
    admin_key = f"check-admin-{secrets.token_urlsafe(24)}"
    workdir = HOME / "stack"
    shutil.rmtree(workdir, ignore_errors=True)
    stack = NativeStack(
        workdir,
        StackPorts.free(),
        cwd=ROOT,
        env={"ADMIN_API_KEY": admin_key},
        internal_token=secrets.token_urlsafe(32),
    )
    with stack:
        stack.start(with_nginx=True)
        key = create_api_key(
            stack.edge_url, admin_key, ["ingest:write", "query:read"], "open-webui"
        )
        ingest_docs(stack.edge_url, key)
        print(f"open-webui-check: stack at {stack.edge_url}, docs ingested; starting Open WebUI")
        process, url = start_open_webui(venv, stack.edge_url, key)
        try:
            checks = run_checks(url, edge_url=stack.edge_url)
        finally:
            process.stop()
    failed = [name for name, ok, _ in checks if not ok]
    print(
        f"open-webui-check: Open WebUI {VERSION}: {len(checks) - len(failed)} of {len(checks)} "
        f"checks passed" + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
