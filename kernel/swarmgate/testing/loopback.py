"""The lifecycle every test server shares: listen on ``127.0.0.1`` on an
ephemeral port inside the current event loop (``async with``), or in a
background thread with its own loop (:func:`run_in_thread`).

Subclasses implement :meth:`LoopbackServer._serve` and may wrap the TCP
listener (TLS) in :meth:`LoopbackServer._wrap_listener`. An exception a
server records in ``errors`` is raised when its ``async with`` block ends,
so a broken fake cannot let a test pass silently.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Self, TypeVar

import anyio
import anyio.abc
import anyio.from_thread

if TYPE_CHECKING:
    from types import TracebackType

S = TypeVar("S", bound="LoopbackServer")


class LoopbackServer:
    """Base of the loopback test servers (see the module docstring).

    ``label`` names the server in errors ("the fake upstream failed: ...");
    ``usage`` tells how to start it when :attr:`port` is read too early.
    """

    label = "loopback server"
    usage = "use 'async with' or in_thread()"

    def __init__(self) -> None:
        #: Exceptions raised while serving; the first is re-raised on exit.
        self.errors: list[Exception] = []
        self._port: int | None = None
        self._task_group: anyio.abc.TaskGroup | None = None

    @property
    def port(self) -> int:
        """The TCP port listened on (only while running)."""
        if self._port is None:
            raise RuntimeError(f"the {self.label} is not running: {self.usage}")
        return self._port

    def _wrap_listener(self, listener: anyio.abc.Listener[Any]) -> anyio.abc.Listener[Any]:
        """The listener to serve on (a TLS wrapper, say); the TCP one by default."""
        return listener

    async def _serve(self, listener: anyio.abc.Listener[Any]) -> None:
        """Accept and handle connections until cancelled."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        if self._task_group is not None:
            raise RuntimeError(f"this {self.label} is already running")
        tcp = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        self._port = tcp.extra(anyio.abc.SocketAttribute.local_port)
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        task_group.start_soon(self._serve, self._wrap_listener(tcp))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        task_group = self._task_group
        assert task_group is not None
        self._task_group = None
        self._port = None
        task_group.cancel_scope.cancel()
        suppress = await task_group.__aexit__(exc_type, exc, tb)
        if exc is None and self.errors:
            raise RuntimeError(f"the {self.label} failed: {self.errors[0]!r}") from self.errors[0]
        return suppress


@contextlib.contextmanager
def run_in_thread(server: S, *, backend: str = "asyncio", name: str = "swarmgate-test-server") -> Iterator[S]:
    """Run ``server`` on its own event loop (``backend``) in a background
    thread for the duration of the ``with`` block; leaving it stops the
    server and joins the thread."""
    with (
        anyio.from_thread.start_blocking_portal(backend, name=name) as portal,
        portal.wrap_async_context_manager(server),
    ):
        yield server
