"""Shared HTTP plumbing for provider plugins that speak HTTP through httpx.

One pooled ``httpx.AsyncClient`` per provider (:func:`make_client`), the
mapping of transport failures to the error taxonomy
(:func:`transport_error`), ``Retry-After`` parsing, and a small SSE reader
(:func:`aiter_sse`): SSE framing is a dozen lines, and hand-writing it keeps
one dependency off the hot path of every streamed token.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping

import attrs
import httpx

from swarmgate.config import ProviderConfig
from swarmgate.errors import (
    ProviderConnectionError,
    ProviderTimeoutError,
    ServerError,
    SwarmgateError,
)


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
