"""Shared set-up of the proxy plugin's tests.

``tls/`` holds a test-only CA and a certificate for ``127.0.0.1`` and
``localhost`` signed by it (EC P-256, valid until 2126), made with::

    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \\
      -keyout ca.key -out ca.pem -days 36500 -subj "/CN=swarmgate test CA" \\
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \\
      -keyout server.key -out server.csr -subj "/CN=127.0.0.1"
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \\
      -days 36500 -extfile ext.cnf   # serverAuth, SAN IP:127.0.0.1, DNS:localhost

They let the tests take the ``CONNECT`` path for real: httpx tunnels
through an HTTP proxy only for ``https://`` targets.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.abc
import pytest
from anyio.streams.tls import TLSListener

from swarmgate.plugins import ALLOW_ENV, BLOCK_ENV
from swarmgate.testing import FakeUpstream

if TYPE_CHECKING:
    from types import TracebackType

TLS_DIR = Path(__file__).parent / "tls"


@pytest.fixture(autouse=True)
def _kernel_openai_and_proxy_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the kernel's plugins, the openai driver (the usual inner type)
    and this plugin load: another installed plugin must not change what
    these tests observe."""
    monkeypatch.setenv(ALLOW_ENV, "swarmgate,swarmgate-openai,swarmgate-proxy")
    monkeypatch.delenv(BLOCK_ENV, raising=False)


class TLSFakeUpstream(FakeUpstream):
    """A :class:`FakeUpstream` reached over TLS: a front on its own port
    terminates TLS (the test certificate) and relays each connection to
    the plain server, so :attr:`connections` still counts client
    connections. :attr:`url` is the ``https://`` one."""

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__()
        self._context = context
        self._front: anyio.abc.TaskGroup | None = None
        self._tls_port: int | None = None

    @property
    def url(self) -> str:
        if self._tls_port is None:
            raise RuntimeError("the TLS fake upstream is not running")
        return f"https://127.0.0.1:{self._tls_port}{self.wire.base_path}"

    async def __aenter__(self) -> TLSFakeUpstream:
        await super().__aenter__()
        try:
            plain_port = self.port
            tcp = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
            self._tls_port = tcp.extra(anyio.abc.SocketAttribute.local_port)
            listener = TLSListener(tcp, self._context, standard_compatible=False)

            async def relay(client: anyio.abc.ByteStream) -> None:
                async with client, await anyio.connect_tcp("127.0.0.1", plain_port) as plain:
                    await pipe(client, plain)

            front = anyio.create_task_group()
            await front.__aenter__()
        except BaseException as exc:
            await super().__aexit__(type(exc), exc, exc.__traceback__)
            raise
        self._front = front
        front.start_soon(listener.serve, relay)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        front, self._front, self._tls_port = self._front, None, None
        assert front is not None
        front.cancel_scope.cancel()
        await front.__aexit__(None, None, None)
        return await super().__aexit__(exc_type, exc, tb)


async def pipe(a: anyio.abc.ByteStream, b: anyio.abc.ByteStream) -> None:
    """Copy bytes both ways until either side ends, then stop."""
    async with anyio.create_task_group() as tg:

        async def copy(source: anyio.abc.ByteStream, sink: anyio.abc.ByteStream) -> None:
            try:
                async for chunk in source:
                    await sink.send(chunk)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, ssl.SSLError, OSError):
                pass
            tg.cancel_scope.cancel()

        tg.start_soon(copy, a, b)
        tg.start_soon(copy, b, a)


@pytest.fixture(autouse=True)
def trust_test_ca(monkeypatch: pytest.MonkeyPatch) -> Path:
    """httpx clients made from now on trust the test CA only (httpx reads
    ``SSL_CERT_FILE`` when a client is made); returns its path.

    For every test, not only the TLS ones: no test talks to a real TLS
    server, and loading this one certificate instead of certifi's bundle
    for each client (two per client with a proxy) keeps the suite fast.
    """
    path = TLS_DIR / "ca.pem"
    monkeypatch.setenv("SSL_CERT_FILE", str(path))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    return path


@pytest.fixture
def tls_upstream(trust_test_ca: Path) -> Callable[[], TLSFakeUpstream]:
    """Makes TLS fake upstreams (enter them with ``async with``) that
    httpx clients trust."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(TLS_DIR / "server.pem", TLS_DIR / "server.key")
    return lambda: TLSFakeUpstream(context)
