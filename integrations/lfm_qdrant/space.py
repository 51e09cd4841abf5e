"""Free space for an Edge store: what a collection holds, what a write will need, what is left.

Qdrant Edge writes through memory-mapped files. A write to a mapped page that the
filesystem cannot back is a bus error (``SIGBUS``), not an ``OSError``: the process dies
with nothing printed and nothing to catch. So the store checks the space *before* the
engine runs, from figures measured on the collection itself:

- bytes per point: the blocks the shard occupies (segments and write-ahead log) over its
  points, or, before the first write, the raw size of the batch about to be written times
  :data:`WRITE_AMPLIFICATION`;
- the index build (``optimize``): Qdrant writes the new segment next to the old one before
  it drops the old one; measured, the peak is 1.03x the segments' bytes on top of them, so
  :data:`OPTIMIZE_RESERVE` keeps 1.5x free;
- a fixed margin (:data:`MARGIN_BYTES`) for new chunk files, the WAL's next segment and
  the small JSON files written beside them.

On tmpfs (and ramfs, hugetlbfs) even *reading* a hole of a shared mapping allocates a
page, so a shard needs the apparent size of its segments' mapped files, not their blocks:
opening a 10.8 MB collection allocated 98 MB more. :func:`fills_holes_on_read` tells
which filesystems do that.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lfm_core import CollectionError

__all__ = [
    "MARGIN_BYTES",
    "MARGIN_INODES",
    "OPTIMIZE_RESERVE",
    "WRITE_AMPLIFICATION",
    "FreeSpace",
    "ShardUsage",
    "StoreError",
    "StoreFullError",
    "fills_holes_on_read",
    "free_space",
    "human_bytes",
    "point_bytes",
    "shard_usage",
]

# Measured: a batch of points takes about 2.2x its raw float32 + JSON bytes once it is in
# the WAL and in a segment (docs/qdrant.md, "How much space"); 3 leaves room for the
# payload index and page rounding.
WRITE_AMPLIFICATION = 3.0
# Extra bytes an index build needs per byte of segments: it writes the new segment beside
# the old one (measured peak 1.03x), plus headroom for the HNSW graph.
OPTIMIZE_RESERVE = 1.5
# A new 32 MiB chunk file starts sparse: a few pages of it, the WAL's next segment header
# and the JSON files written atomically beside them.
MARGIN_BYTES = 8 * 1024 * 1024
# Inodes one batch or one index build may create (segment files, .atomicwrite folders).
MARGIN_INODES = 256
# Filesystems where reading a hole of a MAP_SHARED mapping allocates a page.
_HOLE_FILLING = frozenset({"tmpfs", "ramfs", "hugetlbfs", "shm"})


class StoreError(CollectionError):
    """An Edge store that cannot be opened or written: not a store, in use, disk errors."""


class StoreFullError(StoreError, OSError):
    """A write, an index build or an open refused before it could fill the disk.

    Also an ``OSError`` with ``errno.ENOSPC``, so ``except OSError`` code written for file
    writes catches it. Nothing was written by the refused call.

    Attributes:
        path: the store folder.
        needed: bytes the call needs free.
        free: bytes free for this process on the store's filesystem.
    """

    def __init__(self, message: str, *, path: Path, needed: int, free: int) -> None:
        super().__init__(message)
        self.errno = errno.ENOSPC
        self.strerror = message
        self.filename = str(path)
        self.path = path
        self.needed = needed
        self.free = free

    def __str__(self) -> str:
        return str(self.strerror)


@dataclass(frozen=True)
class FreeSpace:
    """What the filesystem of a folder has left for this process."""

    bytes: int
    inodes: int | None  # None where the filesystem does not count inodes (tmpfs nr_inodes=0)
    fills_holes: bool  # tmpfs and the like: a read of a sparse mapped page allocates it


@dataclass(frozen=True)
class ShardUsage:
    """The bytes of one shard folder.

    Attributes:
        allocated: blocks the files occupy (what ``du`` shows).
        apparent: the files' sizes, holes included (what ``ls -l`` shows).
        segments_allocated: blocks of the segments only (what an index build rebuilds).
        segments_apparent: the segments' file sizes, holes included.
    """

    allocated: int
    apparent: int
    segments_allocated: int
    segments_apparent: int

    @property
    def segment_holes(self) -> int:
        """Bytes tmpfs allocates when the engine opens the shard and reads its segments.

        Measured: opening a 2,000-point shard (10.8 MB allocated) on tmpfs grew it to
        109 MB; its segments' holes were 133 MB, the WAL's are not read.
        """
        return max(0, self.segments_apparent - self.segments_allocated)


def free_space(path: Path) -> FreeSpace:
    """The space left on the filesystem holding ``path`` (its nearest existing parent)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    stat = os.statvfs(probe)
    inodes = stat.f_favail if stat.f_files else None
    return FreeSpace(
        bytes=stat.f_bavail * stat.f_frsize, inodes=inodes, fills_holes=fills_holes_on_read(probe)
    )


def fills_holes_on_read(path: Path) -> bool:
    """Whether ``path`` is on tmpfs (or ramfs, hugetlbfs): mapped holes cost memory on read."""
    fstype = _fstype(path)
    return fstype in _HOLE_FILLING


def _fstype(path: Path) -> str | None:
    """The type of the mount holding ``path``, from ``/proc/self/mountinfo`` (Linux)."""
    try:
        lines = Path("/proc/self/mountinfo").read_text(encoding="utf-8").splitlines()
    except OSError:
        return None  # not Linux: no tmpfs-specific rule
    target = os.path.realpath(path)
    best, best_len = None, -1
    for line in lines:
        left, _, right = line.partition(" - ")
        fields = left.split()
        if len(fields) < 5 or not right:
            continue
        mount_point = fields[4].encode().decode("unicode_escape")  # \040 for a space
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) > best_len:
            best, best_len = right.split()[0], len(mount_point)
    return best


def shard_usage(folder: Path) -> ShardUsage:
    """Allocated and apparent bytes of a shard folder (0 for one not created yet)."""
    allocated = apparent = segments = segments_apparent = 0
    for root, _dirs, files in os.walk(folder):
        in_segments = f"{os.sep}segments" in root[len(str(folder)) :]
        for name in files:
            try:
                stat = os.lstat(os.path.join(root, name))
            except OSError:
                continue  # removed while we walked (an index build finishing)
            blocks = stat.st_blocks * 512
            allocated += blocks
            apparent += stat.st_size
            if in_segments:
                segments += blocks
                segments_apparent += stat.st_size
    return ShardUsage(allocated, apparent, segments, segments_apparent)


def point_bytes(points: Any) -> int:
    """Raw bytes of a batch of ``PointStruct``: 4 bytes a number, the payload as JSON."""
    import json

    total = 0
    for point in points:
        vector = point.vector
        values = vector.values() if isinstance(vector, dict) else [vector]
        for value in values:
            total += 4 * _count_numbers(value)
        if point.payload:
            total += len(json.dumps(point.payload, ensure_ascii=False, default=str).encode())
        total += 64  # id, version, offsets
    return total


def _count_numbers(value: Any) -> int:
    if value is None:
        return 0
    shape = getattr(value, "shape", None)
    if shape is not None:
        return int(getattr(value, "size", 0))
    if isinstance(value, (list, tuple)):
        if value and (isinstance(value[0], (list, tuple)) or hasattr(value[0], "shape")):
            return sum(_count_numbers(v) for v in value)  # a multivector
        return len(value)
    return 0


def human_bytes(n: float) -> str:
    """``12.3 MB`` (powers of 1,000, as ``df -H`` prints)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover - the loop returns
