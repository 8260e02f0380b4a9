"""The ``proxy`` provider type: another provider type, through a proxy or a gateway.

A ``proxy`` provider wraps an *inner* driver -- any installed provider type,
built through the kernel's registry -- and sends its HTTP traffic through an
HTTP(S) or SOCKS5 proxy (``via``), or points it at another OpenAI-compatible
gateway (``gateway``: LiteLLM, Portkey, another swarmgate). The provider's
own ``endpoint``, ``apiKey``, ``models``, ``headers`` and ``timeout`` apply
to the inner driver; ``target`` holds the inner type and that type's own
settings::

    "corp-openai": {
      "type": "proxy",
      "via": "http://alice:${PROXY_PASSWORD}@proxy.corp.example:3128",
      "target": {"type": "openai", "organization": "org-123"},
      "apiKey": "${OPENAI_API_KEY}",
      "models": {"gpt-4o-mini": {}}
    },
    "litellm": {
      "type": "proxy",
      "endpoint": "http://litellm.internal:4000/v1",
      "apiKey": "${LITELLM_KEY}",
      "gateway": {"modelPrefix": "openai/"},
      "models": {"gpt-4o": {}}
    }

Everything else is delegation: ``complete``, ``stream``, ``health_check``,
``start`` and ``aclose`` go to the inner driver, whose errors pass through as
it maps them -- except failures of the proxy itself, which become errors
that name the proxy by ``host:port`` (never its credentials):

* the proxy refuses the credentials (HTTP ``407``, SOCKS5 username/password
  rejected, no acceptable SOCKS5 method) -> :class:`AuthenticationError`;
* the proxy cannot be reached -> :class:`ProviderConnectionError`;
* the proxy cannot reach the upstream (a ``CONNECT`` answered ``502``, a
  SOCKS5 reply other than "succeeded", or -- for ``http://`` targets
  forwarded in absolute form -- a ``5xx`` whose RFC 9209 ``Proxy-Status``
  names an error) -> :class:`ProviderConnectionError`, or
  :class:`ProviderTimeoutError` when the proxy says it timed out.

The ``via`` URL is a secret: it is registered with the log redaction, kept
out of ``repr``, scrubbed from every error message and health detail, and
scrubbed from httpcore's debug log (which prints SOCKS credentials).
"""

from __future__ import annotations

import importlib.util
import logging
import re
import ssl
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import anyio
import attrs
import httpx

from swarmgate import registry
from swarmgate.config import InvalidValue, ProviderConfig, parse_section
from swarmgate.errors import (
    AuthenticationError,
    ConfigError,
    PluginError,
    ProviderConnectionError,
    ProviderTimeoutError,
    SwarmgateError,
)
from swarmgate.logs import get_logger, register_secret
from swarmgate.models import HealthStatus, ProviderEvent, ProviderReply
from swarmgate.provider import Provider, ProviderCall

__all__ = [
    "DEFAULT_PORTS",
    "GatewaySettings",
    "ProxyProvider",
    "ProxySettings",
    "ProxyURL",
    "parse_proxy_url",
    "proxy_failure",
]

log = get_logger("swarmgate.proxy")

DEFAULT_PORTS: dict[str, int] = {"http": 80, "https": 443, "socks5": 1080, "socks5h": 1080}
"""The proxy URL schemes ``via`` accepts, with the port each implies."""

#: The provider type gateway mode drives when ``target`` is not given.
GATEWAY_TYPE = "openai"


# ---------------------------------------------------------------------------
# The proxy URL


@attrs.frozen
class ProxyURL:
    """A parsed ``via`` URL. ``username``/``password`` (percent-decoded) are
    never part of ``repr`` nor of :attr:`address` and :attr:`label`."""

    scheme: str
    host: str
    port: int
    username: str | None = attrs.field(default=None, repr=False)
    password: str | None = attrs.field(default=None, repr=False)

    @property
    def address(self) -> str:
        """``host:port`` (an IPv6 host in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def label(self) -> str:
        """How messages name the proxy: ``HTTP proxy 10.0.0.5:3128``."""
        kind = "SOCKS5" if self.scheme.startswith("socks5") else self.scheme.upper()
        return f"{kind} proxy {self.address}"

    @property
    def is_socks(self) -> bool:
        """A SOCKS5 proxy (``socks5://`` or ``socks5h://``)?"""
        return self.scheme.startswith("socks5")


def parse_proxy_url(text: str) -> ProxyURL:
    """Parse and check a proxy URL: ``scheme://[user:password@]host[:port]``
    with a scheme of :data:`DEFAULT_PORTS`, and nothing after the port but
    an optional ``/``. Raises ``ValueError`` with a reason that never
    contains the URL (it may hold credentials)."""
    try:
        parts = urllib.parse.urlsplit(text.strip())
        port = parts.port
    except ValueError:
        raise ValueError("is not a valid URL (expected scheme://[user:password@]host:port)") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        shown = f"{scheme!r}" if scheme else "none"
        raise ValueError(f"unsupported proxy scheme {shown} (expected http, https, socks5 or socks5h)")
    if not parts.hostname:
        raise ValueError("names no proxy host (expected scheme://[user:password@]host:port)")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("must not have a path, query or fragment (expected scheme://[user:password@]host:port)")
    if scheme.startswith("socks5") and importlib.util.find_spec("socksio") is None:
        raise ValueError("SOCKS proxies need the 'socksio' package: pip install 'httpx[socks]'")
    username = urllib.parse.unquote(parts.username) if parts.username is not None else None
    password = urllib.parse.unquote(parts.password) if parts.password is not None else None
    return ProxyURL(scheme, parts.hostname, port or DEFAULT_PORTS[scheme], username, password)


# ---------------------------------------------------------------------------
# Settings


def _check_via(_instance: Any, _attribute: Any, value: str | None) -> None:
    if value is not None:
        try:
            parse_proxy_url(value)
        except ValueError as exc:
            raise InvalidValue("via", str(exc)) from None


@attrs.frozen
class GatewaySettings:
    """Gateway mode (``gateway``): the inner driver talks to another
    OpenAI-compatible gateway at the provider's ``endpoint``, with its
    ``apiKey`` and ``headers``.

    ``model_map`` (``modelMap``) renames models for the gateway, keyed by
    the model name as requested/configured; models it does not name get
    ``model_prefix`` (``modelPrefix``, e.g. ``"openai/"``) in front of their
    upstream name (the model's ``upstreamName``, else its name), unless
    that name already starts with it.
    """

    model_prefix: str | None = None
    model_map: dict[str, str] = attrs.field(factory=dict)

    def upstream_name(self, model: str, upstream: str) -> str:
        """The name to send the gateway for ``model`` (whose upstream name is ``upstream``)."""
        mapped = self.model_map.get(model)
        if mapped is not None:
            return mapped
        prefix = self.model_prefix
        if prefix and not upstream.startswith(prefix):
            return prefix + upstream
        return upstream


@attrs.frozen
class ProxySettings:
    """The ``proxy`` type's own config keys.

    ``via``: the proxy URL (``http://``, ``https://``, ``socks5://`` or
    ``socks5h://``, credentials allowed as ``user:password@``); a secret,
    never shown. ``target``: the inner provider, ``{"type": ..., <that
    type's settings>}``. ``gateway``: gateway mode (:class:`GatewaySettings`);
    ``target`` then defaults to ``{"type": "openai"}`` and ``via`` is
    optional. Either ``via`` or ``gateway`` is required, and ``target`` is
    required without ``gateway``.
    """

    via: str | None = attrs.field(default=None, repr=False, validator=_check_via)
    target: dict[str, Any] | None = None
    gateway: GatewaySettings | None = None

    def __attrs_post_init__(self) -> None:
        if self.via is None and self.gateway is None:
            raise InvalidValue(
                "via", "required: the proxy URL (or set 'gateway' to go through an OpenAI-compatible gateway)"
            )
        if self.target is None:
            if self.gateway is None:
                raise InvalidValue("target", 'required: the inner provider, e.g. {"type": "openai"}')
            return
        inner = self.target.get("type")
        if not isinstance(inner, str) or not inner:
            raise InvalidValue("target.type", 'required: the inner provider type, e.g. "openai"')
        if inner == "proxy":
            raise InvalidValue("target.type", "a proxy provider cannot wrap another proxy provider")

    @property
    def inner_type(self) -> str:
        """The inner provider type (``target.type``, else gateway mode's ``openai``)."""
        return str(self.target["type"]) if self.target is not None else GATEWAY_TYPE

    @property
    def inner_settings(self) -> dict[str, Any]:
        """``target`` without ``type``: the inner type's own settings."""
        return {k: v for k, v in (self.target or {}).items() if k != "type"}


# ---------------------------------------------------------------------------
# Proxy failures


_STATUS_RE = re.compile(r"^\s*(\d{3})\b\s*(.*)$", re.DOTALL)
_PROXY_STATUS_ERROR_RE = re.compile(r"(?:^|;)\s*error\s*=\s*\"?([A-Za-z0-9_.*-]+)", re.IGNORECASE)
_PROXY_ERROR_TEXT_RE = re.compile(r"ProxyError: (.+?)\)?$", re.DOTALL)
_SOCKS_CONNECT_RE = re.compile(r"Proxy Server could not connect: (.+?)\.?$")
_SOCKS_METHOD_RE = re.compile(r"^Requested (.+?) from proxy server, but got (.+?)\.?$")
#: SOCKS5 replies (as httpcore words them) that mean a timeout.
_SOCKS_TIMEOUTS = frozenset({"TTL expired"})


def proxy_failure(response: httpx.Response) -> str | None:
    """Why ``response`` is the proxy's own failure rather than an answer
    relayed from the upstream, or ``None``. A ``407`` always is; a ``5xx``
    is when it carries an RFC 9209 ``Proxy-Status`` with an ``error``
    parameter (``connection_refused``, ``connection_timeout``, ...) or
    Squid's ``X-Squid-Error``. The result reads like httpcore's tunnel
    errors: ``"502 Bad Gateway; proxy error connection_refused"``."""
    status = response.status_code
    reason = response.reason_phrase or ""
    if status == 407:
        return f"407 {reason or 'Proxy Authentication Required'}"
    if status < 500:
        return None
    error: str | None = None
    for value in response.headers.get_list("proxy-status"):
        match = _PROXY_STATUS_ERROR_RE.search(value)
        if match:
            error = match.group(1)
    squid = response.headers.get("x-squid-error")
    if error is None and squid:
        error = squid.split()[0]
    if error is None:
        return None
    return f"{status} {reason}".rstrip() + f"; proxy error {error}"


async def _raise_for_proxy_failure(response: httpx.Response) -> None:
    """httpx response hook: a proxy's own failure on an ``http://`` target
    (forwarded in absolute form, so httpx sees the proxy's answer as if the
    upstream gave it) is raised as ``httpx.ProxyError``, as it is for
    ``CONNECT`` tunnels. httpx closes the response."""
    failure = proxy_failure(response)
    if failure is not None:
        raise httpx.ProxyError(failure, request=response.request)


def _chain(error: BaseException) -> list[BaseException]:
    """``error`` and its causes/contexts, nearest first (no cycles)."""
    seen: list[BaseException] = []
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop(0)
        if any(current is s for s in seen):
            continue
        seen.append(current)
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return seen


def _find(error: BaseException, kind: type[BaseException]) -> BaseException | None:
    return next((e for e in _chain(error) if isinstance(e, kind)), None)


_AUTH_TRACE_RE = re.compile(r"auth=\((?:b'[^']*'|b\"[^\"]*\"), (?:b'[^']*'|b\"[^\"]*\")\)")


class _SecretFilter(logging.Filter):
    """Scrubs proxy credentials from httpcore's debug records: its SOCKS
    trace prints ``auth=(b'user', b'password')`` (replaced whole, whatever
    the password's length), and registered secrets anywhere."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = _scrub_text(_AUTH_TRACE_RE.sub("auth=(***)", message), self.secrets)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True


def _scrub_text(text: str, secrets: set[str]) -> str:
    """``text`` with each of ``secrets`` (longest first) replaced by ``***``."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, "***")
    return text


_LOG_FILTER = _SecretFilter()
#: httpcore loggers whose debug records can show proxy credentials.
_FILTERED_LOGGERS = ("httpcore.socks", "httpcore.proxy", "httpcore.connection", "httpcore.http11")


def _protect(secrets: set[str]) -> None:
    """Register ``secrets`` with the kernel's log redaction and httpcore's filter."""
    for secret in secrets:
        register_secret(secret)
    _LOG_FILTER.secrets |= secrets
    for name in _FILTERED_LOGGERS:
        logger = logging.getLogger(name)
        if _LOG_FILTER not in logger.filters:
            logger.addFilter(_LOG_FILTER)


# ---------------------------------------------------------------------------
# The driver


class ProxyProvider(Provider):
    """A provider type run through a proxy or a gateway (see the module docstring).

    The inner driver is built in ``__init__`` (so configuration problems
    surface when the manager builds the provider, named with paths such as
    ``providers.<name>.target.organization``) and started in :meth:`start`.
    """

    settings_class: ClassVar[type | None] = ProxySettings

    def __init__(self, name: str, config: ProviderConfig, settings: ProxySettings | None = None) -> None:
        path = f"providers.{name}"
        if settings is None:
            settings = parse_section(ProxySettings, config.settings, path)
        super().__init__(name, config, settings)
        self.options: ProxySettings = settings
        #: The parsed ``via`` URL (``None`` in gateway mode without a proxy).
        self.proxy: ProxyURL | None = parse_proxy_url(settings.via) if settings.via is not None else None
        self._secrets = self._collect_secrets(settings.via)
        _protect(self._secrets)
        if config.proxy is not None:
            raise ConfigError([(f"{path}.proxy", "a 'proxy' provider takes its proxy URL from 'via'; remove 'proxy'")])
        if settings.gateway is not None and not config.endpoint:
            raise ConfigError([(f"{path}.endpoint", "gateway mode needs the gateway's API base URL as 'endpoint'")])
        inner_type = settings.inner_type
        where = f"{path}.target.type" if settings.target is not None else f"{path}.gateway"
        cls = self._driver_class(inner_type, where)
        if cls.requires_api_key and not config.api_key:
            raise ConfigError([(f"{path}.apiKey", f"the target provider type {inner_type!r} needs an API key")])
        inner_settings = self._inner_settings(cls, inner_type, settings.inner_settings, f"{path}.target")
        inner_config = attrs.evolve(config, type=inner_type, proxy=settings.via, settings=settings.inner_settings)
        #: The wrapped driver (same provider name, so its errors name this provider).
        self.inner: Provider = cls(name, inner_config, inner_settings)

    @staticmethod
    def _collect_secrets(via: str | None) -> set[str]:
        """What must never be shown: the ``via`` URL, its ``user:password``
        and the password (as written and percent-decoded) when it is at
        least 4 characters long (shorter ones would garble messages; the
        kernel's log redaction has the same bound). The username alone is
        an identifier, not a secret."""
        if via is None:
            return set()
        parts = urllib.parse.urlsplit(via.strip())
        found = {via, via.strip()}
        if parts.password is not None:
            found.add(f"{parts.username or ''}:{parts.password}")
            found |= {parts.password, urllib.parse.unquote(parts.password)}
        return {s for s in found if len(s) >= 4}

    @staticmethod
    def _driver_class(inner_type: str, where: str) -> type[Provider]:
        try:
            cls = registry.load_driver(registry.PROVIDERS, inner_type)
        except PluginError as exc:
            raise PluginError(
                f"{where}: {exc}", namespace=exc.namespace, name=exc.name, distribution=exc.distribution
            ) from None
        if not (isinstance(cls, type) and issubclass(cls, Provider)):
            raise PluginError(
                f"{where}: provider type {inner_type!r} is not a swarmgate Provider subclass ({cls!r})",
                namespace=registry.PROVIDERS,
                name=inner_type,
            )
        return cls

    @staticmethod
    def _inner_settings(cls: type[Provider], inner_type: str, data: dict[str, Any], path: str) -> Any:
        settings_class = cls.settings_class
        if settings_class is None:
            if data:
                raise ConfigError(
                    [(f"{path}.{key}", f"unknown key for provider type {inner_type!r}") for key in sorted(data)]
                )
            return None
        return parse_section(settings_class, data, path)

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Start the inner driver (it opens its pool) and, for HTTP(S)
        proxies, add a response hook to the httpx clients it holds as
        attributes, so that the proxy's own failures on ``http://`` targets
        raise ``ProxyError`` as they do on ``CONNECT``. Logs a warning when
        the inner driver holds no httpx client (its traffic may bypass the
        proxy: a WebSocket driver, say)."""
        self.inner.manager = self.manager
        await self.inner.start()
        if self.proxy is not None:
            clients = [v for v in getattr(self.inner, "__dict__", {}).values() if isinstance(v, httpx.AsyncClient)]
            if not clients:
                # The proxy reaches the inner driver as ProviderConfig.proxy,
                # which only httpx clients made by swarmgate.http.make_client
                # (or drivers that read it themselves) honour.
                log.warning(
                    "proxy_target_without_httpx_client",
                    provider=self.name,
                    target=self.inner.config.type,
                    proxy=self.proxy.label,
                    detail="the target driver holds no httpx client after start(); "
                    "unless it honours the provider's 'proxy' itself, its traffic does not use the proxy",
                )
            for client in clients if not self.proxy.is_socks else ():
                hooks = client.event_hooks
                if _raise_for_proxy_failure not in hooks["response"]:
                    client.event_hooks = {**hooks, "response": [*hooks["response"], _raise_for_proxy_failure]}
        log.debug(
            "proxy_provider_started",
            provider=self.name,
            target=self.inner.config.type,
            proxy=self.proxy.label if self.proxy is not None else None,
            gateway=self.options.gateway is not None,
        )

    async def aclose(self) -> None:
        """Close the inner driver."""
        await self.inner.aclose()

    # -- calls -----------------------------------------------------------------------

    def inner_call(self, call: ProviderCall) -> ProviderCall:
        """``call`` as the inner driver gets it: in gateway mode, with the
        model renamed by :meth:`GatewaySettings.upstream_name`."""
        gateway = self.options.gateway
        if gateway is None:
            return call
        name = gateway.upstream_name(call.model, call.upstream_model)
        return call if name == call.upstream_model else attrs.evolve(call, upstream_model=name)

    async def complete(self, call: ProviderCall) -> ProviderReply:
        """The inner driver's answer; proxy failures translated (see the module docstring)."""
        try:
            return await self.inner.complete(self.inner_call(call))
        except SwarmgateError as exc:
            translated = self.translate(exc, call.model)
            if translated is exc:
                raise
            raise translated from exc

    async def stream(self, call: ProviderCall) -> AsyncIterator[ProviderEvent]:
        """The inner driver's events; closing this stream closes the inner one at once."""
        events = self.inner.stream(self.inner_call(call))
        try:
            async for event in events:
                yield event
        except SwarmgateError as exc:
            translated = self.translate(exc, call.model)
            if translated is exc:
                raise
            raise translated from exc
        finally:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True):
                    await aclose()

    async def health_check(self) -> HealthStatus:
        """The inner driver's probe (through the proxy), its detail scrubbed
        of credentials and, when unhealthy, naming the proxy."""
        status = await self.inner.health_check()
        detail = self._scrub(status.detail)
        if not status.healthy and self.proxy is not None:
            detail = f"{detail} [via {self.proxy.label}]"
        return status if detail == status.detail else attrs.evolve(status, detail=detail)

    def models(self) -> list[str]:
        """The inner driver's models (the configured ones)."""
        return self.inner.models()

    # -- errors ----------------------------------------------------------------------

    def translate(self, error: SwarmgateError, model: str | None) -> SwarmgateError:
        """The error to raise for ``error`` from the inner driver: a proxy
        failure becomes an error naming the proxy (see the module
        docstring); anything else is ``error`` itself, or a copy with the
        proxy credentials scrubbed from its message."""
        proxy = self.proxy
        if proxy is not None:
            common: dict[str, Any] = {"provider": self.name, "model": model}
            failure = _find(error, httpx.ProxyError)
            text = str(failure) if failure is not None else None
            if text is None and error.upstream_status is None:
                # A driver that does not chain the httpx error: recognise it
                # by its text, but only in transport errors (an upstream's
                # own answer may well talk about proxies).
                match = _PROXY_ERROR_TEXT_RE.search(error.message)
                text = match.group(1) if match else None
            if text is not None:
                return self._proxy_error(proxy, self._scrub(text), common)
            if _find(error, httpx.ConnectTimeout) is not None:
                return ProviderTimeoutError(f"{proxy.label} did not accept a connection in time", **common)
            connect = _find(error, httpx.ConnectError)
            # With a proxy, every TCP connection goes to the proxy: a failed
            # one is the proxy's (unless TLS with the upstream failed inside
            # a tunnel, which httpx also reports as ConnectError).
            if (
                isinstance(error, ProviderConnectionError)
                and connect is not None
                and _find(error, ssl.SSLError) is None
            ):
                detail = self._scrub(str(connect) or "connection failed")
                return ProviderConnectionError(f"cannot connect to {proxy.label} ({detail})", **common)
            if error.upstream_status == 407:
                return self._proxy_error(proxy, "407 Proxy Authentication Required", common)
        scrubbed = self._scrub(error.message)
        if scrubbed == error.message:
            return error
        return type(error)(
            scrubbed,
            provider=error.provider,
            model=error.model,
            retry_after=error.retry_after,
            upstream_status=error.upstream_status,
        )

    def _proxy_error(self, proxy: ProxyURL, text: str, common: dict[str, Any]) -> SwarmgateError:
        """A proxy failure described by ``text`` (an httpcore ``ProxyError``
        message, or :func:`proxy_failure`'s) as a taxonomy error."""
        text = text.strip()
        refused = "refused the proxy credentials" if proxy.username is not None else "requires proxy credentials"
        status = _STATUS_RE.match(text)
        if status is not None:
            code = int(status.group(1))
            if code == 407:
                return AuthenticationError(f"{proxy.label} {refused} (HTTP {text})", **common)
            if code == 504 or "timeout" in text:
                return ProviderTimeoutError(f"{proxy.label} timed out reaching the upstream (HTTP {text})", **common)
            return ProviderConnectionError(f"{proxy.label} could not reach the upstream (HTTP {text})", **common)
        if text.startswith("Invalid username/password"):
            return AuthenticationError(f"{proxy.label} refused the proxy credentials (SOCKS5: {text})", **common)
        if _SOCKS_METHOD_RE.match(text) is not None:
            # The proxy wants another authentication method than the one offered.
            if proxy.username is None:
                return AuthenticationError(f"{proxy.label} requires proxy credentials (SOCKS5: {text})", **common)
            return AuthenticationError(
                f"{proxy.label} does not accept username/password authentication (SOCKS5: {text})", **common
            )
        connect = _SOCKS_CONNECT_RE.match(text)
        if connect is not None:
            reply = connect.group(1)
            if reply in _SOCKS_TIMEOUTS:
                return ProviderTimeoutError(
                    f"{proxy.label} timed out reaching the upstream (SOCKS5: {reply})", **common
                )
            return ProviderConnectionError(f"{proxy.label} could not reach the upstream (SOCKS5: {reply})", **common)
        return ProviderConnectionError(f"{proxy.label} failed: {text}", **common)

    def _scrub(self, text: str) -> str:
        """``text`` without the proxy URL or its credentials."""
        return _scrub_text(text, self._secrets)
