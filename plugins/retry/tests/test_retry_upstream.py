"""The retry plugin loaded from its entry point, against a real loopback
upstream that speaks the OpenAI wire format (the ``openai`` provider type)."""

from __future__ import annotations

import anyio
import pytest

from swarmgate import ContentFilteredError, ProviderManager
from swarmgate.plugins import ALLOW_ENV
from swarmgate.testing import FakeUpstream, ScriptedReply
from swarmgate_retry import RetryPlugin

pytestmark = pytest.mark.anyio


async def test_retries_against_a_real_upstream(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_ENV, "swarmgate,swarmgate-openai,swarmgate-retry")
    async with FakeUpstream() as upstream:
        config = {
            "providers": {
                "up": {"type": "openai", "endpoint": upstream.url, "apiKey": "sk-test", "models": {"gpt-4o-mini": {}}}
            },
            "optimization": {"retry": {"maxAttempts": 4, "initialDelay": 5, "maxDelay": 20}},
        }
        async with ProviderManager(config) as manager:
            assert isinstance(manager.plugins.get("retry"), RetryPlugin)
            # Two 5xx, then an answer: one request, three upstream calls.
            upstream.enqueue(ScriptedReply.error(503), ScriptedReply.error(500), ScriptedReply(content="third time"))
            response = await manager.complete(prompt="hi", model="gpt-4o-mini")
            assert response.content == "third time"
            assert [a.error_kind for a in response.attempts] == ["overloaded", "server_error", None]
            assert len(upstream.completions) == 3
            # A 429 with retry-after-ms: the plugin waits at least that long.
            upstream.enqueue(ScriptedReply.error(429, headers={"retry-after-ms": "60"}), ScriptedReply())
            started = anyio.current_time()
            response = await manager.complete(prompt="hi", model="gpt-4o-mini")
            assert anyio.current_time() - started >= 0.058
            assert [a.error_kind for a in response.attempts] == ["rate_limited", None]
            # A content filter rejection: one call, the upstream's reason reaches the caller.
            upstream.enqueue(
                ScriptedReply.error(400, "This prompt was flagged by the safety system", code="content_filter")
            )
            with pytest.raises(ContentFilteredError, match="flagged by the safety system"):
                await manager.complete(prompt="hi", model="gpt-4o-mini")
            assert len(upstream.completions) == 6
            assert manager.extensions["retry"].counters()["retries"] == 3
