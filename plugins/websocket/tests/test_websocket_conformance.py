"""The websocket provider type against the kernel's provider conformance suite.

The suite is written against the HTTP ``FakeUpstream``; here ``serve()``
returns a :class:`FakeWebSocketUpstream` instead (same ``ScriptedReply``
scripts, same ``enqueue``/``requests``/``url``/``default``/``connections``),
speaking the OpenAI Chat Completions format over a WebSocket, and the whole
suite runs once per connection policy with the provider's defaults. A
scripted error status becomes an in-band error message carrying the status
(``error.status``) and ``Retry-After`` (``error.retry_after``), read by the
default paths; a cut stream is a TCP drop without a close frame (1006).
"""

from __future__ import annotations

from typing import Any

import pytest

from swarmgate.testing import ProviderConformance
from swarmgate.testing.websocket_upstream import Disconnect, FakeWebSocketUpstream, WebSocketWire
from swarmgate_websocket import WebSocketProvider


class TestWebSocketConformance(ProviderConformance):
    """``connection: per-request`` (the default)."""

    provider_type = "websocket"
    provider_class = WebSocketProvider
    model = "gpt-4o-mini"

    def wire(self) -> WebSocketWire:
        return WebSocketWire()

    def serve(self) -> FakeWebSocketUpstream:  # type: ignore[override]
        return FakeWebSocketUpstream(self.wire())

    def provider_config(self, url: str) -> dict[str, Any]:
        return {"endpoint": url, "pingInterval": 0}

    @pytest.mark.anyio
    async def test_connections_are_reused(self) -> None:
        """The WebSocket equivalent for ``per-request``: each call opens its
        own connection and closes it cleanly (1000) once the answer is read;
        consecutive calls, streamed or not, all work."""
        async with self.serve() as server, self.manager(server.url) as manager:
            first = await manager.complete(prompt="one", model=self.model)
            events = await self.collect(manager, prompt="two")
            third = await manager.complete(prompt="three", model=self.model)
            assert server.connections == 3
        assert first.content == third.content == server.default.content
        assert len(events) > 2
        assert server.disconnects == [Disconnect(1000, "", clean=True)] * 3


class TestWebSocketKeepOpenConformance(TestWebSocketConformance):
    """``connection: keep-open``: the whole suite again, with connections
    kept between requests (the suite's own reuse test applies as written)."""

    def provider_config(self, url: str) -> dict[str, Any]:
        return {"endpoint": url, "connection": "keep-open", "pingInterval": 0}

    test_connections_are_reused = ProviderConformance.test_connections_are_reused
