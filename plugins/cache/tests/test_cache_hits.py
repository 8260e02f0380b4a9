"""Hits and misses against a real loopback upstream speaking the OpenAI wire
format (the ``openai`` provider type): a hit never reaches the upstream,
streamed or not; what is cached and what is not."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from swarmgate import (
    CompletionRequest,
    CompletionResponse,
    ConfigError,
    ContentFilteredError,
    FinishEvent,
    NoProviderAvailableError,
    ProviderManager,
    StreamEvent,
    StreamStart,
    TextDelta,
    ToolCallDelta,
    UsageEvent,
)
from swarmgate.plugins import ALLOW_ENV
from swarmgate.testing import FakeUpstream, ScriptedReply
from swarmgate_cache import CachePlugin, ResponseCache

pytestmark = pytest.mark.anyio

Config = Callable[..., dict[str, Any]]

WEATHER_TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
}
WEATHER_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}


def manager_for(config: dict[str, Any], **kwargs: Any) -> ProviderManager:
    return ProviderManager(config, plugins=[CachePlugin()], **kwargs)


async def collect(manager: ProviderManager, **request: Any) -> list[StreamEvent]:
    return [event async for event in manager.stream(**request)]


def final(events: list[StreamEvent]) -> CompletionResponse:
    last = events[-1]
    assert isinstance(last, FinishEvent)
    assert last.response is not None
    return last.response


async def test_a_repeated_deterministic_request_is_answered_from_the_cache(make_config: Config) -> None:
    async with FakeUpstream(default=ScriptedReply(content="Paris is the capital.")) as upstream:
        async with manager_for(make_config(upstream.url)) as manager:
            first = await manager.complete(prompt="Capital of France?", model="a/m", temperature=0)
            second = await manager.complete(prompt="Capital of France?", model="a/m", temperature=0)
        assert len(upstream.completions) == 1
    assert not first.cached
    assert first.cost > 0
    assert second.cached
    assert second.cost == 0.0
    assert (second.content, second.tokens, second.finish_reason) == (first.content, first.tokens, first.finish_reason)
    assert (second.provider, second.model, second.tool_calls) == (first.provider, first.model, first.tool_calls)
    assert second.id
    assert second.id != first.id
    assert second.attempts == ()
    assert 0 <= second.latency < first.latency + 1000
    assert second.metadata["cache"] == "hit"
    assert second.metadata["cost_saved"] == pytest.approx(first.cost)
    assert isinstance(second.metadata["cached_at"], float)
    assert second.metadata["cache_key"] == manager.extensions["cache"].key_for(
        CompletionRequest.create("Capital of France?", model="a/m", temperature=0.0)
    )


async def test_a_streamed_repeat_is_replayed_from_the_cache(make_config: Config) -> None:
    async with FakeUpstream(default=ScriptedReply(content="one two three")) as upstream:
        async with manager_for(make_config(upstream.url)) as manager:
            live = await collect(manager, prompt="count", model="a/m", temperature=0)
            replay = await collect(manager, prompt="count", model="a/m", temperature=0)
        assert len(upstream.completions) == 1
    assert not final(live).cached
    response = final(replay)
    assert response.cached
    assert [type(e) for e in replay] == [StreamStart, TextDelta, UsageEvent, FinishEvent]
    start, text, usage = replay[0], replay[1], replay[2]
    assert isinstance(start, StreamStart)
    assert (start.provider, start.model) == ("a", "m")
    assert start.id == response.id
    assert isinstance(text, TextDelta)
    assert text.text == "one two three"
    assert isinstance(usage, UsageEvent)
    assert usage.cost == 0.0
    assert usage.tokens == final(live).tokens
    assert response.metadata["cost_saved"] == pytest.approx(final(live).cost)


async def test_plain_and_streamed_requests_share_answers(make_config: Config) -> None:
    async with FakeUpstream(default=ScriptedReply(content="shared answer")) as upstream:
        async with manager_for(make_config(upstream.url)) as manager:
            plain = await manager.complete(prompt="first plain", model="a/m", temperature=0)
            streamed = final(await collect(manager, prompt="first plain", model="a/m", temperature=0))
            live = final(await collect(manager, prompt="first streamed", model="a/m", temperature=0))
            again = await manager.complete(prompt="first streamed", model="a/m", temperature=0)
        assert len(upstream.completions) == 2
    assert streamed.cached
    assert streamed.content == plain.content == "shared answer"
    assert again.cached
    assert again.content == live.content


async def test_tool_calls_are_cached_and_replayed_as_deltas(make_config: Config) -> None:
    reply = ScriptedReply(content="", tool_calls=(WEATHER_CALL,), finish_reason="tool_calls")
    request = {"prompt": "Weather in Paris?", "model": "a/m", "temperature": 0, "tools": [WEATHER_TOOL]}
    async with FakeUpstream(default=reply) as upstream:
        async with manager_for(make_config(upstream.url)) as manager:
            first = await manager.complete(**request)
            second = await manager.complete(**request)
            replay = await collect(manager, **request)
            other_tools = await manager.complete(**{**request, "tools": [WEATHER_TOOL, WEATHER_TOOL]})
        assert len(upstream.completions) == 2
    assert first.tool_calls
    assert first.tool_calls[0]["function"]["name"] == "get_weather"
    assert second.cached
    assert second.tool_calls == first.tool_calls
    assert second.finish_reason == "tool_calls"
    deltas = [e for e in replay if isinstance(e, ToolCallDelta)]
    assert deltas == [ToolCallDelta(0, "call_1", "get_weather", '{"city": "Paris"}')]
    assert final(replay).cached
    assert final(replay).tool_calls == first.tool_calls
    assert not other_tools.cached


@pytest.mark.parametrize(
    ("temperature", "cache", "cached"),
    [
        (None, None, False),
        (0.7, None, False),
        (0.7, {"allow": True}, True),
        (None, {"allow": True}, True),
        (0, None, True),
        (0.0, {"refresh": False}, True),
    ],
)
async def test_only_deterministic_requests_are_cached_unless_allowed(
    make_config: Config, temperature: float | None, cache: dict[str, Any] | None, cached: bool
) -> None:
    request: dict[str, Any] = {"prompt": "pick a number", "model": "a/m", "temperature": temperature}
    if cache is not None:
        request["cache"] = cache
    async with FakeUpstream() as upstream, manager_for(make_config(upstream.url)) as manager:
        await manager.complete(**request)
        second = await manager.complete(**request)
        assert len(upstream.completions) == (1 if cached else 2)
        assert second.cached is cached
        stats = await manager.extensions["cache"].stats()
    assert stats["skipped"] == (0 if cached else 2)
    assert (stats["hits"], stats["misses"]) == ((1, 1) if cached else (0, 0))


async def test_cache_non_deterministic_caches_every_request(make_config: Config) -> None:
    async with FakeUpstream() as upstream:
        async with manager_for(make_config(upstream.url, cacheNonDeterministic=True)) as manager:
            await manager.complete(prompt="a story", model="a/m", temperature=1.2)
            second = await manager.complete(prompt="a story", model="a/m", temperature=1.2)
            third = await manager.complete(prompt="a story", model="a/m")
        assert len(upstream.completions) == 2
    assert second.cached
    assert not third.cached  # no temperature is another request than temperature 1.2


async def test_a_model_defaulting_to_temperature_zero_makes_requests_deterministic(make_config: Config) -> None:
    async with FakeUpstream() as upstream:
        config = make_config(upstream.url)
        config["providers"]["a"]["models"]["m"]["temperature"] = 0
        async with manager_for(config) as manager:
            await manager.complete(prompt="hello", model="a/m")
            hit = await manager.complete(prompt="hello", model="a/m")
            # b/m has no default temperature: its answer is looked up but never stored
            await manager.complete(prompt="hello", model="b/m")
            miss = await manager.complete(prompt="hello", model="b/m")
            stats = await manager.extensions["cache"].stats()
        assert len(upstream.completions) == 3
    assert hit.cached
    assert not miss.cached
    assert (stats["hits"], stats["misses"], stats["stores"]) == (1, 3, 1)


async def test_bypass_neither_reads_nor_writes(make_config: Config) -> None:
    async with FakeUpstream() as upstream, manager_for(make_config(upstream.url)) as manager:
        await manager.complete(prompt="q", model="a/m", temperature=0, cache={"bypass": True})
        stored_nothing = await manager.complete(prompt="q", model="a/m", temperature=0)
        bypassed = await manager.complete(prompt="q", model="a/m", temperature=0, cache={"bypass": True})
        hit = await manager.complete(prompt="q", model="a/m", temperature=0)
        assert len(upstream.completions) == 3
    assert not stored_nothing.cached
    assert not bypassed.cached
    assert hit.cached


async def test_refresh_skips_the_read_and_stores_the_new_answer(make_config: Config) -> None:
    async with FakeUpstream() as upstream, manager_for(make_config(upstream.url)) as manager:
        upstream.enqueue(ScriptedReply(content="old answer"), ScriptedReply(content="new answer"))
        await manager.complete(prompt="q", model="a/m", temperature=0)
        refreshed = await manager.complete(prompt="q", model="a/m", temperature=0, cache={"refresh": True})
        hit = await manager.complete(prompt="q", model="a/m", temperature=0)
        assert len(upstream.completions) == 2
    assert not refreshed.cached
    assert refreshed.content == "new answer"
    assert hit.cached
    assert hit.content == "new answer"


async def test_a_request_ttl_that_is_not_positive_is_refused(make_config: Config) -> None:
    from swarmgate import CacheControl, InvalidRequestError

    async with FakeUpstream() as upstream, manager_for(make_config(upstream.url)) as manager:
        request = CompletionRequest.create("q", model="a/m", temperature=0, cache=CacheControl(ttl=0))
        with pytest.raises(InvalidRequestError, match=r"cache\.ttl"):
            await manager.complete(request)
        assert upstream.completions == []


async def test_what_changes_the_answer_changes_the_key(make_config: Config) -> None:
    base: dict[str, Any] = {"prompt": "q", "model": "a/m", "temperature": 0}
    same = [
        {"metadata": {"trace": "x"}},
        {"tags": ["billing"]},
        {"caller": "team-b"},
        {"user": "u-1"},
        {"temperature": 0.0},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "q"}]}], "prompt": None},
    ]
    different = [
        {"model": "a/n"},
        {"provider": "a", "model": "m"},
        {"max_tokens": 5},
        {"top_p": 0.5},
        {"stop": ["\n"]},
        {"system": "be brief"},
        {"response_format": {"type": "json_object"}},
        {"extra": {"seed": 7}},
        {"tools": [WEATHER_TOOL], "tool_choice": "auto"},
        {"messages": [{"role": "user", "content": "q", "name": "alice"}], "prompt": None},
    ]
    async with FakeUpstream() as upstream, manager_for(make_config(upstream.url)) as manager:
        await manager.complete(**base)
        for variant in same:
            response = await manager.complete(**{**base, **variant})
            assert response.cached, variant
        for variant in different:
            response = await manager.complete(**{**base, **variant})
            assert not response.cached, variant
        assert len(upstream.completions) == 1 + len(different)


async def test_per_caller_keeps_callers_apart(make_config: Config) -> None:
    async with FakeUpstream() as upstream:
        async with manager_for(make_config(upstream.url, perCaller=True)) as manager:
            await manager.complete(prompt="q", model="a/m", temperature=0, caller="team-a")
            own = await manager.complete(prompt="q", model="a/m", temperature=0, caller="team-a")
            other = await manager.complete(prompt="q", model="a/m", temperature=0, caller="team-b")
        assert len(upstream.completions) == 2
    assert own.cached
    assert not other.cached


async def test_failed_requests_store_nothing(make_config: Config) -> None:
    async with FakeUpstream() as upstream, manager_for(make_config(upstream.url)) as manager:
        upstream.enqueue(ScriptedReply.error(503, "overloaded"), ScriptedReply(finish_reason="content_filter"))
        with pytest.raises(NoProviderAvailableError):
            await manager.complete(prompt="q", provider="a", model="m", temperature=0)
        with pytest.raises(ContentFilteredError):
            await manager.complete(prompt="q", provider="a", model="m", temperature=0)
        fresh = await manager.complete(prompt="q", provider="a", model="m", temperature=0)
        hit = await manager.complete(prompt="q", provider="a", model="m", temperature=0)
        assert len(upstream.completions) == 3
        stats = await manager.extensions["cache"].stats()
    assert not fresh.cached
    assert hit.cached
    assert (stats["misses"], stats["stores"], stats["hits"]) == (3, 1, 1)


async def test_loaded_from_its_entry_point(monkeypatch: pytest.MonkeyPatch, make_config: Config) -> None:
    monkeypatch.setenv(ALLOW_ENV, "swarmgate,swarmgate-openai,swarmgate-cache")
    async with FakeUpstream() as upstream:
        async with ProviderManager(make_config(upstream.url)) as manager:
            assert isinstance(manager.plugins.get("cache"), CachePlugin)
            assert isinstance(manager.extensions["cache"], ResponseCache)
            await manager.complete(prompt="q", model="a/m", temperature=0)
            assert (await manager.complete(prompt="q", model="a/m", temperature=0)).cached
        assert len(upstream.completions) == 1


@pytest.mark.parametrize("config_keys", [{"section": False}, {"enabled": False}])
async def test_inert_without_the_section_or_when_disabled(
    monkeypatch: pytest.MonkeyPatch, make_config: Config, config_keys: dict[str, Any]
) -> None:
    monkeypatch.setenv(ALLOW_ENV, "swarmgate,swarmgate-openai,swarmgate-cache")
    async with FakeUpstream() as upstream:
        async with ProviderManager(make_config(upstream.url, **config_keys)) as manager:
            assert manager.plugins.get("cache") is None
            assert not manager.plugins.has_impls("before_request")
            assert "cache" not in manager.extensions
            await manager.complete(prompt="q", model="a/m", temperature=0)
            assert not (await manager.complete(prompt="q", model="a/m", temperature=0)).cached
        assert len(upstream.completions) == 2


@pytest.mark.parametrize(
    ("keys", "path", "message"),
    [
        ({"ttl": 0}, "optimization.caching.ttl", "positive number of milliseconds"),
        ({"ttl": "1h"}, "optimization.caching.ttl", "expected"),
        ({"maxSize": 0}, "optimization.caching.maxSize", "at least 1"),
        ({"strategy": "lfu"}, "optimization.caching.strategy", "'lru', 'fifo'"),
        ({"namespace": "a:b"}, "optimization.caching.namespace", "letters, digits"),
        ({"statsInterval": -1}, "optimization.caching.statsInterval", "non-negative"),
        ({"ttlSeconds": 5}, "optimization.caching.ttlSeconds", ""),
    ],
)
async def test_config_errors_name_the_path(make_config: Config, keys: dict[str, Any], path: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        async with manager_for(make_config("http://127.0.0.1:9/v1", **keys)):
            pass
    assert [p for p, _ in info.value.problems] == [path]
    assert message in str(info.value)
