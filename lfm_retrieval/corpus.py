"""Corpus readers: a JSONL file, a BEIR folder, or a folder of ``.txt``/``.md``/``.html`` files.

Readers stream :class:`Document` objects one at a time, so a corpus larger than memory
can be indexed. They validate as they go and name the file and line of a bad record.

Formats:

- **JSONL**: one JSON object per line with a string ``text``; optional ``id`` (or
  BEIR's ``_id``) and ``title``; every other key is kept as metadata.
- **BEIR folder**: ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl``
  (``_id``, ``text``) and ``qrels/<split>.tsv`` (``query-id corpus-id score`` with a
  header line), the layout of ``beir.datasets.data_loader.GenericDataLoader``.
- **Text folder**: every ``.txt``, ``.md``, ``.html`` and ``.htm`` file below the folder
  (hidden files and folders skipped; other files ignored), in sorted order; the id is the
  path relative to the folder. The title is an HTML page's ``<title>`` (else its first
  ``<h1>``) or a markdown file's first ``# heading``. HTML is parsed with BeautifulSoup
  (its encoding read from the page's ``<meta charset>``, else detected); script, style and
  template elements are dropped. A ``.txt``/``.md`` file must be UTF-8; a file holding NUL
  bytes (a binary file with a text name) is an error naming it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lfm_core.errors import InputError

logger = logging.getLogger(__name__)

CorpusFormat = Literal["jsonl", "beir", "text"]

TEXT_SUFFIXES = (".txt", ".md", ".html", ".htm")
_HTML_SUFFIXES = (".html", ".htm")
_HTML_BLOCKS = [
    "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "figcaption",
    "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav",
    "ol", "p", "pre", "section", "table", "td", "th", "tr", "ul",
]  # fmt: skip

_RESERVED_KEYS = frozenset({"text", "title", "id", "_id"})


class CorpusError(InputError):
    """A corpus, query or qrels file is missing or malformed."""


@dataclass(frozen=True)
class Document:
    """One document of a corpus.

    Attributes:
        text: the body.
        id: the corpus' own id (JSONL ``id`` / BEIR ``_id`` / relative file path), if any.
        title: an optional title.
        metadata: other fields of the record, stored as payload next to the text.
        source: where it was read, for error messages: ``file:line`` of a JSONL record,
            the file of a text folder's document.
    """

    text: str
    id: str | None = None
    title: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    source: str | None = field(default=None, compare=False)

    @property
    def content(self) -> str:
        """The text that gets embedded: ``"title text"`` when there is a title (BEIR's convention)."""
        if self.title:
            return f"{self.title} {self.text}" if self.text else self.title
        return self.text


def corpus_format(path: str | Path) -> CorpusFormat:
    """Tell which reader a path needs.

    Args:
        path: a JSONL file, a BEIR folder (with ``corpus.jsonl``) or a folder of text files.

    Returns:
        ``"jsonl"``, ``"beir"`` or ``"text"``.

    Raises:
        CorpusError: the path does not exist or is a file that is not JSONL.
    """
    path = Path(path)
    if path.is_dir():
        return "beir" if (path / "corpus.jsonl").is_file() else "text"
    if path.is_file():
        if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
            return "jsonl"
        raise CorpusError(
            f"corpus {str(path)!r} is not a .jsonl file; expected a JSONL file, "
            "a BEIR folder or a folder of .txt/.md files"
        )
    raise CorpusError(
        f"corpus not found: {str(path)!r}; expected a JSONL file, a BEIR folder "
        "or a folder of .txt/.md files"
    )


def read_corpus(path: str | Path) -> Iterator[Document]:
    """Stream the documents of any supported corpus.

    Args:
        path: a JSONL file, a BEIR folder or a folder of ``.txt`` / ``.md`` files.

    Yields:
        :class:`Document`, in file order.

    Raises:
        CorpusError: the path is missing, holds no document, or a record is malformed.
    """
    fmt = corpus_format(path)
    if fmt == "jsonl":
        return read_jsonl(path)
    if fmt == "beir":
        return read_jsonl(Path(path) / "corpus.jsonl")
    return read_text_folder(path)


def count_documents(path: str | Path) -> int:
    """Count the documents of a corpus without parsing them (for a progress bar total).

    Args:
        path: as for :func:`read_corpus`.

    Returns:
        Non-blank lines of a JSONL file, or the number of text files of a folder.
    """
    fmt = corpus_format(path)
    if fmt == "text":
        return len(_text_files(Path(path)))
    jsonl = Path(path) / "corpus.jsonl" if fmt == "beir" else Path(path)
    with jsonl.open("rb") as handle:
        return sum(1 for line in handle if line.strip())


def read_jsonl(path: str | Path) -> Iterator[Document]:
    """Stream the documents of a JSONL file (``text``; optional ``id``/``_id``, ``title``).

    Args:
        path: the file; blank lines are skipped.

    Yields:
        :class:`Document`; keys other than ``text``, ``title``, ``id``, ``_id`` go to metadata.

    Raises:
        CorpusError: a line is not a JSON object, lacks a string ``text``, or has an id
            or title that is not a string or an int.
    """
    path = Path(path)
    for line_no, record in _jsonl_records(path):
        where = f"{path}:{line_no}"
        text = record.get("text")
        if not isinstance(text, str):
            raise CorpusError(f"{where}: 'text' must be a string, got {type(text).__name__}")
        raw_id = record.get("id", record.get("_id"))
        title = record.get("title")
        if title is not None and not isinstance(title, str):
            raise CorpusError(f"{where}: 'title' must be a string, got {type(title).__name__}")
        metadata = {key: value for key, value in record.items() if key not in _RESERVED_KEYS}
        yield Document(
            text=text,
            id=_as_id(raw_id, where),
            title=title or None,
            metadata=metadata,
            source=where,
        )


def read_text_folder(path: str | Path) -> Iterator[Document]:
    """Stream every ``.txt`` / ``.md`` / ``.html`` file below a folder as one document.

    Args:
        path: the folder.

    Yields:
        :class:`Document` with id = path relative to the folder (POSIX separators), the
        title when the file has one, and ``metadata = {"path": <that path>}``.

    Raises:
        CorpusError: the folder holds no such file, a file cannot be read, holds NUL bytes
            (binary), or a ``.txt``/``.md`` file is not UTF-8.
    """
    root = Path(path)
    files = _text_files(root)
    if not files:
        raise CorpusError(
            f"no .txt, .md or .html file in folder {str(root)!r}; expected a JSONL file, "
            "a BEIR folder (with corpus.jsonl) or a folder of .txt/.md/.html files"
        )
    for file in files:
        relative = file.relative_to(root).as_posix()
        try:
            raw = file.read_bytes()
        except OSError as exc:
            raise CorpusError(f"cannot read {str(file)!r}: {exc.strerror or exc}") from None
        if b"\x00" in raw:
            raise CorpusError(
                f"{file}: holds NUL bytes, so it is not a text file; remove it from the "
                "folder or rename it"
            )
        if file.suffix.lower() in _HTML_SUFFIXES:
            title, text = _html_text(raw)
        else:
            try:
                text = raw.decode("utf-8").lstrip("\ufeff")
            except UnicodeDecodeError as exc:
                raise CorpusError(
                    f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})"
                ) from None
            title = _markdown_title(text) if file.suffix.lower() == ".md" else None
        yield Document(
            text=text, id=relative, title=title, metadata={"path": relative}, source=str(file)
        )


def _html_text(raw: bytes) -> tuple[str | None, str]:
    """The title and the visible text of an HTML page: one paragraph per block element."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(raw, "html.parser")
    for element in soup(["script", "style", "template", "noscript"]):
        element.decompose()
    title_tag = soup.title if soup.title is not None else soup.find("h1")
    title = " ".join(title_tag.get_text(" ").split()) if title_tag is not None else ""
    if soup.title is not None:
        soup.title.decompose()
    # Inline elements run on; a block ends a paragraph, so the chunker can cut there.
    for block in soup.find_all(_HTML_BLOCKS):
        block.insert_before("\n\n")
        block.insert_after("\n\n")
    paragraphs = (" ".join(part.split()) for part in soup.get_text().split("\n\n"))
    return title or None, "\n\n".join(p for p in paragraphs if p)


def _markdown_title(text: str) -> str | None:
    """The first ``# heading`` of a markdown file, if it has one."""
    for line in text.splitlines():
        if line.startswith("# "):
            return line[2:].strip() or None
    return None


def read_beir_queries(folder: str | Path) -> dict[str, str]:
    """Read ``queries.jsonl`` of a BEIR folder.

    Args:
        folder: the BEIR folder.

    Returns:
        ``{query_id: text}`` in file order.

    Raises:
        CorpusError: the file is missing or a record lacks ``_id`` / ``text``.
    """
    path = Path(folder) / "queries.jsonl"
    if not path.is_file():
        raise CorpusError(f"BEIR queries not found: {str(path)!r}")
    queries: dict[str, str] = {}
    for line_no, record in _jsonl_records(path):
        where = f"{path}:{line_no}"
        text = record.get("text")
        if not isinstance(text, str):
            raise CorpusError(f"{where}: 'text' must be a string, got {type(text).__name__}")
        query_id = _as_id(record.get("_id", record.get("id")), where)
        if query_id is None:
            raise CorpusError(f"{where}: a query needs an '_id'")
        queries[query_id] = text
    return queries


def read_beir_qrels(folder: str | Path, split: str = "test") -> dict[str, dict[str, int]]:
    """Read ``qrels/<split>.tsv`` of a BEIR folder.

    Args:
        folder: the BEIR folder.
        split: ``"test"``, ``"dev"`` or ``"train"`` (the file name without ``.tsv``).

    Returns:
        ``{query_id: {doc_id: relevance}}``.

    Raises:
        CorpusError: the file is missing or a row is not ``query-id, corpus-id, int score``.
    """
    path = Path(folder) / "qrels" / f"{split}.tsv"
    if not path.is_file():
        available = sorted(p.stem for p in (Path(folder) / "qrels").glob("*.tsv"))
        raise CorpusError(
            f"BEIR qrels not found: {str(path)!r}; splits present: {available or 'none'}"
        )
    qrels: dict[str, dict[str, int]] = {}
    for line_no, line in _lines(path):
        fields = line.rstrip("\r\n").split("\t")
        if line_no == 1 and fields[0] == "query-id":
            continue  # the header BEIR writes
        if not line.strip():
            continue
        if len(fields) != 3:
            raise CorpusError(
                f"{path}:{line_no}: expected 3 tab-separated fields, got {len(fields)}"
            )
        try:
            score = int(fields[2])
        except ValueError:
            raise CorpusError(f"{path}:{line_no}: score {fields[2]!r} is not an int") from None
        qrels.setdefault(fields[0], {})[fields[1]] = score
    return qrels


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """The lines of a UTF-8 text file, numbered from 1; a line that is not UTF-8 is named."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise CorpusError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    with handle:
        for line_no, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise CorpusError(
                    f"{path}:{line_no}: not UTF-8 (byte {raw[exc.start]:#04x} at column "
                    f"{exc.start + 1}); convert the file, e.g. `iconv -f latin1 -t utf-8`"
                ) from None
            yield line_no, line.lstrip("\ufeff") if line_no == 1 else line


def _jsonl_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    repaired = 0
    for line_no, line in _lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorpusError(f"{path}:{line_no}: not valid JSON ({exc.msg})") from None
        except RecursionError:
            raise CorpusError(
                f"{path}:{line_no}: JSON nested too deep for the decoder; flatten the record"
            ) from None
        if not isinstance(record, dict):
            raise CorpusError(
                f"{path}:{line_no}: expected a JSON object, got {type(record).__name__}"
            )
        if "\\ud" in line.lower():  # an escaped UTF-16 surrogate, maybe a lone one
            record, changed = _repair_strings(record)
            repaired += changed
        yield line_no, record
    if repaired:
        logger.warning(
            "%d record(s) of %s held lone UTF-16 surrogates (escaped as \\udXXX); they were "
            "replaced with U+FFFD",
            repaired,
            path,
        )


def _repair_strings(value: Any) -> tuple[Any, bool]:
    """``value`` with every string read through UTF-16 (lone surrogates -> U+FFFD)."""
    if isinstance(value, str):
        fixed = value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
        return fixed, fixed != value
    if isinstance(value, list):
        items = [_repair_strings(v) for v in value]
        return [v for v, _ in items], any(c for _, c in items)
    if isinstance(value, dict):
        pairs = {k: _repair_strings(v) for k, v in value.items()}
        keys = {k: _repair_strings(k)[0] for k in value}
        changed = any(c for _, c in pairs.values()) or any(keys[k] != k for k in value)
        return {keys[k]: v for k, (v, _) in pairs.items()}, changed
    return value, False


def _as_id(raw: object, where: str) -> str | None:
    if raw is None:
        return None
    # bool is an int subclass, but True as an id is surely a mistake.
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        raise CorpusError(f"{where}: id must be a string or an int, got {type(raw).__name__}")
    return str(raw)


def _text_files(root: Path) -> list[Path]:
    return sorted(
        file
        for file in root.rglob("*")
        if file.suffix.lower() in TEXT_SUFFIXES
        and file.is_file()
        and not any(part.startswith(".") for part in file.relative_to(root).parts)
    )
