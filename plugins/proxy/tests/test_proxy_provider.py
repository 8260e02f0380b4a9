"""Proxy-specific behaviour of the ``proxy`` provider type (beyond the conformance suite).

Configuration and its errors, proxy failures (credentials refused, proxy
down, upstream unreachable from the proxy, proxy timeouts), upstream errors
passing through unchanged, credentials kept out of errors and logs, and
gateway mode against a fake upstream standing in for the gateway.
"""

from __future__ import annotations

import importlib.util
import logging
import ssl
from collections.abc import AsyncIterator, Iterator, MutableMapping
from typing import Any

import httpx
import pytest
import structlog
from structlog.testing import LogCapture

from swarmgate import (
    AuthenticationError,
    CompletionRequest,
    ConfigError,
    ContentFilteredError,
    ContextLengthExceededError,
    FinishEvent,
    HealthStatus,
    InvalidRequestError,
    OverloadedError,
    PluginError,
    Provider,
    ProviderCall,
    ProviderConfig,
    ProviderConnectionError,
    ProviderEvent,
    ProviderManager,
    ProviderReply,
    ProviderTimeoutError,
    RateLimitedError,
    ServerError,
    SwarmgateError,
    TextDelta,
    TokenUsage,
    ToolCallDelta,
    parse_section,
    registry,
)
from swarmgate.plugins import ALLOW_ENV
from swarmgate.testing import FakeUpstream, ScriptedReply, attempt_error, unreachable_url
from swarmgate.testing.proxy_servers import HTTPProxy, SOCKS5Proxy
from swarmgate_openai import OpenAIProvider
from swarmgate_proxy import GatewaySettings, ProxyProvider, ProxySettings, ProxyURL, parse_proxy_url, proxy_failure

MODEL = "gpt-4o-mini"
KEY = "sk-proxy-test-0123456789abcdef"
USER, PASSWORD = "alice", "pr0xy-Pa55word-XYZ"
CREDENTIALS = (USER, PASSWORD)
WEATHER_CALLS = (
    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
)
WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}

ProxyServer = HTTPProxy | SOCKS5Proxy


def provider_config(endpoint: str | None, **settings: Any) -> dict[str, Any]:
    """One ``proxy`` provider ``px`` (camelCase keys); ``settings`` override."""
    config: dict[str, Any] = {
        "type": "proxy",
        "endpoint": endpoint,
        "apiKey": KEY,
        "timeout": 1000,
        "models": {MODEL: {"costPerToken": 0.001}},
    }
    config.update(settings)
    return {k: v for k, v in config.items() if v is not None}


def manager_for(endpoint: str | None, **settings: Any) -> ProviderManager:
    """A manager with provider ``px`` (the driver loaded through its entry point)."""
    return ProviderManager({"providers": {"px": provider_config(endpoint, **settings)}})


def build(**settings: Any) -> ProxyProvider:
    """A driver built the way the kernel builds it, without a manager."""
    endpoint = settings.pop("endpoint", "http://127.0.0.1:9/v1")
    config = parse_section(ProviderConfig, provider_config(endpoint, **settings), "providers.px")
    return ProxyProvider("px", config)


def call_for(provider: Provider, model: str = MODEL) -> ProviderCall:
    """A driver call for ``model`` as the kernel would make it."""
    return ProviderCall(
        request=CompletionRequest.create("Hi", model=model),
        model=model,
        upstream_model=model,
        model_config=provider.config.models[model],
        timeout=1.0,
    )


def openai_via(via: str) -> dict[str, Any]:
    return {"via": via, "target": {"type": "openai"}}


async def failure(manager: ProviderManager, *, stream: bool = False, **fields: Any) -> SwarmgateError:
    fields.setdefault("prompt", "Hello?")
    try:
        if stream:
            _ = [e async for e in manager.stream(model=MODEL, **fields)]
        else:
            await manager.complete(model=MODEL, **fields)
    except SwarmgateError as exc:
        raised: SwarmgateError = exc
    else:
        raise AssertionError("the request succeeded; an error was expected")
    assert PASSWORD not in shown(raised)
    return attempt_error(raised)


def shown(error: SwarmgateError) -> str:
    """Everything an error shows: its text, repr, dict and attempts (and its last error's)."""
    parts = [str(error), repr(error), str(error.to_dict()), *(str(a.to_dict()) for a in error.attempts)]
    last = attempt_error(error)
    parts += [str(last), repr(last), str(last.to_dict())]
    return "\n".join(parts)


def proxy_server(kind: str, credentials: tuple[str, str] | None = CREDENTIALS, **options: Any) -> ProxyServer:
    """``http`` or ``socks`` test proxy (enter it with ``async with``)."""
    return (
        HTTPProxy(credentials=credentials, **options)
        if kind == "http"
        else SOCKS5Proxy(credentials=credentials, **options)
    )


def label(proxy: ProxyServer) -> str:
    kind = "HTTP" if isinstance(proxy, HTTPProxy) else "SOCKS5"
    return f"{kind} proxy 127.0.0.1:{proxy.port}"


# -- configuration --------------------------------------------------------------------


def test_inner_driver_gets_the_providers_own_keys() -> None:
    provider = build(
        via=f"http://{USER}:{PASSWORD}@127.0.0.1:3128",
        target={"type": "openai", "organization": "org-7", "streamUsage": False},
        headers={"X-Team": "search"},
    )
    inner = provider.inner
    assert isinstance(inner, OpenAIProvider)
    assert inner.name == "px"
    assert inner.config.type == "openai"
    assert inner.config.proxy == f"http://{USER}:{PASSWORD}@127.0.0.1:3128"
    assert (inner.config.endpoint, inner.config.api_key, inner.config.timeout) == ("http://127.0.0.1:9/v1", KEY, 1000)
    assert inner.config.headers == {"X-Team": "search"}
    assert list(inner.config.models) == [MODEL] == provider.models()
    assert inner.options.organization == "org-7"
    assert inner.options.stream_usage is False
    assert provider.proxy == ProxyURL("http", "127.0.0.1", 3128, USER, PASSWORD)
    assert provider.proxy.label == "HTTP proxy 127.0.0.1:3128"
    for text in (repr(provider.options), repr(provider.proxy), repr(inner.config)):
        assert PASSWORD not in text


@pytest.mark.anyio
async def test_unknown_target_type_is_a_plugin_error_with_its_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # With an allow-list set, the kernel refuses a name it does not admit
    # before looking it up ("not in SWARMGATE_PLUGINS"); admit the name so
    # that the lookup itself fails, as it does without a list.
    monkeypatch.setenv(ALLOW_ENV, "swarmgate,swarmgate-openai,swarmgate-proxy,nope")
    with pytest.raises(PluginError) as info:
        async with manager_for("http://127.0.0.1:9/v1", via="http://127.0.0.1:3128", target={"type": "nope"}):
            pass
    message = str(info.value)
    assert message.startswith("providers.px.target.type: unknown provider type 'nope'")
    assert "swarmgate-nope" in message


@pytest.mark.parametrize(
    ("via", "reason"),
    [
        (f"ftp://{USER}:{PASSWORD}@proxy.example:21", "unsupported proxy scheme 'ftp'"),
        (f"{USER}:{PASSWORD}@proxy.example:3128", "unsupported proxy scheme"),
        (f"http://{USER}:{PASSWORD}@:3128", "names no proxy host"),
        (f"http://{USER}:{PASSWORD}@proxy.example:3128/path", "must not have a path"),
        (f"http://{USER}:{PASSWORD}@proxy.example:99999", "is not a valid URL"),
    ],
)
def test_bad_via_is_a_config_error_without_credentials(via: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        build(via=via, target={"type": "openai"})
    assert info.value.problems[0][0] == "providers.px.via"
    assert reason in info.value.problems[0][1]
    assert PASSWORD not in str(info.value)


def test_socks_needs_socksio(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "socksio" else real(name, *a))
    with pytest.raises(ConfigError) as info:
        build(via="socks5://127.0.0.1:1080", target={"type": "openai"})
    assert info.value.problems == (
        ("providers.px.via", "SOCKS proxies need the 'socksio' package: pip install 'httpx[socks]'"),
    )


@pytest.mark.parametrize(
    ("settings", "path", "reason"),
    [
        ({"via": 3128, "target": {"type": "openai"}}, "providers.px.via", "expected a string, got 3128"),
        ({"target": {"type": "openai"}}, "providers.px.via", "required: the proxy URL"),
        ({"via": "http://127.0.0.1:3128"}, "providers.px.target", "required: the inner provider"),
        ({"via": "http://127.0.0.1:3128", "target": {"organization": "x"}}, "providers.px.target.type", "required"),
        ({"via": "http://127.0.0.1:3128", "target": {"type": "proxy"}}, "providers.px.target.type", "another proxy"),
        ({"via": "http://127.0.0.1:3128", "target": []}, "providers.px.target", "expected an object"),
        ({"vai": "http://127.0.0.1:3128"}, "providers.px.vai", "unknown key (expected one of: gateway, target, via)"),
        ({"gateway": {"modelPrefix": 7}}, "providers.px.gateway.modelPrefix", "expected a string"),
        ({"gateway": {"prefix": "a/"}}, "providers.px.gateway.prefix", "unknown key"),
        (
            {"via": "http://127.0.0.1:3128", "target": {"type": "openai", "organisation": "x"}},
            "providers.px.target.organisation",
            "unknown key",
        ),
        (
            {"via": "http://127.0.0.1:3128", "target": {"type": "openai", "streamUsage": "yes"}},
            "providers.px.target.streamUsage",
            "expected true or false",
        ),
        (
            {"via": "http://127.0.0.1:3128", "target": {"type": "openai"}, "proxy": "http://127.0.0.1:3128"},
            "providers.px.proxy",
            "from 'via'",
        ),
        ({"gateway": {}, "endpoint": None}, "providers.px.endpoint", "gateway mode needs"),
    ],
)
def test_bad_settings_name_their_path(settings: dict[str, Any], path: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        build(**settings)
    ((where, message),) = info.value.problems
    assert where == path
    assert reason in message


@pytest.mark.anyio
async def test_bad_settings_through_the_manager() -> None:
    with pytest.raises(ConfigError) as info:
        async with manager_for("http://127.0.0.1:9/v1", via="gopher://x", target={"type": "openai", "orgnization": 1}):
            pass
    assert [path for path, _ in info.value.problems] == ["providers.px.via"]


class _Bare(Provider):
    """An inner type with no settings of its own that needs an API key."""

    requires_api_key = True

    async def complete(self, call: ProviderCall) -> ProviderReply:
        return ProviderReply("bare", TokenUsage.of(1, 1))

    async def stream(self, call: ProviderCall) -> AsyncIterator[ProviderEvent]:
        yield TextDelta("bare")
        yield FinishEvent("stop")


@pytest.fixture
def fake_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """``bare`` is :class:`_Bare`; ``thing`` is not a Provider at all."""
    real = registry.load_driver

    def load(namespace: str, name: str, overrides: Any = None) -> Any:
        return {"bare": _Bare, "thing": object()}.get(name) or real(namespace, name, overrides)

    monkeypatch.setattr(registry, "load_driver", load)


@pytest.mark.usefixtures("fake_registry")
def test_inner_type_without_settings_class() -> None:
    provider = build(via="http://127.0.0.1:3128", target={"type": "bare"})
    assert isinstance(provider.inner, _Bare)
    assert provider.inner.settings is None
    with pytest.raises(ConfigError) as info:
        build(via="http://127.0.0.1:3128", target={"type": "bare", "colour": "red"})
    assert info.value.problems == (("providers.px.target.colour", "unknown key for provider type 'bare'"),)
    with pytest.raises(ConfigError) as info:
        build(via="http://127.0.0.1:3128", target={"type": "bare"}, apiKey=None)
    assert info.value.problems[0][0] == "providers.px.apiKey"
    with pytest.raises(PluginError, match=r"^providers\.px\.target\.type: provider type 'thing' is not a swarmgate"):
        build(via="http://127.0.0.1:3128", target={"type": "thing"})


@pytest.mark.anyio
@pytest.mark.usefixtures("fake_registry")
async def test_warns_when_the_target_holds_no_httpx_client(log_events: list[MutableMapping[str, Any]]) -> None:
    """A target whose driver keeps no httpx client may not honour the
    proxy at all: say so at start-up (delegation still works)."""
    provider = build(via=f"socks5://{USER}:{PASSWORD}@127.0.0.1:1080", target={"type": "bare"})
    await provider.start()
    try:
        reply = await provider.complete(call_for(provider))
        events = [e async for e in provider.stream(call_for(provider))]
    finally:
        await provider.aclose()
    assert reply.content == "bare"
    assert events == [TextDelta("bare"), FinishEvent("stop")]
    (warning,) = [e for e in log_events if e["event"] == "proxy_target_without_httpx_client"]
    assert (warning["provider"], warning["target"], warning["proxy"]) == ("px", "bare", "SOCKS5 proxy 127.0.0.1:1080")
    assert PASSWORD not in str(log_events)


def test_settings_built_from_the_config_when_not_given() -> None:
    config = ProviderConfig(type="proxy", settings={"via": "socks5h://10.0.0.1", "target": {"type": "openai"}})
    provider = ProxyProvider("px", config)
    assert provider.options == ProxySettings(via="socks5h://10.0.0.1", target={"type": "openai"})
    assert provider.proxy is not None
    assert (provider.proxy.label, provider.proxy.is_socks) == ("SOCKS5 proxy 10.0.0.1:1080", True)


@pytest.mark.parametrize(
    ("via", "expected"),
    [
        ("http://proxy.corp", ProxyURL("http", "proxy.corp", 80)),
        ("HTTPS://proxy.corp/", ProxyURL("https", "proxy.corp", 443)),
        ("socks5://[::1]:9050", ProxyURL("socks5", "::1", 9050)),
        ("socks5h://u%40corp:p%3Ass%2Fw@proxy:1081", ProxyURL("socks5h", "proxy", 1081, "u@corp", "p:ss/w")),
    ],
)
def test_parse_proxy_url(via: str, expected: ProxyURL) -> None:
    parsed = parse_proxy_url(via)
    assert parsed == expected
    assert (parsed.username, parsed.password) == (expected.username, expected.password)


def test_proxy_labels() -> None:
    assert ProxyURL("socks5", "::1", 9050).label == "SOCKS5 proxy [::1]:9050"
    assert ProxyURL("https", "p", 443).label == "HTTPS proxy p:443"


# -- through the proxies ----------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["http", "socks"])
async def test_without_proxy_credentials(kind: str) -> None:
    async with (
        FakeUpstream() as server,
        proxy_server(kind, None) as proxy,
        manager_for(server.url, **openai_via(proxy.url)) as manager,
    ):
        response = await manager.complete(prompt="Hi", model=MODEL)
        events = [e async for e in manager.stream(prompt="Hi", model=MODEL)]
    assert response.content == server.default.content
    assert isinstance(events[-1], FinishEvent)
    assert proxy.records
    assert all(r.ok and r.user is None for r in proxy.records)


UPSTREAM_FAILURES = [
    pytest.param(
        ScriptedReply.error(429, "Rate limit reached for gpt-4o-mini", headers={"Retry-After": "3"}),
        RateLimitedError,
        "Rate limit reached",
        id="rate-limit",
    ),
    pytest.param(
        ScriptedReply.error(503, "The engine is currently overloaded"),
        OverloadedError,
        "currently overloaded",
        id="overload",
    ),
    pytest.param(
        ScriptedReply.error(401, "Incorrect API key provided"), AuthenticationError, "Incorrect API key", id="auth"
    ),
    pytest.param(
        ScriptedReply.error(
            400, "This model's maximum context length is 128000 tokens", code="context_length_exceeded"
        ),
        ContextLengthExceededError,
        "maximum context length",
        id="context-length",
    ),
    pytest.param(
        ScriptedReply.error(400, "Your request was rejected by the safety system", code="content_policy_violation"),
        ContentFilteredError,
        "safety system",
        id="content-filter",
    ),
]


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
@pytest.mark.parametrize("kind", ["http", "socks"])
@pytest.mark.parametrize(("reply", "expected", "message"), UPSTREAM_FAILURES)
async def test_upstream_errors_pass_through(
    reply: ScriptedReply, expected: type[SwarmgateError], message: str, kind: str, stream: bool
) -> None:
    """The upstream's own errors come out as the inner driver maps them,
    with the upstream's message: the proxy relayed them, it did not fail."""
    async with FakeUpstream() as server, proxy_server(kind) as proxy:
        server.enqueue(reply)
        async with manager_for(server.url, **openai_via(proxy.url_with(*CREDENTIALS))) as manager:
            error = await failure(manager, stream=stream)
    assert type(error) is expected
    assert message in str(error)
    assert error.provider == "px"
    assert "proxy" not in error.message
    if expected is RateLimitedError:
        assert error.retry_after == pytest.approx(3.0)
    assert proxy.records


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
@pytest.mark.parametrize("mode", ["forward", "connect", "socks"])
async def test_wrong_proxy_credentials(mode: str, stream: bool) -> None:
    """407 (forwarded or on CONNECT) and a refused SOCKS5 login are
    AuthenticationError naming the proxy, never the credentials."""
    async with proxy_server("socks" if mode == "socks" else "http") as proxy:
        name = label(proxy)
        endpoint = unreachable_url()
        if mode == "connect":
            endpoint = endpoint.replace("http://", "https://")
        via = proxy.url_with(USER, "wrong-" + PASSWORD)
        async with manager_for(endpoint, **openai_via(via)) as manager:
            error = await failure(manager, stream=stream)
    assert type(error) is AuthenticationError
    assert error.message.startswith(f"{name} refused the proxy credentials")
    assert error.provider == "px"
    assert "wrong-" not in shown(error)
    assert [(r.ok, r.user, r.error) for r in proxy.records] == [(False, USER, "auth")]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("mode", "says"),
    [
        ("forward", "requires proxy credentials (HTTP 407 Proxy Authentication Required)"),
        ("connect", "requires proxy credentials (HTTP 407 Proxy Authentication Required)"),
        ("socks", "requires proxy credentials (SOCKS5: Requested NO AUTHENTICATION REQUIRED from proxy server"),
    ],
)
async def test_missing_proxy_credentials(mode: str, says: str) -> None:
    async with proxy_server("socks" if mode == "socks" else "http") as proxy:
        name = label(proxy)
        endpoint = unreachable_url()
        if mode == "connect":
            endpoint = endpoint.replace("http://", "https://")
        async with manager_for(endpoint, **openai_via(proxy.url)) as manager:
            error = await failure(manager)
    assert type(error) is AuthenticationError
    assert error.message.startswith(f"{name} {says}")


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
@pytest.mark.parametrize("scheme", ["http", "socks5"])
async def test_proxy_down(scheme: str, stream: bool) -> None:
    """Nothing listening at the proxy's address: ProviderConnectionError
    naming the proxy (host:port), in errors and in the health probe."""
    port = unreachable_url().split(":")[2].split("/")[0]
    via = f"{scheme}://{USER}:{PASSWORD}@127.0.0.1:{port}"
    async with FakeUpstream() as server, manager_for(server.url, **openai_via(via)) as manager:
        error = await failure(manager, stream=stream)
        health = (await manager.check_health("px"))["px"]
        assert not server.requests
    kind = "HTTP" if scheme == "http" else "SOCKS5"
    assert type(error) is ProviderConnectionError
    assert error.message.startswith(f"cannot connect to {kind} proxy 127.0.0.1:{port} (")
    assert not health.healthy
    assert f"[via {kind} proxy 127.0.0.1:{port}]" in health.detail
    assert PASSWORD not in health.detail


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("mode", "says"),
    [
        ("forward", "(HTTP 502 Bad Gateway; proxy error connection_refused)"),
        ("connect", "(HTTP 502 Bad Gateway)"),
        ("socks", "(SOCKS5: Connection refused)"),
    ],
)
async def test_proxy_cannot_reach_the_upstream(mode: str, says: str) -> None:
    async with proxy_server("socks" if mode == "socks" else "http") as proxy:
        name = label(proxy)
        endpoint = unreachable_url()
        if mode == "connect":
            endpoint = endpoint.replace("http://", "https://")
        async with manager_for(endpoint, **openai_via(proxy.url_with(*CREDENTIALS))) as manager:
            error = await failure(manager)
            health = (await manager.check_health("px"))["px"]
    assert type(error) is ProviderConnectionError
    assert error.message == f"{name} could not reach the upstream {says}"
    assert not health.healthy
    assert [(r.ok, r.error) for r in proxy.records] == [(False, "connection_refused")] * 2


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("mode", "says"),
    [
        ("forward", "(HTTP 504 Gateway Timeout; proxy error connection_timeout)"),
        ("connect", "(HTTP 504 Gateway Timeout)"),
        ("socks", "(SOCKS5: TTL expired)"),
    ],
)
async def test_proxy_timing_out_on_the_upstream(mode: str, says: str) -> None:
    """A proxy that gives up connecting upstream: ProviderTimeoutError."""
    async with (
        FakeUpstream() as server,
        proxy_server("socks" if mode == "socks" else "http", connect_timeout=0) as proxy,
    ):
        name = label(proxy)
        endpoint = server.url.replace("http://", "https://") if mode == "connect" else server.url
        async with manager_for(endpoint, **openai_via(proxy.url_with(*CREDENTIALS))) as manager:
            error = await failure(manager)
    assert type(error) is ProviderTimeoutError
    assert error.message == f"{name} timed out reaching the upstream {says}"


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["http", "socks"])
async def test_health_check_through_the_proxy(kind: str) -> None:
    async with FakeUpstream() as server, proxy_server(kind) as proxy:
        async with manager_for(server.url, **openai_via(proxy.url_with(*CREDENTIALS))) as manager:
            status = (await manager.check_health("px"))["px"]
        probe = server.requests[-1]
    assert status.healthy, status.detail
    assert (probe.method, probe.path) == ("GET", "/v1/models")
    assert proxy.records


@pytest.mark.anyio
async def test_tool_calls_pass_through() -> None:
    reply = ScriptedReply(content="", tool_calls=WEATHER_CALLS, finish_reason="tool_calls")
    async with FakeUpstream() as server, HTTPProxy() as proxy:
        server.enqueue(reply, reply)
        async with manager_for(server.url, **openai_via(proxy.url)) as manager:
            response = await manager.complete(prompt="Weather?", model=MODEL, tools=[WEATHER_TOOL])
            events = [e async for e in manager.stream(prompt="Weather?", model=MODEL, tools=[WEATHER_TOOL])]
        sent = server.completions[0].json
    assert sent["tools"] == [WEATHER_TOOL]
    assert response.tool_calls == WEATHER_CALLS
    assert any(isinstance(e, ToolCallDelta) for e in events)
    finish = events[-1]
    assert isinstance(finish, FinishEvent)
    assert finish.response is not None
    assert finish.response.tool_calls == WEATHER_CALLS


@pytest.mark.anyio
async def test_the_inner_driver_follows_the_provider_lifecycle() -> None:
    async with FakeUpstream() as server, HTTPProxy() as proxy:
        async with manager_for(server.url, **openai_via(proxy.url)) as manager:
            provider = manager.provider("px")
            assert isinstance(provider, ProxyProvider)
            inner = provider.inner
            assert isinstance(inner, OpenAIProvider)
            assert inner.manager is manager
            client = inner.client
        assert client.is_closed
    with pytest.raises(RuntimeError, match="not started"):
        _ = inner.client


# -- secrets ---------------------------------------------------------------------------


@pytest.fixture
def log_events() -> Iterator[list[MutableMapping[str, Any]]]:
    """Every structlog event (debug and up), as the configured chain --
    the kernel's redaction included -- hands it to the output."""
    old = structlog.get_config()
    capture = LogCapture()
    structlog.configure(processors=[capture], wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        yield capture.entries
    finally:
        structlog.configure(**old)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["http", "socks"])
async def test_credentials_never_in_logs(
    kind: str, log_events: list[MutableMapping[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    """Neither swarmgate's logs nor httpx/httpcore debug logs (whose SOCKS
    trace prints the credentials) show the proxy password."""
    caplog.set_level(logging.DEBUG, logger="httpcore")
    caplog.set_level(logging.DEBUG, logger="httpx")
    async with FakeUpstream() as server, proxy_server(kind) as proxy:
        server.enqueue(ScriptedReply(), ScriptedReply.error(500, "boom"))
        async with manager_for(server.url, **openai_via(proxy.url_with(*CREDENTIALS))) as manager:
            await manager.complete(prompt="Hi", model=MODEL)
            error = await failure(manager)
    assert type(error) is ServerError
    assert "HTTP Request: POST" in caplog.text, "httpx's request log was captured"
    if kind == "socks":
        assert "setup_socks5_connection.started" in caplog.text
        assert "auth=(***)" in caplog.text
    assert PASSWORD not in caplog.text
    assert any(e.get("event") == "attempt_failed" for e in log_events)
    assert any(e.get("event") == "proxy_provider_started" for e in log_events)
    assert PASSWORD not in str(log_events)


def test_credentials_scrubbed_from_inner_errors() -> None:
    provider = build(**openai_via(f"http://{USER}:{PASSWORD}@127.0.0.1:3128"))
    leaked = RateLimitedError(
        f"upstream said: bad proxy {PASSWORD}", provider="px", retry_after=2.0, upstream_status=429
    )
    scrubbed = provider.translate(leaked, MODEL)
    assert type(scrubbed) is RateLimitedError
    assert scrubbed.message == "upstream said: bad proxy ***"
    assert (scrubbed.retry_after, scrubbed.upstream_status) == (2.0, 429)
    plain = ServerError("upstream HTTP 500: boom", provider="px")
    assert provider.translate(plain, MODEL) is plain


# -- error translation -------------------------------------------------------------------


def test_translation_without_an_exception_chain() -> None:
    """Inner drivers that do not chain the httpx error still get their
    proxy failures recognised, by their text or their status."""
    provider = build(**openai_via("http://127.0.0.1:3128"))
    by_text = provider.translate(
        ServerError("upstream request failed (ProxyError: 407 Proxy Authentication Required)"), MODEL
    )
    assert type(by_text) is AuthenticationError
    assert (
        by_text.message
        == "HTTP proxy 127.0.0.1:3128 requires proxy credentials (HTTP 407 Proxy Authentication Required)"
    )
    by_status = provider.translate(InvalidRequestError("upstream HTTP 407: (empty body)", upstream_status=407), MODEL)
    assert type(by_status) is AuthenticationError
    ttl = provider.translate(ServerError("failed (ProxyError: Proxy Server could not connect: TTL expired.)"), MODEL)
    assert type(ttl) is ProviderTimeoutError
    odd = provider.translate(ServerError("failed (ProxyError: something else)"), MODEL)
    assert type(odd) is ProviderConnectionError
    assert odd.message == "HTTP proxy 127.0.0.1:3128 failed: something else"


def test_tls_failures_inside_a_tunnel_are_not_blamed_on_the_proxy() -> None:
    provider = build(**openai_via("http://127.0.0.1:3128"))
    tls = ssl.SSLError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    connect = httpx.ConnectError(str(tls))
    connect.__cause__ = tls
    error = ProviderConnectionError("connection to upstream failed (ConnectError: certificate verify failed)")
    error.__cause__ = connect
    assert provider.translate(error, MODEL) is error
    refused = ProviderConnectionError("connection to upstream failed (ConnectError: All connection attempts failed)")
    refused.__cause__ = httpx.ConnectError("All connection attempts failed")
    translated = provider.translate(refused, MODEL)
    assert translated.message == "cannot connect to HTTP proxy 127.0.0.1:3128 (All connection attempts failed)"


def test_without_a_proxy_errors_are_left_alone() -> None:
    provider = build(gateway={})
    error = InvalidRequestError("upstream HTTP 407: odd", upstream_status=407)
    assert provider.proxy is None
    assert provider.translate(error, MODEL) is error


def _response(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, headers=headers, request=httpx.Request("GET", "http://upstream/v1/models"))


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (407, {}, "407 Proxy Authentication Required"),
        (
            502,
            {"Proxy-Status": 'corp-proxy; error=dns_error; details="no such host"'},
            "502 Bad Gateway; proxy error dns_error",
        ),
        (
            504,
            {"Proxy-Status": "edge, corp-proxy; error=connection_timeout"},
            "504 Gateway Timeout; proxy error connection_timeout",
        ),
        (503, {"X-Squid-Error": "ERR_CONNECT_FAIL 111"}, "503 Service Unavailable; proxy error ERR_CONNECT_FAIL"),
        (502, {"Proxy-Status": "corp-proxy; received-status=502"}, None),
        (502, {}, None),
        (404, {"Proxy-Status": "corp-proxy; error=destination_not_found"}, None),
        (200, {}, None),
    ],
)
def test_proxy_failure(status: int, headers: dict[str, str], expected: str | None) -> None:
    assert proxy_failure(_response(status, headers)) == expected


# -- gateway mode --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_gateway_model_prefix_and_headers() -> None:
    """A fake upstream stands in for a LiteLLM/Portkey-style gateway: it
    gets the prefixed model name, the gateway's key and its headers."""
    headers = {"x-portkey-provider": "openai", "X-Team": "search"}
    async with FakeUpstream() as gateway:
        gateway.enqueue(ScriptedReply(content="via the gateway", usage=(3, 3)))
        async with manager_for(
            gateway.url, gateway={"modelPrefix": "openai/"}, headers=headers, apiKey="sk-gateway-key-123456"
        ) as manager:
            response = await manager.complete(prompt="Hi", model=MODEL)
            events = [e async for e in manager.stream(prompt="Hi", model=MODEL)]
            status = (await manager.check_health("px"))["px"]
        completion, streamed = gateway.completions
    assert response.content == "via the gateway"
    assert response.model == MODEL
    assert response.metadata["upstream_model"] == f"openai/{MODEL}"
    assert isinstance(events[-1], FinishEvent)
    for request in (completion, streamed):
        assert request.json["model"] == f"openai/{MODEL}"
        assert request.headers["authorization"] == "Bearer sk-gateway-key-123456"
        assert request.headers["x-portkey-provider"] == "openai"
        assert request.headers["x-team"] == "search"
    assert status.healthy
    assert gateway.requests[-1].path == "/v1/models"


@pytest.mark.anyio
async def test_gateway_model_map_and_upstream_names() -> None:
    models = {
        MODEL: {},
        "gpt-4o": {"upstreamName": "gpt-4o-2024-08-06"},
        "openai/o1": {},
        "fast": {},
    }
    gateway_settings = {"modelPrefix": "openai/", "modelMap": {"fast": "groq/llama-3.1-8b-instant"}}
    async with FakeUpstream() as gateway:
        async with manager_for(gateway.url, gateway=gateway_settings, models=models) as manager:
            for model in (MODEL, "gpt-4o", "openai/o1", "fast"):
                await manager.complete(prompt="Hi", model=model)
        sent = [r.json["model"] for r in gateway.completions]
    assert sent == [f"openai/{MODEL}", "openai/gpt-4o-2024-08-06", "openai/o1", "groq/llama-3.1-8b-instant"]


@pytest.mark.anyio
async def test_gateway_pass_through_models_and_target_settings() -> None:
    """With no ``models`` any name passes through (prefixed); ``target``
    still carries the openai type's own settings."""
    async with FakeUpstream() as gateway:
        async with manager_for(
            gateway.url,
            gateway={"modelPrefix": "anthropic/"},
            target={"type": "openai", "streamUsage": False},
            models={},
        ) as manager:
            _ = [e async for e in manager.stream(prompt="Hi", model="px/claude-3-5-sonnet")]
        body = gateway.completions[-1].json
    assert body["model"] == "anthropic/claude-3-5-sonnet"
    assert "stream_options" not in body


@pytest.mark.anyio
async def test_gateway_through_a_proxy() -> None:
    async with (
        FakeUpstream() as gateway,
        SOCKS5Proxy(credentials=CREDENTIALS) as proxy,
        manager_for(
            gateway.url, gateway={"modelMap": {MODEL: "team-default"}}, via=proxy.url_with(*CREDENTIALS)
        ) as manager,
    ):
        await manager.complete(prompt="Hi", model=MODEL)
        port = gateway.port
    assert gateway.completions[-1].json["model"] == "team-default"
    assert [(r.kind, r.port, r.user) for r in proxy.records] == [("socks", port, USER)]


def test_gateway_settings_upstream_name() -> None:
    gateway = GatewaySettings(model_prefix="openai/", model_map={"best": "openai/gpt-4o"})
    assert gateway.upstream_name("best", "best") == "openai/gpt-4o"
    assert gateway.upstream_name("gpt-4o-mini", "gpt-4o-mini") == "openai/gpt-4o-mini"
    assert gateway.upstream_name("x", "openai/x") == "openai/x"
    assert GatewaySettings().upstream_name("x", "x-v2") == "x-v2"


def test_inner_call_is_unchanged_without_renaming() -> None:
    call = call_for(build(gateway={}))
    assert build(gateway={}).inner_call(call) is call
    assert build(**openai_via("http://127.0.0.1:3128")).inner_call(call) is call


@pytest.mark.anyio
async def test_health_of_a_healthy_inner_is_passed_on(monkeypatch: pytest.MonkeyPatch) -> None:
    provider = build(**openai_via("http://127.0.0.1:3128"))
    healthy = HealthStatus(True, 1.0, "GET /models: 2 models")

    async def probe() -> HealthStatus:
        return healthy

    monkeypatch.setattr(provider.inner, "health_check", probe)
    assert await provider.health_check() is healthy
