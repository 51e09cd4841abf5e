"""Rules every user doc keeps: install lines that work before the package is published,
the extra each page needs said first, relative links that resolve."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.docs.blocks import documents
from tests.docs.harness import ROOT

DOCS = documents(ROOT)
_PUBLISHED = re.compile(r"lfm-retrieval\[([^\]]+)\]")
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _paragraphs(path: Path) -> list[tuple[int, str]]:
    """(first line, text) of each run of non-blank lines."""
    out: list[tuple[int, str]] = []
    start, lines = 0, []
    for number, line in enumerate([*path.read_text(encoding="utf-8").splitlines(), ""], 1):
        if line.strip():
            start = start or number
            lines.append(line)
        elif lines:
            out.append((start, "\n".join(lines)))
            start, lines = 0, []
    return out


@pytest.mark.parametrize("path", DOCS, ids=[p.name for p in DOCS])
def test_a_published_install_line_comes_with_the_checkout_form(path: Path) -> None:
    """Until the package is on PyPI, ``lfm-retrieval[x]`` alone cannot be installed."""
    bad = []
    for line, text in _paragraphs(path):
        for extras in _PUBLISHED.findall(text):
            if f'-e ".[{extras}]"' not in text and f".whl[{extras}]" not in text:
                bad.append(f"{path.name}:{line}: lfm-retrieval[{extras}]")
    assert not bad, 'give the checkout form (pip install -e ".[x]") beside: ' + ", ".join(bad)


@pytest.mark.parametrize("path", DOCS[1:], ids=[p.name for p in DOCS[1:]])
def test_each_doc_opens_with_the_extra_it_needs(path: Path) -> None:
    paragraphs = _paragraphs(path)
    assert paragraphs[0][1].startswith("# "), f"{path.name} opens with its title"
    opening = paragraphs[1][1]
    assert "extra" in opening or 'pip install -e ".[' in opening, (
        f"{path.name}: the paragraph after the title says which extra it needs"
    )


@pytest.mark.parametrize("path", DOCS, ids=[p.name for p in DOCS])
def test_relative_links_resolve(path: Path) -> None:
    broken = []
    for target in _LINK.findall(path.read_text(encoding="utf-8")):
        if re.match(r"^(https?:|mailto:|#)", target):
            continue
        file = target.split("#")[0]
        if not (path.parent / file).exists():
            broken.append(target)
    assert not broken, f"{path.name}: links to missing files: {broken}"
