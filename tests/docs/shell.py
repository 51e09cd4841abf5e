"""The little of POSIX shell the docs' blocks use: enough to run them in this process.

Commands are split on newlines and ``&&`` (quotes and ``\\``-continued lines respected),
``#`` comments dropped, ``$VAR`` / ``${VAR}`` expanded outside single quotes, and
``NAME=value`` prefixes or ``NAME=$(...)`` assignments kept in the document's variables.
Anything else (pipes, redirections, ``;``, loops) is refused, so a doc cannot quietly grow
a command the harness only pretends to run.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

_ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.DOTALL)
_VARIABLE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


class ShellSyntaxError(ValueError):
    """A construct the harness does not run (a pipe, a redirection, a loop...)."""


@dataclass(frozen=True)
class Command:
    """One simple command: variable assignments, then the words of the command."""

    assignments: dict[str, str]
    argv: list[str]
    text: str  # as written, for messages


def split_commands(source: str) -> list[str]:
    """The commands of a block, in order: one per line or per ``&&``, comments dropped."""
    commands: list[str] = []
    current: list[str] = []
    quote = ""
    i = 0
    at_word_start = True
    while i < len(source):
        char = source[i]
        if quote:
            current.append(char)
            if char == "\\" and quote == '"' and i + 1 < len(source):
                current.append(source[i + 1])
                i += 1
            elif char == quote:
                quote = ""
            i += 1
            continue
        if char == "\\" and source[i + 1 : i + 2] == "\n":  # a continued line
            current.append(" ")
            i += 2
            continue
        if char in "'\"":
            quote = char
        elif char == "#" and at_word_start:
            while i < len(source) and source[i] != "\n":
                i += 1
            continue
        elif char == "\n" or source.startswith("&&", i):
            commands.append("".join(current))
            current = []
            i += 1 if char == "\n" else 2
            at_word_start = True
            continue
        elif char in "|;<>`" or source.startswith("$((", i):
            raise ShellSyntaxError(
                f"{char!r} in {source.strip()!r}: the docs harness runs simple commands only"
            )
        current.append(char)
        at_word_start = char.isspace()
        i += 1
    if quote:
        raise ShellSyntaxError(f"unclosed {quote} in {source.strip()!r}")
    commands.append("".join(current))
    return [c.strip() for c in commands if c.strip()]


def parse(text: str, variables: dict[str, str], substitute) -> Command:
    """Expand variables and ``$(...)`` (through ``substitute(command) -> stdout``), split words."""
    expanded = _expand(text, variables, substitute)
    words = shlex.split(expanded, posix=True)
    assignments: dict[str, str] = {}
    while words and _ASSIGNMENT.match(words[0]):
        name, value = _ASSIGNMENT.match(words[0]).groups()  # type: ignore[union-attr]
        assignments[name] = value
        words.pop(0)
    return Command(assignments, words, text)


def _expand(text: str, variables: dict[str, str], substitute) -> str:
    """``$(cmd)`` and ``$VAR`` replaced outside single quotes; results quoted for shlex."""
    out: list[str] = []
    i = 0
    quote = ""
    while i < len(text):
        char = text[i]
        if quote == "'":
            out.append(char)
            quote = "" if char == "'" else quote
            i += 1
            continue
        if char == "'" and not quote:
            quote = "'"
            out.append(char)
            i += 1
            continue
        if char == '"':
            quote = "" if quote == '"' else '"'
            out.append(char)
            i += 1
            continue
        if text.startswith("$(", i):
            end = _closing_paren(text, i + 1)
            value = substitute(text[i + 2 : end]).rstrip("\n")
            out.append(value if quote else shlex.quote(value))
            i = end + 1
            continue
        match = _VARIABLE.match(text, i)
        if match:
            value = variables.get(match[1] or match[2], "")
            out.append(value.replace('"', '\\"') if quote else shlex.quote(value))
            i = match.end()
            continue
        out.append(char)
        i += 1
    return "".join(out)


def _closing_paren(text: str, start: int) -> int:
    depth = 0
    quote = ""
    for j in range(start, len(text)):
        char = text[j]
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return j
    raise ShellSyntaxError(f"unclosed $( in {text!r}")
