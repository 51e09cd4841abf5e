"""Storage faults on real filesystems: a disk that fills, a read-only mount, leftovers.

Qdrant Edge writes through memory-mapped files, so a disk that fills under a mapped page is
a bus error that kills the process silently. These tests fill a real tmpfs (mounted by the
test, so they need root; CI runs as root) and check that the store stops first, with one
``error:`` line and the storage exit code, loses nothing it acknowledged, and that the same
command finishes the job once space is back. A read-only bind mount must still search.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import models as qmodels

from lfm_qdrant import EdgeStore, MultiVectorWriter, StoreError, StoreFullError
from lfm_qdrant.space import free_space
from lfm_retrieval import cli

ROOT = Path(__file__).resolve().parents[2]
DOCS = [
    {"id": f"d{i}", "text": f"note {i}: orders ship in {i % 5 + 1} days", "score": i / 3}
    for i in range(48)
]
BATCH = 8


@pytest.fixture
def models(tiny_dense_dir: Path, tiny_colbert_dir: Path) -> list[str]:
    return [
        "--embedding-model",
        str(tiny_dense_dir),
        "--colbert-model",
        str(tiny_colbert_dir),
        "--device",
        "cpu",
    ]


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in DOCS), encoding="utf-8")
    return path


def _mount(target: Path, *options: str) -> None:
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", *options, str(target)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here ({done.stderr.strip()}); CI runs as root")


@pytest.fixture
def mounts() -> Iterator[list[Path]]:
    """Mount points to unmount in teardown, last first."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mounted: list[Path] = []
    yield mounted
    for target in reversed(mounted):
        subprocess.run(["umount", "-l", str(target)], check=False, capture_output=True)


@pytest.fixture
def tmpfs(tmp_path: Path, mounts: list[Path]) -> Callable[[int], Path]:
    """``tmpfs(megabytes)``: a fresh tmpfs of that size inside tmp_path."""

    def make(megabytes: int) -> Path:
        target = tmp_path / f"tmpfs{len(mounts)}"
        _mount(target, "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs")
        mounts.append(target)
        return target

    return make


def fill(folder: Path, leave: int) -> Path:
    """Take the filesystem's free space down to ``leave`` bytes with a ballast file."""
    ballast = folder / "ballast"
    size = free_space(folder).bytes - leave
    if size > 0:
        with open(ballast, "ab") as handle:
            os.posix_fallocate(handle.fileno(), handle.seek(0, os.SEEK_END), size)
    return ballast


def error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def stored(path: Path, collection: str = "c") -> dict[str, tuple[dict, dict]]:
    """Every point of a collection: id -> (payload, vectors)."""
    with EdgeStore(path, read_only=True) as store:
        records, offset = [], None
        while True:
            page, offset = store.scroll(
                collection, limit=256, offset=offset, with_payload=True, with_vectors=True
            )
            records.extend(page)
            if offset is None:
                break
    return {str(r.id): (r.payload, r.vector) for r in records}


def assert_same_points(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key][0] == b[key][0]
        for name, vector in a[key][1].items():
            other = b[key][1][name]
            if isinstance(vector, qmodels.SparseVector):  # the bm25 vector: same terms, weights
                assert dict(zip(vector.indices, vector.values, strict=True)) == pytest.approx(
                    dict(zip(other.indices, other.values, strict=True))
                )
                continue
            np.testing.assert_allclose(np.asarray(vector), np.asarray(other), atol=1e-6)


def index_argv(corpus: Path, store: Path, models: list[str]) -> list[str]:
    return [
        "index",
        str(corpus),
        "--collection",
        "c",
        "--path",
        str(store),
        "--batch-size",
        str(BATCH),
        "--quiet",
        *models,
    ]


@pytest.fixture
def clean_run(tmp_path: Path, corpus: Path, models: list[str]) -> dict:
    """The points of an undisturbed run, on an ordinary disk."""
    assert cli.main(index_argv(corpus, tmp_path / "clean", models)) == 0
    return stored(tmp_path / "clean")


# ------------------------------------------------------------------ a disk that fills


@pytest.mark.parametrize("leave_mb", [0, 2, 24], ids=["0MB-left", "2MB-left", "24MB-left"])
def test_a_disk_that_fills_mid_index_stops_with_one_line_and_resumes_exactly(
    tmpfs, corpus, models, clean_run, capsys, monkeypatch, leave_mb
):
    disk = tmpfs(512)  # a reopened shard on tmpfs maps ~140 MB; its index build as much
    store = disk / "store"
    upsert = EdgeStore.upsert
    calls = {"n": 0}

    def upsert_after_someone_filled_the_disk(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # another process takes the space after two batches
            fill(disk, leave_mb * 1024 * 1024)
        return upsert(self, *args, **kwargs)

    monkeypatch.setattr(EdgeStore, "upsert", upsert_after_someone_filled_the_disk)
    code = cli.main(index_argv(corpus, store, models))
    line = error_line(capsys.readouterr().err)
    assert code == cli.EXIT_STORAGE
    assert str(store) in line and "needs" in line and "free" in line
    assert "run the same command again" in line
    monkeypatch.setattr(EdgeStore, "upsert", upsert)
    (disk / "ballast").unlink()  # (a tmpfs this full cannot even map the shard to read it)
    # Nothing acknowledged is lost: the two batches written before are all there.
    assert len(stored(store)) == 2 * BATCH
    assert cli.main(index_argv(corpus, store, models)) == 0
    assert_same_points(stored(store), clean_run)


def test_a_disk_that_fills_before_the_index_build_stops_with_one_line(
    tmpfs, corpus, models, clean_run, capsys, monkeypatch
):
    disk = tmpfs(512)  # a reopened shard on tmpfs maps ~140 MB; its index build as much
    store = disk / "store"
    optimize = EdgeStore.optimize

    def optimize_on_a_full_disk(self, *args, **kwargs):
        fill(disk, 1024 * 1024)
        return optimize(self, *args, **kwargs)

    monkeypatch.setattr(EdgeStore, "optimize", optimize_on_a_full_disk)
    code = cli.main(index_argv(corpus, store, models))
    line = error_line(capsys.readouterr().err)
    assert code == cli.EXIT_STORAGE
    assert "building its index" in line
    monkeypatch.setattr(EdgeStore, "optimize", optimize)
    (disk / "ballast").unlink()
    assert_same_points(stored(store), clean_run)  # every point was written before
    assert cli.main(index_argv(corpus, store, models)) == 0
    assert_same_points(stored(store), clean_run)


def test_from_python_a_full_disk_is_an_oserror_enospc(tmpfs, tiny_dense):
    disk = tmpfs(256)
    with EdgeStore(disk / "store") as store:
        writer = MultiVectorWriter(store, "c", dense=tiny_dense)
        writer.add(["first"])
        fill(disk, 0)
        with pytest.raises(OSError) as caught:
            writer.add(["second", "third"])
        assert caught.value.errno == errno.ENOSPC
        assert isinstance(caught.value, StoreFullError) and isinstance(caught.value, StoreError)
        assert caught.value.needed > caught.value.free
        assert writer.count() == 1
        (disk / "ballast").unlink()  # so that close() can flush


def test_a_search_in_a_64mb_tmpfs_answers_or_refuses_clearly(
    tmp_path, tmpfs, corpus, models, mounts
):
    assert cli.main(index_argv(corpus, tmp_path / "built", models)) == 0
    disk = tmpfs(64)
    # cp keeps the holes: the shard's files are mostly sparse.
    subprocess.run(
        ["cp", "-a", "--sparse=always", str(tmp_path / "built"), str(disk / "s")], check=True
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "lfm_retrieval.cli",
            "search",
            "orders",
            "--collection",
            "c",
            "--path",
            str(disk / "s"),
            *models,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'integrations'}"},
        timeout=300,
    )
    if done.returncode == 0:
        assert "note" in done.stdout
    else:
        assert done.returncode == cli.EXIT_STORAGE, done.stderr
        line = error_line(done.stderr)
        assert "tmpfs" in line and "opening it needs" in line


def test_a_store_opened_on_a_full_disk_does_not_block_the_next_run(tmpfs):
    disk = tmpfs(1)
    fill(disk, 0)
    with pytest.raises(StoreFullError, match="No space left on device"):
        EdgeStore(disk / "store")
    (disk / "ballast").unlink()
    with EdgeStore(disk / "store") as store:
        assert store.get_collections().collections == []


# ---------------------------------------------------------------------- read-only


@pytest.fixture
def read_only_store(tmp_path, corpus, models, mounts) -> tuple[Path, Path]:
    """A store built by `index`, and the same folder bind-mounted read-only."""
    built = tmp_path / "built"
    assert cli.main(index_argv(corpus, built, models)) == 0
    view = tmp_path / "ro"
    _mount(view, "--bind", str(built))
    mounts.append(view)
    _mount(view, "-o", "remount,bind,ro")
    return built, view


def test_a_read_only_mount_searches_like_the_store_itself(read_only_store, models, capsys):
    built, view = read_only_store
    query = ["search", "orders ship", "--collection", "c", *models]
    assert cli.main([*query, "--path", str(built)]) == 0
    expected = capsys.readouterr().out
    assert cli.main([*query, "--path", str(view)]) == 0
    assert capsys.readouterr().out == expected
    assert len(expected.strip().splitlines()) == 10


def test_a_read_only_mount_refuses_writes_clearly(read_only_store, corpus, models, capsys):
    _, view = read_only_store
    code = cli.main(index_argv(corpus, view, models))
    assert code == cli.EXIT_STORAGE
    assert "Read-only file system" in error_line(capsys.readouterr().err)
    with EdgeStore(view, read_only=True) as store:
        assert store.count("c").count == len(DOCS)
        with pytest.raises(StoreError, match="open read-only"):
            store.delete("c", [1])
        scratch = list(store._scratch)
        assert scratch and all(Path(p).exists() for p in scratch)
    assert not any(Path(p).exists() for p in scratch)  # the private copy is gone


# ------------------------------------------------------------ without root: leftovers


def test_own_leftovers_of_a_failed_first_open_are_removed_and_reported(tmp_path, caplog):
    folder = tmp_path / "store"
    folder.mkdir()
    (folder / ".lock").touch()
    (folder / ".lfm-store.json.tmp").write_text('{"form')
    (folder / "collections").mkdir()
    with caplog.at_level(logging.WARNING, "lfm_qdrant"), EdgeStore(folder) as store:
        assert store.get_collections().collections == []
    assert "removed .lfm-store.json.tmp" in caplog.text
    assert not (folder / ".lfm-store.json.tmp").exists()


def test_a_folder_with_more_than_leftovers_is_still_foreign(tmp_path):
    folder = tmp_path / "store"
    folder.mkdir()
    (folder / ".lock").touch()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="is not a Qdrant Edge store"):
        EdgeStore(folder)
    assert sorted(p.name for p in folder.iterdir()) == [".lock", "notes.txt"]


def test_an_unfinished_index_build_is_removed_on_the_next_open(tmp_path, tiny_dense, caplog):
    with EdgeStore(tmp_path / "s") as store:
        MultiVectorWriter(store, "c", dense=tiny_dense).add(["a", "b"])
    shard = tmp_path / "s" / "collections" / "c" / "shard"
    builder = shard / "temp_segments" / "segment_builder_x1"
    builder.mkdir(parents=True)
    (builder / "vectors.bin").write_bytes(b"\0" * 4096)
    with caplog.at_level(logging.WARNING, "lfm_qdrant"), EdgeStore(tmp_path / "s") as store:
        assert store.count("c").count == 2
    assert not builder.exists()
    assert "temp_segments/segment_builder_x1" in caplog.text


def test_read_only_writes_nothing_and_shares_the_store(tmp_path, tiny_dense):
    with EdgeStore(tmp_path / "s") as store:
        MultiVectorWriter(store, "c", dense=tiny_dense).add(["a", "b", "c"])
    (tmp_path / "s" / ".lock").unlink()
    with EdgeStore(tmp_path / "s", read_only=True) as one:
        hits = MultiVectorWriter(one, "c", dense=tiny_dense).search("a", limit=3)
        assert len(hits) == 3
        with pytest.raises(StoreError, match="open read-only"):
            MultiVectorWriter(one, "c", dense=tiny_dense).add(["d"])
        # The engine locks a writable shard's WAL to one process, readers included.
        with (
            EdgeStore(tmp_path / "s", read_only=True) as two,
            pytest.raises(StoreError, match="open in another process"),
        ):
            two.count("c")
    assert not (tmp_path / "s" / ".lock").exists()  # no lock file written
    with EdgeStore(tmp_path / "missing", read_only=True) as empty:
        assert empty.get_collections().collections == []
    assert not (tmp_path / "missing").exists()


def test_a_writer_is_refused_while_a_reader_has_the_store(tmp_path, tiny_dense):
    with EdgeStore(tmp_path / "s") as store:
        MultiVectorWriter(store, "c", dense=tiny_dense).add(["a"])
    with (
        EdgeStore(tmp_path / "s", read_only=True),
        pytest.raises(StoreError, match="in use by another process"),
    ):
        EdgeStore(tmp_path / "s")
    with EdgeStore(tmp_path / "s"), pytest.raises(StoreError, match="writing to it"):
        EdgeStore(tmp_path / "s", read_only=True)


# ------------------------------------------------------------------ exit codes, signals


def test_the_exit_code_table_is_in_help_and_unique(capsys):
    with contextlib.suppress(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    codes = [code for code, _ in cli.EXIT_CODES]
    assert len(set(codes)) == len(codes)
    for code, meaning in cli.EXIT_CODES:
        assert f"{code:>3}  {meaning.split()[0]}" in out


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (StoreFullError("disk full", path=Path("s"), needed=2, free=1), cli.EXIT_STORAGE),
        (StoreError("in use"), cli.EXIT_STORAGE),
        (cli.CommandError("bad flag", cli.EXIT_USAGE), cli.EXIT_USAGE),
        (KeyboardInterrupt(), cli.EXIT_INTERRUPTED),
    ],
)
def test_each_failure_exits_with_its_code_from_the_table(error, code, capsys):
    def handler(_: object) -> int:
        raise error

    assert cli._run_guarded(handler, None) == code
    assert error_line(capsys.readouterr().err)
    assert code in dict(cli.EXIT_CODES)


def test_a_fatal_bus_error_ends_with_one_line(tmp_path):
    script = (
        "import os, signal\nfrom lfm_retrieval import cli\ncli._report_fatal_signals()\n"
        "os.kill(os.getpid(), signal.SIGBUS)\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'integrations'}"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode in (-7, cli.EXIT_BUS_ERROR)
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert error_line(done.stderr).startswith("error: killed by a bus error")
    quiet = subprocess.run(
        [sys.executable, "-c", "from lfm_retrieval import cli\ncli._report_fatal_signals()\n"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_the_rest_of_a_corpus_that_cannot_fit_is_refused_before_writing(tmp_path, tiny_dense):
    with EdgeStore(tmp_path / "s") as store:
        MultiVectorWriter(store, "c", dense=tiny_dense).add([f"text {i}" for i in range(20)])
        store.check_space("c", n_points=20)  # the same again fits
        with pytest.raises(StoreFullError, match=r"needs [\d.]+ [kMGT]?B, [\d.]+ [kMGT]?B free"):
            store.check_space("c", n_points=10**12)
        assert store.count("c").count == 20


def test_the_documented_exit_codes_are_the_table():
    text = (ROOT / "docs" / "getting-started.md").read_text(encoding="utf-8")
    rows = [
        line.split("|")[1:3]
        for line in text.splitlines()
        if line.startswith("| ") and line[2:3].isdigit()
    ]
    assert [(int(code), meaning.strip()) for code, meaning in rows] == list(cli.EXIT_CODES)
