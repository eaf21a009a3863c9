"""What every generator offers, and how it fails."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from rag_query.generation.sources import Source


class GenerationError(Exception):
    """A generator failed; ``transient`` says whether the same call may work later."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0


def word_pieces(text: str) -> Iterator[str]:
    """A finished text as a stream sends it: word by word, each with the space after it."""
    for match in re.finditer(r"\S+\s*", text):
        yield match.group(0)


@dataclass(frozen=True)
class Message:
    role: Literal["system", "user", "assistant"]
    content: str


class AnswerGenerator(Protocol):
    """Writes an answer from numbered sources, as a stream of text pieces."""

    name: str

    def answer(
        self,
        question: str,
        sources: Sequence[Source],
        history: Sequence[Message],
        usage: Usage,
    ) -> AsyncIterator[str]: ...


class LanguageModel(Protocol):
    """A chat model: the LLM behind a generator, query rewriting and reranking."""

    name: str

    async def complete(
        self, messages: Sequence[Message], *, max_tokens: int
    ) -> tuple[str, Usage]: ...

    def stream(
        self, messages: Sequence[Message], *, max_tokens: int, usage: Usage
    ) -> AsyncIterator[str]: ...
