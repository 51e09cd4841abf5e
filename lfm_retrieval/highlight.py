"""Terminal rendering of an :class:`~lfm_core.Explanation`: the matched words highlighted.

Used by ``lfm-retrieval search --explain``. With colour (a terminal, ``NO_COLOR`` unset)
the matched words are bold on yellow; without, they are wrapped in ``[[...]]``.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

from lfm_core import Explanation

__all__ = ["highlight", "matched_words", "use_color"]

_ON, _OFF = "\x1b[1;30;43m", "\x1b[0m"
_PLAIN_ON, _PLAIN_OFF = "[[", "]]"
# Whitespace that would break the one-line layout, each kept as one character so spans hold.
_FLAT = str.maketrans({"\n": " ", "\r": " ", "\t": " ", "\f": " ", "\v": " "})


def use_color(stream: TextIO = sys.stdout) -> bool:
    """Colour only on a terminal, and never with ``NO_COLOR`` set (no-color.org)."""
    return stream.isatty() and not os.environ.get("NO_COLOR")


def highlight(text: str, why: Explanation, *, color: bool, max_chars: int = 400) -> str:
    """``text`` on one line with the document tokens the query matched highlighted.

    >>> from lfm_core import TokenMatch
    >>> why = Explanation(1.5, [TokenMatch("ship", (7, 11), 0.9), TokenMatch("x", None, 0.6)])
    >>> highlight("Orders ship fast", why, color=False)
    'Orders [[ship]] fast'
    """
    spans = sorted({m.document_span for m in why.matches if m.document_span is not None})
    flat = text.translate(_FLAT)
    out, pos = [], 0
    on, off = (_ON, _OFF) if color else (_PLAIN_ON, _PLAIN_OFF)
    for start, end in spans:
        if start < pos or start >= max_chars:
            continue
        out += [flat[pos:start], on, flat[start:end], off]
        pos = end
    out.append(flat[pos:max_chars])
    return "".join(out) + ("…" if len(text) > max(max_chars, pos) else "")


def matched_words(why: Explanation) -> str:
    """``query word -> document word (similarity)`` for the query's own tokens."""
    parts = [
        f"{m.query_token}->{m.document_token if m.document_token is not None else '?'} "
        f"({m.similarity:.2f})"
        for m in why.matches
        if m.query_span is not None
    ]
    notes = f"  ({why.note})" if why.note else ""
    return ", ".join(parts) + notes
