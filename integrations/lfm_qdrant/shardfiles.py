"""Files of an Edge store that are not the engine's data: leftovers, private read-only copies.

Leftovers: a run that died (a full disk, a kill) can leave files the next run would trip
over. Each is named here with why it is safe to remove:

- ``.lfm-store.json.tmp``: the store marker being written; the marker is replaced
  atomically, so a ``.tmp`` is never the only copy of anything.
- ``.lock``: the lock file; the lock itself is the ``flock`` on it, released by the kernel
  when its process ends. An unlocked ``.lock`` in a folder without a marker is ours.
- ``collections/NAME/.collection.json.tmp``: a collection record being written.
- ``shard/temp_segments/*``: segments an index build was writing when it died. Qdrant
  builds a new segment there and moves it into ``segments/`` only when it is complete, so
  a segment still in ``temp_segments/`` was never part of the collection.
- ``.atomicwrite*`` folders: the engine's own atomic writes of its JSON files, same rule.

Read-only copies: Qdrant Edge opens every data file of a shard for writing (it maps them
``MAP_SHARED`` read-write, and rewrites its config files on load), so a shard on a
read-only filesystem cannot be opened in place. :func:`sparse_copy_tree` copies it into a
private folder, only the allocated extents (the shard's files are mostly holes).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

logger = logging.getLogger("lfm_qdrant")

__all__ = [
    "foreign_entries",
    "remove_shard_leftovers",
    "remove_store_leftovers",
    "sparse_copy_tree",
]

STORE_LEFTOVERS = (".lfm-store.json.tmp", ".lock")


def foreign_entries(path: Path) -> list[str]:
    """Names in a folder without a marker that are not a failed open's leftovers."""
    return sorted(
        p.name
        for p in path.iterdir()
        if p.name not in STORE_LEFTOVERS
        and not (p.name == "collections" and p.is_dir() and not any(p.iterdir()))
    )


def remove_store_leftovers(path: Path) -> list[str]:
    """Remove a failed open's marker draft; call with the store's lock held. Names removed."""
    tmp = path / STORE_LEFTOVERS[0]
    if not tmp.exists():
        return []
    tmp.unlink()
    logger.warning("removed %s, left by an earlier open of %s that did not finish", tmp.name, path)
    return [tmp.name]


def remove_shard_leftovers(collection_folder: Path) -> list[str]:
    """Remove a collection's unfinished segments and atomic-write files; the paths removed."""
    removed: list[Path] = []
    candidates = [collection_folder / ".collection.json.tmp"]
    shard = collection_folder / "shard"
    temp = shard / "temp_segments"
    if temp.is_dir():
        candidates.extend(temp.iterdir())
    for folder in (shard, shard / "segments"):
        if folder.is_dir():
            candidates.extend(p for p in folder.iterdir() if p.name.startswith(".atomicwrite"))
    segments = shard / "segments"
    if segments.is_dir():
        candidates.extend(
            p
            for s in segments.iterdir()
            if s.is_dir()
            for p in s.iterdir()
            if p.name.startswith(".atomicwrite")
        )
    for target in candidates:
        if not (target.exists() or target.is_symlink()):
            continue
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink()
        removed.append(target)
    if removed:
        logger.warning(
            "removed %d leftover(s) of an interrupted write or index build in %s: %s",
            len(removed),
            collection_folder,
            ", ".join(str(p.relative_to(collection_folder)) for p in removed[:5])
            + (" ..." if len(removed) > 5 else ""),
        )
    return [str(p) for p in removed]


def sparse_copy_tree(source: Path, target: Path) -> int:
    """Copy a folder, files with their holes kept (``SEEK_DATA``/``SEEK_HOLE``); bytes copied."""
    copied = 0
    for root, dirs, files in os.walk(source):
        rel = Path(root).relative_to(source)
        (target / rel).mkdir(parents=True, exist_ok=True)
        for name in dirs:
            (target / rel / name).mkdir(exist_ok=True)
        for name in files:
            copied += _sparse_copy(Path(root) / name, target / rel / name)
    return copied


def _sparse_copy(source: Path, target: Path) -> int:
    copied = 0
    with open(source, "rb") as src, open(target, "wb") as dst:
        size = os.fstat(src.fileno()).st_size
        offset = 0
        while offset < size:
            try:
                start = os.lseek(src.fileno(), offset, os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole is left
                break
            end = os.lseek(src.fileno(), start, os.SEEK_HOLE)
            os.lseek(src.fileno(), start, os.SEEK_SET)
            dst.seek(start)
            left = end - start
            while left > 0:
                chunk = src.read(min(left, 1 << 20))
                if not chunk:
                    break
                dst.write(chunk)
                left -= len(chunk)
                copied += len(chunk)
            offset = end
        dst.truncate(size)
    shutil.copystat(source, target)
    return copied
