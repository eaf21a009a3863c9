"""Citations a chat window shows: the answer's [1], [2] are only numbers to a client that
does not read the ``sources`` extension (none of the usual frontends does), so the OpenAI
route ends the answer with a short Markdown list of the sources it cites:

    **Sources**
    - [1] Gateway — API keys · `gateway.md`
    - [2] [Release notes](https://example.org/notes) · page 3

``CHAT_CITATIONS`` sets it for the server (``list``, the default, or ``none``), and a request's
``citations`` field for itself. A client sends the answer back as the conversation's next
turn; the list is taken off it there (``without_citation_list``), so neither retrieval nor an
LLM reads it as part of what was said.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

CitationStyle = Literal["list", "none"]
HEADING = "**Sources**"

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")
_WEB = re.compile(r"^https?://[^\s<>\"'`]+$", re.I)
_LIST_LINES = re.compile(r"- \[\d+\][^\n]*+(?:\n- \[\d+\][^\n]*+)*+")


def _plain(text: str) -> str:
    """User text (a title, a heading) shown as itself: one line, Markdown escaped."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def _code(text: str) -> str:
    one_line = " ".join(text.replace("`", "'").split())
    return f"`{one_line}`"


def _link_target(url: str) -> str:
    return url.replace("(", "%28").replace(")", "%29")


def describe(source: Mapping[str, Any]) -> str:
    """One source as a line of the list: its title (a link when it came from a web address),
    its heading, the file it came from, its page."""
    origin = str(source.get("source") or "")
    title = source.get("title") or None
    heading = source.get("heading") or None
    web = bool(_WEB.match(origin))
    name = _plain(str(title)) if title else (_plain(origin) if web else "")
    if web:
        name = f"[{name}]({_link_target(origin)})"
    parts = [name] if name else []
    path = [p.strip() for p in str(heading or "").split(" > ") if p.strip()]
    if path and path[0] == title:
        path = path[1:]  # a heading path starts with the document's own title
    if path:
        parts.append(" \u203a ".join(_plain(p) for p in path))
    if origin and not web:
        parts.append(_code(origin))
    if not parts:
        parts.append(_code(str(source.get("document_id", ""))))
    line = " — ".join(parts[:2]) + "".join(f" · {p}" for p in parts[2:])
    page = source.get("page")
    return f"{line} · page {page}" if page is not None else line


def citation_list(sources: Iterable[Mapping[str, Any]], cited: Iterable[int]) -> str:
    """The Markdown list of the cited sources (in number order; sources that read the same,
    such as two passages of one section, share a line), to follow the answer; "" when it
    cites none."""
    wanted = set(cited)
    lines: dict[str, list[int]] = {}
    for source in sorted(sources, key=lambda s: int(s["number"])):
        if source["number"] in wanted:
            lines.setdefault(describe(source), []).append(int(source["number"]))
    if not lines:
        return ""
    items = (f"- {', '.join(f'[{n}]' for n in numbers)} {line}" for line, numbers in lines.items())
    return f"\n\n{HEADING}\n" + "\n".join(items)


def without_citation_list(content: str) -> str:
    """An earlier answer as the conversation holds it: without the list this route added."""
    at = content.rfind(f"\n{HEADING}\n")
    if at < 0 or not _LIST_LINES.fullmatch(content[at + len(HEADING) + 2 :].rstrip()):
        return content
    return content[:at].rstrip()
