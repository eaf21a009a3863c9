"""Searching for a follow-up without an LLM to rewrite it: "And how do I revoke one?" means
"an API key" only after "How are API keys stored?". With an LLM the conversation is condensed
into a standalone question (the ``condense`` prompt). Without one, a message that refers back
(a pronoun such as "it", "one" or "that"; an opening "and", "what about", "what if"; or four
words or fewer) is searched twice, alone and after the user's earlier turns, and the two
rankings are fused by weighted RRF, the conversation's weighing twice the message's. A message
that stands alone is searched alone, so a user who changes the subject gets what the new
question finds. The referring words are English: in another language only a short message
counts as a follow-up. docs/benchmarks.md ("Follow-up questions") has what each way was worth
on two sets of conversations over docs/.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rag_core.embedding.models import MODELS
from rag_core.tokens import count_tokens, last_tokens

from rag_query.generation.base import Message

MAX_CONTEXT_CHARS = 2000  # of the earlier turns searched with the follow-up
# Of the earlier turns, at most, and no more than leave the follow-up within the first
# EMBEDDER_TOKENS: the local embedder reads no further, so that longer earlier turns pushed the
# follow-up out of its own vector (searched and scored as the earlier turns alone).
MAX_CONTEXT_TOKENS = 128
EMBEDDER_TOKENS = MODELS["all-MiniLM-L6-v2"].max_tokens  # [CLS] and [SEP] aside
CONVERSATION_WEIGHT = 2.0  # of the conversation's search in RRF; the message's own is 1
SHORT_WORDS = 4  # a message this short leans on the conversation whatever its words

_REFERRING = re.compile(
    r"\b(?:it|its|one|ones|that|this|those|these|they|them|their|there|then|same|he|she)\b",
    re.I,
)
_CONTINUING = re.compile(r"^\W*(?:and|but|so|or|also|what about|how about|what if)\b", re.I)


def refers_back(message: str) -> bool:
    """Whether a message reads as a follow-up rather than a question of its own."""
    return (
        len(message.split()) <= SHORT_WORDS
        or bool(_REFERRING.search(message))
        or bool(_CONTINUING.match(message))
    )


def with_conversation(question: str, history: Sequence[Message], turns: int = 2) -> str | None:
    """The question after the last ``turns`` earlier user turns, when it refers back to them
    (None: it stands alone, or there is nothing to refer to)."""
    earlier = [m.content.strip() for m in history if m.role == "user" and m.content.strip()]
    earlier = earlier[-turns:] if turns > 0 else []
    if not earlier or not refers_back(question):
        return None
    room = min(MAX_CONTEXT_TOKENS, EMBEDDER_TOKENS - count_tokens(question))
    context = last_tokens(" ".join(earlier)[-MAX_CONTEXT_CHARS:], room)
    return f"{context} {question}" if context else None


def history_queries(
    question: str, history: Sequence[Message], turns: int = 2
) -> list[tuple[str, float]]:
    """The searches to fuse, with their RRF weights: the question alone, then, when it
    refers back, the question with the conversation (``with_conversation``)."""
    together = with_conversation(question, history, turns)
    if together is None:
        return [(question, 1.0)]
    return [(question, 1.0), (together, CONVERSATION_WEIGHT)]
