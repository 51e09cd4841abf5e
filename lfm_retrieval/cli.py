"""The ``lfm-retrieval`` command: index, search, evaluate, serve.

::

    lfm-retrieval index CORPUS --collection NAME
    lfm-retrieval search "QUERY" --collection NAME [--limit K] [--mode dense|colbert|hybrid]
    lfm-retrieval eval BEIR_FOLDER
    lfm-retrieval crosslingual NTREX_FOLDER [--lines N]
    lfm-retrieval serve [--host 127.0.0.1] [--port 8080] [--api-key-env NAME]

Models: ``--embedding-model`` and ``--colbert-model`` take a hub id or a local folder;
``none`` leaves one out. Vectors go to an embedded Qdrant under ``--path`` (default
``$XDG_CACHE_HOME/lfm-retrieval/qdrant``) or to a server at ``--url``.

Failures the user can act on (a missing corpus, a model that cannot be loaded, a server
that does not answer, a full disk) print one line ``error: ...`` on stderr and exit with
a code from :data:`EXIT_CODES` (also printed by ``--help``). Bugs keep their traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import importlib.util
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

# The exit codes (EXIT_OK ... EXIT_BUS_ERROR, EXIT_CODES) stay importable from here: the
# command's documented API.
from lfm_retrieval.cli_errors import (  # noqa: F401
    EXIT_BUS_ERROR,
    EXIT_CODES,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_RUNTIME,
    EXIT_STORAGE,
    EXIT_USAGE,
    CommandError,
    _describe,
    _qdrant_errors,
    _report_fatal_signals,
    _run_guarded,
    _store_errors,
    exit_code_table,
)

DEFAULT_EMBEDDING_MODEL = "LiquidAI/LFM2.5-Embedding-350M"
DEFAULT_COLBERT_MODEL = "LiquidAI/LFM2.5-ColBERT-350M"
NONE = "none"

_SNIPPET_CHARS = 160


def default_qdrant_path() -> Path:
    """``$XDG_CACHE_HOME/lfm-retrieval/qdrant``, or ``~/.cache/lfm-retrieval/qdrant``."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "lfm-retrieval" / "qdrant"


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it).

    Args:
        argv: the arguments after the program name; default ``sys.argv[1:]``.

    Returns:
        A code of :data:`EXIT_CODES`: 0 on success, 1 on a runtime failure, 2 on a usage
        or input error, 3 on a storage failure, 130 when interrupted.
    """
    if argv is None:  # the real command line, not a call from Python
        _report_fatal_signals()
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse has printed the usage and its one-line error
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    return _run_guarded(args.handler, args)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``lfm-retrieval`` (its subcommands hold their options)."""
    models = argparse.ArgumentParser(add_help=False)
    group = models.add_argument_group("models")
    group.add_argument(
        "--embedding-model",
        default=None,
        metavar="ID_OR_DIR",
        help="dense model, hub id or local folder; 'none' to leave it out (default: the "
        f"model recorded by the collection, else {DEFAULT_EMBEDDING_MODEL})",
    )
    group.add_argument(
        "--colbert-model",
        default=None,
        metavar="ID_OR_DIR",
        help="ColBERT model, hub id or local folder; 'none' to leave it out (default: the "
        f"model recorded by the collection, else {DEFAULT_COLBERT_MODEL})",
    )
    group.add_argument(
        "--device",
        default="auto",
        help="auto (cuda, mps, cpu), cpu, cuda, cuda:1, ... (default auto)",
    )

    store = argparse.ArgumentParser(add_help=False)
    group = store.add_argument_group("Qdrant")
    group.add_argument(
        "--path",
        type=Path,
        default=None,
        help=f"folder of the embedded Qdrant Edge store (default {default_qdrant_path()})",
    )
    group.add_argument(
        "--url",
        default=None,
        help="a Qdrant server instead, e.g. http://localhost:6333 (API key from $QDRANT_API_KEY)",
    )
    group.add_argument("--quiet", action="store_true", help="no progress bar")

    parser = argparse.ArgumentParser(
        prog="lfm-retrieval",
        description="Index, search and evaluate with Liquid AI's LFM2.5 dense and ColBERT retrieval models.",
        epilog=exit_code_table(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    index = commands.add_parser(
        "index",
        parents=[models, store],
        help="write a corpus' dense and ColBERT vectors to Qdrant (resumable)",
        description="Encode a corpus and write it to a Qdrant collection. Re-running the same "
        "command finishes an interrupted run: stored documents are not encoded again.",
    )
    index.add_argument(
        "corpus", type=Path, help="a JSONL file, a BEIR folder or a folder of .txt/.md files"
    )
    index.add_argument("--collection", required=True, help="the Qdrant collection to write")
    index.add_argument(
        "--batch-size", type=_positive_int, default=64, help="documents per write (default 64)"
    )
    index.add_argument(
        "--sync",
        action="store_true",
        help="make the collection equal the corpus: also delete the documents no longer in it "
        "(the corpus is read and checked whole before the first write)",
    )
    index.add_argument(
        "--json",
        action="store_true",
        help="print the summary as one JSON object (documents added, updated, unchanged, ...)",
    )
    _chunking_options(index)
    _storage_options(index)
    group = index.add_argument_group("Ray (scale-out: pip install 'lfm-retrieval[ray]')")
    group.add_argument(
        "--ray", action="store_true", help="encode on Ray workers (same points as without)"
    )
    group.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="a running Ray cluster, e.g. ray://head:10001 or auto (default: start a local one)",
    )
    group.add_argument(
        "--concurrency",
        type=_positive_int,
        default=2,
        help="encoder workers, one model each (default 2)",
    )
    group.add_argument(
        "--gpus-per-worker",
        type=float,
        default=None,
        metavar="G",
        help="GPUs per worker (default none: CPU workers)",
    )
    index.set_defaults(handler=_index)

    search = commands.add_parser(
        "search", parents=[models, store], help="search a collection and print ranked results"
    )
    search.add_argument("query", help="the query text")
    search.add_argument("--collection", required=True, help="a collection written by `index`")
    search.add_argument(
        "--limit", type=_positive_int, default=10, help="results to print (default 10)"
    )
    _search_options(search)
    search.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per hit (id, score, payload; legs with --explain), for scripts",
    )
    search.add_argument(
        "--explain",
        action="store_true",
        help="under each hit, which legs (dense, lexical, colbert) found it and at what rank; "
        "with ColBERT vectors, its text with the words the query's tokens matched highlighted",
    )
    search.add_argument(
        "--chunks",
        action="store_true",
        help="print chunks (several may come from one document) instead of one per document",
    )
    search.set_defaults(handler=_search)

    eval_ = commands.add_parser(
        "eval",
        parents=[models, store],
        help="index a BEIR dataset and print nDCG@10, Recall@10 and Recall@100",
        description="Index the corpus of a BEIR folder (resumable, kept for the next run) and "
        "score its queries against qrels/<split>.tsv.",
    )
    eval_.add_argument("folder", type=Path, help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/")
    eval_.add_argument("--split", default="test", help="qrels file to score against (default test)")
    eval_.add_argument(
        "--collection",
        default=None,
        help="collection to index into (default: eval-<folder>-<hash of the models>)",
    )
    _search_options(eval_)
    _chunking_options(eval_)
    eval_.add_argument(
        "--batch-size", type=_positive_int, default=64, help="documents per write (default 64)"
    )
    _storage_options(eval_)
    eval_.set_defaults(handler=_eval)

    crosslingual = commands.add_parser(
        "crosslingual",
        parents=[models],
        help="NTREX-128 cross-lingual retrieval: an 11 x 11 table of Recall@10 and MRR",
    )
    crosslingual.add_argument("folder", type=Path, help="the NTREX-128 folder")
    crosslingual.add_argument(
        "--lines",
        type=_positive_int,
        default=None,
        help="use the first N sentences (default all 1,997)",
    )
    crosslingual.add_argument(
        "--languages",
        default=None,
        help="comma-separated codes (default all: en,ar,de,es,fr,it,ja,ko,nb,pt,sv)",
    )
    crosslingual.add_argument(
        "--mode",
        choices=("dense", "colbert"),
        default=None,
        help="which model ranks (default dense, or colbert when --embedding-model none)",
    )
    crosslingual.add_argument("--quiet", action="store_true", help="no progress bar")
    crosslingual.set_defaults(handler=_crosslingual)

    serve = commands.add_parser(
        "serve",
        parents=[models, store],
        help="an HTTP service: OpenAI-style embeddings, ColBERT vectors, rerank, search",
        description="Serve the models over HTTP (FastAPI + uvicorn): POST /v1/embeddings, "
        "/v1/multivector, /v1/rerank, /v1/search; GET /health, /v1/models, /metrics. "
        "Requests that arrive together share one forward pass. A search playground page is at /. "
        "/v1/search reads the store "
        "at --path or --url (without either, the service has no /v1/search).",
    )
    group = serve.add_argument_group("HTTP")
    group.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    group.add_argument("--port", type=_port, default=8080, help="port (default 8080; 0: any free)")
    group.add_argument(
        "--api-key-env",
        default=None,
        metavar="NAME",
        help="require 'Authorization: Bearer KEY' on every endpoint but /health, KEY read "
        "from this environment variable",
    )
    group.add_argument(
        "--served-model-name",
        nargs="+",
        default=None,
        metavar="NAME",
        help="the id clients see (GET /v1/models, the 'model' field) for each loaded model, in "
        "order: the embedding model, then the ColBERT model (default: the hub id, or the "
        "folder's name; never the folder's path)",
    )
    group.add_argument(
        "--header-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="close a connection that has not sent a whole request head within this time "
        "(default 30); idle keep-alive connections close after 5 s",
    )
    group.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    group.add_argument("--access-log", action="store_true", help="log every request")
    group.add_argument(
        "--no-playground",
        action="store_true",
        help="do not serve the search playground page at / (it needs the API key like the rest)",
    )
    group = serve.add_argument_group("batching across requests")
    group.add_argument(
        "--max-wait-ms",
        type=float,
        default=2.0,
        help="longest a request waits for others to share its forward (default 2)",
    )
    group.add_argument(
        "--max-batch-texts", type=_positive_int, default=512, help="most texts per merged forward"
    )
    group.add_argument(
        "--max-batch-tokens",
        type=_positive_int,
        default=None,
        help="a merged forward runs in slices of at most this many tokens, each answered when "
        "done (default: the encoder's token budget of one forward: 2048 on CPU, 8192 on GPU)",
    )
    group.add_argument(
        "--max-queue-texts",
        type=_positive_int,
        default=8192,
        help="most texts waiting; beyond it requests get 503 with Retry-After (default 8192)",
    )
    group.add_argument(
        "--model-workers",
        type=_positive_int,
        default=None,
        metavar="N",
        help="merged batches run at once, each on its own thread; on CPU each gets "
        "cores/N torch threads (default: 2 on CPU, 1 on GPU). 1 gives a lone request on a "
        "large model all the cores; 2 gives more throughput under concurrent requests",
    )
    group.add_argument(
        "--no-batching", action="store_true", help="run each request on its own (for comparison)"
    )
    group = serve.add_argument_group("request limits")
    group.add_argument("--max-inputs", type=_positive_int, default=2048, help="texts per request")
    group.add_argument(
        "--max-input-chars", type=_positive_int, default=100_000, help="characters per text"
    )
    group.add_argument(
        "--max-body-bytes", type=_positive_int, default=16 * 1024 * 1024, help="bytes per body"
    )
    group.add_argument(
        "--request-timeout",
        type=float,
        default=60.0,
        help="seconds a request may wait for the model before a 503 (default 60)",
    )
    serve.set_defaults(handler=_serve)

    return parser


def _search_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("search")
    group.add_argument(
        "--mode",
        choices=("hybrid", "dense", "lexical", "colbert"),
        default=None,
        help="hybrid: every leg the collection has (dense and BM25 candidates fused, ColBERT "
        "MaxSim over them, fused again); dense, lexical (BM25) or colbert alone (default: "
        "hybrid when two legs or more are there)",
    )
    group.add_argument(
        "--prefetch-limit",
        type=_positive_int,
        default=100,
        help="candidates of each first-stage leg in hybrid mode (default 100)",
    )
    group.add_argument(
        "--fusion",
        choices=("rrf", "dbsf"),
        default="rrf",
        help="how hybrid fuses rankings: reciprocal rank fusion or DBSF (default rrf)",
    )


def _chunking_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("chunking (documents longer than the models' window)")
    group.add_argument(
        "--chunk-tokens",
        type=_positive_int,
        default=None,
        metavar="N",
        help="tokens per chunk (default: as many as the models' window holds)",
    )
    group.add_argument(
        "--chunk-overlap",
        type=_non_negative_int,
        default=None,
        metavar="N",
        help="tokens shared by neighbouring chunks (default 32)",
    )
    group.add_argument(
        "--no-chunking",
        action="store_true",
        help="one point per document, cut at the window, as before chunking",
    )


def _storage_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("lexical leg (when the collection is created)")
    group.add_argument(
        "--no-lexical",
        action="store_true",
        help="leave out the BM25 sparse vector (the lexical leg of hybrid search)",
    )
    group = parser.add_argument_group("ColBERT storage (when the collection is created)")
    group.add_argument(
        "--pool-factor",
        type=_positive_int,
        default=1,
        help="keep about 1/N of each document's ColBERT vectors (token pooling; default 1: all)",
    )
    group.add_argument(
        "--colbert-datatype",
        choices=("float32", "float16", "turbo8"),
        default="float32",
        help="how ColBERT numbers are stored (default float32)",
    )


# ------------------------------------------------------------------------ commands


def _index(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from lfm_retrieval.corpus import count_documents
    from lfm_retrieval.pipeline import index_corpus

    _require_qdrant()
    collection = _collection_name(args.collection)
    total = count_documents(args.corpus)  # also the check that the corpus exists
    if args.ray:
        return _index_ray(args, collection, total)
    with _open_client(args) as client:  # a dead server fails before the models load
        dense, colbert = _load_models(args, _recorded_models(client, collection))
        writer = _writer(client, collection, dense, colbert, args)
        _check_space_ahead(client, collection, total)
        done = 0

        def progress(n: int) -> None:
            nonlocal done
            done += n
            bar.update(n)

        with tqdm(
            total=total, unit="doc", desc=f"indexing {collection}", disable=args.quiet or None
        ) as bar:
            try:
                report = index_corpus(
                    writer,
                    args.corpus,
                    batch_size=args.batch_size,
                    progress=progress,
                    sync=args.sync,
                )
            except KeyboardInterrupt:
                bar.close()
                raise CommandError(
                    f"interrupted after {done} of {total} documents; run the same command "
                    "again to finish",
                    EXIT_INTERRUPTED,
                ) from None
        built = _build_index(client, collection)
    _print_index_summary(args, collection, report, built)
    return 0


def _check_space_ahead(client: Any, collection: str, total: int) -> None:
    """Before the first write: refuse a resumed run whose rest cannot fit (Edge stores)."""
    if not hasattr(client, "check_space") or not client.collection_exists(collection):
        return  # a server manages its disk; a new collection is checked batch by batch
    stored = client.count(collection).count
    client.check_space(collection, n_points=max(0, total - stored))


def _print_index_summary(
    args: argparse.Namespace, collection: str, report: Any, built: str
) -> None:
    skipped = []
    if report.skipped_empty:
        skipped.append(f"{report.skipped_empty} empty")
    if report.skipped_repeats:
        skipped.append(f"{report.skipped_repeats} repeated texts without an id")
    note = f" (skipped {', '.join(skipped)})" if skipped else ""
    if getattr(args, "json", False):
        import dataclasses
        import json

        print(json.dumps({"collection": collection, **dataclasses.asdict(report)}))
        return
    deleted = f", {report.deleted} deleted" if getattr(args, "sync", False) else ""
    print(
        f"{collection}: {report.documents} documents read{note}; {report.added} added, "
        f"{report.updated} updated, {report.unchanged} unchanged{deleted}; "
        f"{report.points} points stored in {_where(args)}{built}"
    )


def _index_ray(args: argparse.Namespace, collection: str, total: int) -> int:
    """``index --ray``: the corpus' points as a Ray dataset, encoded on workers."""
    import json

    from tqdm.auto import tqdm

    from lfm_retrieval.pipeline import CorpusPoints

    if importlib.util.find_spec("ray") is None:
        raise CommandError("--ray needs Ray Data: pip install 'lfm-retrieval[ray]'", EXIT_USAGE)
    import ray

    from lfm_core import LoadOptions
    from lfm_qdrant import SyncReport
    from lfm_ray import index_dataset

    with _open_client(args) as client:  # read the record; the store is reopened below
        recorded = _recorded_models(client, collection)
    dense, colbert = _model_names(args, recorded)
    if dense is None and colbert is None:
        raise CommandError(
            "--embedding-model and --colbert-model are both 'none'; keep at least one", EXIT_USAGE
        )
    points = CorpusPoints(args.corpus)
    rows = [
        {"text": text, "id": str(key), "metadata": json.dumps(payload)}
        for _, texts, ids, payloads in points.batches(4096)
        for text, key, payload in zip(texts, ids, payloads)
    ]
    points.check_not_empty()
    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(address=args.ray_address, log_to_driver=False, include_dashboard=False)
    try:
        with tqdm(
            total=len(rows),
            unit="doc",
            desc=f"indexing {collection} on Ray",
            disable=args.quiet or None,
        ) as bar:
            result = index_dataset(
                ray.data.from_items(rows),
                collection=collection,
                url=args.url,
                path=None if args.url else (args.path or default_qdrant_path()),
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
                chunking=_chunking(args),
                delete_missing=args.sync,
            )
            bar.update(result.skipped_existing)  # found unchanged: done too
    finally:
        if started_ray:
            ray.shutdown()
    with _open_client(args) as client:
        built = _build_index(client, collection)
    done = SyncReport(result.added, result.updated, result.skipped_existing, result.deleted)
    _print_index_summary(args, collection, points.report(result.points, done), built)
    return 0


def _search(args: argparse.Namespace) -> int:
    from lfm_retrieval.pipeline import collection_legs, search

    _require_qdrant()
    collection = _collection_name(args.collection)
    with _open_client(args, read_only=True) as client:
        legs = collection_legs(client, collection)
        recorded = _recorded_models(client, collection)
        mode, needs_dense, needs_colbert = _mode_and_models(args, legs, recorded)
        # --explain also highlights the words ColBERT matched, where there are ColBERT vectors.
        matches = args.explain and "colbert" in legs and _model_names(args, recorded)[1] is not None
        dense, colbert = (
            _load_models(args, recorded, dense=needs_dense, colbert=needs_colbert or matches)
            if needs_dense or needs_colbert or matches
            else (None, None)
        )
        writer = _writer(client, collection, dense, colbert)
        (points,) = search(
            writer,
            [args.query],
            mode=mode,
            limit=args.limit,
            prefetch_limit=args.prefetch_limit,
            fusion=args.fusion,
            explain=args.explain,
            chunks=args.chunks,
        )
        explained: list[Any] = [None] * len(points)
        if matches:
            from lfm_qdrant.explain import explain_hits

            explained = explain_hits(
                colbert, args.query, points, store=client, collection_name=collection
            )
    if args.json:
        for point, why in zip(points, explained, strict=True):
            print(json.dumps(_hit_json(point, why), ensure_ascii=False))
        return 0
    if not points:
        print(f"no results in {collection!r} (mode {mode})")
    for rank, point in enumerate(points, start=1):
        payload = point.payload or {}
        label = payload.get("id", point.id)
        title = payload.get("title")
        print(
            f"{rank:>3}. {point.score:8.4f}  [{label}] {_snippet(str(payload.get('text', '')), title)}"
        )
        if args.explain:
            legs_found = getattr(point, "legs", {})
            found = ", ".join(f"{leg} #{r.rank} ({r.score:.4g})" for leg, r in legs_found.items())
            print(f"       found by: {found or 'no single leg (fusion only)'}")
        why = explained[rank - 1]
        if why is not None:
            from lfm_retrieval.highlight import highlight, matched_words, use_color

            print(f"       {highlight(payload['text'], why, color=use_color())}")
            print(f"       matched: {matched_words(why)}")
    return 0


def _hit_json(point: Any, why: Any = None) -> dict[str, Any]:
    """One search hit as JSON: id, score, payload; with --explain the legs that found it and
    the ColBERT token matches (where the collection has ColBERT vectors)."""
    out: dict[str, Any] = {"id": point.id, "score": point.score, "payload": point.payload}
    if hasattr(point, "legs"):
        out["legs"] = {leg: r.model_dump() for leg, r in point.legs.items()}
    if why is not None:
        out["matches"] = why.to_dict()
    return out


def _mode_and_models(
    args: argparse.Namespace, legs: set[str], recorded: tuple[str | None, str | None]
) -> tuple[str, bool, bool]:
    """The search mode (checked before any model loads or any work) and which models it needs."""
    from lfm_core import InputError
    from lfm_retrieval.pipeline import choose_mode

    names = _model_names(args, recorded)
    has_dense, has_colbert = names[0] is not None, names[1] is not None
    try:
        mode = choose_mode(args.mode, legs, dense=has_dense, colbert=has_colbert)
    except InputError as error:
        raise CommandError(str(error), EXIT_USAGE) from None
    needs = {
        side: has and side in legs and mode in (side, "hybrid")
        for side, has in (("dense", has_dense), ("colbert", has_colbert))
    }
    return mode, needs["dense"], needs["colbert"]


def _eval(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from lfm_retrieval.corpus import count_documents, read_beir_qrels, read_beir_queries
    from lfm_retrieval.pipeline import collection_legs, evaluate_beir, index_corpus

    _require_qdrant()
    folder = args.folder
    if not (folder / "corpus.jsonl").is_file():
        raise CommandError(
            f"not a BEIR folder: {str(folder)!r} has no corpus.jsonl "
            "(expected corpus.jsonl, queries.jsonl and qrels/<split>.tsv)",
            EXIT_USAGE,
        )
    # Fail on missing queries or qrels before the long indexing, not after it.
    read_beir_queries(folder)
    read_beir_qrels(folder, args.split)
    total = count_documents(folder)
    with _open_client(args) as client:
        if args.collection is not None:
            collection = _collection_name(args.collection)
            recorded = _recorded_models(client, collection)
        else:
            recorded = (None, None)
            collection = _eval_collection_name(folder, _model_names(args, recorded))
        # The mode is checked before the long indexing, against the collection that is there
        # or the one that will be written.
        names = _model_names(args, recorded)
        if client.collection_exists(collection):
            legs = collection_legs(client, collection)
        else:
            legs = {side for side, name in zip(("dense", "colbert"), names) if name is not None}
            legs |= set() if args.no_lexical else {"lexical"}
        mode, _, _ = _mode_and_models(args, legs, recorded)
        dense, colbert = _load_models(args, recorded)
        writer = _writer(client, collection, dense, colbert, args)
        started = time.perf_counter()
        with tqdm(
            total=total, unit="doc", desc=f"indexing {collection}", disable=args.quiet or None
        ) as bar:
            report = index_corpus(writer, folder, batch_size=args.batch_size, progress=bar.update)
        built = _build_index(client, collection)
        indexed = time.perf_counter()
        result = evaluate_beir(
            writer,
            folder,
            mode=mode,
            split=args.split,
            prefetch_limit=args.prefetch_limit,
            fusion=args.fusion,
        )
        searched = time.perf_counter()
    print(
        f"{folder.resolve().name} ({args.split}): {result.queries} queries, {report.points} "
        f"documents, mode {mode}, collection {collection!r} in {_where(args)}"
    )
    notes = []
    if result.skipped_no_text:
        notes.append(f"{result.skipped_no_text} qrels queries without text skipped")
    if result.skipped_no_positive:
        notes.append(f"{result.skipped_no_positive} queries without a positive judgement left out")
    if result.unknown_documents:
        notes.append(f"{result.unknown_documents} judged corpus-ids not in the corpus")
    if notes:
        print(f"({'; '.join(notes)})")
    for name, value in result.metrics.items():
        print(f"{name} = {value:.4f}")
    per_query = (searched - indexed) / max(result.queries, 1) * 1000
    print(
        f"time: indexing {indexed - started:.1f} s{built}, search {searched - indexed:.1f} s "
        f"({per_query:.1f} ms per query, encoding included)"
    )
    return 0


def _crosslingual(args: argparse.Namespace) -> int:
    from lfm_retrieval.crosslingual import LANGUAGES, evaluate_crosslingual, read_ntrex

    languages = (
        LANGUAGES
        if args.languages is None
        else tuple(code.strip() for code in args.languages.split(",") if code.strip())
    )
    if not args.folder.is_dir():
        raise CommandError(f"NTREX-128 folder not found: {str(args.folder)!r}", EXIT_USAGE)
    sentences = read_ntrex(args.folder, languages, limit=args.lines)
    no_dense = _model_names(args, (None, None))[0] is None
    mode = args.mode or ("colbert" if no_dense else "dense")
    dense, colbert = _load_models(args, dense=mode == "dense", colbert=mode == "colbert")
    encoder = dense if mode == "dense" else colbert
    started = time.perf_counter()
    result = evaluate_crosslingual(encoder, sentences, show_progress=not args.quiet)
    print(
        f"NTREX-128 cross-lingual retrieval, {mode} model {encoder.model_name!r}, "
        f"{result.n_queries} sentences per language ({time.perf_counter() - started:.1f} s)\n"
    )
    print(result.format_table())
    return 0


# ------------------------------------------------------------------------- helpers


def _serve(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("uvicorn") is None:
        raise CommandError(
            "`serve` needs FastAPI and uvicorn: pip install 'lfm-retrieval[server]'", EXIT_USAGE
        )
    from lfm_retrieval.server import (
        BatchingOptions,
        ServiceConfig,
        ServiceLimits,
        create_app,
        serve,
    )

    api_key = None
    if args.api_key_env is not None:
        api_key = os.environ.get(args.api_key_env, "").strip()
        if not api_key:
            raise CommandError(
                f"--api-key-env {args.api_key_env}: that environment variable is empty or unset",
                EXIT_USAGE,
            )
    if args.max_wait_ms < 0 or args.request_timeout <= 0:
        raise CommandError("--max-wait-ms must be >= 0 and --request-timeout > 0", EXIT_USAGE)
    if not args.header_timeout > 0:
        raise CommandError(f"--header-timeout must be > 0, got {args.header_timeout}", EXIT_USAGE)
    served_names = _served_names(args)
    limits = ServiceLimits(
        max_inputs=args.max_inputs,
        max_input_chars=args.max_input_chars,
        max_body_bytes=args.max_body_bytes,
        request_timeout_s=args.request_timeout,
    )
    # Only when asked: an Edge store is locked to one process, and `index` may want it.
    store_wanted = bool(args.url or args.path)
    if store_wanted:
        _require_qdrant()
    # Read-only: several services may share one store, on a read-only volume too.
    with _open_client(args, read_only=True) if store_wanted else contextlib.nullcontext() as store:
        # Before the models load: on CPU they time their linear kernels at this thread count.
        workers = _model_workers(args.model_workers, args.device)
        dense, colbert = _load_models(args)
        batching = BatchingOptions(
            enabled=not args.no_batching,
            max_wait_ms=args.max_wait_ms,
            max_batch_texts=args.max_batch_texts,
            max_queue_texts=args.max_queue_texts,
            max_batch_tokens=args.max_batch_tokens,
            model_workers=workers,
        )
        config = ServiceConfig(
            api_key=api_key,
            limits=limits,
            batching=batching,
            served_model_names=served_names,
            playground=not args.no_playground,
        )
        app = create_app(dense, colbert, store=store, config=config)
        print(
            f"serving {', '.join(e.model_name for e in (dense, colbert) if e is not None)} on "
            f"http://{args.host}:{args.port}, {batching.model_workers} model worker(s)"
            + (
                f" (search over {_where(args)})"
                if store is not None
                else " (no store: no /v1/search)"
            ),
            file=sys.stderr,
            flush=True,
        )
        serve(
            app,
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            access_log=args.access_log,
            header_timeout_s=args.header_timeout,
        )
    return 0


def _served_names(args: argparse.Namespace) -> dict[str, str]:
    """``--served-model-name``, one per loaded model, by side; checked before models load."""
    if args.served_model_name is None:
        return {}
    loaded = [
        side
        for side, name in zip(("dense", "colbert"), _model_names(args, (None, None)))
        if name is not None
    ]
    names = [name.strip() for name in args.served_model_name]
    if len(names) != len(loaded):
        raise CommandError(
            f"--served-model-name has {len(names)} name(s) for {len(loaded)} loaded model(s) "
            f"({', '.join(loaded)}): give one per model, in that order",
            EXIT_USAGE,
        )
    if not all(names) or len(set(names)) != len(names):
        raise CommandError(
            f"--served-model-name {' '.join(map(repr, names))}: names must be non-empty and "
            "distinct",
            EXIT_USAGE,
        )
    return dict(zip(loaded, names))


def _model_workers(requested: int | None, device: str) -> int:
    """Model threads for ``serve``; on CPU the cores are split among them (torch threads)."""
    import torch

    from lfm_core.encoders import resolve_device

    if resolve_device(device).type != "cpu":
        return requested or 1
    cores = torch.get_num_threads()
    workers = requested or min(2, cores)
    # The service owns this process: torch's thread count is set once, before the models
    # load and the first worker thread starts (each reads it on its first forward).
    torch.set_num_threads(max(1, cores // workers))
    return workers


def _port(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {value!r}") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port 0..65535, got {value!r}")
    return number


def _require_qdrant() -> None:
    """Fail with one line naming the extra when the Qdrant packages are not installed."""
    missing = [m for m in ("qdrant_client", "qdrant_edge") if importlib.util.find_spec(m) is None]
    if missing:
        raise CommandError(
            f"this command needs the Qdrant packages ({', '.join(missing)} missing); install "
            "them with: pip install 'lfm-retrieval[qdrant]'",
            EXIT_USAGE,
        )


def _collection_name(name: str) -> str:
    from lfm_qdrant import validate_collection_name

    try:
        return validate_collection_name(name)
    except (TypeError, ValueError) as error:
        raise CommandError(f"--collection: {error}", EXIT_USAGE) from None


def _recorded_models(client: Any, collection: str) -> tuple[str | None, str | None]:
    """The models a collection records (``None`` for a side it lacks or has no record of)."""
    from lfm_qdrant import CollectionRecord

    if not client.collection_exists(collection):
        return None, None
    info = client.get_collection(collection)
    record = CollectionRecord.from_metadata(info.config.metadata, collection)
    if record is None:
        return None, None
    return (
        NONE if record.dense is None else record.dense.model,
        NONE if record.colbert is None else record.colbert.model,
    )


def _model_names(
    args: argparse.Namespace, recorded: tuple[str | None, str | None]
) -> tuple[str | None, str | None]:
    """The model of each side: the flag, else the collection's record, else the default."""
    names = []
    for flag, stored, default in (
        (args.embedding_model, recorded[0], DEFAULT_EMBEDDING_MODEL),
        (args.colbert_model, recorded[1], DEFAULT_COLBERT_MODEL),
    ):
        name = flag if flag is not None else stored if stored is not None else default
        names.append(None if name.lower() == NONE else name)
    return names[0], names[1]


def _load_models(
    args: argparse.Namespace,
    recorded: tuple[str | None, str | None] = (None, None),
    *,
    dense: bool = True,
    colbert: bool = True,
) -> tuple[Any, Any]:
    """Load the models asked for (skipping ``none``); at least one must be left."""
    from lfm_core import (
        CheckpointError,
        DenseEncoder,
        LateInteractionEncoder,
        LoadOptions,
        resolve_encoder,
    )

    dense_name, colbert_name = _model_names(args, recorded)
    if dense_name is None and colbert_name is None:
        raise CommandError(
            "--embedding-model and --colbert-model are both 'none'; keep at least one", EXIT_USAGE
        )
    _quiet_transformers()
    loaded = []
    for wanted, name, cls, flag, stored in (
        (dense, dense_name, DenseEncoder, "--embedding-model", recorded[0]),
        (colbert, colbert_name, LateInteractionEncoder, "--colbert-model", recorded[1]),
    ):
        if not wanted or name is None:
            loaded.append(None)
            continue
        try:
            options = LoadOptions(device=args.device)
            loaded.append(resolve_encoder(cls, name, options=options, owner=flag))
        except CheckpointError as error:
            source = (
                "recorded by the collection" if stored == name and flag_absent(args, flag) else flag
            )
            raise CommandError(f"{error} (model {source}; pass {flag} DIR)", EXIT_USAGE) from None
    return loaded[0], loaded[1]


def flag_absent(args: argparse.Namespace, flag: str) -> bool:
    return getattr(args, flag.lstrip("-").replace("-", "_")) is None


def _quiet_transformers() -> None:
    # transformers draws a "Loading weights" bar for every AutoModel checkpoint: noise in a
    # command that has its own progress and summary lines.
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


class _Client:
    """A Qdrant store opened from the command line options, closed (flushed) on exit."""

    def __init__(self, args: argparse.Namespace, read_only: bool = False) -> None:
        self.args = args
        self.read_only = read_only
        self.client: Any = None

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

        self.client = EdgeStore(args.path or default_qdrant_path(), read_only=self.read_only)
        return self.client

    def __exit__(self, exc_type: object, *exc_info: object) -> None:
        if self.client is None:
            return
        if exc_type is None:
            self.client.close()
            return
        # Already failing (a full disk, say): a flush that fails the same way on close must
        # not replace the error that says what happened.
        with contextlib.suppress(*_store_errors(), *_qdrant_errors()):
            self.client.close()


def _open_client(args: argparse.Namespace, read_only: bool = False) -> _Client:
    """The store of ``--path``/``--url``; ``read_only`` for commands that only search."""
    return _Client(args, read_only)


def _writer(
    client: Any, collection: str, dense: Any, colbert: Any, args: argparse.Namespace | None = None
) -> Any:
    """The writer of a command; ``args`` carries the write options of ``index`` and ``eval``."""
    from lfm_qdrant import MultiVectorWriter

    options = {}
    if args is not None:
        options = {
            "batch_size": args.batch_size,
            "pool_factor": args.pool_factor,
            "colbert_datatype": args.colbert_datatype,
            "lexical": not args.no_lexical,
            "chunking": _chunking(args),
        }
    return MultiVectorWriter(client, collection, dense=dense, colbert=colbert, **options)


def _chunking(args: argparse.Namespace) -> Any:
    """The writer's ``chunking=`` from ``--chunk-tokens``, ``--chunk-overlap``, ``--no-chunking``."""
    from lfm_qdrant import ChunkingOptions

    if getattr(args, "no_chunking", False):
        return False
    overlap = getattr(args, "chunk_overlap", None)
    return ChunkingOptions(
        max_tokens=getattr(args, "chunk_tokens", None),
        **({} if overlap is None else {"overlap_tokens": overlap}),
    )


def _build_index(client: Any, collection: str) -> str:
    """Build an Edge store's dense HNSW index after a bulk write; a note for the summary."""
    if not hasattr(client, "optimize"):
        return ""  # a server indexes in the background
    started = time.perf_counter()
    if not client.optimize(collection):
        return ""  # small enough to be scanned: nothing to build
    return f" (index built in {time.perf_counter() - started:.1f} s)"


def _where(args: argparse.Namespace) -> str:
    return args.url or str(args.path or default_qdrant_path())


def _eval_collection_name(folder: Path, names: tuple[str | None, str | None]) -> str:
    """``eval-<folder>-<8 hex>``: one collection per dataset and pair of models."""
    models = []
    for name in names:
        if name is None:
            models.append(NONE)
            continue
        local = Path(name).expanduser()
        models.append(str(local.resolve()) if local.exists() else name.lower())
    digest = hashlib.sha256("\n".join(models).encode()).hexdigest()[:8]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", folder.resolve().name).strip("-") or "beir"
    return f"eval-{slug}-{digest}"


def _snippet(text: str, title: str | None) -> str:
    text = " ".join(text.split())
    if title and text.startswith(title):
        text = f"{title} — {text[len(title) :].lstrip()}"  # the stored text is "title text"
    return text if len(text) <= _SNIPPET_CHARS else text[: _SNIPPET_CHARS - 1].rstrip() + "…"


def _non_negative_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"{number} is below 0")
    return number


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lfm-retrieval")
    except PackageNotFoundError:
        return "(not installed)"


if __name__ == "__main__":
    sys.exit(main())
