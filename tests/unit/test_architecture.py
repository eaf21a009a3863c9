"""The import rules of ARCHITECTURE.md: libs never import services; services never import
each other; only dev tooling imports rag_devstack."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {"rag_gateway", "rag_ingest", "rag_query"}


def _imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def _packages(kind: str) -> list[Path]:
    return sorted(p for p in (ROOT / kind).glob("*/src/rag_*") if p.is_dir())


@pytest.mark.parametrize("package", _packages("libs"), ids=lambda p: p.name)
def test_libs_never_import_services(package: Path) -> None:
    for source in package.rglob("*.py"):
        bad = _imported_packages(source) & SERVICES
        assert not bad, f"{source.relative_to(ROOT)} imports {bad}"
        if package.name != "rag_devstack":
            assert "rag_devstack" not in _imported_packages(source), source


@pytest.mark.parametrize("package", _packages("services"), ids=lambda p: p.name)
def test_services_never_import_each_other(package: Path) -> None:
    others = SERVICES - {package.name}
    for source in package.rglob("*.py"):
        imported = _imported_packages(source)
        assert not imported & others, f"{source.relative_to(ROOT)} imports {imported & others}"
        assert "rag_devstack" not in imported, source


def test_layout_has_every_member() -> None:
    names = {p.name for p in _packages("libs")} | {p.name for p in _packages("services")}
    assert {"rag_config", "rag_telemetry", "rag_core", *SERVICES} <= names
    for service in SERVICES:
        folder = ROOT / "services" / service.removeprefix("rag_") / "src" / service
        assert (folder / "__main__.py").exists()


def _modules_imported(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _sources() -> list[Path]:
    return [s for kind in ("libs", "services") for p in _packages(kind) for s in p.rglob("*.py")]


def test_only_the_chunk_store_names_the_stored_chunk_fields() -> None:
    """The stored chunk's schema has one owner (rag_core.chunks): nothing else writes or reads
    the engine's metadata keys, or calls Chroma's record API."""
    owner = ROOT / "libs/core/src/rag_core/chunks.py"
    fields = ("_doc", "_ver", "_pos", "_hash", "_tokens", "_format", "_page", "_heading")
    assert all(f'"{field}"' in owner.read_text() for field in fields)
    for source in _sources():
        if source == owner:
            continue
        strings = {
            node.value
            for node in ast.walk(ast.parse(source.read_text()))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
        }
        named = strings & {*fields, "_title", "_source"}
        assert not named, f"{source.relative_to(ROOT)} names chunk fields {named}"
        if source.parent.name != "rag_core":
            assert "rag_core.chroma" not in _modules_imported(source) or source.name in (
                "runner.py",  # builds the worker's Chroma client and its readiness check
                "components.py",  # builds the chunk store on it
                "context.py",
                "app.py",
            ), f"{source.relative_to(ROOT)} uses the Chroma client directly"


def test_the_worker_imports_nothing_from_the_api_side() -> None:
    """The worker's code (and what it runs: fetching, parsing) never reaches into the API's
    routes and services; what both use lives beside them (submissions, versions, jobs)."""
    ingest = ROOT / "services/ingest/src/rag_ingest"
    for folder in ("worker", "fetching", "parsing"):
        for source in (ingest / folder).rglob("*.py"):
            api = {
                m
                for m in _modules_imported(source)
                if m.startswith(("rag_ingest.documents", "rag_ingest.collections.routes"))
            }
            assert not api, f"{source.relative_to(ROOT)} imports {api}"
