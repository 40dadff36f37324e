"""`DiffillProtocol`: pygls's protocol, made to answer every request as the LSP spec says, whatever arrives.

pygls structures a message while it parses the JSON; when the params do not fit the method's type (a string
for a position, a missing `context`, a negative line) the exception escapes its read loop: the request is never
answered and the client shows "Error in server: Invalid Params". It also serves requests before `initialize`,
drops requests after `shutdown` without an answer, and loses the exit code of `exit`. Here, per message:

- not a JSON object, or an id that is neither number nor string: nothing can be answered; one log line;
- a request whose params do not fit its type, or whose body was not valid UTF-8: -32602 InvalidParams, naming
  the field (cattrs's paths, e.g. `$.params.position`); a notification like that is logged and dropped;
- before `initialize`: requests get -32002 ServerNotInitialized and notifications are dropped, `exit` excepted;
  a second `initialize` gets -32600 InvalidRequest;
- after `shutdown`: requests get -32600 InvalidRequest and notifications are dropped, `exit` excepted;
- `exit` stops the read loop; the process exits 0 after `shutdown`, else 1 (`DiffillProtocol.exit_code`).

`serve` is the read loop (`lsp_server.framing` frames, this protocol's `receive`), used for stdio and TCP alike.
Handler failures are logged and sent to the client's log, never shown as pop-ups (`report_server_error`).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import cattrs
from lsprotocol import types
from pygls.exceptions import (
    JsonRpcException,
    JsonRpcInvalidParams,
    JsonRpcInvalidRequest,
    JsonRpcServerNotInitialized,
)
from pygls.protocol import LanguageServerProtocol, lsp_method
from pygls.protocol.json_rpc import JsonRPCNotification, JsonRPCRequestMessage, JsonRPCResponseMessage

from lsp_server.framing import Frame, FrameReader

__all__ = ["DiffillProtocol", "serve"]

log = logging.getLogger(__name__)

_ALWAYS = {types.EXIT}  # handled whatever the lifecycle state


def _valid_id(value: Any) -> bool:
    return isinstance(value, int | str) and not isinstance(value, bool)


def _describe(exc: Exception) -> str:
    """One line naming what did not fit, e.g. "invalid value @ $.params.position"."""
    try:
        return "; ".join(cattrs.transform_error(exc, path="$"))
    except Exception:  # not a cattrs error
        return str(exc) or type(exc).__name__


class DiffillProtocol(LanguageServerProtocol):
    """See the module docstring; `receive` is the entry point for a framed message."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.initialize_received = False
        self.stop = threading.Event()  # set by `exit`; ends `serve`

    @property
    def exit_code(self) -> int:
        return 0 if self._shutdown else 1

    def receive(self, frame: Frame) -> None:
        data = frame.message
        if not isinstance(data, dict):
            log.error("ignored a message that is not a JSON object: %.80r", data)
            return
        if "id" in data and not _valid_id(data["id"]):
            log.error("ignored a message with an invalid id: %.80r", data["id"])
            return
        method = data.get("method")
        request_id = data["id"] if "id" in data and "method" in data else None
        if data.get("jsonrpc") != self.VERSION or ("method" in data and not isinstance(method, str)):
            self._refuse(request_id, JsonRpcInvalidRequest("not a JSON-RPC 2.0 message"), data)
            return
        if frame.problem is not None:
            self._refuse(request_id, JsonRpcInvalidParams(frame.problem), data)
            return
        if method is not None and (error := self._lifecycle(method)) is not None:
            self._refuse(request_id, error, data)
            return
        try:
            message = self.structure_message(data)
        except Exception as exc:
            self._refuse(request_id, JsonRpcInvalidParams(f"invalid params for {method}: {_describe(exc)}"), data)
            return
        if method == types.INITIALIZE:  # only a valid one counts: after an invalid one the client may try again
            self.initialize_received = True
        self.handle_message(message)

    def _lifecycle(self, method: str) -> JsonRpcException | None:
        """The error a request gets in the current lifecycle state (notifications are dropped instead)."""
        if method in _ALWAYS:
            return None
        if method == types.INITIALIZE:
            return JsonRpcInvalidRequest("initialize may only be sent once") if self.initialize_received else None
        if not self.initialize_received:
            return JsonRpcServerNotInitialized("the server has not received initialize yet")
        if self._shutdown:
            return JsonRpcInvalidRequest("the server is shutting down: only exit is accepted")
        return None

    def _refuse(self, request_id: int | str | None, error: JsonRpcException, data: dict[str, Any]) -> None:
        """Answer a request with `error`; drop anything else with one log line."""
        if request_id is not None:
            log.warning("request %r (%s) refused: %s", request_id, data.get("method"), error.message)
            self._send_response(request_id, error=error.to_response_error())
        else:
            log.warning("dropped %s: %s", data.get("method") or "a response", error.message)

    def structure_message(self, data: dict[str, Any]) -> Any:
        """The typed message (lsprotocol's type for the method, else a generic one); raises when it does not fit.

        pygls's version logs a traceback and converts the error; here the caller answers it.
        """
        if "method" in data:
            kind = self.get_message_type(data["method"])
            if kind is None:  # a method lsprotocol does not know (diffill/stats): params may be left out
                kind = JsonRPCRequestMessage if "id" in data else JsonRPCNotification
                data = {"params": None, **data}
        elif "error" in data:
            kind = types.ResponseErrorMessage
        else:
            kind = self._result_types.pop(data.get("id"), None) or JsonRPCResponseMessage
        return self._converter.structure(data, kind)

    @lsp_method(types.EXIT)
    def lsp_exit(self, *args: Any) -> None:
        """Stop reading; the server's start_* method returns and the process exits with `exit_code`."""
        log.info("exit received %s shutdown", "after" if self._shutdown else "without")
        self.stop.set()


async def serve(reader: FrameReader, protocol: DiffillProtocol) -> None:
    """Hand every framed message to the protocol until `exit` or the end of the stream."""
    while not protocol.stop.is_set():
        frame = await reader.next()
        if frame is None:
            log.info("the client closed the stream")
            return
        protocol.receive(frame)
