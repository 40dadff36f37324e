"""Command line of the language server: `diffill lsp` and `python -m lsp_server` both call `main(argv)`.

stdio is the default transport (what editors spawn); `--tcp` serves one client on a socket, handy to attach a
debugger or a client that connects. Logs go to stderr only: on stdio, stdout carries the protocol, so the real
stdout is kept for pygls and file descriptor 1 is pointed at stderr, which keeps a stray `print` (or a native
library writing to fd 1) from corrupting the message stream.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import sys
from collections.abc import Sequence
from typing import BinaryIO

from engine.errors import DiffillError
from lsp_server import __version__
from lsp_server.handlers import register
from lsp_server.server import DiffillServer

__all__ = ["build_parser", "main"]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {value!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port in 0..65535, got {port}")
    return port


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diffill lsp", description="Diffill language server: fill-in-the-middle code completion over LSP."
    )
    transport = parser.add_mutually_exclusive_group()
    transport.add_argument("--stdio", action="store_true", help="talk LSP over stdin/stdout (the default)")
    transport.add_argument("--tcp", action="store_true", help="serve one client over TCP instead of stdio")
    parser.add_argument("--host", default="127.0.0.1", help="TCP address to bind (default: %(default)s)")
    parser.add_argument("--port", type=_port, default=2087, help="TCP port, 0 for any free one (default: %(default)s)")
    parser.add_argument(
        "--model",
        metavar="DIR",
        help="checkpoint directory used unless the editor's diffill.model.path is set "
        "(default: the embedded default model)",
    )
    parser.add_argument("--log-level", default="INFO", type=str.upper, choices=LOG_LEVELS, help="stderr log level")
    # vscode-languageclient may append this; the server does not need it.
    parser.add_argument("--clientProcessId", help=argparse.SUPPRESS)
    parser.add_argument("--version", action="version", version=f"diffill-lsp {__version__}")
    return parser


def configure_logging(level: str) -> None:
    logging.basicConfig(
        stream=sys.stderr, level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    # pygls logs every message body at INFO (whole documents); keep that for DEBUG sessions only, but keep its
    # server lifecycle lines ("Serving on ...", which tells a TCP client the address).
    logging.getLogger("pygls").setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
    logging.getLogger("pygls.server").setLevel(level)


def claim_stdout() -> BinaryIO:
    """A private handle on the process's stdout for the protocol; fd 1 and sys.stdout then go to stderr."""
    try:
        sys.stdout.flush()
        protocol = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    except (AttributeError, OSError, io.UnsupportedOperation):  # no real file descriptors (embedded use)
        return sys.stdout.buffer
    sys.stdout = sys.stderr
    return protocol


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    model = os.path.expanduser(args.model) if args.model else None
    server = register(DiffillServer(default_model=model))
    log = logging.getLogger(__name__)
    log.info("diffill-lsp %s starting (%s)", __version__, "tcp" if args.tcp else "stdio")
    if args.tcp:
        try:
            server.start_tcp(args.host, args.port)
        except DiffillError as exc:  # the address cannot be bound: a usage error, not a crash
            print(f"{parser.prog}: error: {exc}", file=sys.stderr)
            return 2
    else:
        if sys.stdin.isatty():
            log.info("reading LSP messages on stdin: an editor starts this (docs/neovim.md, docs/vscode.md)")
        server.start_io(sys.stdin.buffer, claim_stdout())
    return server.protocol.exit_code  # LSP: 0 after shutdown, 1 when exit (or the end of input) came without it
