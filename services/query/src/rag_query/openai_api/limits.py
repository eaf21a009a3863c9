"""What an OpenAI client may ask of a completion's length and end, honoured for every
generator (the offline one included) by cutting what it writes as it streams:

- ``max_tokens`` (or ``max_completion_tokens``): at most that many tokens, then
  ``finish_reason: "length"``;
- ``stop``: up to four sequences; the answer ends before the first one found (which is not
  sent), with ``finish_reason: "stop"``.

Tokens are counted with the packaged WordPiece tokenizer (rag_core.tokens), the same count
``usage`` reports: within a few percent of the BPE tokenizers of LLMs on English text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from rag_core.embedding.wordpiece import token_spans
from rag_core.errors import InvalidInput

MAX_STOP_SEQUENCES = 4  # as OpenAI allows
MAX_STOP_CHARS = 200


def stop_sequences(stop: str | list[str] | None) -> list[str]:
    """``stop`` as a list, checked as OpenAI checks it (400 naming ``stop`` otherwise)."""
    sequences = [stop] if isinstance(stop, str) else list(stop or [])
    if len(sequences) > MAX_STOP_SEQUENCES:
        raise InvalidInput.for_field("stop", f"at most {MAX_STOP_SEQUENCES} sequences")
    for sequence in sequences:
        if not sequence or len(sequence) > MAX_STOP_CHARS:
            raise InvalidInput.for_field(
                "stop", f"each sequence must be 1 to {MAX_STOP_CHARS} characters"
            )
    return sequences


def token_limit(**limits: int | None) -> int | None:
    """The first of ``max_completion_tokens`` / ``max_tokens`` given, checked (>= 1)."""
    for field, value in limits.items():
        if value is None:
            continue
        if value < 1:
            raise InvalidInput.for_field(field, "must be at least 1")
        return value
    return None


def refuse_unsupported(n: int | None, tools: list[Any] | None) -> None:
    """What cannot be honoured is refused, naming the parameter, rather than ignored."""
    if n is not None and n != 1:
        raise InvalidInput.for_field("n", "only one choice is generated (n must be 1)")
    if tools:
        raise InvalidInput.for_field(
            "tools", "tools are not supported: the model answers from its collection"
        )


class OutputLimit:
    """Feed it the answer piece by piece; it gives back what may be sent. It holds back the
    end of the text that could be the start of a stop sequence, until it knows."""

    def __init__(self, max_tokens: int | None, stop: Sequence[str]) -> None:
        self.max_tokens = max_tokens
        self.stop = list(stop)
        self.hold = max((len(s) for s in self.stop), default=1) - 1
        self.text = ""  # everything kept so far (up to the cut, once there is one)
        self.sent = 0  # characters of ``text`` already given out
        self.searched = 0  # characters of ``text`` already searched for a stop sequence
        self.ended = False
        self.finish_reason: Literal["stop", "length"] = "stop"

    @property
    def active(self) -> bool:
        """Whether anything may cut the answer."""
        return self.max_tokens is not None or bool(self.stop)

    def feed(self, piece: str) -> str:
        if self.ended:
            return ""
        self.text += piece
        cut = self._cut()
        if cut is not None:
            self.text, self.ended = self.text[: max(cut, self.sent)], True
            return self._send(len(self.text))
        return self._send(len(self.text) - self.hold)

    def close(self) -> str:
        """The rest, once the generator has finished."""
        out = self._send(len(self.text))
        self.ended = True
        return out

    def _send(self, upto: int) -> str:
        if upto <= self.sent:
            return ""
        out, self.sent = self.text[self.sent : upto], upto
        return out

    def _cut(self) -> int | None:
        ends: list[tuple[int, Literal["stop", "length"]]] = []
        for sequence in self.stop:
            # Only where the new piece could have completed it: the rest was searched before.
            found = self.text.find(sequence, max(0, self.searched - len(sequence) + 1))
            if found >= 0:
                ends.append((found, "stop"))
        self.searched = len(self.text)
        # A token spans at least one character: a text no longer than the limit is within it.
        if self.max_tokens is not None and len(self.text) > self.max_tokens:
            spans = token_spans(self.text)
            if len(spans) > self.max_tokens:
                ends.append((spans[self.max_tokens - 1][1], "length"))
        if not ends:
            return None
        position, self.finish_reason = min(ends)
        return position
