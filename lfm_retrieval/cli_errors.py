"""How the ``lfm-retrieval`` command fails: one ``error:`` line and an exit code from one table.

:func:`run_guarded` runs a command and turns the failures a user can act on into one line on
stderr (never a traceback); its logging handler lets each kind of warning through once per
command and adds up the counting ones. The exit codes are :data:`EXIT_CODES`, which
``--help`` prints.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import Any

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_STORAGE = 3
EXIT_INTERRUPTED = 130
# 128 + SIGBUS, as a shell reports a process killed by a bus error.
EXIT_BUS_ERROR = 135
# The one table of exit codes: --help prints it, docs/getting-started.md repeats it.
EXIT_CODES: tuple[tuple[int, str], ...] = (
    (EXIT_OK, "success"),
    (EXIT_RUNTIME, "runtime: a Qdrant server failed or could not be reached"),
    (
        EXIT_USAGE,
        "usage or input: a bad option, corpus file, model or collection layout; fix it and "
        "run again",
    ),
    (
        EXIT_STORAGE,
        "storage: the store cannot be opened, read or written (full disk, read-only, in use, "
        "not a store); what was written is kept: fix it and run the same command again",
    ),
    (EXIT_INTERRUPTED, "interrupted (Ctrl-C); `index` and `eval` resume when run again"),
    (
        EXIT_BUS_ERROR,
        "killed by a bus error: the disk filled under Qdrant's mapped files despite the "
        "space checks (one error line says so); free space and run the same command again",
    ),
)

# Loggers whose warnings the command shows (as "WARNING: message" on stderr).
_LOGGERS = ("lfm_core", "lfm_qdrant", "lfm_retrieval")


class CommandError(Exception):
    """A failure reported as one ``error:`` line, with the exit code to return."""

    def __init__(self, message: str, exit_code: int = EXIT_RUNTIME) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def exit_code_table() -> str:
    """The exit codes as ``--help`` prints them."""
    return "exit codes:\n" + "\n".join(f"  {code:>3}  {meaning}" for code, meaning in EXIT_CODES)


def _run_guarded(handler: Any, arg: Any) -> int:
    """Run a command; turn the failures a user can act on into one ``error:`` line."""
    from lfm_core import LFMError

    log_handler = logging.StreamHandler(sys.stderr)
    log_handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    once = _OncePerMessage()
    log_handler.addFilter(once)
    loggers = [logging.getLogger(name) for name in _LOGGERS]
    for logger in loggers:
        logger.addHandler(log_handler)
    try:
        return handler(arg)
    except CommandError as error:
        return _fail(str(error), error.exit_code)
    except _store_errors() as error:  # the store's disk, mount or lock: not the input
        return _fail(str(error), EXIT_STORAGE)
    except LFMError as error:  # bad input, checkpoint or collection: the user's to fix
        return _fail(str(error), EXIT_USAGE)
    except _qdrant_errors() as error:
        return _fail(f"Qdrant request failed: {_describe(error)}", EXIT_RUNTIME)
    except KeyboardInterrupt:
        return _fail("interrupted; `index` and `eval` resume when run again", EXIT_INTERRUPTED)
    finally:
        for logger in loggers:
            logger.removeHandler(log_handler)
        for line in once.totals():
            print(f"WARNING: {line}", file=sys.stderr)
        if once.dropped:
            print(f"({once.dropped} more warning(s) like the above not shown)", file=sys.stderr)


class _OncePerMessage(logging.Filter):
    """Let each kind of warning through once per command; add up the counting ones.

    Indexing encodes batch after batch, and the encoder warns per batch (e.g. about
    truncated documents): one line tells the user, a hundred hide the progress bar. A
    warning marked ``extra={"lfm_summable_args": k}`` is held back and reported once at
    the end, its first ``k`` numbers added up over the run ("83 of 5183 documents ...").
    """

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[tuple[str, object]] = set()
        self.dropped = 0
        self._sums: dict[tuple[str, object, tuple[object, ...]], list[int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        summable = getattr(record, "lfm_summable_args", 0)
        if summable and isinstance(record.args, tuple):
            key3 = (record.name, record.msg, record.args[summable:])
            counts = self._sums.setdefault(key3, [0] * summable)
            for i in range(summable):
                counts[i] += int(record.args[i])  # type: ignore[call-overload]
            return False
        key = (record.name, record.msg)  # the format string, not the formatted numbers
        if key in self.seen:
            self.dropped += 1
            return False
        self.seen.add(key)
        return True

    def totals(self) -> list[str]:
        """One line per held-back counting warning, with its numbers added up."""
        return [str(msg) % (*counts, *rest) for (_, msg, rest), counts in self._sums.items()]


def _fail(message: str, code: int) -> int:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    return code


def _store_errors() -> tuple[type[BaseException], ...]:
    try:
        from lfm_qdrant.space import StoreError
    except ModuleNotFoundError:  # no [qdrant] extra: no store to fail
        return ()
    return (StoreError,)


_FATAL_WATCHER: Any = None


def _report_fatal_signals() -> None:
    """Make a fatal signal end with one ``error:`` line instead of nothing.

    Qdrant Edge writes through memory-mapped files: if the disk fills under a mapped page
    despite the space checks (another process filling it), the kernel kills the process
    with SIGBUS, and nothing of Python runs any more. ``faulthandler`` still writes its
    report, here into a pipe; a small ``sh`` child reads it and prints one line saying what
    happened and how to resume. When the command ends normally the pipe closes unread.
    """
    global _FATAL_WATCHER
    import faulthandler
    import shutil
    import subprocess

    sh = shutil.which("sh")
    if _FATAL_WATCHER is not None or sys.platform == "win32" or sh is None:
        return
    bus = (
        "error: killed by a bus error: the disk under the Qdrant store filled up while the "
        "engine wrote to it; what was acknowledged before is kept: free space and run the "
        "same command again"
    )
    script = (
        'IFS= read -r line || exit 0; case "$line" in *"Bus error"*) printf "%s\n" "$1" >&2 ;; '
        '*) printf "error: %s (a bug: please report it with the command you ran)\n" "$line" >&2 ;; esac'
    )
    read_fd, write_fd = os.pipe()
    try:
        _FATAL_WATCHER = subprocess.Popen(
            [sh, "-c", script, "sh", bus], stdin=read_fd, stdout=subprocess.DEVNULL
        )
    except OSError:
        os.close(write_fd)
        return
    finally:
        os.close(read_fd)
    faulthandler.enable(file=write_fd, all_threads=False)


def _qdrant_errors() -> tuple[type[BaseException], ...]:
    try:
        from lfm_qdrant.upload import CLIENT_ERRORS
    except ModuleNotFoundError:  # no [qdrant] extra: no client errors to catch
        return ()
    return CLIENT_ERRORS


def _describe(error: BaseException) -> str:
    """One line for a client error: its HTTP status and the server's reason, or the network cause."""
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    if isinstance(error, UnexpectedResponse):
        reason = error.content.decode("utf-8", "replace") if error.content else error.reason_phrase
        match = re.search(r'"error"\s*:\s*"([^"]*)"', reason)
        return f"HTTP {error.status_code}: {match.group(1) if match else reason}"[:300]
    if isinstance(error, ResponseHandlingException):
        error = error.source
    text = " ".join(str(error).split()) or type(error).__name__
    return text[:300]
