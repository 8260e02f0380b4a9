"""Shared set-up of the gateway's tests: fake upstreams on loopback (two
OpenAI-wire, one Anthropic-wire), gateways served by uvicorn in background
threads, and a hook plugin that records what the pipeline saw."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from swarmgate import CompletionRequest, CompletionResponse, RequestContext, SwarmgateError, hookimpl
from swarmgate.plugins import ALLOW_ENV, BLOCK_ENV
from swarmgate.testing import AnthropicWire, FakeUpstream, OpenAIWire
from swarmgate_server import run_gateway

#: Only these plugins load from entry points: the provider drivers the fakes
#: speak, and this plugin. Others (retry, health, ...) would change what the
#: tests observe; a test that wants one widens the list itself.
PLUGINS = "swarmgate-openai,swarmgate-claude,swarmgate-server"
ADMIN_KEY = "sk-admin-0123456789abcdef"
TEAM_A_KEY = "sk-team-a-0123456789abcdef"
TEAM_B_KEY = "sk-team-b-secret-key-xyz"


@contextlib.contextmanager
def allow_list(plugins: str = PLUGINS) -> Iterator[None]:
    """Only ``plugins`` load from entry points while this is open."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ALLOW_ENV, plugins)
        patch.delenv(BLOCK_ENV, raising=False)
        yield


@pytest.fixture(autouse=True)
def _plugin_allow_list() -> Iterator[None]:
    """Per test, so that the allow-list never outlives this folder's tests (a
    session-wide one leaked into every later test of the run)."""
    with allow_list():
        yield


@contextlib.contextmanager
def gateway_running(config: dict[str, Any], plugins: list[Any]) -> Iterator[Any]:
    """``run_gateway`` whose plugins load under the allow-list; the allow-list
    is closed again once the gateway runs (session fixtures outlive tests)."""
    with contextlib.ExitStack() as stack:
        with allow_list():
            running = stack.enter_context(run_gateway(config, plugins=plugins))
        yield running


class Recorder:
    """A hook plugin remembering every request, answer and failure (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[CompletionRequest] = []
        self.answered: list[tuple[CompletionRequest, CompletionResponse]] = []
        self.failed: list[tuple[CompletionRequest, SwarmgateError, list[Any]]] = []

    def clear(self) -> None:
        with self.lock:
            self.requests.clear()
            self.answered.clear()
            self.failed.clear()

    @hookimpl
    def before_request(self, request: CompletionRequest) -> None:
        with self.lock:
            self.requests.append(request)

    @hookimpl
    def after_response(self, request: CompletionRequest, response: CompletionResponse) -> None:
        with self.lock:
            self.answered.append((request, response))

    @hookimpl
    def request_failed(self, request: CompletionRequest, error: SwarmgateError, context: RequestContext) -> None:
        with self.lock:
            self.failed.append((request, error, list(context.attempts)))


def wait_for(condition: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    """Poll ``condition`` until it is truthy (returned) or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class Upstreams:
    """The fake upstreams: ``primary`` and ``backup`` (OpenAI wire),
    ``claude`` (Anthropic wire), ``slow`` (OpenAI wire, for timeouts)."""

    def __init__(self, primary: FakeUpstream, backup: FakeUpstream, claude: FakeUpstream, slow: FakeUpstream) -> None:
        self.primary = primary
        self.backup = backup
        self.claude = claude
        self.slow = slow

    def all(self) -> tuple[FakeUpstream, ...]:
        return (self.primary, self.backup, self.claude, self.slow)

    def reset(self) -> None:
        for upstream in self.all():
            upstream.clear()
            upstream.requests.clear()


@pytest.fixture(scope="session")
def upstreams() -> Iterator[Upstreams]:
    with (
        FakeUpstream.in_thread(OpenAIWire()) as primary,
        FakeUpstream.in_thread(OpenAIWire()) as backup,
        FakeUpstream.in_thread(AnthropicWire()) as claude,
        FakeUpstream.in_thread(OpenAIWire()) as slow,
    ):
        yield Upstreams(primary, backup, claude, slow)


@pytest.fixture(autouse=True)
def _fresh_upstreams(request: pytest.FixtureRequest) -> None:
    if "upstreams" in request.fixturenames:
        request.getfixturevalue("upstreams").reset()


def gateway_config(up: Upstreams, **server: Any) -> dict[str, Any]:
    """Providers ``primary`` (priority 1) and ``backup`` (priority 2) both
    serving ``gpt-4o-mini`` (priced), ``claude`` serving
    ``claude-3-5-haiku``, ``slow`` (300 ms timeout) serving ``slow-model``;
    a route ``fast`` over primary and backup."""
    return {
        "providers": {
            "primary": {
                "type": "openai",
                "endpoint": up.primary.url,
                "apiKey": "sk-upstream-primary-000",
                "priority": 1,
                "models": {"gpt-4o-mini": {"inputCostPerToken": 0.000001, "outputCostPerToken": 0.000002}},
            },
            "backup": {
                "type": "openai",
                "endpoint": up.backup.url,
                "apiKey": "sk-upstream-backup-000",
                "priority": 2,
                "models": {"gpt-4o-mini": {"costPerToken": 0.000001}},
            },
            "claude": {
                "type": "claude",
                "endpoint": up.claude.url,
                "apiKey": "sk-ant-upstream-000",
                "priority": 3,
                "models": {"claude-3-5-haiku": {"costPerToken": 0.000001}},
            },
            "slow": {
                "type": "openai",
                "endpoint": up.slow.url,
                "apiKey": "sk-upstream-slow-000",
                "priority": 4,
                "timeout": 300,
                "models": {"slow-model": {}},
            },
        },
        "routes": {"fast": ["primary/gpt-4o-mini", "backup/gpt-4o-mini"]},
        "server": {"bodyTimeout": 500, "maxBodySize": 65536, "shutdownTimeout": 5000, **server},
    }


@pytest.fixture(scope="session")
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture(scope="session")
def gateway(upstreams: Upstreams, recorder: Recorder) -> Iterator[Any]:
    """An open gateway (no keys) in front of the fake upstreams."""
    with gateway_running(gateway_config(upstreams), [recorder]) as running:
        yield running


@pytest.fixture(scope="session")
def keyed_recorder() -> Recorder:
    return Recorder()


@pytest.fixture(scope="session")
def keyed_gateway(upstreams: Upstreams, keyed_recorder: Recorder) -> Iterator[Any]:
    """A gateway with caller keys (team-a may use gpt-4o-mini only; team-b's
    key is configured as its SHA-256 hash) and an admin key."""
    import hashlib

    hashed = "sha256:" + hashlib.sha256(TEAM_B_KEY.encode()).hexdigest()
    config = gateway_config(
        upstreams,
        apiKeys=[
            {"key": TEAM_A_KEY, "name": "team-a", "models": ["gpt-4o-mini", "fast"]},
            {"key": hashed, "name": "team-b", "requestsPerMinute": 100, "dailyBudget": 5.0},
        ],
        adminKey=ADMIN_KEY,
    )
    with gateway_running(config, [keyed_recorder]) as running:
        yield running


@pytest.fixture(autouse=True)
def _fresh_recorders(request: pytest.FixtureRequest) -> None:
    for name in ("recorder", "keyed_recorder"):
        if name in request.fixturenames:
            request.getfixturevalue(name).clear()


class HangingUpstream:
    """An upstream on loopback that reads each request and never answers:
    it waits until its client goes away, counting ``requests`` read and
    ``disconnects`` seen (its own threads, so any event loop can call it).
    ``url`` is its base URL (``/v1`` for the OpenAI driver)."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.1)
        self.port = self._server.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.requests = 0
        self.disconnects = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="hanging-upstream", daemon=True)
        self._thread.start()

    def __enter__(self) -> HangingUpstream:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._server.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._hang, args=(conn,), daemon=True).start()

    def _hang(self, conn: socket.socket) -> None:
        conn.settimeout(0.1)
        data = b""
        with conn:
            while not self._stop.is_set():
                try:
                    chunk = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    chunk = b""
                if not chunk:
                    with self._lock:
                        self.disconnects += 1
                    return
                data += chunk
                head, sep, body = data.partition(b"\r\n\r\n")
                if sep:
                    length = 0
                    for line in head.split(b"\r\n")[1:]:
                        name, _, value = line.partition(b":")
                        if name.strip().lower() == b"content-length":
                            length = int(value)
                    if len(body) >= length:
                        with self._lock:
                            self.requests += 1
                        data = body[length:]
