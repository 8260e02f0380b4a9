"""The proxy provider type against the kernel's provider conformance suite.

Each class runs the whole suite with the openai driver as the inner type,
through one kind of proxy (in a background thread, with credentials), and
checks after every test that its traffic really went through the proxy:

* an HTTP proxy forwarding ``http://`` requests in absolute form;
* an HTTP proxy tunnelling with ``CONNECT`` to an ``https://`` upstream;
* a SOCKS5 proxy (``socks5h://``, username/password).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest

from swarmgate.testing import FakeUpstream, ProviderConformance
from swarmgate.testing.proxy_servers import PROXY_NAME, HTTPProxy, ProxyKind, SOCKS5Proxy
from swarmgate_proxy import ProxyProvider

CREDENTIALS = ("alice", "s3cret-proxy-password")


class _ThroughProxy(ProviderConformance):
    """The suite through :attr:`proxy`; subclasses say which proxy."""

    provider_type = "proxy"
    provider_class = ProxyProvider
    model = "gpt-4o-mini"
    timeout_ms = 300.0
    #: The kind of record the proxy keeps for this traffic.
    kind: ClassVar[ProxyKind]
    proxy: HTTPProxy | SOCKS5Proxy

    #: The proxy provider builds its inner openai driver through the registry.
    extra_plugins = ("swarmgate-openai",)

    def start_proxy(self) -> Any:
        """The context manager running this class's proxy in a thread."""
        raise NotImplementedError

    def via(self) -> str:
        return self.proxy.url_with(*CREDENTIALS)

    @pytest.fixture(autouse=True)
    def _through_proxy(self, request: pytest.FixtureRequest) -> Iterator[None]:
        """Run the proxy around each test; afterwards, a test that made
        requests must have made them through it."""
        with self.start_proxy() as proxy:
            self.proxy = proxy
            yield
        if request.node.name != "test_entry_point":
            assert proxy.records, "no traffic went through the proxy"
            assert {r.kind for r in proxy.records} == {self.kind}
            assert all(r.user == CREDENTIALS[0] for r in proxy.records)

    def provider_config(self, url: str) -> dict[str, Any]:
        return {"endpoint": url, "via": self.via(), "target": {"type": "openai"}}


class TestThroughHTTPProxyForwarding(_ThroughProxy):
    """``http://`` upstream: the proxy forwards absolute-form requests."""

    kind = "forward"

    def start_proxy(self) -> Any:
        return HTTPProxy.in_thread(credentials=CREDENTIALS)

    @pytest.mark.anyio
    async def test_requests_are_forwarded_by_the_proxy(self) -> None:
        async with self.serve() as server, self.manager(server.url) as manager:
            await manager.complete(prompt="Hi", model=self.model)
            await self.collect(manager, prompt="Hi again")
            received, port = list(server.completions), server.port
        assert [(r.kind, r.host, r.port, r.method, r.path, r.status) for r in self.proxy.records] == [
            ("forward", "127.0.0.1", port, "POST", "/v1/chat/completions", 200)
        ] * 2
        for sent in received:
            assert sent.headers["via"] == f"1.1 {PROXY_NAME}"
            assert "proxy-authorization" not in sent.headers, "proxy credentials must not reach the upstream"
            assert sent.headers["authorization"] == f"Bearer {self.api_key}"


class TestThroughHTTPProxyTunnel(_ThroughProxy):
    """``https://`` upstream: the proxy tunnels with CONNECT."""

    kind = "connect"
    make_upstream: Callable[[], FakeUpstream]

    @pytest.fixture(autouse=True)
    def _tls(self, tls_upstream: Callable[[], FakeUpstream]) -> None:
        self.make_upstream = tls_upstream

    def start_proxy(self) -> Any:
        return HTTPProxy.in_thread(credentials=CREDENTIALS)

    def serve(self) -> FakeUpstream:
        return self.make_upstream()

    def provider_config(self, url: str) -> dict[str, Any]:
        # Every upstream of this class is https:// (the suite's unreachable
        # URL included), so that httpx always tunnels.
        if url.startswith("http://"):
            url = "https://" + url.removeprefix("http://")
        return super().provider_config(url)

    @pytest.mark.anyio
    async def test_requests_are_tunnelled_by_the_proxy(self) -> None:
        async with self.serve() as server, self.manager(server.url) as manager:
            await manager.complete(prompt="Hi", model=self.model)
            await self.collect(manager, prompt="Hi again")
            url = server.url
        assert url.startswith("https://")
        tls_port = int(url.split(":")[2].split("/")[0])
        (record,) = self.proxy.records  # one tunnel, kept alive for both calls
        assert (record.kind, record.host, record.port, record.method, record.status) == (
            "connect",
            "127.0.0.1",
            tls_port,
            "CONNECT",
            200,
        )
        assert len(server.completions) == 2


class TestThroughSOCKS5Proxy(_ThroughProxy):
    """A SOCKS5 proxy with username/password, names resolved by the proxy."""

    kind = "socks"

    def start_proxy(self) -> Any:
        return SOCKS5Proxy.in_thread(credentials=CREDENTIALS)

    def via(self) -> str:
        return self.proxy.url_with(*CREDENTIALS, scheme="socks5h")

    @pytest.mark.anyio
    async def test_requests_are_tunnelled_by_the_proxy(self) -> None:
        async with self.serve() as server, self.manager(server.url) as manager:
            await manager.complete(prompt="Hi", model=self.model)
            await self.collect(manager, prompt="Hi again")
            port = server.port
        (record,) = self.proxy.records
        assert (record.kind, record.host, record.port, record.ok, record.status) == (
            "socks",
            "127.0.0.1",
            port,
            True,
            0,
        )
        assert len(server.completions) == 2
