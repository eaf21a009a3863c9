"""backup.sh -> wipe -> restore.sh on the native stack gives back the same search results;
a corrupted or incomplete archive is refused and changes nothing."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from rag_devstack import NativeStack, StackPorts

from tests.support.ingest import IngestClient
from tests.support.query import QueryClient

pytestmark = pytest.mark.e2e
SCRIPTS = Path(__file__).resolve().parents[2] / "deploy" / "scripts"
QUESTIONS = ["valves and pressure", "pump service interval", "filters in bay"]


def _script(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, check=False, timeout=120
    )


def _results(query: QueryClient, collection: str) -> list[list[tuple[str, str]]]:
    return [
        [(hit["chunk_id"], hit["text"]) for hit in query.hits(collection, text, top_k=5)]
        for text in QUESTIONS
    ]


def test_backup_wipe_restore_gives_the_same_search_results(
    tmp_path: Path, model_cache: Path
) -> None:
    workdir = tmp_path / "stack"
    env = {"DATA_DIR": str(model_cache)}
    stack = NativeStack(workdir, StackPorts.free(), env=env)
    with stack:
        stack.start(services=["ingest", "query"])
        ingest, query = IngestClient(stack.api_url("ingest")), QueryClient(stack.api_url("query"))
        name = ingest.create_collection()
        docs = [
            {"id": "pump", "text": "The pump must be serviced every 500 hours of running."},
            {"id": "valves", "text": "Valves open when the pressure passes 30 bar."},
            {"id": "filters", "text": "Spare filters are kept in bay 4 of the store."},
        ]
        ingest.wait(ingest.ingest_ok(name, docs))
        query.wait_for(name, "filters", "filters")
        before = _results(query, name)
        # A consistent copy: no writer, Chroma stopped (the script refuses otherwise).
        stack.processes["worker"].stop()
        refused = _script(
            SCRIPTS / "backup.sh",
            "--native",
            workdir / "data",
            "--redis-port",
            stack.ports.redis,
            "--chroma-port",
            stack.ports.chroma,
            tmp_path / "backups",
        )
        assert refused.returncode == 1
        assert "stop it first" in refused.stderr
        stack.processes["chroma"].stop()
        made = _script(
            SCRIPTS / "backup.sh",
            "--native",
            workdir / "data",
            "--redis-port",
            stack.ports.redis,
            "--chroma-port",
            stack.ports.chroma,
            tmp_path / "backups",
        )
        assert made.returncode == 0, made.stderr
        archive = Path(made.stdout.strip())
        assert archive.name.startswith("rag-backup-")
    # Wipe everything the stack stored.
    shutil.rmtree(workdir / "data" / "redis")
    shutil.rmtree(workdir / "data" / "chroma")

    corrupt = tmp_path / "corrupt.tar.gz"
    _corrupt_copy(archive, corrupt, tmp_path / "unpacked")
    refused = _script(SCRIPTS / "restore.sh", corrupt, "--native", workdir / "data")
    assert refused.returncode == 1
    assert "checksums" in refused.stderr
    assert not (workdir / "data" / "chroma").exists(), "nothing restored from a corrupt archive"

    restored = _script(SCRIPTS / "restore.sh", archive, "--native", workdir / "data")
    assert restored.returncode == 0, restored.stderr
    again = NativeStack(workdir, StackPorts.free(), env=env)
    with again:
        again.start(services=["ingest", "query"], with_worker=False)
        query = QueryClient(again.api_url("query"))
        query.wait_for(name, "filters", "filters")
        assert _results(query, name) == before
        assert IngestClient(again.api_url("ingest")).collection(name)["document_count"] == 3


def _corrupt_copy(archive: Path, target: Path, scratch: Path) -> None:
    with tarfile.open(archive) as tar:
        tar.extractall(scratch, filter="data")
    [root] = list(scratch.iterdir())
    victim = next(
        path
        for path in sorted((root / "chroma").rglob("*"))
        if path.is_file() and path.stat().st_size
    )
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    with tarfile.open(target, "w:gz") as tar:
        tar.add(root, arcname=root.name)


def test_health_check_deploy_check_and_maintenance_in_native_mode(
    tmp_path: Path, model_cache: Path
) -> None:
    stack = NativeStack(tmp_path / "stack", StackPorts.free(), env={"DATA_DIR": str(model_cache)})
    with stack:
        stack.start(services=["ingest"])
        ingest = f"ingest={stack.health_url('ingest')}"
        worker = f"worker=http://127.0.0.1:{stack.ports.worker_health}"
        healthy = _script(SCRIPTS / "health-check.sh", "--native", ingest, worker)
        assert healthy.returncode == 0, healthy.stdout
        assert healthy.stdout.splitlines() == ["ingest: healthy", "worker: healthy"]
        stack.processes["worker"].stop()
        sick = _script(SCRIPTS / "health-check.sh", "--native", ingest, worker)
        assert sick.returncode == 1
        assert "worker: NOT healthy" in sick.stdout

        client = IngestClient(stack.api_url("ingest"))
        name = client.create_collection()
        client.ingest_ok(name, [{"text": "queued while no worker runs"}])
        redis = ("--native", str(stack.ports.redis))
        rewrite = _script(SCRIPTS / "maintenance.sh", *redis, "rewrite-aof")
        assert rewrite.returncode == 0, rewrite.stderr
        dead = _script(SCRIPTS / "maintenance.sh", *redis, "dead-jobs")
        assert dead.returncode == 0, dead.stderr
        assert dead.stdout.strip().endswith("0 dead-lettered jobs in all")

    old = tmp_path / "backups" / "rag-backup-20200101T000000Z.tar.gz"
    old.parent.mkdir()
    old.write_bytes(b"x")
    subprocess.run(["touch", "-d", "2020-01-02", str(old)], check=True)
    fresh = old.with_name("rag-backup-29990101T000000Z.tar.gz")
    fresh.write_bytes(b"y")
    pruned = _script(SCRIPTS / "maintenance.sh", "prune-backups", old.parent, "30")
    assert pruned.returncode == 0
    assert not old.exists()
    assert fresh.exists()


def test_deploy_refuses_production_without_its_secrets(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "RAG_ENV_FILE": str(tmp_path / "no.env")}
    missing = subprocess.run(
        [SCRIPTS / "deploy.sh", "production", "--check"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode == 1
    for name in ("INTERNAL_TOKEN", "JWT_SECRET", "GRAFANA_PASSWORD"):
        assert name in missing.stderr
    ready = subprocess.run(
        [SCRIPTS / "deploy.sh", "production", "--check"],
        env={**env, "INTERNAL_TOKEN": "t" * 32, "JWT_SECRET": "j" * 32, "GRAFANA_PASSWORD": "g"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert ready.returncode == 0, ready.stderr
    assert "ready to deploy" in ready.stdout
