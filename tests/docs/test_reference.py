"""The API reference: every public class and function of the five packages is on a page,
with a docstring, as mkdocstrings will render it (read by griffe, the same static loader).

``mkdocs build --strict`` (run by .ci/run) then fails on any docstring it cannot render.
"""

from __future__ import annotations

import re

import griffe  # mkdocstrings[python]'s loader, in the dev extra
import pytest

from tests.docs.harness import ROOT

PACKAGES = ["lfm_core", "lfm_langchain", "lfm_llamaindex", "lfm_qdrant", "lfm_ray"]


@pytest.fixture(scope="module")
def loader() -> griffe.GriffeLoader:
    loader = griffe.GriffeLoader(search_paths=[str(ROOT), str(ROOT / "integrations")])
    for package in PACKAGES:
        loader.load(package)
    loader.resolve_aliases(implicit=False, external=False)
    return loader


@pytest.mark.parametrize("package", PACKAGES)
def test_the_package_has_a_reference_page(package: str) -> None:
    page = ROOT / "docs" / "reference" / f"{package}.md"
    assert re.search(rf"^::: {package}$", page.read_text(encoding="utf-8"), re.MULTILINE), (
        f"{page.relative_to(ROOT)} must render the package with '::: {package}'"
    )


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_class_and_function_has_a_docstring(
    loader: griffe.GriffeLoader, package: str
) -> None:
    module = loader.modules_collection[package]
    exported = list(module.exports or [])
    assert exported, f"{package} has no __all__: the reference would not know what is public"
    missing = []
    for name in exported:
        member = module.members.get(name)
        assert member is not None, f"{package}.__all__ names {name!r}, which griffe cannot find"
        target = member.final_target if member.is_alias else member
        if target.kind.value not in ("class", "function"):
            continue
        if not (target.docstring and target.docstring.value.strip()):
            missing.append(name)
        if target.kind.value == "class":
            missing += [
                f"{name}.{method}"
                for method, value in target.members.items()
                if not method.startswith("_")
                and not value.is_alias
                and (value.kind.value == "function" or "property" in value.labels)
                and not (value.docstring and value.docstring.value.strip())
            ]
    assert not missing, f"{package}: no docstring on {', '.join(missing)}"


def test_the_cli_page_is_generated_from_the_parser() -> None:
    import sys

    sys.path.insert(0, str(ROOT))
    try:
        from mkdocs_hooks import cli_reference
    finally:
        sys.path.remove(str(ROOT))
    page = cli_reference()
    for command in ("index", "search", "eval", "crosslingual", "serve"):
        assert f"## `lfm-retrieval {command}`" in page
    assert "--model-workers" in page and "--log-level" in page and "--split" in page
