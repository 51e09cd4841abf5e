"""``lfm-retrieval serve``: its options and the handler that starts the HTTP service.

Kept apart from :mod:`lfm_retrieval.cli` (the other commands) because it is the one command
with its own option groups (HTTP, batching, limits) and its own start-up (threads, the
FastAPI app). The shared model and store options come from ``cli`` as parent parsers.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import sys
from typing import Any

# A module import, not names: cli imports this module too, and either may load first.
from lfm_retrieval import cli, cli_store
from lfm_retrieval.cli_errors import EXIT_USAGE, CommandError


def add_serve_command(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add ``serve`` to the subcommands of ``lfm-retrieval``.

    Args:
        commands: the ``add_subparsers`` object of the main parser.
        parents: the parsers holding the shared model and Qdrant options.
    """
    serve = commands.add_parser(
        "serve",
        parents=parents,
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
        "--max-batch-texts",
        type=cli._positive_int,
        default=512,
        help="most texts per merged forward",
    )
    group.add_argument(
        "--max-batch-tokens",
        type=cli._positive_int,
        default=None,
        help="a merged forward runs in slices of at most this many tokens, each answered when "
        "done (default: the encoder's token budget of one forward: 2048 on CPU, 8192 on GPU)",
    )
    group.add_argument(
        "--max-queue-texts",
        type=cli._positive_int,
        default=8192,
        help="most texts waiting; beyond it requests get 503 with Retry-After (default 8192)",
    )
    group.add_argument(
        "--model-workers",
        type=cli._positive_int,
        default=None,
        metavar="N",
        help="merged batches run at once, each on its own thread; on CPU each gets "
        "cores/N torch threads (default: min(2, torch threads) on CPU, 1 on GPU). 1 gives a lone request on a "
        "large model all the cores; 2 gives more throughput under concurrent requests",
    )
    group.add_argument(
        "--no-batching", action="store_true", help="run each request on its own (for comparison)"
    )
    group = serve.add_argument_group("request limits")
    group.add_argument(
        "--max-inputs", type=cli._positive_int, default=2048, help="texts per request"
    )
    group.add_argument(
        "--max-input-chars", type=cli._positive_int, default=100_000, help="characters per text"
    )
    group.add_argument(
        "--max-body-bytes", type=cli._positive_int, default=16 * 1024 * 1024, help="bytes per body"
    )
    group.add_argument(
        "--request-timeout",
        type=float,
        default=60.0,
        help="seconds a request may wait for the model before a 503 (default 60)",
    )
    serve.set_defaults(handler=_serve)


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
        cli_store.require_qdrant()
    # Read-only: several services may share one store, on a read-only volume too.
    with (
        cli_store.open_client(args, read_only=True)
        if store_wanted
        else contextlib.nullcontext() as store
    ):
        # Before the models load: on CPU they time their linear kernels at this thread count.
        workers = _model_workers(args.model_workers, args.device)
        dense, colbert = cli._load_models(args)
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
                f" (search over {cli_store.where(args)})"
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
        for side, name in zip(("dense", "colbert"), cli._model_names(args, (None, None)))
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
