"""Markdown sources read as prose, and an extractive answer written back as clean Markdown.

A source is split into paragraphs: runs of prose lines, and list items (one paragraph each,
the marker dropped). Layout is not prose: headings, rules, HTML comments, images and lines that
look like code end a paragraph. A fenced code block or a table right after a paragraph is kept
with it, verbatim, so a lead-in such as "To revoke a key:" can bring the command it introduces.

In the answer a sentence loses what would break in a chat window: images, HTML comments and
links a reader cannot follow (relative ones, unless the source is a web page to resolve them
against); an emphasis or code span cut in half by the sentence split loses its markers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urljoin

MAX_BLOCK_LINES = 15  # longer code blocks and tables are not brought into an answer
MAX_BLOCK_CHARS = 900

_FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
_TABLE_ROW = re.compile(r"^\s*\|")
# Lines that are layout, not prose: headings, rules, HTML comment ends, images, lone HTML tags.
_LAYOUT = re.compile(r"^\s*(?:#{1,6}\s|<!--|-->|[-*_=]{3,}\s*$|!\[|</?[A-Za-z][^>]*>\s*$)")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+\u2022]|\d{1,3}[.)])\s+")
_WORDISH = re.compile(r"[^\W\d_]{2,}")
_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.S)
# A comment the chunk cut: its end closing a line of the text's first paragraph.
_CUT_COMMENT_END = re.compile(r"\A(?:[^\n]*+\n)*?[^\n]*?-->[ \t]*(?:\n|\Z)")
# Possessive quantifiers: a text of unclosed brackets costs one pass, not one per bracket.
_IMAGE = re.compile(r"!\[(?:[^\[\]]|\[[^\[\]]*+\])*+\](?:\([^)]*+\)|\[[^\]]*+\])")
_HTML_IMAGE = re.compile(r"<img\b[^<>]*+>", re.I)
_LINK = re.compile(
    r"(?<!!)\[([^\]\[]++)\]\(\s*+<?([^)\s>\[]*+)>?(?:\s++(?:\"[^\"]*+\"|'[^']*+'))?\s*+\)"
)
_REFERENCE_LINK = re.compile(r"(?<!!)\[([^\]\[]++)\]\[[^\]\[]*+\]")
_FOLLOWABLE = re.compile(r"^(?:https?://|mailto:)", re.I)
_CITATION_LIKE = re.compile(r"\[\d{1,3}\]")
# A link clean_inline kept (its target one a reader can follow), or a code span: what inert()
# leaves as Markdown. Possessive: one pass over any text.
# Its target only of characters that end no link and open nothing ("(" unbalanced made the
# "link" text, and what followed it live Markdown: an image, raw HTML).
_KEPT_LINK = re.compile(
    r"\[([^\]\[]*+)\]\(((?:https?://|mailto:)[A-Za-z0-9\-._~:/?#@!$*+,;=%]*+)\)", re.I
)
# What a Markdown renderer would read as markup rather than text: a tag, comment or autolink
# ("<" before a letter, "/", "!" or "?"), link and image brackets, an entity ("&#91;3&#93;"
# shows as a citation) and a backslash (which would undo an escape). "a < b" stays as it is.
_MARKUP = re.compile(r"(\\|<(?=[A-Za-z/!?])|[\[\]]|&(?=#?[0-9A-Za-z]+;))")


@dataclass(frozen=True)
class Paragraph:
    text: str  # its lines, joined by newlines
    item: bool = False  # a list item
    block: str = ""  # the code block or table right after it, verbatim, when short enough
    before_list: bool = False  # a list item comes next


def looks_like_code(line: str) -> bool:
    """Mostly symbols (a diagram, a command line, JSON): fewer than half its characters are
    letters of words."""
    text = line.strip()
    if not text:
        return False
    letters = sum(len(w) for w in _WORDISH.findall(text))
    return letters * 2 < len(text.replace(" ", ""))


def _without_comments(text: str) -> str:
    """HTML comments gone, including one the chunk cuts: an opening alone, or a closing
    alone at the end of a line before the text's first blank line ("Login --> Settings" and
    ``A-->B`` are not comments)."""
    text = _COMMENT.sub("", text)
    cut = _CUT_COMMENT_END.match(text.split("\n\n", 1)[0])
    if cut and not any(_FENCE.match(line) for line in cut.group(0).splitlines()):
        return text[cut.end() :]
    return text


def _fence_pairs(lines: list[str]) -> dict[int, int]:
    """Opening line -> closing line of each fenced block: a fence closes only with the same
    character, at least as long (a ```` ```` ```` block may hold a ``` line)."""
    pairs: dict[int, int] = {}
    opening: tuple[int, str] | None = None
    for i, line in enumerate(lines):
        fence = _FENCE.match(line)
        if fence is None:
            continue
        mark = fence.group(1)
        if opening is None:
            opening = (i, mark)
        elif (
            mark[0] == opening[1][0]
            and len(mark) >= len(opening[1])
            and not line[fence.end() :].strip()
        ):
            pairs[opening[0]] = i
            opening = None
    return pairs


def _outside_fences(text: str) -> str:
    """``text`` with comments taken out of its prose only: a fenced block stays verbatim."""
    lines = text.splitlines()
    pairs = _fence_pairs(lines)
    parts: list[str] = []
    prose: list[str] = []
    i = 0
    while i < len(lines):
        if i in pairs:
            parts.append(_without_comments("\n".join(prose)))
            parts.append("\n".join(lines[i : pairs[i] + 1]))
            prose = []
            i = pairs[i] + 1
        else:
            prose.append(lines[i])
            i += 1
    parts.append(_without_comments("\n".join(prose)))
    return "\n".join(parts)


def _short_block(lines: list[str]) -> str:
    block = "\n".join(lines)
    if len(lines) > MAX_BLOCK_LINES or len(block) > MAX_BLOCK_CHARS:
        return ""
    if _CITATION_LIKE.search(block):
        return ""  # a "[2]" in it would read as a citation, and code is not to be altered
    return block


_LANGUAGE = re.compile(r"[A-Za-z0-9_+#.-]{1,30}")
_BACKTICKS = re.compile(r"`+")


def _refenced(lines: list[str]) -> list[str]:
    """A fenced block (its opening and closing lines included) inside a fence made here: one
    a Markdown renderer always reads as a fence, longer than any backtick run in the code. The
    source's own was copied, and where renderers read it otherwise (an info string with a
    backtick, four spaces or a no-break space before it) its lines were live Markdown and
    HTML."""
    code = lines[1:-1]
    info = lines[0].strip().lstrip("`~").strip().split(" ", 1)[0]
    language = info if _LANGUAGE.fullmatch(info) else ""
    longest = max((len(run) for line in code for run in _BACKTICKS.findall(line)), default=0)
    fence = "`" * max(3, longest + 1)
    return [f"{fence}{language}", *code, fence]


def paragraphs(text: str) -> list[Paragraph]:
    """The prose paragraphs of a Markdown text, each with the block that follows it."""
    lines = _outside_fences(text).splitlines()
    closing_of = _fence_pairs(lines)
    found: list[Paragraph] = []
    current: list[str] = []
    item = False
    last: int | None = None  # the paragraph a block right here would follow

    def flush() -> None:
        nonlocal current, item, last
        if any(line.strip() for line in current):
            found.append(Paragraph("\n".join(current), item))
            last = len(found) - 1
        current, item = [], False

    def attach(block: list[str]) -> None:
        nonlocal last
        if last is not None and not found[last].block:
            kept = _short_block(block)
            if kept:
                found[last] = Paragraph(found[last].text, found[last].item, kept)
        last = None

    i = 0
    while i < len(lines):
        line = lines[i]
        if i in closing_of:
            flush()
            attach(_refenced(lines[i : closing_of[i] + 1]))
            i = closing_of[i] + 1
            continue
        if _TABLE_ROW.match(line):
            flush()
            end = i
            while end < len(lines) and _TABLE_ROW.match(lines[end]):
                end += 1
            attach([inert(clean_inline(row)) for row in lines[i:end]])
            i = end
            continue
        i += 1
        if not line.strip():
            flush()
            continue
        if _FENCE.match(line) or _LAYOUT.match(line) or looks_like_code(line):
            flush()
            last = None
            continue
        marker = _LIST_ITEM.match(line)
        if marker:
            flush()
            if last is not None:
                found[last] = Paragraph(found[last].text, found[last].item, found[last].block, True)
            current, item = [line[marker.end() :]], True
            continue
        if not current:
            last = None  # a block after this paragraph follows it, not an earlier one
        current.append(line)
    flush()
    return found


def _escaped(text: str) -> str:
    return _MARKUP.sub(r"\\\1", text)


def inert(text: str) -> str:
    """A quoted sentence as a Markdown renderer shows it word for word: everything a
    document's author could make live (raw HTML such as ``<svg onload=...>``, autolinks, links
    and images whose brackets defeat clean_inline's patterns, entities) backslash-escaped. Code
    spans, and the links clean_inline kept (http, https, mailto), stay Markdown."""
    parts = text.split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick (clean_inline drops them): no code span
        parts = [text]
    out: list[str] = []
    for index, part in enumerate(parts):
        if index % 2:  # inside a code span: shown as it is
            out.append(f"`{part}`")
            continue
        at = 0
        for link in _KEPT_LINK.finditer(part):
            out.append(_escaped(part[at : link.start()]))
            out.append(f"[{_escaped(link.group(1))}]({link.group(2)})")
            at = link.end()
        out.append(_escaped(part[at:]))
    return "".join(out)


def clean_inline(text: str, base_url: str | None = None) -> str:
    """A sentence as a chat window can show it: no images or HTML comments, a link kept only
    when a reader can follow it (a relative one is resolved against ``base_url`` when the
    source is a web page, or becomes its text), and emphasis or code markers a split left
    unpaired dropped."""
    text = _HTML_IMAGE.sub("", _IMAGE.sub("", _COMMENT.sub("", text)))

    def link(match: re.Match[str]) -> str:
        label, target = match.group(1), match.group(2)
        if _FOLLOWABLE.match(target):
            return f"[{label}]({target})"
        if base_url and target and _FOLLOWABLE.match(base_url):
            resolved = urljoin(base_url, target)
            if _FOLLOWABLE.match(resolved):  # not javascript:, data: and the like
                return f"[{label}]({resolved})"
        return label

    def reference(match: re.Match[str]) -> str:
        label = match.group(1)
        return match.group(0) if label.isdigit() else label  # "[2][3]" is a citation's look

    text = _REFERENCE_LINK.sub(reference, _LINK.sub(link, text))
    if text.count("`") % 2:
        text = text.replace("`", "")
    if text.count("**") % 2:
        text = text.replace("**", "")
    return " ".join(text.split())
