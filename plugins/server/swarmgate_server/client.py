"""Talking to a running gateway's admin API, for CLI commands (``--url``).

Any plugin's command that can work against a live gateway reuses this::

    from swarmgate_server.client import admin_options, admin_request

    @click.command("stats")
    @admin_options
    def stats(url: str | None, admin_key: str | None) -> None:
        data = admin_request("GET", "/admin/cache/stats", url=url, admin_key=admin_key)

The URL comes from ``--url`` or ``$SWARMGATE_URL``, the admin key from
``--admin-key`` or ``$SWARMGATE_ADMIN_KEY``. Every failure (unreachable,
an error answer) is an :class:`AdminAPIError`, a
:class:`~swarmgate.SwarmgateError` that the CLI prints as one line with
exit status 2.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

import click
import httpx
import orjson

from swarmgate import SwarmgateError

URL_ENV: Final = "SWARMGATE_URL"
ADMIN_KEY_ENV: Final = "SWARMGATE_ADMIN_KEY"
#: Seconds an admin call may take.
DEFAULT_TIMEOUT: Final = 30.0

F = TypeVar("F", bound=Callable[..., Any])


class AdminAPIError(SwarmgateError):
    """An admin API call failed: unreachable gateway (``status`` ``None``)
    or an error answer (its HTTP ``status`` and ``code``)."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def admin_options(func: F) -> F:
    """Add ``--url`` (``$SWARMGATE_URL``) and ``--admin-key``
    (``$SWARMGATE_ADMIN_KEY``) to a click command, passed as ``url`` and
    ``admin_key``."""
    func = click.option(
        "--admin-key",
        "admin_key",
        envvar=ADMIN_KEY_ENV,
        help=f"The gateway's admin key (default: ${ADMIN_KEY_ENV}).",
    )(func)
    func = click.option(
        "--url",
        "url",
        envvar=URL_ENV,
        help=f"Talk to the gateway running at this URL (default: ${URL_ENV}).",
    )(func)
    return func


def _resolve(url: str | None, admin_key: str | None) -> tuple[str, dict[str, str]]:
    base = url or os.environ.get(URL_ENV)
    if not base:
        raise AdminAPIError(f"no gateway URL: pass --url or set ${URL_ENV}")
    key = admin_key if admin_key is not None else os.environ.get(ADMIN_KEY_ENV)
    headers = {"accept": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    return base.rstrip("/"), headers


def _answer(method: str, path: str, response: httpx.Response) -> Any:
    content_type = response.headers.get("content-type", "")
    data: Any = None
    if content_type.startswith("application/json") and response.content:
        try:
            data = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            data = None
    if response.status_code >= 400:
        error = data.get("error") if isinstance(data, dict) else None
        message = error.get("message") if isinstance(error, dict) else response.text[:300]
        code = error.get("code") if isinstance(error, dict) else None
        raise AdminAPIError(
            f"{method} {path}: HTTP {response.status_code}: {message}", status=response.status_code, code=code
        )
    if data is not None or content_type.startswith("application/json"):
        return data
    return response.text


def _reason(exc: httpx.HTTPError, request_timeout: float) -> str:
    """Why a call did not get an answer, in a few words ("connection
    refused", "no answer within 30 s", "name or service not known")."""
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer within {request_timeout:g} s"
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror[0].lower() + cause.strerror[1:]
        cause = cause.__cause__ or cause.__context__
    text = str(exc)
    if "connection refused" in text.lower():
        return "connection refused"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def admin_request(
    method: str,
    path: str,
    *,
    url: str | None = None,
    admin_key: str | None = None,
    json: Any = None,
    params: Mapping[str, Any] | None = None,
    request_timeout: float = DEFAULT_TIMEOUT,
) -> Any:
    """Call the admin API: ``method path`` on the gateway at ``url`` with
    the admin key; returns the decoded JSON (or the text of a non-JSON
    answer). Raises :class:`AdminAPIError`."""
    base, headers = _resolve(url, admin_key)
    content = orjson.dumps(json) if json is not None else None
    if content is not None:
        headers["content-type"] = "application/json"
    query = {k: v for k, v in (params or {}).items() if v is not None}
    try:
        with httpx.Client(timeout=request_timeout) as client:
            response = client.request(method, base + path, content=content, headers=headers, params=query)
    except httpx.HTTPError as exc:
        raise AdminAPIError(f"cannot reach the gateway at {base}: {_reason(exc, request_timeout)}") from None
    return _answer(method, path, response)


async def aadmin_request(
    method: str,
    path: str,
    *,
    url: str | None = None,
    admin_key: str | None = None,
    json: Any = None,
    params: Mapping[str, Any] | None = None,
    request_timeout: float = DEFAULT_TIMEOUT,
) -> Any:
    """:func:`admin_request`, async."""
    base, headers = _resolve(url, admin_key)
    content = orjson.dumps(json) if json is not None else None
    if content is not None:
        headers["content-type"] = "application/json"
    query = {k: v for k, v in (params or {}).items() if v is not None}
    try:
        async with httpx.AsyncClient(timeout=request_timeout) as client:
            response = await client.request(method, base + path, content=content, headers=headers, params=query)
    except httpx.HTTPError as exc:
        raise AdminAPIError(f"cannot reach the gateway at {base}: {_reason(exc, request_timeout)}") from None
    return _answer(method, path, response)
