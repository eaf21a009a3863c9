"""Prompt templates: files shipped in ``prompts/``, each overridable by a file of the same
name in PROMPTS_DIR. Templates use ``$name`` placeholders (string.Template), so braces in
documents or questions are never mistaken for placeholders."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from string import Template

NAMES = (
    "answer_system",
    "answer_user",
    "condense",
    "multi_query",
    "hyde",
    "step_back",
    "rerank",
    "faithfulness",
)


class Prompts:
    def __init__(self, override_dir: str | None = None) -> None:
        self._templates: dict[str, Template] = {}
        shipped = resources.files("rag_query.generation") / "prompts"
        for name in NAMES:
            text = (shipped / f"{name}.txt").read_text(encoding="utf-8")
            if override_dir:
                custom = Path(override_dir) / f"{name}.txt"
                if custom.is_file():
                    text = custom.read_text(encoding="utf-8")
            self._templates[name] = Template(text.strip())

    def render(self, name: str, **values: object) -> str:
        return self._templates[name].safe_substitute({k: str(v) for k, v in values.items()})
