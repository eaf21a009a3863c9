"""The offline generator: picks the sentences of the sources that best answer the question
and stitches them together in source order, each followed by its citation.

Nothing is invented: every word of the answer is a sentence of a cited source (or, when none
comes near the question, the one sentence NOT_ANSWERED, citing nothing). Only prose
is a candidate: headings, table rows, fenced code, lines that look like code and sentences
that are mostly links are passed over, so a Markdown source answers with what it says, not
with its layout; a lead-in ("To revoke a key:") brings the short code block or table it
introduces, and the answer is written back as Markdown (generation.markdown, render).
Sentences score by meaning (the collection's embedder: the question's similarity to each
sentence) plus a share of the question's words they hold, weighted by inverse document
frequency (rare terms count more, as in BM25) and damped for long sentences; without an
embedder, or if it fails, by the words alone. A sentence is embedded after its
source's title and headings ("Playground > Security"), as chunks are indexed: "Every response
carries a Content-Security-Policy" answers a question about the playground because it sits
under it. The answer keeps to one document, the one with the most support (its best
sentence, and a little of how highly and how often retrieval found it): a second document's
sentence is more often beside the point than not, and each citation of it would point the
reader elsewhere. When no sentence comes near the question by meaning (the best similarity
below ``min_similarity``: a question the documents do not answer), it says so and cites
nothing rather than quote the least unrelated sentences.
"""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from rag_core.tokens import count_tokens
from rag_telemetry import get_logger

from rag_query.generation.base import Message, Usage, word_pieces
from rag_query.generation.markdown import clean_inline, inert, paragraphs
from rag_query.generation.sources import Source, quoted
from rag_query.retrieval.analyzer import Analyzer
from rag_query.retrieval.history import with_conversation

# A sentence ends at . ! ? before a capital, a digit, or code or bold (a Markdown sentence may
# start with `make` or **Note**), or at a paragraph break or a list item.
_BLOCK_MARKS = "-*#•"  # a line starting with one starts a list item or a heading
_SENTENCE_END = re.compile(
    r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9]|`|\*\*)|\n{2,}"
    rf"|\n(?=[{re.escape(_BLOCK_MARKS)}])"
)
log = get_logger("rag.extractive")
MAX_SENTENCES = 4
MAX_ANSWER_CHARS = 1200
RELATIVE_FLOOR = 0.6
MIN_WORDS = 4  # shorter pieces are mostly headings
PROSE_SHARE = 0.7  # of a sentence's words that are plain words (code is mostly not)
RANK_PRIOR = 0.3  # added to a sentence's score, divided by its source's rank (from 1)
FOCUS = True  # sentences from one document only (_best_of_leading_document)
MAX_EMBEDDED = 64  # sentences scored by meaning per answer
LEXICAL_SHARE = 0.3  # of the normalised word overlap added to the similarity
RANK_PRIOR_DENSE = 0.05
DOCUMENT_PRIOR = 0.15  # of the sum of 1/rank of a document's sources, added in choosing it
CONTEXT = True  # sentences are scored by meaning after their source's title and headings
NOT_ANSWERED = "The documents found do not answer this question."

# Abbreviations a sentence does not end with ("no." and "etc." often end one).
_ABBREVIATION = re.compile(r"(?:^|[\s(])(?:e\.g|i\.e|cf|vs|approx|incl|resp|fig|eq)\.$", re.I)
_CODE_SPAN = re.compile(r"(`+).+?\1")
JOIN_LOOKAHEAD = 2  # pieces a bracket may stay open over and still be one sentence
LONGEST_JOINED = 600  # characters: no longer sentence is made by joining pieces
_LINK = re.compile(r"\[([^\]\[]*+)\]\([^)\[]*+\)")
_LEAD_IN = re.compile(r"\*\*|__|`|:$")
_PLAIN_WORD = re.compile(r"^(?:[^\W\d_][\w'\u2019-]*|\d[\d.,%\u2013-]*)$")
_WRAPPING = "*_`\"'()[]\u201c\u201d"


Embed = Callable[[Sequence[str]], Awaitable[Any]]  # texts -> one vector each


@dataclass(frozen=True)
class Piece:
    """A candidate sentence of a source and where it stands."""

    text: str  # cleaned for a chat window (markdown.clean_inline)
    paragraph: int  # its paragraph's place in the source
    item: bool = False  # from a list item
    block: str = ""  # the code block or table it leads into ("To revoke a key:")


@dataclass(frozen=True)
class _Sentence:
    piece: Piece
    source: int  # number
    document: str
    rank: int  # the source's rank, 0 first
    position: int
    score: float
    context: str = ""  # the source's title and heading path
    similarity: float | None = None  # to the question, by the embedder (when scored by meaning)

    @property
    def text(self) -> str:
        return self.piece.text


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text``. A break after an abbreviation ("e.g. `text/plain`"), or
    inside brackets that close within the next JOIN_LOOKAHEAD pieces ("(or its charset. See
    below.)"), is not the end of a sentence; a bracket that does not close so soon is a
    stray one (":(", "[0, 1)"), and no sentence grows past LONGEST_JOINED characters by
    joining. A paragraph break or a list item always ends one."""
    pieces: list[str] = []
    may_join: list[bool] = []  # the break after each piece may be a false end
    start = 0
    for end in _SENTENCE_END.finditer(text):
        pieces.append(" ".join(text[start : end.start()].split()))
        new_block = "\n\n" in end.group() or (
            "\n" in end.group() and text[end.end() : end.end() + 1] in tuple(_BLOCK_MARKS)
        )
        may_join.append(not new_block)
        start = end.end()
    pieces.append(" ".join(text[start:].split()))
    may_join.append(False)
    sentences: list[str] = []
    first = 0
    while first < len(pieces):
        last = _last_piece(pieces, may_join, first)
        sentences.append(" ".join(pieces[first : last + 1]))
        first = last + 1
    return [p for p in sentences if len(p) >= 3]


def _last_piece(pieces: Sequence[str], may_join: Sequence[bool], first: int) -> int:
    """The last of the pieces from ``first`` on that make one sentence (split_sentences)."""

    def joined(last: int) -> str | None:
        text = " ".join(pieces[first : last + 1])
        return text if len(text) <= LONGEST_JOINED else None

    last = first
    while may_join[last]:
        if _ABBREVIATION.search(pieces[last][-12:]) and joined(last + 1) is not None:
            last += 1
            continue
        if not _open(" ".join(pieces[first : last + 1])):
            break
        ends = range(last + 1, min(last + 1 + JOIN_LOOKAHEAD, len(pieces)))
        closing = next(
            (
                k
                for k in ends
                if all(may_join[last:k]) and (text := joined(k)) is not None and not _open(text)
            ),
            None,
        )
        if closing is None:
            break
        last = closing
    return last


def _open(sentence: str) -> bool:
    """It has a bracket it does not close (code spans aside)."""
    plain = _CODE_SPAN.sub("", sentence)
    return plain.count("(") > plain.count(")") or plain.count("[") > plain.count("]")


def prose(text: str) -> str:
    """``text`` without its layout, a paragraph (or a list item, its marker dropped) each."""
    return "\n\n".join(p.text for p in paragraphs(text))


def candidate_sentences(
    text: str, *, continued: bool = False, base_url: str | None = None
) -> list[Piece]:
    """The prose sentences of ``text``. A piece too short to stand alone goes (a heading
    written as a line of text), unless it is a lead-in (bold, code or ending in a colon:
    "**API keys** `rag_<id>_<secret>`.", "Note:"), which joins the sentence after it, or
    brings the code block or table after it. A sentence ending in a colon that introduces
    nothing the answer could show (a block too long, a heading) goes: it would dangle.
    ``continued``: the text is a chunk that may start inside a sentence (any but a document's
    first), so an opening piece that starts in lower case is the end of one, and goes."""
    pieces: list[Piece] = []
    for number, paragraph in enumerate(paragraphs(text)):
        splits = split_sentences(paragraph.text)
        carry = ""
        for index, split in enumerate(splits):
            if continued and number == 0 and index == 0 and split[:1].islower():
                continue
            piece = f"{carry} {split}" if carry else split
            carry = ""
            block = ""
            if index == len(splits) - 1 and piece.endswith(":"):
                block = paragraph.block
                if not block and not paragraph.before_list:
                    continue  # it would dangle
            if len(piece.split()) >= MIN_WORDS or block:
                if not _mostly_links(piece) and _prose_share(piece) >= PROSE_SHARE:
                    cleaned = clean_inline(piece, base_url)
                    if cleaned:
                        pieces.append(Piece(cleaned, number, paragraph.item, block))
            elif _LEAD_IN.search(piece):
                carry = piece
    return pieces


def _prose_share(sentence: str) -> float:
    """The share of its words that are plain words or numbers once quotes, emphasis and
    punctuation are stripped: about 0.8 or more for prose, even prose naming `SETTINGS`, and
    about half for code (``hits = rag.search("x", top_k=3)``) or a command line."""
    words = sentence.split()
    plain = sum(
        1 for w in words if _PLAIN_WORD.match(w.strip(_WRAPPING).rstrip(".,;:!?").strip(_WRAPPING))
    )
    return plain / len(words) if words else 0.0


def _mostly_links(sentence: str) -> bool:
    """More of its words are link text than not (a line of references, a table of contents)."""
    linked = sum(len(m.group(1).split()) for m in _LINK.finditer(sentence))
    return linked * 2 > len(_LINK.sub(" ", sentence).split()) + linked


def _best_of_leading_document(ranked: list[_Sentence], retrieved: dict[str, float]) -> _Sentence:
    """The best sentence of the document with the most support: its best sentence's score
    plus DOCUMENT_PRIOR times how much of it retrieval found (``retrieved``: the sum of 1/rank
    over its sources, ranks from 1). ``ranked``: best first."""
    best: dict[str, _Sentence] = {}
    for sentence in ranked:
        best.setdefault(sentence.document, sentence)

    def support(sentence: _Sentence) -> float:
        return sentence.score + DOCUMENT_PRIOR * retrieved.get(sentence.document, 0.0)

    return max(best.values(), key=support)  # max keeps the first of equals: rank order


def _completes(whole: _Sentence, cut: _Sentence) -> bool:
    """``whole`` is the same sentence of the same document as ``cut``, which a chunk's end
    cut short: it starts with what ``cut`` says (its last mark aside) and goes on."""
    start = cut.text.rstrip(";:,. ")
    return (
        whole.document == cut.document
        and len(whole.text) > len(cut.text)
        and len(start) >= 20
        and whole.text.startswith(start)
    )


def render(chosen: Sequence[_Sentence]) -> str:
    """The chosen sentences as Markdown, in source order, each followed by its citation (a
    "[3]" in the document itself cites nothing): sentences of one paragraph run on, others
    start a paragraph, list items that come together make a list, and a lead-in is followed
    by its block."""
    parts: list[str] = []
    for i, sentence in enumerate(chosen):
        before = chosen[i - 1] if i else None
        after = chosen[i + 1] if i + 1 < len(chosen) else None
        listed = sentence.piece.item and any(
            other is not None and other.piece.item and other.source == sentence.source
            for other in (before, after)
        )
        text = f"{'- ' if listed else ''}{inert(quoted(sentence.text))} [{sentence.source}]"
        if before is None:
            parts.append(text)
        elif listed and before.piece.item and before.source == sentence.source:
            parts.append(f"\n{text}")
        elif (before.source, before.piece.paragraph) == (
            sentence.source,
            sentence.piece.paragraph,
        ) and not before.piece.block:
            parts.append(f" {text}")
        else:
            parts.append(f"\n\n{text}")
        if sentence.piece.block:
            parts.append(f"\n\n{sentence.piece.block}")
    return "".join(parts)


class ExtractiveGenerator:
    name = "extractive"

    def __init__(
        self,
        analyzer: Analyzer,
        idf: Callable[[str], float] | None = None,
        embed: Embed | None = None,
        max_embedded: int = MAX_EMBEDDED,
        history_turns: int = 2,
        min_similarity: float = 0.0,
        not_answered: str = NOT_ANSWERED,
    ) -> None:
        self.analyzer = analyzer
        self.idf = idf or (lambda _term: 1.0)
        self.embed = embed
        self.max_embedded = max_embedded
        self.history_turns = history_turns
        # Below it, the best sentence by meaning does not answer: the embedder's own scale
        # (rag_core.embedding.models: ModelSpec.min_answer_similarity); 0 answers always.
        self.min_similarity = min_similarity
        self.not_answered = not_answered  # the answer then (ANSWER_NOT_ANSWERED)

    async def select(self, question: str, sources: Sequence[Source]) -> list[_Sentence] | None:
        """The sentences of the answer, in source order; None when no sentence comes near
        the question by meaning (below ``min_similarity``), or the sources hold no sentence
        to quote: they do not answer it."""
        wanted = set(self.analyzer.terms(question))
        pool: list[_Sentence] = []
        for rank, source in enumerate(sources):
            pieces = candidate_sentences(
                source.text, continued=source.position != 0, base_url=source.source
            )
            context = " > ".join(p for p in (source.title, source.heading) if p) if CONTEXT else ""
            for position, piece in enumerate(pieces):
                terms = set(self.analyzer.terms(piece.text))
                overlap = sum(self.idf(t) for t in wanted & terms)
                lexical = overlap / (1.0 + math.log1p(len(terms) / 25))
                pool.append(
                    _Sentence(
                        piece, source.number, source.document_id, rank, position, lexical, context
                    )
                )
        if not pool:
            return None  # no prose to quote (a table, a code block): an empty answer was given
        candidates: list[_Sentence] = []
        if self.embed is not None and self.max_embedded:
            try:
                candidates = await self._by_meaning(question, pool)
            except Exception as exc:
                log.warning("extractive_embedding_failed", error=f"{type(exc).__name__}: {exc}")
            similarities = [s.similarity for s in candidates if s.similarity is not None]
            nearest = max(similarities, default=1.0)
            if self.min_similarity > 0 and nearest < self.min_similarity:
                log.info("extractive_not_answered", similarity=round(nearest, 3))
                return None
        if not candidates:
            candidates = [
                replace(s, score=s.score + RANK_PRIOR / (s.rank + 1)) for s in pool if s.score > 0
            ]
        if not candidates:
            # Nothing shares a word with the question (a match by meaning only): lead with
            # the best source's opening sentences rather than with nothing.
            candidates = [replace(s, score=1.0 - s.position) for s in pool if s.rank == 0][:2]
        ranked = sorted(candidates, key=lambda s: (-s.score, s.rank, s.position))
        retrieved: dict[str, float] = {}
        for rank, source in enumerate(sources):
            retrieved[source.document_id] = retrieved.get(source.document_id, 0.0) + 1 / (rank + 1)
        best = _best_of_leading_document(ranked, retrieved)
        floor = best.score * RELATIVE_FLOOR
        chosen: list[_Sentence] = []
        seen: list[frozenset[str]] = []
        length = 0
        for sentence in ranked:
            if sentence.score < floor:
                break  # much weaker than the best: more likely noise than support
            if FOCUS and sentence.document != best.document:
                continue  # the answer stays with the document that answers best
            key = frozenset(self.analyzer.terms(sentence.text))
            if any(key <= other for other in seen):
                continue  # said already (overlapping chunks repeat sentences, or cut them)
            size = len(sentence.text) + len(sentence.piece.block)
            cut = next((i for i, c in enumerate(chosen) if _completes(sentence, c)), None)
            if cut is not None:
                # The whole of a sentence a chunk's end cut ("... invisible at once;"), which
                # a later chunk holds: it takes the cut one's place.
                grown = length - len(chosen[cut].text) - len(chosen[cut].piece.block) + size
                if grown <= MAX_ANSWER_CHARS:
                    seen[cut], chosen[cut], length = key, sentence, grown
                continue
            if chosen and length + size > MAX_ANSWER_CHARS:
                continue
            seen.append(key)
            chosen.append(sentence)
            length += size
            if len(chosen) >= MAX_SENTENCES:
                break
        return sorted(chosen, key=lambda s: (s.rank, s.position))

    async def _by_meaning(self, question: str, pool: list[_Sentence]) -> list[_Sentence]:
        """Scores by the embedder's similarity of each sentence to the question, plus a share
        of its (normalised) word overlap: a sentence can answer in other words ("images,
        archives" for "a PNG or a .zip"). The first MAX_EMBEDDED sentences of the sources, in
        rank order, are embedded with the question in one call."""
        assert self.embed is not None
        considered = pool[: self.max_embedded]
        texts = [f"{s.context}\n{s.text}" if s.context else s.text for s in considered]
        vectors = np.asarray(await self.embed([question, *texts]))
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        similarity = vectors[1:] @ vectors[0]
        top = max(s.score for s in considered) or 1.0
        return [
            replace(
                s,
                score=float(sim) + LEXICAL_SHARE * s.score / top + RANK_PRIOR_DENSE / (s.rank + 1),
                similarity=float(sim),
            )
            for s, sim in zip(considered, similarity, strict=True)
        ]

    async def answer(
        self,
        question: str,
        sources: Sequence[Source],
        history: Sequence[Message],
        usage: Usage,
    ) -> AsyncIterator[str]:
        # A follow-up ("for how long?") is scored after the user's earlier turns, as it was
        # searched (retrieval.history): its own words say little of what it asks.
        scored = with_conversation(question, history, self.history_turns) or question
        chosen = await self.select(scored, sources)
        # Counted as an LLM's usage is, in tokens (rag_core.tokens: WordPiece, within a few
        # percent of an LLM's tokenizer on English): what it read, what it wrote.
        usage.input_tokens = sum(count_tokens(s.text) for s in sources)
        text = render(chosen) if chosen else self.not_answered
        usage.output_tokens = count_tokens(text)
        for word in word_pieces(text):
            yield word
