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
