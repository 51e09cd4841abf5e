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
``serve``'s options and start-up are in :mod:`lfm_retrieval.cli_serve`; the error lines and
exit codes in :mod:`lfm_retrieval.cli_errors`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

# A module import, not names: cli_serve imports this module too, and either may load first.
from lfm_retrieval import cli_serve

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
from lfm_retrieval.cli_store import (
    build_index,
    check_space_ahead,
    collection_name,
    open_client,
    require_qdrant,
    where,
)

DEFAULT_EMBEDDING_MODEL = "LiquidAI/LFM2.5-Embedding-350M"
DEFAULT_COLBERT_MODEL = "LiquidAI/LFM2.5-ColBERT-350M"
NONE = "none"

_SNIPPET_CHARS = 160


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
        help="folder of the embedded Qdrant Edge store (default "
        "$XDG_CACHE_HOME/lfm-retrieval/qdrant, else ~/.cache/lfm-retrieval/qdrant)",
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
    group.add_argument(
        "--verbose",
        action="store_true",
        help="also show Ray's own log lines, progress and worker output (default: its warnings)",
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
    search.add_argument(
        "--filter",
        default=None,
        metavar="JSON",
        help="only documents whose metadata match this Qdrant filter, e.g. "
        '\'{"must": [{"key": "lang", "match": {"value": "de"}}]}\'',
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

    cli_serve.add_serve_command(commands, [models, store])

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

    require_qdrant()
    collection = collection_name(args.collection)
    total = count_documents(args.corpus)  # also the check that the corpus exists
    if args.ray:
        from lfm_retrieval.cli_ray import index_on_ray

        return index_on_ray(args, collection)
    with open_client(args) as client:  # a dead server fails before the models load
        dense, colbert = _load_models(args, _recorded_models(client, collection))
        writer = _writer(client, collection, dense, colbert, args)
        check_space_ahead(client, collection, total)
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
        built = build_index(client, collection)
    _print_index_summary(args, collection, report, built)
    return 0


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
        f"{report.points} points stored in {where(args)}{built}"
    )


def _search(args: argparse.Namespace) -> int:
    from lfm_retrieval.pipeline import collection_legs, search

    require_qdrant()
    collection = collection_name(args.collection)
    query_filter = _query_filter(args.filter)
    with open_client(args, read_only=True) as client:
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
            query_filter=query_filter,
        )
        # With a ColBERT model loaded, explain=True hits carry their token matches.
        explained: list[Any] = [getattr(point, "explanation", None) for point in points]
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


def _query_filter(text: str | None) -> Any:
    """``--filter``: JSON text, checked before the store opens or a model loads."""
    from lfm_qdrant import FilterError, as_filter

    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise CommandError(
            f"--filter is not JSON: {error.msg} at character {error.pos + 1}", EXIT_USAGE
        ) from None
    if not isinstance(value, dict):
        raise CommandError(
            f"--filter must be a JSON object such as "
            f'{{"must": [{{"key": "lang", "match": {{"value": "de"}}}}]}}, got {text!r}',
            EXIT_USAGE,
        )
    try:
        return as_filter(value)
    except FilterError as error:
        raise CommandError(error.named("--filter"), EXIT_USAGE) from None


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

    require_qdrant()
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
    with open_client(args) as client:
        if args.collection is not None:
            collection = collection_name(args.collection)
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
        built = build_index(client, collection)
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
        f"documents, mode {mode}, collection {collection!r} in {where(args)}"
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


def _models_to_load(
    args: argparse.Namespace, recorded: tuple[str | None, str | None]
) -> tuple[str | None, str | None]:
    """:func:`_model_names` for a command that encodes: at least one must be left."""
    names = _model_names(args, recorded)
    if names == (None, None):
        raise CommandError(
            "--embedding-model and --colbert-model are both 'none'; keep at least one", EXIT_USAGE
        )
    return names


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

    names = _models_to_load(args, recorded)
    wanted = (dense and names[0] is not None, colbert and names[1] is not None)
    _check_models_exist(args, names, recorded, wanted)
    loaded: list[Any] = []
    for want, name, cls, flag in zip(
        wanted, names, (DenseEncoder, LateInteractionEncoder), _MODEL_FLAGS
    ):
        if not want or name is None:
            loaded.append(None)
            continue
        try:
            options = LoadOptions(device=args.device)
            loaded.append(resolve_encoder(cls, name, options=options, owner=flag))
        except CheckpointError as error:
            source = _model_source(args, flag, name, recorded)
            raise CommandError(f"{source}: {error}", EXIT_USAGE) from None
    return loaded[0], loaded[1]


_MODEL_FLAGS = ("--embedding-model", "--colbert-model")


def _check_models_exist(
    args: argparse.Namespace,
    names: tuple[str | None, str | None],
    recorded: tuple[str | None, str | None],
    wanted: tuple[bool, bool] = (True, True),
) -> None:
    """Before any model loads or anything is written: every model is a folder or can be had.

    Raises one error naming each model that is missing (a hub model not cached while the
    hub is out of reach, a folder that is not there), with the flag to pass for each.
    """
    from lfm_core import CheckpointError, ModelUnavailableError
    from lfm_core.loading import resolve_checkpoint

    unavailable: list[tuple[str, str]] = []  # (flag, how the model is named)
    reasons: list[str] = []
    problems: list[str] = []
    for want, name, flag in zip(wanted, names, _MODEL_FLAGS):
        if not want or name is None or Path(name).expanduser().is_dir():
            continue
        try:
            resolve_checkpoint(name)  # a cached hub model, or one downloaded now
        except ModelUnavailableError as error:
            unavailable.append((flag, f"{name} ({_model_source(args, flag, name, recorded)})"))
            reasons.append(error.reason)
        except CheckpointError as error:
            problems.append(f"{_model_source(args, flag, name, recorded)}: {error}")
    if unavailable:
        one = len(unavailable) == 1
        problems.append(
            f"{' and '.join(named for _, named in unavailable)} {'is' if one else 'are'} not "
            f"cached here and the Hugging Face Hub cannot be reached "
            f"({', '.join(dict.fromkeys(reasons))}); pass a local folder instead "
            f"({' '.join(f'{flag} DIR' for flag, _ in unavailable)}), or 'none' to leave a "
            f"model out; docs/offline.md shows how to download {'it' if one else 'them'}, or "
            "to start with a small model from PyPI"
        )
    if problems:
        raise CommandError("; ".join(problems), EXIT_USAGE)


def _model_source(
    args: argparse.Namespace, flag: str, name: str, recorded: tuple[str | None, str | None]
) -> str:
    """The flag a model came from, or that the collection records it (no flag given)."""
    stored = recorded[_MODEL_FLAGS.index(flag)]
    if getattr(args, flag.lstrip("-").replace("-", "_")) is None and stored == name:
        return f"{flag}, recorded by the collection"
    return flag


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
