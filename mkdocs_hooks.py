"""mkdocs hooks: pages made at build time from the code and from files outside docs/.

- ``index.md``: the README, its links into ``docs/`` made relative to the site;
- ``benchmark-harness.md``: ``benchmarks/README.md``; ``examples.md``: each example's
  docstring;
- ``reference/cli.md``: ``--help`` of ``lfm-retrieval`` and of every subcommand, from
  ``lfm_retrieval.cli.build_parser()``, so the page cannot drift from the parser;
- the docs' ``<!-- docs-test: ... -->`` comments (directives of tests/docs) left out.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

ROOT = Path(__file__).resolve().parent
CLI_MARKER = "<!-- cli-help: filled in by mkdocs_hooks.py -->"
# Links of files that live outside docs/ -> their page in the site.
_OUTSIDE = {
    "../README.md": "index.md",
    "../benchmarks/README.md": "benchmark-harness.md",
}
_DIRECTIVE = re.compile(r"^<!-- docs-test:.*?-->\n", re.DOTALL | re.MULTILINE)


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the pages whose sources are outside docs/ or in the code."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    readme = re.sub(r"\]\(docs/([^)]+)\)", r"](\1)", readme).replace(
        "](examples/)", "](examples.md)"
    )
    harness = (ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8")
    for uri, content in (
        ("index.md", readme),
        ("benchmark-harness.md", harness),
        ("examples.md", _examples_page()),
    ):
        files.append(File.generated(config, uri, content=content))
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Fill in the command line reference; point links out of docs/ at their pages."""
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_reference())
    for outside, inside in _OUTSIDE.items():
        markdown = markdown.replace(f"]({outside}", f"]({inside}")
    return _DIRECTIVE.sub("", markdown)


def cli_reference() -> str:
    """``--help`` of ``lfm-retrieval`` and of each subcommand, as markdown sections."""
    from lfm_retrieval.cli import build_parser

    parser = build_parser()
    sections = [("lfm-retrieval", parser)]
    for action in parser._subparsers._group_actions if parser._subparsers else []:
        if isinstance(action, argparse._SubParsersAction):
            sections += [(f"lfm-retrieval {name}", sub) for name, sub in action.choices.items()]
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal; the page is always this wide
    try:
        return "\n".join(
            f"## `{name}`\n\n```text\n{sub.format_help().rstrip()}\n```\n" for name, sub in sections
        )
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved


def _examples_page() -> str:
    """Each script of examples/ with the first paragraphs of its docstring."""
    parts = [
        "# Examples\n\nScripts in the repository's `examples/` folder; each runs offline on "
        "local model folders (see [offline use](offline.md)).\n"
    ]
    for path in sorted((ROOT / "examples").glob("*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        parts.append(f"## `examples/{path.name}`\n\n{_indented_as_code(doc)}\n")
    return "\n".join(parts)


def _indented_as_code(doc: str) -> str:
    """A docstring's indented command lines as a fenced block (markdown would drop them)."""
    out: list[str] = []
    block: list[str] = []
    for line in [*doc.splitlines(), ""]:
        if line.startswith("    "):
            block.append(line[4:])
            continue
        if block:
            out += ["```bash", *block, "```"]
            block = []
        out.append(line)
    return "\n".join(out)
