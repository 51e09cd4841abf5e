"""Where a command's vectors go: the embedded Qdrant Edge store or a server.

Opens the store that ``--path`` / ``--url`` name (closing and flushing it on exit), checks
collection names and free space, and builds the dense index after a bulk write. A store
folder a command created but wrote nothing into is removed when the command ends, so a
failed first run leaves nothing on disk.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import time
from pathlib import Path
from typing import Any

from lfm_retrieval.cli_errors import (
    EXIT_USAGE,
    CommandError,
    _describe,
    _qdrant_errors,
    _store_errors,
)


def default_qdrant_path() -> Path:
    """``$XDG_CACHE_HOME/lfm-retrieval/qdrant``, or ``~/.cache/lfm-retrieval/qdrant``."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "lfm-retrieval" / "qdrant"


def check_space_ahead(client: Any, collection: str, total: int) -> None:
    """Before the first write: refuse a resumed run whose rest cannot fit (Edge stores)."""
    if not hasattr(client, "check_space") or not client.collection_exists(collection):
        return  # a server manages its disk; a new collection is checked batch by batch
    stored = client.count(collection).count
    client.check_space(collection, n_points=max(0, total - stored))


def require_qdrant() -> None:
    """Fail with one line naming the extra when the Qdrant packages are not installed."""
    missing = [m for m in ("qdrant_client", "qdrant_edge") if importlib.util.find_spec(m) is None]
    if missing:
        raise CommandError(
            f"this command needs the Qdrant packages ({', '.join(missing)} missing); install "
            "them with: pip install 'lfm-retrieval[qdrant]'",
            EXIT_USAGE,
        )


def collection_name(name: str) -> str:
    from lfm_qdrant import validate_collection_name

    try:
        return validate_collection_name(name)
    except (TypeError, ValueError) as error:
        raise CommandError(f"--collection: {error}", EXIT_USAGE) from None


class _Client:
    """A Qdrant store opened from the command line options, closed (flushed) on exit.

    An embedded store folder that this command created and left without a collection (it
    failed before its first write, or only read) is removed on exit: a failed first run
    leaves nothing behind.
    """

    def __init__(self, args: argparse.Namespace, read_only: bool = False) -> None:
        self.args = args
        self.read_only = read_only
        self.client: Any = None
        self.created: Path | None = None  # the topmost folder this open created

    def __enter__(self) -> Any:
        args = self.args
        if args.url and args.path:
            raise CommandError(
                "pass --path (embedded Qdrant Edge) or --url (a server), not both", EXIT_USAGE
            )
        if args.url:
            from qdrant_client import QdrantClient

            # No version check: it only warns, and the probe below reports a dead server.
            self.client = QdrantClient(
                url=args.url, api_key=os.environ.get("QDRANT_API_KEY"), check_compatibility=False
            )
            try:
                self.client.get_collections()
            except _qdrant_errors() as error:
                self.client.close()
                raise CommandError(
                    f"cannot reach the Qdrant server at {args.url}: {_describe(error)}"
                ) from None
            return self.client
        from lfm_qdrant import EdgeStore

        path = (args.path or default_qdrant_path()).expanduser().absolute()
        missing = [folder for folder in (path, *path.parents) if not folder.exists()]
        self.created = missing[-1] if missing and not self.read_only else None
        self.client = EdgeStore(path, read_only=self.read_only)
        return self.client

    def __exit__(self, exc_type: object, *exc_info: object) -> None:
        if self.client is None:
            return
        unused = False
        if self.created is not None:
            with contextlib.suppress(*_store_errors(), OSError):
                unused = not self.client.get_collections().collections
        if exc_type is None:
            self.client.close()
        else:
            # Already failing (a full disk, say): a flush that fails the same way on close
            # must not replace the error that says what happened.
            with contextlib.suppress(*_store_errors(), *_qdrant_errors()):
                self.client.close()
        if unused:
            _remove_new_store(self.client.path, self.created)


def _remove_new_store(path: Path, created: Path | None) -> None:
    """Remove a store folder this command created and wrote no collection into.

    Only the store's own empty layout goes (its marker, lock and empty ``collections``);
    then each folder created for it, up to ``created``, if empty.
    """
    import shutil

    own = {"lfm-store.json", ".lock", "collections"}
    with contextlib.suppress(OSError):
        entries = {entry.name for entry in path.iterdir()}
        if not entries <= own or any((path / "collections").iterdir()):
            return
        shutil.rmtree(path)
        folder = path.parent
        while created is not None and folder != created.parent and folder != folder.parent:
            folder.rmdir()  # only an empty one; an OSError ends the walk
            folder = folder.parent


def open_client(args: argparse.Namespace, read_only: bool = False) -> _Client:
    """The store of ``--path``/``--url``; ``read_only`` for commands that only search."""
    return _Client(args, read_only)


def build_index(client: Any, collection: str) -> str:
    """Build an Edge store's dense HNSW index after a bulk write; a note for the summary."""
    if not hasattr(client, "optimize"):
        return ""  # a server indexes in the background
    started = time.perf_counter()
    if not client.optimize(collection):
        return ""  # small enough to be scanned: nothing to build
    return f" (index built in {time.perf_counter() - started:.1f} s)"


def where(args: argparse.Namespace) -> str:
    return args.url or str(args.path or default_qdrant_path())
