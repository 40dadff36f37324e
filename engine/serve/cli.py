"""``diffill serve``: load a checkpoint and serve it over HTTP (see docs/serving.md).

    diffill serve [--model DIR] [--preset fast|reference] [--host 127.0.0.1] [--port 8711] [--token-file F | --token T]
                  [--tls-cert PEM --tls-key PEM] [--max-body-bytes N] [--max-context N] [--max-chars N]
                  [--max-canvas N] [--max-candidates N] [--max-steps N] [--max-concurrent-per-token N]
                  [--rate-per-token R] [--burst-per-token N] [--cache-budget-mb MB] [--max-batch N]
                  [--bulk-tokens N] [--max-queue N] [--max-connections N] [--max-connections-per-ip N]
                  [--header-timeout S] [--drain-seconds S] [--no-batching] [--device auto] [--log-level INFO]

The configuration is checked and the port bound before the model loads, so a refused start (a public address
without a token, half-configured TLS, a busy port) costs nothing. The soft open-file limit is raised to the hard
one first. Logs go to stderr; on SIGINT/SIGTERM the server drains (docs/serving.md) and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from pathlib import Path

from engine.cli import add_dtype_argument, add_preset_argument
from engine.errors import DiffillError
from engine.serve.app import ServeConfig
from engine.serve.guard import raise_fd_limit
from engine.serve.server import ServeConfigError, bind, check_config, is_loopback, serve_forever

TOKEN_ENV = "DIFFILL_SERVE_TOKEN"


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="diffill serve", description="Serve the Diffill engine over HTTP.")
    p.add_argument("--model", help="checkpoint directory (default: the embedded model)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto")
    p.add_argument(
        "--threads",
        type=_positive_int,
        help="torch CPU threads for the model (default: torch's, all cores; on a CPU shared with other work use "
        "fewer: OpenMP threads on oversubscribed cores stall each other)",
    )
    add_preset_argument(p)
    add_dtype_argument(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind; anything but loopback needs a token")
    p.add_argument("--port", type=int, default=8711)
    auth = p.add_mutually_exclusive_group()
    auth.add_argument("--token", help=f"bearer token (visible in ps; prefer --token-file or ${TOKEN_ENV})")
    auth.add_argument("--token-file", help="file with one bearer token per line (# comments); each is a client")
    p.add_argument("--tls-cert", help="PEM certificate chain (enables HTTPS)")
    p.add_argument("--tls-key", help="PEM private key")
    p.add_argument("--max-body-bytes", type=int, default=ServeConfig.max_body_bytes)
    p.add_argument("--max-context", type=int, help="most context tokens a request may send (default 4x the model's)")
    p.add_argument("--max-chars", type=int, default=0, help="most prefix+suffix characters (default 32 per token)")
    p.add_argument("--max-canvas", type=int, help="longest canvas a request may ask for (default: the model's)")
    p.add_argument("--max-candidates", type=int, default=ServeConfig.max_candidates)
    p.add_argument("--max-steps", type=int, help="step budget per request, clamped (default: the canvas limit)")
    p.add_argument("--max-concurrent-per-token", type=int, default=ServeConfig.max_concurrent_per_token)
    p.add_argument("--rate-per-token", type=float, default=0.0, help="requests/s per token (default: unlimited)")
    p.add_argument("--burst-per-token", type=int, default=0, help="rate bucket size (default: the concurrency)")
    p.add_argument("--cache-budget-mb", type=float, default=ServeConfig.cache_budget_mb, help="session KV caches")
    p.add_argument("--max-batch", type=int, default=ServeConfig.max_batch, help="requests sharing one step")
    p.add_argument(
        "--bulk-tokens",
        type=int,
        default=ServeConfig.bulk_tokens,
        help="requests with more canvas tokens (candidates x length) yield to smaller ones",
    )
    p.add_argument("--max-queue", type=int, default=ServeConfig.max_queue, help="requests waiting for the model")
    p.add_argument("--max-connections", type=int, default=0, help="open connections (default: from ulimit -n)")
    p.add_argument("--max-connections-per-ip", type=int, default=ServeConfig.max_connections_per_ip)
    p.add_argument("--header-timeout", type=float, default=ServeConfig.header_timeout, help="seconds")
    p.add_argument("--drain-seconds", type=float, default=ServeConfig.drain_seconds, help="on SIGTERM")
    p.add_argument("--no-batching", action="store_true", help="one request at a time (for comparison)")
    p.add_argument("--log-level", default="INFO")
    return p


def read_tokens(args: argparse.Namespace) -> tuple[str, ...]:
    if args.token:
        return (args.token.strip(),)
    if args.token_file:
        try:
            lines = Path(args.token_file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise ServeConfigError(f"cannot read --token-file {args.token_file}: {e}") from e
        tokens = tuple(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))
        if not tokens:
            raise ServeConfigError(f"--token-file {args.token_file} holds no token")
        return tokens
    env = os.environ.get(TOKEN_ENV, "").strip()
    return (env,) if env else ()


def config_from_args(args: argparse.Namespace) -> ServeConfig:
    return ServeConfig(
        host=args.host,
        port=args.port,
        tokens=read_tokens(args),
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        max_body_bytes=args.max_body_bytes,
        max_context=args.max_context,
        max_chars=args.max_chars,
        max_canvas=args.max_canvas,
        max_candidates=args.max_candidates,
        max_steps=args.max_steps,
        max_concurrent_per_token=args.max_concurrent_per_token,
        rate_per_token=args.rate_per_token,
        burst_per_token=args.burst_per_token,
        cache_budget_mb=args.cache_budget_mb,
        batching=not args.no_batching,
        max_batch=args.max_batch,
        bulk_tokens=args.bulk_tokens,
        max_queue=args.max_queue,
        max_connections=args.max_connections,
        max_connections_per_ip=args.max_connections_per_ip,
        header_timeout=args.header_timeout,
        drain_seconds=args.drain_seconds,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = config_from_args(args)
        check_config(config)
        if not is_loopback(config.host) and not config.tls_cert:
            logging.warning("serving with a token but without TLS: the token crosses the network in clear text")
        logging.info("open-file limit %d", raise_fd_limit())
        sock = bind(config.host, config.port)  # a busy port fails here, before seconds of model loading
        from engine.api import in_passing_thread, load_engine

        t0 = time.perf_counter()
        # The scheduler's thread runs the model; loading here on the main thread would leave an OpenMP pool behind.
        engine = in_passing_thread(
            load_engine, args.model, device=args.device, preset=args.preset, dtype=args.dtype, threads=args.threads
        )
        logging.info("loaded %s in %.2fs", engine.describe(), time.perf_counter() - t0)
        asyncio.run(serve_forever(engine, config, sock))
    except DiffillError as e:
        print(f"diffill serve: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. the port is taken
        print(f"diffill serve: error: {e}", file=sys.stderr)
        return 2
    return 0
