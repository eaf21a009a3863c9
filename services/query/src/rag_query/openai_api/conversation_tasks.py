"""Requests about the conversation rather than questions over the collection.

Chat frontends use the chat's own model for their background tasks: a title, tags, suggested
follow-ups (Open WebUI, LibreChat). Their prompts quote the conversation, and with it an
earlier answer of this route, whose list of sources (openai_api.citations) no question over
the collection contains, or the offline generator's answer that the documents do not answer
(which cites, so lists, nothing). That is how such a request is told apart, without guessing
at any frontend's wording. The offline generator can only quote the collection, and an answer
quoted back was a dump of passages where a title was wanted; so it gets a one-line reply
instead, with no sources (a frontend that wanted JSON then falls back to its own default: Open
WebUI titles the chat with its first question). With an LLM as the generator the request is
answered as any other.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Collection

from rag_core.tokens import count_tokens

from rag_query.answers.service import DoneEvent, Event, TokenEvent
from rag_query.generation.base import word_pieces
from rag_query.generation.extractive import NOT_ANSWERED
from rag_query.openai_api.citations import HEADING

# The list's heading, then its first item, as citations.citation_list writes them.
_QUOTED_ANSWER = re.compile(re.escape(HEADING) + r"[ \t]*+\n[ \t]*+- \[\d+\]")


def about_the_conversation(message: str, no_claims: Collection[str] = (NOT_ANSWERED,)) -> bool:
    """Whether a message quotes an earlier answer of this route: its list of sources, or one
    of ``no_claims``, the answers citing nothing (ANSWER_NOT_ANSWERED, ANSWER_NO_DOCUMENTS)."""
    return bool(_QUOTED_ANSWER.search(message)) or any(text in message for text in no_claims)


def reply_text(collection: str) -> str:
    return (
        f"I answer questions with passages from the documents of the collection "
        f"{collection!r}; I cannot write titles, tags, summaries or suggestions."
    )


async def reply_events(collection: str, message: str, *, streaming: bool) -> AsyncIterator[Event]:
    """The reply as the answer service's events are: pieces when streaming, then done."""
    text = reply_text(collection)
    if streaming:
        for piece in word_pieces(text):
            yield TokenEvent(piece)
    usage = {"input_tokens": count_tokens(message), "output_tokens": count_tokens(text)}
    yield DoneEvent({"answer": text, "sources": [], "cited": [], "usage": usage})
