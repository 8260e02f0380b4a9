"""The gateway's ASGI application.

The three completion endpoints (``POST /v1/chat/completions``,
``/v1/completions``, ``/v1/messages``) are the hot path and are served by a
raw ASGI handler: one pass over the request headers, the body read once
(with the size limit checked against ``Content-Length`` before reading and
against the bytes received while reading), one ``orjson.loads``, the
request built directly, the answer encoded once; response header tuples
are built from bytes, and stream chunks are encoded from per-stream
prefixes and sent one by one as the events arrive. Everything else
(``/v1/models``, ``/health``, ``/metrics``, ``/admin/...``,
``/openapi.json``, plugin routes) is a Starlette application.

Streams: the manager's stream is started and the response begins only
when its first event is known (so a failure before the first token is a
plain JSON error with the right status, and the ``x-swarmgate-*`` headers
name who answers). While a stream runs, a second task watches the
connection: when the client goes away the stream is cancelled, which
cancels the upstream call (the kernel records the partial usage as a
cancelled attempt and runs ``request_failed``).

Lifecycle: the ASGI lifespan builds and initializes the
:class:`~swarmgate.ProviderManager` (or uses the one given), reads the
``server`` section, registers the caller directory, mounts the plugins'
routes (``gateway_routes`` hook). On shutdown it refuses new requests
(503), waits for in-flight requests and streams to finish (at most
``server.shutdownTimeout``), then closes the manager it owns.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any, Final, Protocol

import anyio
import anyio.abc
import attrs
import orjson
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount, Route

from swarmgate import (
    CompletionRequest,
    CompletionResponse,
    ErrorEvent,
    FinishEvent,
    PluginError,
    ProviderManager,
    StreamFailover,
    StreamStart,
    SwarmgateConfig,
    SwarmgateError,
    TextDelta,
    ToolCallDelta,
)
from swarmgate.logs import get_logger
from swarmgate_server import anthropic_api, openai_api, steering
from swarmgate_server.admin import AdminAPI, not_found
from swarmgate_server.auth import (
    AUTHENTICATOR_EXTENSION,
    Caller,
    KeyAuthenticator,
    KeyRing,
    authenticate_external,
    credentials,
)
from swarmgate_server.errors import GatewayError, from_swarmgate, internal_error
from swarmgate_server.extension import GATEWAY_EXTENSION, GatewayService
from swarmgate_server.settings import ServerSettings, load_settings

log = get_logger("swarmgate.server")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Path prefixes the gateway owns; a plugin route under one is refused at start-up.
RESERVED_PREFIXES: Final = ("/v1/", "/health", "/metrics", "/openapi.json")
#: Plugin routes under this prefix are served behind the admin key (when
#: their path is not one of the gateway's own admin routes).
ADMIN_PREFIX: Final = "/admin/"
#: Endpoints a plugin provides; without it, they answer 404 naming the
#: distribution to install: path -> (methods, distribution, what it does).
PLUGIN_ENDPOINTS: Final[dict[str, tuple[tuple[str, ...], str, str]]] = {
    "/admin/callers/{caller}/records": (("DELETE",), "swarmgate-compliance", "erasing a caller's records (GDPR)"),
}
#: Seconds a non-streamed request runs before a disconnect watcher is started for it.
WATCH_AFTER: Final = 0.25

_JSON: Final = (b"content-type", b"application/json")
_SSE: Final = (
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
)
_HIT: Final = b"hit"
_MISS: Final = b"miss"


class _ClientGone(Exception):
    """The client disconnected before the request body was read."""


class StreamEncoder(Protocol):
    """What a dialect's stream encoder does (see openai_api, anthropic_api)."""

    def start(self) -> bytes: ...
    def text(self, text: str) -> bytes: ...
    def tool(self, delta: ToolCallDelta) -> bytes: ...
    def finish(self, response: CompletionResponse) -> bytes: ...
    def error(self, error: GatewayError) -> bytes: ...


@attrs.frozen
class Dialect:
    """One API dialect: how a body becomes request fields (``parse`` returns
    fields, ``stream``, ``include_usage``), how answers, streams and errors
    are encoded."""

    name: str
    parse: Callable[[Mapping[str, Any], frozenset[str]], tuple[dict[str, Any], bool, bool]]
    render: Callable[[CompletionResponse, int], bytes]
    encoder: Callable[[StreamStart, int, bool], StreamEncoder]
    error_body: Callable[[GatewayError], bytes]


def _parse_messages(data: Mapping[str, Any], forward: frozenset[str]) -> tuple[dict[str, Any], bool, bool]:
    fields, stream = anthropic_api.message_fields(data)
    return fields, stream, True


CHAT = Dialect(
    "openai", openai_api.chat_fields, openai_api.chat_completion, openai_api.ChatStream, GatewayError.openai_body
)
COMPLETIONS = Dialect(
    "openai",
    openai_api.completion_fields,
    openai_api.text_completion,
    openai_api.CompletionStream,
    GatewayError.openai_body,
)
MESSAGES = Dialect(
    "anthropic", _parse_messages, anthropic_api.message, anthropic_api.MessagesStream, GatewayError.anthropic_body
)

_encoded: dict[str, bytes] = {}


def header_value(text: str) -> bytes:
    """``text`` as a header value (ASCII; other characters escaped), cached:
    provider and model names repeat on every response."""
    value = _encoded.get(text)
    if value is None:
        if len(_encoded) > 4096:
            _encoded.clear()
        value = _encoded[text] = text.encode("ascii", "backslashreplace").replace(b"\r", b"").replace(b"\n", b"")
    return value


def _ascii(text: str) -> bytes:
    """``text`` as a header value without the cache (ids differ every time)."""
    return text.encode("ascii", "backslashreplace").replace(b"\r", b"").replace(b"\n", b"")


def answer_headers(response: CompletionResponse, length: int) -> list[tuple[bytes, bytes]]:
    """The headers of a non-streamed answer: who answered, what it cost."""
    return [
        _JSON,
        (b"content-length", str(length).encode()),
        (b"x-request-id", _ascii(response.id)),
        (b"x-swarmgate-provider", header_value(response.provider)),
        (b"x-swarmgate-model", header_value(response.model)),
        (b"x-swarmgate-cost", f"{response.cost:.10f}".encode()),
        (b"x-swarmgate-latency-ms", f"{response.latency:.3f}".encode()),
        (b"x-swarmgate-attempts", str(len(response.attempts)).encode()),
        (b"x-swarmgate-cache", _HIT if response.cached else _MISS),
    ]


def stream_headers(start: StreamStart, latency_ms: float) -> list[tuple[bytes, bytes]]:
    """The headers of a stream, known at its first event (the cost comes in
    the stream's last chunk)."""
    return [
        *_SSE,
        (b"x-request-id", _ascii(start.id)),
        (b"x-swarmgate-provider", header_value(start.provider)),
        (b"x-swarmgate-model", header_value(start.model)),
        (b"x-swarmgate-latency-ms", f"{latency_ms:.3f}".encode()),
        (b"x-swarmgate-attempts", str(start.attempts).encode()),
        (b"x-swarmgate-cache", _HIT if start.cached else _MISS),
    ]


async def send_error(send: Send, error: GatewayError, body: bytes, *, close: bool = False) -> None:
    """Send ``error`` as a complete JSON response."""
    headers = [_JSON, (b"content-length", str(len(body)).encode()), *error.headers()]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _watch_disconnect(receive: Receive, scope: anyio.CancelScope, finished: list[bool]) -> None:
    """Cancel ``scope`` (a stream being sent) when the client disconnects.
    Once the response is complete, ``receive`` answers ``http.disconnect``
    too (the ASGI spec says so): ``finished[0]`` is then true and this just
    ends. Never raises: it runs in the gateway's shared task group."""
    try:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                if not finished[0]:
                    scope.cancel()
                return
    except Exception as exc:  # noqa: BLE001 - must not take the shared task group down
        log.warning("disconnect_watch_failed", error=f"{type(exc).__name__}: {exc}")


def _initialized(manager: ProviderManager) -> bool:
    try:
        manager.config  # noqa: B018 - raises until initialize() ran
    except RuntimeError:
        return False
    return True


class Gateway:
    """The gateway as an ASGI application (see the module docstring).

    ``config`` is what :class:`~swarmgate.ProviderManager` takes (a path, a
    mapping, ``None`` for the embedded default); ``plugins`` are extra
    plugin objects for it. Or pass a ``manager``: one not initialized yet
    is initialized and, at shutdown, closed by the gateway (on the server's
    event loop); an initialized one is left to its owner to close.
    ``settings`` overrides the config's ``server`` section.
    """

    def __init__(
        self,
        config: str | os.PathLike[str] | Mapping[str, Any] | SwarmgateConfig | None = None,
        *,
        manager: ProviderManager | None = None,
        plugins: Iterable[object] = (),
        settings: ServerSettings | None = None,
    ) -> None:
        self._config_source = config
        self._plugins = tuple(plugins)
        self._manager = manager
        self._owns_manager = manager is None
        self._settings_override = settings
        self.settings = settings or ServerSettings()
        self.keys = KeyRing(self.settings)
        self._authenticator: KeyAuthenticator | None = None
        self._forward: frozenset[str] = frozenset()
        self._body_timeout = 30.0
        #: Requests and streams being served now.
        self.inflight = 0
        #: Wall-clock time the gateway started serving.
        self.started_at = time.time()
        self._closing = False
        self._ready = False
        self._drained: anyio.Event | None = None
        self._tasks: anyio.abc.TaskGroup | None = None
        #: Body reads in progress: their deadline (``time.monotonic()``) and cancel scope.
        self._reads: dict[int, tuple[float, anyio.CancelScope]] = {}
        #: Requests and streams being answered that nobody watches yet (see _housekeeping).
        self._unwatched: dict[int, tuple[Receive, anyio.CancelScope, list[bool]]] = {}
        #: What plugin routes use: ``manager.extensions["gateway"]`` while serving.
        self.service = GatewayService(self)
        #: Why the lifespan start-up failed, if it did.
        self.startup_error: Exception | None = None
        #: Called once the gateway has started (the CLI's ``serve`` tunes the
        #: garbage collector here: :func:`~swarmgate_server.gctune.tune_gc`).
        self.after_start: Callable[[], None] | None = None
        self.admin = AdminAPI(self)
        self.starlette = Starlette(
            routes=self.admin.routes(),
            lifespan=self._lifespan,
            exception_handlers={404: not_found, 405: not_found},
        )
        self._hot: dict[str, Dialect] = {
            "/v1/chat/completions": CHAT,
            "/v1/completions": COMPLETIONS,
            "/v1/messages": MESSAGES,
        }

    # -- lifecycle -----------------------------------------------------------------

    @property
    def manager(self) -> ProviderManager:
        """The manager serving requests (once started)."""
        if self._manager is None:
            raise RuntimeError("the gateway has not started: run it under an ASGI server (its lifespan starts it)")
        return self._manager

    @property
    def ready(self) -> bool:
        """Whether the gateway is serving (started, not shutting down)."""
        return self._ready and not self._closing

    @property
    def draining(self) -> bool:
        """Whether the gateway is shutting down: refusing new requests,
        waiting for the in-flight ones."""
        return self._closing

    @property
    def authenticator(self) -> KeyAuthenticator | None:
        """The caller-key store in use (``manager.extensions["caller_keys"]``), if any."""
        return self._authenticator

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Gateway]:
        """Serve for the duration of the block: start (build and initialize
        the manager, read the ``server`` section, register the caller
        directory, mount the plugins' routes), then on leaving refuse new
        requests, drain the in-flight ones (at most ``server.shutdownTimeout``)
        and close the manager it owns. Start and stop run in the calling task
        (plugins with task groups of their own need that). A gateway runs
        once: build another one to serve again."""
        try:
            await self._startup()
        except Exception as exc:
            self.startup_error = exc
            log.error("gateway_start_failed", error=f"{type(exc).__name__}: {exc}")
            raise
        if self.after_start is not None:
            self.after_start()
        try:
            async with anyio.create_task_group() as tasks:
                # Long-lived tasks: each stream's disconnect watcher, the slow-body reaper.
                self._tasks = tasks
                tasks.start_soon(self._housekeeping)
                try:
                    yield self
                finally:
                    with anyio.CancelScope(shield=True):
                        await self._drain()
                    tasks.cancel_scope.cancel()
        finally:
            self._tasks = None
            if self._manager is not None and self._manager.extensions.get(GATEWAY_EXTENSION) is self.service:
                del self._manager.extensions[GATEWAY_EXTENSION]
            if self._manager is not None and self._owns_manager:
                # Not inside a shielding scope: plugins leave task groups of their
                # own here (entered in initialize), which must nest as entered.
                await self._manager.aclose()

    async def _startup(self) -> None:
        if self._manager is None:
            self._manager = ProviderManager(self._config_source, plugins=self._plugins)
        manager = self._manager
        if not self._owns_manager and not _initialized(manager):
            self._owns_manager = True  # initialized on this loop: closed on it too
        try:
            await manager.initialize()
            self.configure(self._settings_override or load_settings(manager.config.section("server")))
            manager.add_caller_directory(self.keys)
            manager.extensions[GATEWAY_EXTENSION] = self.service
            self._mount_plugin_routes(manager.plugins.gateway_routes(manager))
            self._mount_plugin_placeholders()
        except BaseException:
            if manager.extensions.get(GATEWAY_EXTENSION) is self.service:
                del manager.extensions[GATEWAY_EXTENSION]
            if self._owns_manager:
                await manager.aclose()
            raise
        self.started_at = time.time()
        self._closing = False
        self._ready = True
        log.info("gateway_started", providers=manager.providers(), keys=self.keys.has_keys)

    def configure(self, settings: ServerSettings) -> None:
        """Use ``settings`` from now on (start-up and config reload)."""
        self.settings = settings
        self.keys.update(settings)
        self._forward = frozenset(settings.forward_fields)
        self._body_timeout = settings.body_timeout / 1000.0
        found = self._manager.extensions.get(AUTHENTICATOR_EXTENSION) if self._manager is not None else None
        self._authenticator = found if isinstance(found, KeyAuthenticator) else None

    def _mount_plugin_routes(self, routes: list[Any]) -> None:
        for route in routes:
            if not isinstance(route, BaseRoute):
                raise PluginError(
                    f"gateway_routes returned {route!r}, not a Starlette route or mount",
                    namespace="swarmgate",
                    name="gateway_routes",
                )
            path = getattr(route, "path", "")
            taken = {getattr(r, "path", None) for r in self.starlette.router.routes}
            if (
                path in taken
                or path.rstrip("/") == "/admin"
                or any(path == p.rstrip("/") or path.startswith(p) for p in RESERVED_PREFIXES)
            ):
                raise PluginError(
                    f"a plugin route {path!r} collides with the gateway's own paths "
                    f"({', '.join(RESERVED_PREFIXES)}, and the admin API's routes)",
                    namespace="swarmgate",
                    name="gateway_routes",
                )
            if path.startswith(ADMIN_PREFIX) and isinstance(route, Route | Mount):
                route.app = self.admin.admin_only(route.app)
            self.starlette.router.routes.append(route)

    def _mount_plugin_placeholders(self) -> None:
        """Answer the well-known plugin endpoints no plugin provided with a
        clear 404 naming the distribution to install (behind the admin key)."""
        taken = {getattr(r, "path", None) for r in self.starlette.router.routes}
        for path, (methods, distribution, what) in PLUGIN_ENDPOINTS.items():
            if path not in taken:
                self.starlette.router.routes.append(
                    Route(path, self.admin.plugin_missing(distribution, what), methods=list(methods))
                )

    async def _drain(self) -> None:
        """Refuse new requests; wait (bounded) for the in-flight ones."""
        self._drained = anyio.Event()
        self._closing = True
        if self.inflight:
            with anyio.move_on_after(self.settings.shutdown_timeout / 1000.0):
                await self._drained.wait()
        if self.inflight:
            log.warning("gateway_shutdown_timeout", inflight=self.inflight)

    async def _housekeeping(self) -> None:
        """One task for all requests, every :data:`WATCH_AFTER` seconds (or a
        quarter of ``server.bodyTimeout`` when that is shorter):

        * cancel body reads past ``server.bodyTimeout`` (they answer 408): a
          read costs a plain cancel scope and a dict entry instead of a
          timer of its own;
        * start a disconnect watcher for each request or stream still
          being answered since the last round: a request that ends sooner
          never pays for a task of its own (~20 µs with anyio), and one its
          client abandons is cancelled within one or two rounds (an LLM
          answer takes seconds; the upstream call is what cancelling saves).
        """
        while True:
            await anyio.sleep(min(WATCH_AFTER, self._body_timeout / 4))
            if self._reads:
                now = time.monotonic()
                for deadline, scope in list(self._reads.values()):
                    if now >= deadline:
                        scope.cancel()
            if self._unwatched and self._tasks is not None:
                waiting, self._unwatched = self._unwatched, {}
                for receive, scope, finished in waiting.values():
                    self._tasks.start_soon(_watch_disconnect, receive, scope, finished)

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        async with self.running():
            yield

    # -- ASGI ----------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            dialect = self._hot.get(scope["path"])
            if dialect is not None:
                await self._completion(scope, receive, send, dialect)
                return
        await self.starlette(scope, receive, send)

    # -- auth ----------------------------------------------------------------------

    async def authenticate(self, authorization: bytes | None, api_key: bytes | None) -> Caller | None:
        """The caller presenting these headers; ``None`` when no key is
        needed and none was given. Raises a 401 :class:`GatewayError`."""
        keys = self.keys
        authenticator = self._authenticator
        key = credentials(authorization, api_key)
        if key is None:
            if keys.has_keys or authenticator is not None:
                raise GatewayError(
                    401,
                    "missing API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'",
                    code="missing_api_key",
                )
            return None
        caller = keys.identify(key)
        if caller is not None:
            return caller
        if authenticator is not None:
            name = await authenticate_external(authenticator, key)
            if name is not None:
                policy = self.manager.caller_policy(name)
                return Caller(name, False, keys.model_filter(policy.allowed_models))
        if not keys.has_keys and authenticator is None:
            return None  # no keys configured: a key is not needed, and any is accepted
        raise GatewayError(401, "invalid API key", code="invalid_api_key")

    # -- the hot path ----------------------------------------------------------------

    async def _read_body(self, receive: Receive, length: bytes | None, scope: anyio.CancelScope) -> bytes:
        """The request body. While it is read, ``scope`` (the request's cancel
        scope, entered by the caller) is registered for :meth:`_housekeeping`,
        which cancels it past ``server.bodyTimeout``; the caller answers 408
        when it finds the scope cancelled with :attr:`_reading` still set."""
        limit = self.settings.max_body_size
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                raise GatewayError(400, "invalid Content-Length header", code="invalid_header") from None
            if declared > limit:
                raise GatewayError(
                    413,
                    f"request body of {declared} bytes exceeds the limit of {limit} bytes",
                    code="request_too_large",
                )
        chunks: list[bytes] = []
        size = 0
        token = id(scope)
        self._reads[token] = (time.monotonic() + self._body_timeout, scope)
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise _ClientGone
                chunk = message.get("body", b"")
                if chunk:
                    size += len(chunk)
                    if size > limit:
                        raise GatewayError(
                            413, f"request body exceeds the limit of {limit} bytes", code="request_too_large"
                        )
                    chunks.append(chunk)
                if not message.get("more_body", False):
                    break
        finally:
            del self._reads[token]
        if len(chunks) == 1:
            return chunks[0]
        return b"".join(chunks)

    async def _completion(self, scope: Scope, receive: Receive, send: Send, dialect: Dialect) -> None:
        started = time.perf_counter()
        if not self._ready or self._closing:
            error = GatewayError(503, "the gateway is not serving (starting or shutting down)", code="unavailable")
            await send_error(send, error, dialect.error_body(error), close=True)
            return
        self.inflight += 1
        # One cancel scope per request (anyio's cost ~4 µs each): the body-read
        # timeout cancels it while the body is read, the disconnect watcher
        # while the answer is made and sent.
        cancel = anyio.CancelScope()
        reading = True
        try:
            with cancel:
                try:
                    request, stream, include_usage = await self._request(scope, receive, dialect, cancel)
                except GatewayError as refused:
                    await send_error(send, refused, dialect.error_body(refused), close=refused.status in (408, 413))
                    return
                except _ClientGone:
                    return
                reading = False
                if stream:
                    await self._stream(request, receive, send, dialect, include_usage, started, cancel)
                else:
                    await self._complete(request, receive, send, dialect, started, cancel)
            if cancel.cancelled_caught and reading:
                late = GatewayError(
                    408, f"the request body was not received within {self._body_timeout:g} s", code="request_timeout"
                )
                await send_error(send, late, dialect.error_body(late), close=True)
        finally:
            self.inflight -= 1
            if self._closing and not self.inflight and self._drained is not None:
                self._drained.set()

    async def _request(
        self, scope: Scope, receive: Receive, dialect: Dialect, cancel: anyio.CancelScope
    ) -> tuple[CompletionRequest, bool, bool]:
        authorization = api_key = length = None
        steer: list[tuple[bytes, bytes]] | None = None
        headers = steering.HEADERS
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"x-api-key":
                api_key = value
            elif name == b"content-length":
                length = value
            elif name in headers:
                if steer is None:
                    steer = []
                steer.append((name, value))
        caller = await self.authenticate(authorization, api_key)
        body = await self._read_body(receive, length, cancel)
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise GatewayError(400, f"the request body is not valid JSON: {exc}", code="invalid_json") from None
        if not isinstance(data, dict):
            raise GatewayError(400, "the request body must be a JSON object", code="invalid_json")
        fields, stream, include_usage = dialect.parse(data, self._forward)
        body_steering = data.get("swarmgate")
        if body_steering is not None or steer is not None:
            steering.apply(fields, body_steering, steer)
        if caller is not None:
            fields["caller"] = caller.name
            models = caller.models
            if models is not None and not models.allows(fields["model"], fields.get("provider")):
                raise GatewayError(
                    403,
                    f"this API key may not use model {fields['model']!r} (allowed: {list(models.patterns)})",
                    code="model_not_allowed",
                    param="model",
                )
        client = scope.get("client")
        if client:
            # Where the request came from, for the audit log; the gateway's value wins.
            metadata = fields.get("metadata")
            fields["metadata"] = {**metadata, "client": client[0]} if metadata else {"client": client[0]}
        return CompletionRequest(**fields), stream, include_usage

    def _error_for(self, error: SwarmgateError, request: CompletionRequest, started: float) -> GatewayError:
        timeouts = request.timeouts
        return from_swarmgate(
            error,
            caller_timeout_ms=timeouts.total if timeouts is not None else None,
            elapsed_ms=(time.perf_counter() - started) * 1000.0,
        )

    async def _complete(
        self,
        request: CompletionRequest,
        receive: Receive,
        send: Send,
        dialect: Dialect,
        started: float,
        cancel: anyio.CancelScope,
    ) -> None:
        """Answer a non-streamed request, inside the request's cancel scope
        ``cancel``. While it runs it is registered for a disconnect watcher
        (started by :meth:`_housekeeping` if it is still running at the next
        round): a client that goes away cancels it, the upstream call
        included, and the kernel records it as cancelled (499)."""
        finished = [False]
        token = id(cancel)
        self._unwatched[token] = (receive, cancel, finished)
        try:
            response = await self.manager.complete(request)
        except SwarmgateError as exc:
            finished[0] = True
            error = self._error_for(exc, request, started)
            await send_error(send, error, dialect.error_body(error))
            return
        except Exception as exc:
            finished[0] = True
            log.exception("request_crashed", error=f"{type(exc).__name__}: {exc}")
            error = internal_error(exc)
            await send_error(send, error, dialect.error_body(error))
            return
        finally:
            finished[0] = True
            self._unwatched.pop(token, None)
        body = dialect.render(response, int(time.time()))
        await send({"type": "http.response.start", "status": 200, "headers": answer_headers(response, len(body))})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    async def _stream(
        self,
        request: CompletionRequest,
        receive: Receive,
        send: Send,
        dialect: Dialect,
        include_usage: bool,
        started: float,
        cancel: anyio.CancelScope,
    ) -> None:
        """Send a streamed answer, inside the request's cancel scope ``cancel``
        (watched for a disconnect like a non-streamed request, see
        :meth:`_housekeeping`: a stream over within a round never pays for a
        watcher task of its own)."""
        events = self.manager.stream(request, errors="event")
        finished = [False]
        token = id(cancel)
        self._unwatched[token] = (receive, cancel, finished)
        try:
            await self._pump(events, request, send, dialect, include_usage, started, finished)
        except Exception as exc:
            log.exception("stream_crashed", error=f"{type(exc).__name__}: {exc}")
        finally:
            finished[0] = True
            self._unwatched.pop(token, None)
            if getattr(events, "ag_frame", True) is not None:  # not run to its end: close it, come what may
                with anyio.CancelScope(shield=True):
                    await events.aclose()

    async def _pump(
        self,
        events: Any,
        request: CompletionRequest,
        send: Send,
        dialect: Dialect,
        include_usage: bool,
        started: float,
        finished: list[bool],
    ) -> None:
        """Send the stream: headers at its first event, then one chunk per
        event; ``finished[0]`` turns true just before the last send."""
        try:
            first = await events.__anext__()
        except StopAsyncIteration:
            first = None
        if not isinstance(first, StreamStart):
            if isinstance(first, ErrorEvent) and isinstance(first.error, SwarmgateError):
                error = self._error_for(first.error, request, started)
            else:
                error = GatewayError(502, "the stream ended before it started", code="upstream_error")
            finished[0] = True
            await send_error(send, error, dialect.error_body(error))
            return
        encoder = dialect.encoder(first, int(time.time()), include_usage)
        headers = stream_headers(first, (time.perf_counter() - started) * 1000.0)
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        pending = encoder.start()
        async for event in events:
            final = False
            kind = type(event)
            if kind is TextDelta:
                data = encoder.text(event.text)
            elif kind is ToolCallDelta:
                data = encoder.tool(event)
            elif kind is FinishEvent:
                final = True
                response = event.response
                data = encoder.finish(response) if response is not None else b""
            elif kind is ErrorEvent:
                final = True
                failure = event.error
                error = (
                    self._error_for(failure, request, started)
                    if isinstance(failure, SwarmgateError)
                    else internal_error(failure)
                )
                data = encoder.error(error)
            elif kind is StreamFailover and event.mode == "restart":
                # The text already sent cannot be taken back: end with the error
                # rather than let a fresh answer follow a partial one.
                final = True
                cause = event.error
                message = f"the stream broke and could only be restarted elsewhere: {cause}"
                data = encoder.error(GatewayError(502, message, code="stream_interrupted"))
            else:  # usage (the cost arrives with the finish), a continuation
                continue
            if pending:
                data = pending + data
                pending = b""
            if final:
                finished[0] = True
                await send({"type": "http.response.body", "body": data, "more_body": False})
                # The stream ends right after its last event: running it to its
                # end unwinds the kernel's generators without a GeneratorExit
                # thrown through them (cheaper than closing it early).
                async for _ in events:
                    pass
                return
            await send({"type": "http.response.body", "body": data, "more_body": True})
        error = GatewayError(502, "the stream ended without finishing", code="upstream_error")
        finished[0] = True
        await send({"type": "http.response.body", "body": pending + encoder.error(error), "more_body": False})


def create_app(
    config: str | os.PathLike[str] | Mapping[str, Any] | SwarmgateConfig | None = None,
    *,
    manager: ProviderManager | None = None,
    plugins: Iterable[object] = (),
    settings: ServerSettings | None = None,
) -> Gateway:
    """The gateway's ASGI application (see :class:`Gateway`)."""
    return Gateway(config, manager=manager, plugins=plugins, settings=settings)


def app_from_env() -> Gateway:
    """An app factory for ``uvicorn --factory`` and multi-worker ``serve``:
    the config file from ``$SWARMGATE_CONFIG`` (else the embedded default)."""
    from swarmgate_server.gctune import tune_gc

    gateway = create_app(os.environ.get("SWARMGATE_CONFIG") or None)
    gateway.after_start = tune_gc  # a worker process of its own
    return gateway
