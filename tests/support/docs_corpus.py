"""README.md and docs/ as make test's answer tests read them: frozen in
tests/fixtures/docs_snapshot (its SNAPSHOT.md says why and how to move it), so that editing
the docs never moves a test's answers."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT = ROOT / "tests" / "fixtures" / "docs_snapshot"


def documentation(root: Path = SNAPSHOT) -> list[Path]:
    """Every Markdown file of the documentation under ``root`` (the snapshot, or ROOT for the
    live files) but the benchmark figures, which change every run and quote the questions."""
    files = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    return [f for f in files if f.name != "benchmarks.md"]
