"""The rate limiter loaded from its entry point, against real loopback
upstreams that speak the OpenAI wire format (the ``openai`` provider type)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from swarmgate import CompletionResponse, ProviderManager, RateLimitedError
from swarmgate.plugins import ALLOW_ENV
from swarmgate.testing import FakeUpstream, ScriptedReply
from swarmgate_ratelimit import ProviderRateLimitExceededError, RateLimitPlugin

pytestmark = pytest.mark.anyio


async def test_a_provider_quota_sends_the_overflow_of_a_burst_to_the_other_upstream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ALLOW_ENV, "swarmgate,swarmgate-openai,swarmgate-ratelimit")
    async with FakeUpstream() as main, FakeUpstream(default=ScriptedReply(content="from the backup")) as backup:
        config: dict[str, Any] = {
            "providers": {
                "main": {
                    "type": "openai",
                    "endpoint": main.url,
                    "apiKey": "sk-a",
                    "priority": 1,
                    "models": {"m": {}},
                    "rateLimit": {"requestsPerMinute": 6, "burstCapacity": 3},
                },
                "backup": {
                    "type": "openai",
                    "endpoint": backup.url,
                    "apiKey": "sk-b",
                    "priority": 2,
                    "models": {"b": {}},
                    "rateLimit": {"requestsPerMinute": 6, "burstCapacity": 4},
                },
            },
        }
        async with ProviderManager(config) as manager:
            assert isinstance(manager.plugins.get("ratelimit"), RateLimitPlugin)
            answered: list[CompletionResponse] = []
            refused: list[RateLimitedError] = []

            async def one(i: int) -> None:
                try:
                    answered.append(await manager.complete(prompt=f"question {i}"))
                except RateLimitedError as exc:
                    refused.append(exc)

            async with anyio.create_task_group() as tg:
                for i in range(10):
                    tg.start_soon(one, i)
            # Each upstream got exactly its quota; the rest were refused by the gateway.
            assert len(main.completions) == 3
            assert len(backup.completions) == 4
            assert sorted(r.provider for r in answered) == ["backup"] * 4 + ["main"] * 3
            assert len(refused) == 3
            for error in refused:
                assert isinstance(error, ProviderRateLimitExceededError)
                assert error.status_code == 429
                assert 0 < (error.retry_after or 0) <= 10.0  # one request every 10 s at either
