"""``lfm-retrieval index --ray``: the corpus encoded on Ray workers, with Ray kept quiet.

A local Ray prints its start-up, every Ray Data plan and a progress report of its own on
the terminal; the command already has a progress bar and a summary line. Unless
``--verbose``, Ray's own output is cut to its warnings, and Ray's notice that it turned on
token authentication is replaced by one line when it writes its token file (Ray's home
folder files are described in docs/scale-out.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# A module import: cli loads this module only from within a command, when it is complete.
from lfm_retrieval import cli, cli_store
from lfm_retrieval.cli_errors import EXIT_USAGE, CommandError

# Ray's notice, on every start, that its token authentication is on (Ray >= 2.5x).
_TOKEN_NOTICE_LOGGER = "ray._private.authentication.authentication_token_setup"
# Ray Data's notice that its own progress bars are off (the command draws its own).
_PROGRESS_NOTICE_LOGGER = "ray.data._internal.progress"
# Ray's C++ core logs this error for every Ray Data actor pool (ray-project/ray#57733): the
# pool's arguments are an object the driver holds for the whole run, so a restart cannot
# lose them. It is written to the stderr file descriptor, below Python's logging.
_ACTOR_ARGS_NOTICE = b"has constructor arguments in the object store and max_restarts > 0"


def index_on_ray(args: argparse.Namespace, collection: str) -> int:
    """Run ``index --ray``: the same points as the plain command, encoded on Ray workers.

    Args:
        args: the parsed ``index`` options.
        collection: the checked collection name.

    Returns:
        The exit code (0; failures raise :class:`CommandError` or the library's errors).
    """
    import importlib.util

    from tqdm.auto import tqdm

    from lfm_retrieval.pipeline import CorpusPoints

    if importlib.util.find_spec("ray") is None:
        raise CommandError("--ray needs Ray Data: pip install 'lfm-retrieval[ray]'", EXIT_USAGE)
    from lfm_core import LoadOptions
    from lfm_qdrant import SyncReport
    from lfm_ray import index_dataset

    with cli_store.open_client(args) as client:  # read the record; the store is reopened below
        recorded = cli._recorded_models(client, collection)
    dense, colbert = cli._models_to_load(args, recorded)
    cli._check_models_exist(args, (dense, colbert), recorded)
    points = CorpusPoints(args.corpus)
    rows = [
        {"text": text, "id": str(key), "metadata": json.dumps(payload)}
        for _, texts, ids, payloads in points.batches(4096)
        for text, key, payload in zip(texts, ids, payloads)
    ]
    points.check_not_empty()
    with _quiet_ray(args.verbose), _local_ray(args) as ray_data:
        dropped = () if args.verbose else (_ACTOR_ARGS_NOTICE,)
        # The bar first: it checks that stderr is a terminal, which the filter's pipe is not.
        with (
            tqdm(
                total=len(rows),
                unit="doc",
                desc=f"indexing {collection} on Ray",
                disable=args.quiet or None,
            ) as bar,
            _without_stderr_lines(dropped),
        ):
            result = index_dataset(
                ray_data.from_items(rows),
                collection=collection,
                url=args.url,
                path=None if args.url else (args.path or cli_store.default_qdrant_path()),
                api_key=os.environ.get("QDRANT_API_KEY") if args.url else None,
                dense=dense,
                colbert=colbert,
                id_column="id",
                metadata_column="metadata",
                concurrency=args.concurrency,
                num_gpus=args.gpus_per_worker,
                batch_size=args.batch_size,
                options=LoadOptions(device=args.device),
                pool_factor=args.pool_factor,
                progress=bar.update,
                writer_options={
                    "colbert_datatype": args.colbert_datatype,
                    "lexical": not args.no_lexical,
                },
                chunking=cli._chunking(args),
                delete_missing=args.sync,
            )
            bar.update(result.skipped_existing)  # found unchanged: done too
    with cli_store.open_client(args) as client:
        built = cli_store.build_index(client, collection)
    done = SyncReport(result.added, result.updated, result.skipped_existing, result.deleted)
    cli._print_index_summary(args, collection, points.report(result.points, done), built)
    return 0


@contextlib.contextmanager
def _local_ray(args: argparse.Namespace) -> Iterator[Any]:
    """Ray started (or the running one joined) for this command; ``ray.data`` inside."""
    import ray
    import ray.data

    if ray.is_initialized():  # a caller's own Ray (Python, tests): used as it is
        yield ray.data
        return
    token = Path.home() / ".ray" / "auth_token"
    had_token = token.exists()
    ray.init(
        address=args.ray_address,
        include_dashboard=False,
        log_to_driver=args.verbose,
        logging_level=logging.INFO if args.verbose else logging.WARNING,
    )
    if not had_token and token.exists():
        print(
            f"Ray wrote its cluster access token to {token} (see docs/scale-out.md)",
            file=sys.stderr,
        )
    try:
        yield ray.data
    finally:
        ray.shutdown()


@contextlib.contextmanager
def _quiet_ray(verbose: bool) -> Iterator[None]:
    """Ray's loggers down to warnings and Ray Data's own progress off, unless ``verbose``."""
    if verbose:
        yield
        return
    from ray.data import DataContext

    context = DataContext.get_current()
    progress = context.enable_progress_bars
    context.enable_progress_bars = False  # the command's own bar counts the documents
    levels = {}
    for name, level in (
        ("ray", logging.WARNING),
        ("ray.data", logging.WARNING),
        (_TOKEN_NOTICE_LOGGER, logging.ERROR),
        (_PROGRESS_NOTICE_LOGGER, logging.ERROR),
    ):
        logger = logging.getLogger(name)
        levels[name] = logger.level
        logger.setLevel(level)
    try:
        yield
    finally:
        context.enable_progress_bars = progress
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


@contextlib.contextmanager
def _without_stderr_lines(patterns: tuple[bytes, ...]) -> Iterator[None]:
    """Drop the stderr lines holding one of ``patterns``, at the file-descriptor level.

    Everything else passes through as it is written (a progress bar's partial lines too).
    Entered after Ray has started, so no Ray process inherits the pipe.
    """
    if not patterns:
        yield
        return
    sys.stderr.flush()
    original = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump() -> None:
        pending = b""
        with os.fdopen(read_end, "rb", buffering=0) as source:
            while chunk := source.read(65536):
                *complete, rest = (pending + chunk).split(b"\n")
                # An unfinished log line waits for its end (a notice may span two reads);
                # a progress bar's update (it holds a carriage return) passes at once.
                rest, pending = (rest, b"") if b"\r" in rest else (b"", rest)
                kept = b"".join(
                    line + b"\n" for line in complete if not any(p in line for p in patterns)
                )
                if kept + rest:
                    os.write(original, kept + rest)
            if pending:
                os.write(original, pending)

    thread = threading.Thread(target=pump, name="lfm-stderr-filter", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(original, 2)  # closes the pipe's last write end: the pump sees its end
        thread.join(timeout=5)
        if not thread.is_alive():  # else the pump may still write to it: leave it open
            os.close(original)
