"""`DiffillServer`: the pygls `LanguageServer` subclass that owns settings, the engine and in-flight requests.

State lives here; the LSP handlers (`lsp_server.handlers`) are thin functions that call into it. The model
loads in a background task (`$/progress` begin/report/end when the client supports it), so the server answers
from the first message on: until the engine is ready, completions are empty, never errors. A load failure is
shown to the user and logged; the server stays up, answering empty, until settings change.

Staleness: every completion request takes a generation number for its document. A later request for the same
document, or an edit (a new document version), makes older requests stale: they return empty instead of
running or returning the model. Model calls go through one `ModelGate` (`lsp_server.gate`): at most one in
flight, and a cancelled request's call keeps the gate until its thread returns, so cancels never pile calls up.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import sys
import uuid
from collections.abc import Awaitable
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar
from urllib.parse import unquote

from lsprotocol import types
from pygls.capabilities import get_capability
from pygls.exceptions import FeatureRequestError
from pygls.io_ import StdoutWriter
from pygls.lsp.server import LanguageServer

from engine.errors import DiffillError
from fim.confidence import UNCALIBRATED, Calibration
from fim.request import FimSettings
from lsp_server import __version__
from lsp_server.cache import CompletionCache
from lsp_server.crossfile import CrossFile
from lsp_server.engines import create_engine, describe, fim_settings, warm_up
from lsp_server.framing import FrameReader, StdinSource, StreamSource
from lsp_server.gate import ModelGate
from lsp_server.protocol import DiffillProtocol, serve
from lsp_server.settings import SECTION, Settings, merge, parse_settings, section_of

if TYPE_CHECKING:
    from engine.contract import CompletionEngine, CompletionStats

__all__ = ["DiffillServer", "LoadState", "Stats"]

log = logging.getLogger(__name__)
T = TypeVar("T")

STATUS = "diffill/status"
# How long to wait on the client for a progress token or configuration before going on without it.
CLIENT_TIMEOUT_S = 5.0


def _message_type(level: int) -> types.MessageType:
    if level >= logging.ERROR:
        return types.MessageType.Error
    return types.MessageType.Warning if level >= logging.WARNING else types.MessageType.Info


class LoadState(StrEnum):
    IDLE = "idle"  # not started (before `initialized`)
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


@dataclass
class Stats:
    """Counters exposed by the `diffill/stats` request (tests and the benchmark read them)."""

    requests: int = 0
    cache_hits: int = 0
    stale: int = 0
    not_ready: int = 0
    skipped: int = 0  # documents too large, binary, of a disabled language, or positions outside them
    errors: int = 0


class DiffillServer(LanguageServer):
    """Settings, the engine and its load state, the completion cache, and which request is current per document."""

    protocol: DiffillProtocol

    def __init__(self, default_model: str | None = None) -> None:
        super().__init__(
            "diffill",
            __version__,
            text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
            protocol_cls=DiffillProtocol,
        )
        self.default_model = default_model
        self.initialization_options: Any = None
        self.settings = Settings()
        self.fim = FimSettings()
        self.engine: CompletionEngine | None = None
        self.last_completion: CompletionStats | None = None  # the engine's stats of the last request's calls
        self.engine_info: dict[str, Any] = {}
        self.calibration = UNCALIBRATED  # the engine's show-or-stay-silent fit
        self.state = LoadState.IDLE
        self.load_error: str | None = None
        self.loaded = asyncio.Event()  # set when a load settles (ready or failed)
        self.cache = CompletionCache()
        self.cross_file = CrossFile()
        self.stats = Stats()
        self.gate = ModelGate()  # one model call in flight; waiting requests re-check staleness
        # Latest request generation per (document, request kind): a ghost-text request and a popup request for
        # the same document are independent (Neovim users often have both), each superseded by its own kind.
        self._latest: dict[tuple[str, str], int] = {}
        self._generations = itertools.count(1)
        self._load_generation = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._noted: set[str] = set()
        self._problems: set[str] = set()

    # -- transport --------------------------------------------------------------------------------------------

    def start_io(self, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None) -> None:
        """Serve one client over stdin/stdout with the robust reader (`lsp_server.framing`) until `exit` or EOF."""
        self._stop_event = self.protocol.stop
        self.protocol.set_writer(StdoutWriter(stdout or sys.stdout.buffer))
        reader = FrameReader(StdinSource(stdin or sys.stdin.buffer, self.thread_pool))
        try:
            asyncio.run(serve(reader, self.protocol))
        except BrokenPipeError:
            log.error("the client closed its end of the connection; stopping")
        finally:
            self.shutdown()

    def start_tcp(self, host: str, port: int) -> None:
        """Serve one client over TCP (for debuggers and clients that connect), with the same reader."""
        self._stop_event = self.protocol.stop

        async def connection(stream: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.protocol.set_writer(writer)  # type: ignore[arg-type]  # a StreamWriter writes bytes the same way
            await serve(FrameReader(StreamSource(stream)), self.protocol)
            self.shutdown()  # one client: closing the listener ends serve_forever

        async def listen() -> None:
            try:
                self._server = await asyncio.start_server(connection, host, port)
            except OSError as exc:  # address in use, unknown host, no permission
                raise DiffillError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
            addresses = ", ".join(str(sock.getsockname()) for sock in self._server.sockets)
            log.info("Serving on %s", addresses)  # the test and TCP clients read the port from this line
            async with self._server:
                await self._server.serve_forever()

        try:
            asyncio.run(listen())
        except asyncio.CancelledError:
            pass

    def report_server_error(self, error: Exception, source: Any) -> None:
        """Failures outside a request's answer go to the logs, never to a pop-up (pygls shows them); a failed
        request has had its error answer already."""
        if source is FeatureRequestError:
            return
        log.error("server error (%s): %s", getattr(source, "__name__", source), error)
        self.window_log_message(types.LogMessageParams(type=types.MessageType.Error, message=f"diffill: {error}"))

    # -- messages ---------------------------------------------------------------------------------------------

    def log_message(self, level: int, message: str) -> None:
        """Log to stderr and, from INFO up, to the client's log (`window/logMessage`). Event loop thread only."""
        log.log(level, "%s", message)
        if level >= logging.INFO:
            self.window_log_message(types.LogMessageParams(type=_message_type(level), message=f"diffill: {message}"))

    def note_once(self, key: str, message: str) -> None:
        """Log a recurring condition (a huge file asked again on every keystroke) once per key."""
        if key not in self._noted:
            self._noted.add(key)
            self.log_message(logging.WARNING, message)

    def show(self, kind: types.MessageType, message: str) -> None:
        level = logging.ERROR if kind == types.MessageType.Error else logging.WARNING
        log.log(level, "%s", message)
        self.window_show_message(types.ShowMessageParams(type=kind, message=f"Diffill: {message}"))

    # -- requests ---------------------------------------------------------------------------------------------

    def begin_request(self, uri: str, kind: str) -> int:
        generation = next(self._generations)
        self._latest[uri, kind] = generation
        return generation

    def is_current(self, uri: str, kind: str, generation: int, version: int | None) -> bool:
        """False when a newer request of the same kind for the document exists or the document changed or
        closed since."""
        if self._latest.get((uri, kind)) != generation:
            return False
        document = self.workspace.text_documents.get(unquote(uri))  # pygls keys documents by unquoted URI
        return document is not None and document.version == version

    def forget_document(self, uri: str) -> None:
        for key in [key for key in self._latest if key[0] == uri]:
            del self._latest[key]
        self.cross_file.forget(uri)
        if self.engine is not None:  # drops the document's context cache; it takes the engine lock
            self.spawn(self.gate.call(self.engine.forget, uri))

    def spawn(self, work: Awaitable[T]) -> asyncio.Task[T]:
        """Run `work` in the background, keeping a reference (asyncio only keeps weak ones) and logging failures."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("background task failed", exc_info=exc)

    def publish_status(self) -> None:
        """`diffill/status` notification (the `diffill/stats` object) on every load state change, for status bars."""
        self.protocol.notify(STATUS, self.status())

    def status(self) -> dict[str, Any]:
        last = self.last_completion  # tokens computed vs reused, timings: all the last request's calls (fim.ask)
        return {
            "state": str(self.state),
            "error": self.load_error,
            "engine": self.engine_info,
            "cacheEntries": len(self.cache),
            "lastCompletion": asdict(last) if last is not None else None,
            "crossFile": self.cross_file.status(),  # what the last request showed the model from other files
            **asdict(self.stats),
            **asdict(self.gate.counts),  # model_calls, model_in_flight, ...
        }

    # -- settings ---------------------------------------------------------------------------------------------

    async def _from_client(self, request: Awaitable[T]) -> tuple[bool, T | None]:
        """Await a request to the client for at most CLIENT_TIMEOUT_S; (False, None) if it fails or is late.

        `asyncio.wait` does not cancel the request on timeout: cancelling would break pygls's bookkeeping when
        the late answer arrives.
        """
        task = asyncio.ensure_future(request)
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # late failures are not "unretrieved"
        done, _ = await asyncio.wait({task}, timeout=CLIENT_TIMEOUT_S)
        if task not in done or task.exception() is not None:
            log.warning("client did not answer %s", "in time" if task not in done else f": {task.exception()}")
            return False, None
        return True, task.result()

    async def _configuration(self) -> Any:
        """The client's "diffill" section via `workspace/configuration`, when the client offers it."""
        if not get_capability(self.client_capabilities, "workspace.configuration", False):
            return None
        params = types.ConfigurationParams(items=[types.ConfigurationItem(section=SECTION)])
        ok, result = await self._from_client(self.workspace_configuration_async(params))
        return result[0] if ok and result else None

    async def refresh_settings(self, pushed: Any = None) -> None:
        """Re-read settings (initializationOptions, then the pushed or pulled "diffill" section) and apply them."""
        source = section_of(pushed) if pushed is not None else await self._configuration()
        settings, problems = parse_settings(merge(section_of(self.initialization_options), source))
        for problem in problems:
            if problem not in self._problems:  # each re-read would otherwise repeat every old complaint
                self.show(types.MessageType.Warning, f"invalid setting {problem}")
        self._problems = set(problems)
        previous, self.settings = self.settings, settings
        self.cross_file.configure(settings.cross_file, settings.limits.max_file_bytes)
        if settings != previous:
            self.cache.clear()
            self.fim = fim_settings(settings, self.engine_info)
        if self.state == LoadState.IDLE or settings.engine_key() != previous.engine_key():
            self.start_loading()

    # -- engine loading ---------------------------------------------------------------------------------------

    def start_loading(self) -> asyncio.Task[None]:
        """Drop the current engine and load the one the settings select, in the background."""
        self._load_generation += 1
        self._close(self.engine)
        self.engine, self.engine_info, self.calibration = None, {}, UNCALIBRATED
        self.last_completion = None
        self.state, self.load_error = LoadState.LOADING, None
        self.loaded.clear()
        self.cache.clear()
        self.publish_status()
        return self.spawn(self._load(self._load_generation, self.settings))

    def _close(self, engine: CompletionEngine | None) -> None:
        if engine is not None:  # a RemoteEngine pools connections, a LocalEngine holds context caches
            self.spawn(self.gate.call(engine.close))

    async def _progress_token(self) -> str | None:
        if not get_capability(self.client_capabilities, "window.work_done_progress", False):
            return None
        token = f"diffill-load-{uuid.uuid4().hex[:8]}"
        ok, _ = await self._from_client(self.work_done_progress.create_async(token))
        return token if ok else None

    async def _load(self, generation: int, settings: Settings) -> None:
        token = await self._progress_token()
        what = "remote engine" if settings.remote.url else "model"
        outcome = "stopped"
        if token:
            begin = types.WorkDoneProgressBegin(title="Diffill", message=f"loading the {what}", cancellable=False)
            self.work_done_progress.begin(token, begin)
        try:
            engine = await self.gate.call(create_engine, settings, self.default_model)
            if token:
                self.work_done_progress.report(token, types.WorkDoneProgressReport(message="warming up"))
            info = await self.gate.call(describe, engine)
            calibration = Calibration.of(info)  # a server's malformed fit fails the load, with its message
            fim = fim_settings(settings, info)
            await self.gate.call(warm_up, engine, fim, settings.completion)
        except Exception as exc:
            if generation == self._load_generation:
                self.state, self.load_error = LoadState.FAILED, str(exc) or type(exc).__name__
                # The user's mistake (a path, a URL) needs its message, not a traceback.
                log.error("engine load failed", exc_info=None if isinstance(exc, DiffillError) else exc)
                self.show(types.MessageType.Error, f"could not load the {what}: {self.load_error}")
            outcome = "failed"
        else:
            outcome = "ready"
            if generation != self._load_generation:  # settings changed meanwhile: the newer load wins
                self._close(engine)
                return
            self.engine, self.engine_info, self.calibration = engine, info, calibration
            self.fim = fim_settings(self.settings, info)
            self.state = LoadState.READY
            self.log_message(logging.INFO, f"engine ready: {info}")
        finally:
            if token:
                self.work_done_progress.end(token, types.WorkDoneProgressEnd(message=outcome))
            if generation == self._load_generation:
                self.loaded.set()
                self.publish_status()
