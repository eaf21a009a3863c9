"""Untrusted text (documents, the server's messages, file names) made inert for a terminal."""

from __future__ import annotations

import re

from rich.text import Text

# What a terminal would act on rather than show: C0 controls but tab and newline, DEL, C1
# controls (CSI among them), and the bidirectional overrides that reorder what is shown.
_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# The same and tab and newline too: a file name or an event line is one line.
_UNSAFE_IN_A_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str, *, one_line: bool = False) -> str:
    """``text`` with control characters as escapes (``\\x1b``); with ``one_line``, newlines
    and tabs too."""
    if one_line:
        return _UNSAFE_IN_A_LINE.sub(_visible, text)
    return _UNSAFE.sub(_visible, text.replace("\r\n", "\n"))


def plain(text: str, *, one_line: bool = False) -> Text:
    """Text from documents or the server, made inert: no markup, no emoji codes, and control
    characters shown as escapes (``\\x1b``) instead of reaching the terminal."""
    return Text(visible(text, one_line=one_line))
