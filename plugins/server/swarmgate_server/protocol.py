"""uvicorn's httptools protocol with its writes coalesced.

uvicorn writes a response's status line and headers in one ``write`` and
each body piece in another, and uvloop sends every ``write`` to the socket
at once: a JSON answer costs two system calls and two TCP segments, a
stream whose events arrive together one per event (on loopback each send
also runs the receiving side of TCP in the sender's time). Here:

- the status line and headers leave together with the first body piece,
  at once (a JSON answer, or a stream's first event: no added latency);
- later pieces written during one turn of the event loop leave together,
  at the end of the turn (``call_soon``) or when the response completes,
  whichever comes first. A task that waits for the upstream gives the turn
  back, so nothing is ever held across such a wait: only events that were
  already there are sent together.

The same bytes in the same order. asyncio only, like uvicorn itself.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_STATUS_LINE = b"HTTP/"
_CHUNKED = b"\r\ntransfer-encoding: chunked\r\n"


class CoalescingTransport:
    """A transport that sends writes together (see the module docstring).

    :meth:`flush` sends what is held now; ``close`` and ``write_eof`` flush
    first, ``abort`` drops it; everything else is the wrapped transport's.
    """

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        held = self._held
        if held is None:
            self._held = [bytes(data)]
            self._loop.call_soon(self.flush)
            return
        held.append(bytes(data))
        if len(held) == 2 and held[0].startswith(_STATUS_LINE) and _CHUNKED in held[0]:
            self.flush()  # a stream's headers with its first event, at once

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        """Send what is held (nothing if the transport is closing)."""
        held, self._held = self._held, None
        if held and not self._transport.is_closing():
            self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over a :class:`CoalescingTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, asyncio.get_running_loop()))  # type: ignore[arg-type]
