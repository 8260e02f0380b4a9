"""Running the gateway: ``serve`` (uvicorn, uvloop and httptools when
installed) and :func:`run_gateway`, the same in a background thread for
tests and embedding.

``serve`` with one worker drives the gateway's start-up and shutdown
itself around ``uvicorn.Server.serve`` (so a bad config or a missing plugin
is one line and exit status 2, and the printed URL is the bound one, port 0
included). With ``--workers N`` uvicorn forks N processes, each building
its own gateway from ``$SWARMGATE_CONFIG`` through
:func:`~swarmgate_server.app.app_from_env`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import signal
import socket
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import attrs
import uvicorn

from swarmgate import SwarmgateConfig, load_config
from swarmgate_server.app import Gateway, create_app
from swarmgate_server.gctune import tune_gc
from swarmgate_server.settings import ServerSettings, load_settings

if TYPE_CHECKING:
    import asyncio

#: Seconds :func:`run_gateway` waits for the gateway to start.
START_TIMEOUT = 30.0


def fastest_loop() -> str:
    """``uvloop`` when installed, else ``asyncio``."""
    return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"


def fastest_http() -> type[asyncio.Protocol] | str:
    """uvicorn's httptools protocol with its writes coalesced per event-loop
    turn (:class:`~swarmgate_server.protocol.CoalescingHttpToolsProtocol`)
    when httptools is installed, else ``h11``."""
    if importlib.util.find_spec("httptools") is None:
        return "h11"
    from swarmgate_server.protocol import CoalescingHttpToolsProtocol

    return CoalescingHttpToolsProtocol


def settings_for(config_path: str | os.PathLike[str] | None) -> ServerSettings:
    """The ``server`` section of the config file (defaults without one).
    Loading validates the whole file first: a bad config fails here."""
    if config_path is None:
        return ServerSettings()
    return load_settings(load_config(config_path).server)


def uvicorn_config(
    app: Any, settings: ServerSettings, *, host: str, port: int, access_log: bool, log_level: str = "info", **extra: Any
) -> uvicorn.Config:
    """The uvicorn configuration of a gateway process."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop=fastest_loop(),
        http=fastest_http(),
        lifespan="off" if isinstance(app, Gateway) else "on",
        access_log=access_log,
        log_level=log_level,
        timeout_graceful_shutdown=math.ceil(settings.shutdown_timeout / 1000.0),
        server_header=False,
        **extra,
    )


async def _serve(gateway: Gateway, server: uvicorn.Server, sock: socket.socket, announce: Any) -> None:
    async with gateway.running():
        announce()
        with _absorb_reraised_signals():
            await server.serve(sockets=[sock])


@contextlib.contextmanager
def _absorb_reraised_signals() -> Iterator[None]:
    """uvicorn handles SIGINT/SIGTERM (stop accepting, drain) and then
    raises the signal again for the handler that was installed before it,
    which by default kills the process before the gateway's own shutdown
    (closing the manager, flushing the usage log) could run. Install a
    handler that only notes it, for the duration of ``serve``."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve(
    config_path: str | os.PathLike[str] | None,
    *,
    host: str | None = None,
    port: int | None = None,
    workers: int = 1,
    access_log: bool | None = None,
    echo: Any = print,
) -> None:
    """Serve the gateway until SIGINT/SIGTERM (then drain and stop).
    ``host``/``port``/``access_log`` default to the config's ``server``
    section; ``echo`` prints the URL once listening."""
    settings = settings_for(config_path)
    host = host or settings.host
    port = settings.port if port is None else port
    access = settings.access_log if access_log is None else access_log
    if workers > 1:
        if config_path is not None:
            os.environ["SWARMGATE_CONFIG"] = str(Path(config_path).resolve())
        echo(f"swarmgate gateway on http://{host}:{port} ({workers} workers)")
        uvicorn.run(
            "swarmgate_server.app:app_from_env",
            factory=True,
            workers=workers,
            host=host,
            port=port,
            loop=fastest_loop(),
            http=fastest_http(),
            access_log=access,
            timeout_graceful_shutdown=math.ceil(settings.shutdown_timeout / 1000.0),
            server_header=False,
        )
        return
    gateway = create_app(config_path)
    gateway.after_start = tune_gc  # this process serves the gateway: tune its collector
    config = uvicorn_config(gateway, settings, host=host, port=port, access_log=access)
    sock = config.bind_socket()
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host

    def announce() -> None:
        echo(f"swarmgate gateway listening on http://{shown}:{bound}")

    backend_options: dict[str, Any] = {}
    if config.loop == "uvloop":
        import uvloop

        backend_options["loop_factory"] = uvloop.new_event_loop
    server = uvicorn.Server(config)
    try:
        anyio.run(_serve, gateway, server, sock, announce, backend="asyncio", backend_options=backend_options)
    finally:
        sock.close()


@attrs.frozen
class RunningGateway:
    """A gateway served in a background thread: its base ``url``
    (``http://127.0.0.1:PORT``), the ASGI ``app`` and its ``server``."""

    url: str
    app: Gateway
    server: uvicorn.Server

    @property
    def port(self) -> int:
        """The TCP port it listens on."""
        return int(self.url.rsplit(":", 1)[1])


@contextlib.contextmanager
def run_gateway(
    config: str | os.PathLike[str] | Mapping[str, Any] | SwarmgateConfig | None = None,
    *,
    plugins: Iterable[object] = (),
    settings: ServerSettings | None = None,
    app: Gateway | None = None,
    shutdown_timeout: float | None = None,
) -> Iterator[RunningGateway]:
    """Serve a gateway on ``127.0.0.1`` (an ephemeral port) with uvicorn in
    a background thread, on its own event loop, for the ``with`` block:
    real sockets, the same server as ``serve``. Leaving the block shuts it
    down gracefully (in-flight streams drain) and joins the thread. Raises
    ``RuntimeError`` when it does not start (the cause chained)."""
    gateway = app or create_app(config, plugins=plugins, settings=settings)
    resolved = settings or ServerSettings()
    config_ = uvicorn.Config(
        gateway,
        host="127.0.0.1",
        port=0,
        loop="asyncio",
        http=fastest_http(),
        lifespan="on",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=math.ceil((shutdown_timeout or resolved.shutdown_timeout) / 1000.0),
        server_header=False,
    )
    sock = config_.bind_socket()
    server = uvicorn.Server(config_)
    failure: list[BaseException] = []

    def target() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            failure.append(exc)

    thread = threading.Thread(target=target, name="swarmgate-gateway", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(5)
            sock.close()
            if gateway.startup_error is not None:
                raise gateway.startup_error
            cause = failure[0] if failure else None
            raise RuntimeError("the gateway did not start (see the log above)") from cause
        time.sleep(0.005)
    try:
        yield RunningGateway(f"http://127.0.0.1:{sock.getsockname()[1]}", gateway, server)
    finally:
        server.should_exit = True
        thread.join(START_TIMEOUT)
        sock.close()
