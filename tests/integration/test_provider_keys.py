"""Provider keys on the wire: real drivers (openai, claude) against fake upstreams
on loopback sockets. The upstream sees the keys alternate, a rejected key is
followed at once by the next one, and a rotation under load drops nothing."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from swarmgate import CompletionResponse, FinishEvent, ProviderManager, TextDelta
from swarmgate.logs import fingerprint
from swarmgate.plugins import ALLOW_ENV
from swarmgate.testing import FakeUpstream, ScriptedReply
from swarmgate.testing.anthropic_wire import AnthropicWire

pytestmark = pytest.mark.anyio

KEYS = ["sk-wire-Alpha0Qz7fHk2", "sk-wire-Bravo9Lm3xTe5", "sk-wire-Charlie4Vn8pRw1"]


@pytest.fixture(autouse=True)
def _plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_ENV, "swarmgate,swarmgate-openai,swarmgate-claude")


def openai(url: str, **keys: Any) -> dict[str, Any]:
    return {"type": "openai", "endpoint": url, "timeout": 5000, "models": {"gpt-4o-mini": {}}, **keys}


def claude(url: str, **keys: Any) -> dict[str, Any]:
    return {"type": "claude", "endpoint": url, "timeout": 5000, "models": {"claude-haiku-4-5": {}}, **keys}


def bearer(server: FakeUpstream) -> list[str]:
    return [r.headers["authorization"].removeprefix("Bearer ") for r in server.completions]


async def test_openai_keys_alternate_on_the_wire() -> None:
    async with FakeUpstream() as server:
        cfg = {"providers": {"oa": openai(server.url, apiKeys=KEYS[:2])}}
        async with ProviderManager(cfg) as manager:
            for _ in range(3):
                await manager.complete(prompt="hi", model="oa/gpt-4o-mini")
            async for _event in manager.stream(prompt="hi", model="oa/gpt-4o-mini"):
                pass
    assert bearer(server) == [KEYS[0], KEYS[1], KEYS[0], KEYS[1]]


async def test_anthropic_keys_alternate_on_the_wire() -> None:
    async with FakeUpstream(AnthropicWire()) as server:
        cfg = {"providers": {"cl": claude(server.url, apiKey=KEYS[0], apiKeys=KEYS[1:])}}
        async with ProviderManager(cfg) as manager:
            for _ in range(4):
                await manager.complete(prompt="hi", model="cl/claude-haiku-4-5")
    assert [r.headers["x-api-key"] for r in server.completions] == [*KEYS, KEYS[0]]


async def test_a_401_echoing_the_key_is_followed_by_the_next_key() -> None:
    async with FakeUpstream() as server:
        server.enqueue(ScriptedReply.error(401, f"Incorrect API key provided: {KEYS[0]}."))
        cfg = {"providers": {"oa": openai(server.url, apiKeys=KEYS[:2])}}
        async with ProviderManager(cfg) as manager:
            response = await manager.complete(prompt="hi", model="oa/gpt-4o-mini")
            assert response.provider == "oa"
            assert [(a.ok, a.error) for a in response.attempts] == [(True, None)]
            status = manager.provider_key_status("oa")
            assert [(s["fingerprint"], s["active"]) for s in status] == [
                (fingerprint(KEYS[0]), False),
                (fingerprint(KEYS[1]), True),
            ]
            # A stream whose first answer is a 401 moves on the same way, before any token:
            # after a rotation adding KEYS[2], it is next in turn and rejected; KEYS[0] is
            # still set aside (kept by the rotation), so KEYS[1] answers.
            server.enqueue(ScriptedReply.error(401, f"Incorrect API key provided: {KEYS[2]}."))
            await manager.rotate_provider_keys("oa", KEYS)
            events = [e async for e in manager.stream(prompt="hi", model="oa/gpt-4o-mini")]
            final = events[-1]
            assert isinstance(final, FinishEvent)
            assert final.response is not None
            assert final.response.content == "".join(e.text for e in events if isinstance(e, TextDelta))
            assert [a.ok for a in final.response.attempts] == [True]
    assert bearer(server) == [KEYS[0], KEYS[1], KEYS[2], KEYS[1]]


async def test_every_key_rejected_fails_over_to_the_next_provider() -> None:
    async with FakeUpstream() as primary, FakeUpstream(AnthropicWire()) as backup:
        for key in KEYS[:2]:
            primary.enqueue(ScriptedReply.error(401, f"Incorrect API key provided: {key}."))
        cfg = {
            "providers": {
                "oa": openai(primary.url, apiKeys=KEYS[:2], priority=1),
                "cl": claude(backup.url, apiKey=KEYS[2], priority=2),
            },
            "routing": {"fallbackChains": [["oa", "cl"]]},
        }
        async with ProviderManager(cfg) as manager:
            response = await manager.complete(prompt="hi", model="oa/gpt-4o-mini")
    assert response.provider == "cl"
    assert [(a.provider, a.error_kind) for a in response.attempts] == [("oa", "authentication"), ("cl", None)]
    assert all(key not in str(response.to_dict()) for key in KEYS)
    assert bearer(primary) == KEYS[:2]
    assert len(backup.completions) == 1


async def test_rotation_while_twenty_requests_are_in_flight_on_the_wire() -> None:
    async with FakeUpstream() as server:
        server.enqueue(*[ScriptedReply(content="slow answer", delay=0.3)] * 20)
        async with ProviderManager({"providers": {"oa": openai(server.url, apiKey=KEYS[0])}}) as manager:
            responses: list[CompletionResponse] = []

            async def one() -> None:
                responses.append(await manager.complete(prompt="hi", model="oa/gpt-4o-mini"))

            async with anyio.create_task_group() as group:
                for _ in range(20):
                    group.start_soon(one)
                with anyio.fail_after(5):
                    while len(server.requests) < 20:  # noqa: ASYNC110 - the fake upstream has no event for it
                        await anyio.sleep(0.01)
                assert await manager.rotate_provider_keys("oa", [KEYS[1]]) == [fingerprint(KEYS[1])]
                fresh = await manager.complete(prompt="hi", model="oa/gpt-4o-mini")
                assert fresh.content != "slow answer"  # answered while the twenty still wait
                assert len(responses) == 0
    assert [r.content for r in responses] == ["slow answer"] * 20
    assert bearer(server) == [KEYS[0]] * 20 + [KEYS[1]]
