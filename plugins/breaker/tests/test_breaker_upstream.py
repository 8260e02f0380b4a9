"""The breaker loaded from its entry point, against real loopback upstreams
that speak the OpenAI wire format (the ``openai`` provider type)."""

from __future__ import annotations

import re

import anyio
import pytest

from swarmgate import NoProviderAvailableError, ProviderManager, Target
from swarmgate.plugins import ALLOW_ENV
from swarmgate.testing import FakeUpstream, ScriptedReply
from swarmgate_breaker import BreakerPlugin

pytestmark = pytest.mark.anyio


async def test_a_failing_upstream_is_cut_off_and_probed_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_ENV, "swarmgate,swarmgate-openai,swarmgate-breaker")
    async with FakeUpstream() as main, FakeUpstream(default=ScriptedReply(content="from the backup")) as backup:
        config = {
            "providers": {
                "main": {"type": "openai", "endpoint": main.url, "apiKey": "sk-a", "priority": 1, "models": {"m": {}}},
                "backup": {
                    "type": "openai",
                    "endpoint": backup.url,
                    "apiKey": "sk-b",
                    "priority": 2,
                    "models": {"b": {}},
                },
            },
            "routing": {
                "fallbackChains": [["main", "backup"]],
                "circuitBreaker": {"failureThreshold": 3, "timeout": 200, "successThreshold": 1},
            },
        }
        async with ProviderManager(config) as manager:
            assert isinstance(manager.plugins.get("breaker"), BreakerPlugin)
            main.enqueue(*[ScriptedReply.error(500, "internal error")] * 3)
            for _ in range(3):
                response = await manager.complete(prompt="hi", model="main/m")
                assert response.content == "from the backup"
            assert len(main.completions) == 3
            # Open: the main upstream sees no more requests.
            response = await manager.complete(prompt="hi", model="main/m")
            assert [a.provider for a in response.attempts] == ["backup"]
            with pytest.raises(NoProviderAvailableError) as info:
                await manager.complete(prompt="hi", provider="main")
            assert re.search(r"main/m: circuit open until \d\d:\d\d:\d\d", str(info.value))
            assert len(main.completions) == 3
            # After the timeout one probe goes through; it succeeds and closes the circuit.
            await anyio.sleep(0.25)
            response = await manager.complete(prompt="hi", model="main/m")
            assert response.provider == "main"
            assert manager.extensions["breaker"].state(Target("main", "m")) == "closed"
            assert len(main.completions) == 4
            assert len(backup.completions) == 4
