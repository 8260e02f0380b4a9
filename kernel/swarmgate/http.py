"""Shared HTTP plumbing for provider plugins that speak HTTP through httpx.

One pooled ``httpx.AsyncClient`` per provider (:func:`make_client`), the
mapping of transport failures to the error taxonomy
(:func:`transport_error`), ``Retry-After`` parsing, a small SSE reader
(:func:`aiter_sse`): SSE framing is a dozen lines, and hand-writing it keeps
one dependency off the hot path of every streamed token; and
:class:`HTTPProvider`, the scaffolding that httpx-based drivers share.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from typing import Any

import attrs
import httpx

from swarmgate.config import ProviderConfig
from swarmgate.errors import (
    InvalidRequestError,
    ProviderConnectionError,
    ProviderTimeoutError,
    ServerError,
    SwarmgateError,
    error_for_status,
)
from swarmgate.logs import scrub_secrets
from swarmgate.provider import Provider, ProviderCall


def _json_codec() -> tuple[Callable[[bytes | str], Any], Callable[[Any], bytes]]:
    """orjson when installed (several times faster on streamed chunks), else
    the standard library with the same compact output."""
    try:
        import orjson
    except ImportError:  # pragma: no cover - orjson is installed in development

        def encode(value: Any) -> bytes:
            return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()

        return json.loads, encode
    return orjson.loads, orjson.dumps


#: ``loads(bytes | str) -> Any`` and ``dumps(value) -> bytes`` (compact UTF-8
#: JSON): orjson when installed. Invalid JSON raises ``ValueError``; a value
#: JSON cannot express raises ``TypeError``.
loads, dumps = _json_codec()


def make_client(
    config: ProviderConfig,
    *,
    base_url: str,
    headers: Mapping[str, str] | None = None,
    max_connections: int = 100,
) -> httpx.AsyncClient:
    """A pooled client for one provider: ``base_url``, default headers (the
    config's ``headers`` override ``headers``, case-insensitively), the
    config's timeout and ``proxy`` (SOCKS needs ``httpx[socks]``)."""
    timeout = config.timeout / 1000.0
    merged = httpx.Headers(headers or {})
    merged.update(config.headers)  # case-insensitive: the config's "user-agent" replaces "User-Agent"
    return httpx.AsyncClient(
        proxy=config.proxy,
        base_url=base_url.rstrip("/"),
        headers=merged,
        timeout=httpx.Timeout(timeout, connect=connect_timeout(config)),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
    )


def connect_timeout(config: ProviderConfig) -> float:
    """Seconds allowed to open a connection: ``timeouts.connect``, else
    ``min(timeout, 10 s)``."""
    if config.timeouts.connect is not None:
        return config.timeouts.connect / 1000.0
    return min(config.timeout / 1000.0, 10.0)


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def transport_error(exc: httpx.HTTPError, *, provider: str, model: str | None = None) -> SwarmgateError:
    """The taxonomy error for an httpx transport failure (no HTTP status)."""
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, httpx.ProxyError):
        return ProviderConnectionError(
            f"the proxy refused or failed the request ({detail})", provider=provider, model=model
        )
    if isinstance(exc, httpx.TimeoutException):
        return ProviderTimeoutError(f"upstream timed out ({detail})", provider=provider, model=model)
    if isinstance(
        exc, httpx.ConnectError | httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError | httpx.NetworkError
    ):
        return ProviderConnectionError(f"connection to upstream failed ({detail})", provider=provider, model=model)
    return ServerError(f"upstream request failed ({detail})", provider=provider, model=model)


@attrs.frozen
class SSEEvent:
    """One server-sent event: ``event`` name (``message`` by default), ``data``,
    and the comment lines (``:...``, without the colon) that came with it:
    some providers put metadata there (DashScope: ``HTTP_STATUS/429``)."""

    event: str
    data: str
    comments: tuple[str, ...] = ()


async def aiter_sse(response: httpx.Response) -> AsyncGenerator[SSEEvent, None]:
    """The events of a ``text/event-stream`` response, per the SSE spec
    (multi-line ``data`` joined with newlines, comments skipped). Closing
    this generator closes httpx's line iterator at once."""
    lines = response.aiter_lines()
    try:
        async for event in _sse_events(lines):
            yield event
    finally:
        await lines.aclose()  # type: ignore[attr-defined]


async def _sse_events(lines: AsyncIterator[str]) -> AsyncGenerator[SSEEvent, None]:
    event = ""
    data: list[str] = []
    comments: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield SSEEvent(event or "message", "\n".join(data), tuple(comments))
            event, data, comments = "", [], []
            continue
        if line.startswith(":"):
            comments.append(line[1:])
            continue
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            data.append(value)
        elif field == "event":
            event = value
    if data:
        yield SSEEvent(event or "message", "\n".join(data), tuple(comments))


#: Headers of a JSON request expecting a JSON answer.
JSON_HEADERS = {"content-type": "application/json", "accept": "application/json"}


class HTTPProvider(Provider):
    """Base class of drivers that speak HTTP through one pooled httpx client.

    It holds the client (``_client``, an instance attribute: the ``proxy``
    plugin finds httpx clients among a driver's attributes), opened by
    :meth:`start` with :meth:`build_client` and closed by :meth:`aclose`, and
    the helpers every such driver needs: per-request timeouts that honour
    ``timeouts.connect`` (:meth:`request_timeout`, :meth:`probe_timeout`),
    JSON encoding and decoding with the right errors (:meth:`encode_json`,
    :meth:`_decode`), and API-key scrubbing (:meth:`_scrub`,
    :meth:`_transport_error`). The wire format stays in the subclass, which
    sets :attr:`endpoint` (default: the config's ``endpoint``) and usually
    :meth:`default_headers`, and may replace the static methods
    :meth:`json_loads` and :meth:`json_dumps` (with orjson's, say).
    """

    def __init__(self, name: str, config: ProviderConfig, settings: Any = None) -> None:
        super().__init__(name, config, settings)
        #: The API base URL (no trailing slash); subclasses set their own default.
        self.endpoint = (config.endpoint or "").rstrip("/")
        self._client: httpx.AsyncClient | None = None

    # -- lifecycle -------------------------------------------------------------------

    def default_headers(self) -> dict[str, str]:
        """Headers sent with every request; the config's ``headers`` are laid
        over them by :func:`make_client`. None by default."""
        return {}

    def build_client(self) -> httpx.AsyncClient:
        """The pooled client (:func:`make_client` at :attr:`endpoint` with
        :meth:`default_headers`); a subclass may override this to use
        another transport (tests)."""
        return make_client(self.config, base_url=self.endpoint, headers=self.default_headers())

    async def start(self) -> None:
        """Open the connection pool."""
        if self._client is None:
            self._client = self.build_client()

    async def aclose(self) -> None:
        """Close the connection pool."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    @property
    def client(self) -> httpx.AsyncClient:
        """The pooled client; only between :meth:`start` and :meth:`aclose`."""
        if self._client is None:
            raise RuntimeError(f"provider {self.name!r} is not started (await provider.start() first)")
        return self._client

    # -- requests --------------------------------------------------------------------

    def request_timeout(self, call: ProviderCall) -> httpx.Timeout:
        """The timeout of one request for ``call``: ``call.timeout``, and
        the configured connect timeout (:func:`connect_timeout`)."""
        return httpx.Timeout(call.timeout, connect=connect_timeout(self.config))

    def probe_timeout(self) -> httpx.Timeout:
        """The timeout of a health probe: the provider's ``timeout``, and the
        configured connect timeout (:func:`connect_timeout`)."""
        return httpx.Timeout(self.config.timeout / 1000.0, connect=connect_timeout(self.config))

    @staticmethod
    def json_dumps(value: Any) -> bytes:
        """``value`` as compact UTF-8 JSON (:data:`dumps`)."""
        return dumps(value)

    @staticmethod
    def json_loads(data: bytes | str) -> Any:
        """Parsed JSON (:data:`loads`); raises ``ValueError`` for invalid JSON."""
        return loads(data)

    def status_error(self, status: int, headers: Mapping[str, str], body: bytes, model: str | None) -> SwarmgateError:
        """The taxonomy error for a non-2xx answer. This default maps the
        status alone; drivers read their provider's error body."""
        text = self._scrub(body.decode("utf-8", "replace").strip()[:300])
        return error_for_status(
            status, text or f"HTTP {status}", provider=self.name, model=model, retry_after=parse_retry_after(headers)
        )

    async def post_json(self, path: str, content: bytes, call: ProviderCall) -> Any:
        """``POST`` ``content`` (JSON) to ``path`` for ``call`` and return the
        parsed answer; transport failures, non-2xx statuses (through
        :meth:`status_error`) and invalid JSON raise taxonomy errors."""
        try:
            response = await self.client.post(
                path, content=content, headers=JSON_HEADERS, timeout=self.request_timeout(call)
            )
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, call.model) from exc
        if not response.is_success:
            raise self.status_error(response.status_code, response.headers, response.content, call.model)
        return self._decode(response.content, call.model, "answer")

    def encode_json(self, body: Any, model: str | None) -> bytes:
        """``body`` encoded with :meth:`json_dumps`; a body that JSON cannot
        express raises :class:`InvalidRequestError` naming the problem."""
        try:
            return self.json_dumps(body)
        except (TypeError, ValueError) as exc:
            raise InvalidRequestError(
                f"the request cannot be encoded as JSON ({type(exc).__name__}: {exc})",
                provider=self.name,
                model=model,
            ) from exc

    def _decode(self, data: bytes | str, model: str | None, what: str) -> Any:
        """``data`` parsed with :meth:`json_loads`; invalid JSON raises
        :class:`ServerError` quoting its start (``what``: "answer", ...)."""
        try:
            return self.json_loads(data)
        except ValueError as exc:
            text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
            snippet = self._scrub(text.strip()[:80])
            raise ServerError(
                f"upstream {what} is not valid JSON: {snippet!r}", provider=self.name, model=model
            ) from exc

    # -- errors ----------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        """``text`` without API keys (upstreams echo bad keys back): this
        instance's key becomes ``***``, and every other registered secret
        (the provider's other keys, rotated-out keys, proxy passwords)
        its fingerprint."""
        key = self.config.api_key
        if key and key in text:
            text = text.replace(key, "***")
        return scrub_secrets(text)

    def _transport_error(self, exc: httpx.HTTPError, model: str | None) -> SwarmgateError:
        """:func:`transport_error` for this provider, without the API key."""
        error = transport_error(exc, provider=self.name, model=model)
        scrubbed = self._scrub(error.message)
        return error if scrubbed == error.message else type(error)(scrubbed, provider=self.name, model=model)
