"""backup.sh in Docker mode, run against a fake `docker` on PATH that records every call (Docker
cannot run here): the writers (ingest API and workers) stop before Redis is snapshotted,
Chroma's files are copied while it is stopped too, and everything is started again afterwards,
also when a step fails. The native mode runs for real in tests/e2e/test_backup_restore.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
BACKUP = ROOT / "deploy" / "scripts" / "backup.sh"
WRITERS = {"rag-ingest", "rag-ingest-worker"}

# `docker compose -f FILE <command> ...`: records its arguments, and for `cp SERVICE:PATH DEST`
# writes what that container would hold. FAKE_DOCKER_FAIL names a call that fails.
FAKE_DOCKER = f"""#!{sys.executable}
import json, os, pathlib, sys
args = sys.argv[1:]
with open(os.environ["FAKE_DOCKER_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
if " ".join(args).find(os.environ.get("FAKE_DOCKER_FAIL") or "\\0") >= 0:
    sys.exit("docker: failed as the test asked")
if args[:1] == ["compose"] and "cp" in args:
    source, dest = args[args.index("cp") + 1:][:2]
    service = source.split(":")[0]
    if service == "redis":
        pathlib.Path(dest).write_bytes(b"REDIS0011 fake snapshot")
    elif service == "chroma":
        pathlib.Path(dest, "chroma.sqlite3").write_bytes(b"fake chroma")
    elif service == "rag-ingest":
        pathlib.Path(dest, "models").mkdir(parents=True, exist_ok=True)
        pathlib.Path(dest, "models", "model.onnx").write_bytes(b"rebuilt at start")
        pathlib.Path(dest, "state.json").write_text("{{}}")
"""


def backup(tmp_path: Path, fail: str = "") -> tuple[subprocess.CompletedProcess[str], list]:
    """backup.sh's Docker mode with the fake docker; its outcome and the docker calls made."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    docker = bin_dir / "docker"
    docker.write_text(FAKE_DOCKER)
    docker.chmod(0o755)
    log = tmp_path / "docker-calls.jsonl"
    log.unlink(missing_ok=True)
    result = subprocess.run(
        [str(BACKUP), "--compose", str(tmp_path / "compose.yml"), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={
            **os.environ,
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "FAKE_DOCKER_LOG": str(log),
            "FAKE_DOCKER_FAIL": fail,
        },
    )
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    for call in calls:
        assert call[:3] == ["compose", "-f", str(tmp_path / "compose.yml")], call
    return result, [call[3:] for call in calls]


def replay(calls: list[list[str]]) -> list[tuple[list[str], set[str]]]:
    """Each call with the services stopped when it was made."""
    stopped: set[str] = set()
    seen = []
    for call in calls:
        seen.append((call, set(stopped)))
        if call[0] == "stop":
            stopped |= set(call[1:])
        elif call[0] == "start":
            stopped -= set(call[1:])
    seen.append((["(end)"], stopped))
    return seen


def made_at(seen: list[tuple[list[str], set[str]]], *words: str) -> set[str]:
    """The services stopped when the call holding ``words`` was made."""
    found = [stopped for call, stopped in seen if all(word in call for word in words)]
    assert len(found) == 1, (words, seen)
    return found[0]


def test_writers_stop_before_the_redis_snapshot_and_chroma_is_copied_stopped(
    tmp_path: Path,
) -> None:
    result, calls = backup(tmp_path)
    assert result.returncode == 0, result.stderr
    seen = replay(calls)
    assert made_at(seen, "exec", "redis", "--rdb", "/data/backup.rdb") >= WRITERS
    assert made_at(seen, "cp", "chroma:/data/.") >= WRITERS | {"chroma"}
    assert made_at(seen, "cp", "rag-ingest:/data/.") >= WRITERS
    assert seen[-1][1] == set(), f"still stopped at the end: {seen[-1][1]}"
    # The archive holds what was copied (the models are rebuilt from the packaged weights).
    archive = Path(result.stdout.strip())
    with tarfile.open(archive) as tar:
        names = {Path(*Path(n).parts[1:]).as_posix() for n in tar.getnames()}
    assert {"redis/dump.rdb", "chroma/chroma.sqlite3", "app/state.json"} <= names
    assert "manifest.json" in names
    assert not any(name.startswith("app/models") for name in names)


@pytest.mark.parametrize(
    "failing",
    ["cp chroma:/data/.", "exec -T redis redis-cli --rdb", "cp redis:/data/backup.rdb"],
)
def test_everything_is_started_again_when_a_step_fails(tmp_path: Path, failing: str) -> None:
    result, calls = backup(tmp_path, fail=failing)
    assert result.returncode != 0
    seen = replay(calls)
    assert any(call[0] == "stop" for call, _ in seen), calls
    assert seen[-1][1] == set(), f"left stopped after a failure: {seen[-1][1]}"
    assert not list((tmp_path / "out").glob("*.tar.gz"))
