"""The fenced blocks of README.md and docs/*.md, with the directives written above them.

A directive is an HTML comment right above a fence (blank lines and other directives may
sit between), invisible on GitHub and in the built site:

- ``<!-- docs-test: needs KIND: why -->``: where that is missing the block is not run,
  only checked (its imports, the arguments of its commands); a ``gpu`` block runs on a
  machine with CUDA. KIND is one of :data:`NEEDS`, nothing else.
- ``<!-- docs-test: setup`` + Python lines + ``-->``: what the example takes as given
  (``docs``, ``vector_store``, an LLM), run in the document's namespace first.
- ``<!-- docs-test: output of: COMMAND -->`` above an untagged block: the block is a
  sample output; COMMAND (a stand-in run when the documented one needs data or hours) is
  run and its output must match the sample, numbers and absolute paths aside.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# The only reasons a block may be left unrun.
NEEDS = {
    "gpu": "needs a GPU",
    "server": "needs a server",
    "cluster": "needs a Ray or Qdrant cluster",
    "data": "needs the data folder",
}
PYTHON = {"python", "py", "pycon"}
SHELL = {"bash", "sh", "shell", "console"}

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>```+|~~~+)\s*(?P<lang>[\w+-]*)")
_DIRECTIVE = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<body>.*?)\s*(?:-->)?\s*$")


class DirectiveError(ValueError):
    """A ``docs-test`` comment the harness cannot read (named by file and line)."""


@dataclass(frozen=True)
class Block:
    """One fenced block and the directives above it."""

    doc: str  # "README.md" or "docs/name.md"
    line: int  # 1-based line of the opening fence
    lang: str
    source: str
    needs: tuple[str, str] | None = None  # (kind, why)
    setup: str = ""
    output_of: str | None = None

    @property
    def kind(self) -> str:
        """``python``, ``shell``, ``output`` (a sample output checked) or ``text``."""
        if self.output_of is not None:
            return "output"
        if self.lang in PYTHON:
            return "python"
        if self.lang in SHELL:
            return "shell"
        return "text"

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"


def documents(root: Path) -> list[Path]:
    """The user docs: README.md, then docs/*.md by name."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def read_blocks(path: Path, root: Path) -> list[Block]:
    """Every fenced block of one markdown file, in order."""
    doc = path.relative_to(root).as_posix()
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    pending: list[tuple[int, str]] = []  # (line, directive text)
    i = 0
    while i < len(lines):
        line = lines[i]
        directive = _DIRECTIVE.match(line)
        if directive:
            text, i = _directive_text(lines, i, doc)
            pending.append((i, text))
            continue
        fence = _FENCE.match(line)
        if fence:
            end = i + 1
            marker = fence["fence"]
            while end < len(lines) and not lines[end].strip().startswith(marker):
                end += 1
            indent = fence["indent"]
            # A fence inside a list item is indented; its lines lose that indentation.
            body = "\n".join(
                row[len(indent) :] if row.startswith(indent) else row.lstrip()
                for row in lines[i + 1 : end]
            )
            blocks.append(_block(doc, i + 1, fence["lang"].lower(), body, pending))
            pending = []
            i = end + 1
            continue
        if line.strip():
            pending = []  # a directive belongs to the very next block only
        i += 1
    return blocks


def _directive_text(lines: list[str], i: int, doc: str) -> tuple[str, int]:
    """The text of the comment starting at line ``i`` and the index after it."""
    first = _DIRECTIVE.match(lines[i])
    assert first is not None
    body = [first["body"]]
    if lines[i].rstrip().endswith("-->"):
        return body[0], i + 1
    j = i + 1
    while j < len(lines) and not lines[j].strip().endswith("-->"):
        body.append(lines[j])
        j += 1
    if j == len(lines):
        raise DirectiveError(f"{doc}:{i + 1}: docs-test comment is never closed with -->")
    last = lines[j].rstrip()[: -len("-->")]
    if last.strip():
        body.append(last)
    return "\n".join(body), j + 1


def _block(doc: str, line: int, lang: str, body: str, pending: list[tuple[int, str]]) -> Block:
    needs: tuple[str, str] | None = None
    setup: list[str] = []
    output_of: str | None = None
    for at, text in pending:
        head, _, rest = text.partition("\n")
        word = head.split(maxsplit=1)[0] if head.strip() else ""
        if word == "needs":
            kind, _, why = head[len("needs") :].strip().partition(":")
            if kind.strip() not in NEEDS or not why.strip():
                raise DirectiveError(
                    f"{doc}:{at}: 'needs' takes one of {', '.join(NEEDS)} and a reason, "
                    f"e.g. 'needs data: SciFact'; got {head!r}"
                )
            needs = (kind.strip(), why.strip())
        elif word == "setup":
            setup.append(rest)
        elif head.startswith("output of:"):
            output_of = (head[len("output of:") :] + "\n" + rest).strip()
        else:
            raise DirectiveError(
                f"{doc}:{at}: unknown docs-test directive {head!r}; "
                "use 'needs KIND: why', 'setup' or 'output of: COMMAND'"
            )
    return Block(doc, line, lang, body, needs, "\n".join(setup), output_of)
