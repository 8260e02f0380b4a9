"""Configuration of the breaker, and circuits shared by two gateway
instances through one StateStore."""

from __future__ import annotations

from typing import Any

import pytest

from swarmgate import ConfigError, MemoryStateStore, ProviderManager, ServerError, Target
from swarmgate.testing import ScriptedProvider
from swarmgate_breaker import BreakerPlugin, BreakerSettings

pytestmark = pytest.mark.anyio

PRIMARY = Target("primary", "p")


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def config(breaker: Any = None, **routing: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "providers": {
            "primary": {"type": "scripted", "priority": 1, "models": {"p": {}}},
            "spare": {"type": "scripted", "priority": 2, "models": {"s": {}}},
        },
        "routing": {"fallbackChains": [["primary", "spare"]], **routing},
    }
    if breaker is not None:
        data["routing"]["circuitBreaker"] = breaker
    return data


def scripted(manager: ProviderManager, name: str) -> ScriptedProvider:
    provider = manager.provider(name)
    assert isinstance(provider, ScriptedProvider)
    return provider


async def test_two_instances_share_circuits_through_the_state_store() -> None:
    clock = Clock()
    shared = MemoryStateStore(clock=clock)
    drivers: dict[str, Any] = {
        "swarmgate.providers": {"scripted": ScriptedProvider},
        "swarmgate.state": {"memory": lambda options: shared},
    }
    cfg = config({"failureThreshold": 2, "timeout": 10_000, "successThreshold": 1, "syncInterval": 1000})
    async with (
        ProviderManager(cfg, drivers=drivers, plugins=(BreakerPlugin(clock=clock),)) as one,
        ProviderManager(cfg, drivers=drivers, plugins=(BreakerPlugin(clock=clock),)) as two,
    ):
        # Instance two has served primary before: its view says closed.
        assert (await two.complete(prompt="hi", model="primary/p")).provider == "primary"
        # Instance one sees the primary fail twice: the shared circuit opens.
        scripted(one, "primary").push(ServerError("down"), ServerError("down"))
        for _ in range(2):
            assert (await one.complete(prompt="hi", model="primary/p")).provider == "spare"
        assert one.extensions["breaker"].state(PRIMARY) == "open"
        # Instance two re-reads the circuit after its sync interval and fails fast too.
        clock.now += 1.0
        assert (await two.complete(prompt="hi", model="primary/p")).provider == "spare"
        assert len(scripted(two, "primary").calls) == 1
        assert two.extensions["breaker"].state(PRIMARY) == "open"
        assert not two.handle("primary").healthy  # every model of it is open, as instance one saw
        # Half-open: instance two's probe succeeds and closes the shared circuit.
        clock.now += 10.0
        assert (await two.complete(prompt="hi", model="primary/p")).provider == "primary"
        assert two.extensions["breaker"].state(PRIMARY) == "closed"
        await one.extensions["breaker"].sync()
        assert one.extensions["breaker"].state(PRIMARY) == "closed"
        assert one.handle("primary").healthy
        assert two.handle("primary").healthy
        assert (await one.complete(prompt="hi", model="primary/p")).provider == "primary"


async def test_failures_from_two_instances_add_up() -> None:
    clock = Clock()
    shared = MemoryStateStore(clock=clock)
    drivers: dict[str, Any] = {
        "swarmgate.providers": {"scripted": ScriptedProvider},
        "swarmgate.state": {"memory": lambda options: shared},
    }
    cfg = config({"failureThreshold": 4})
    async with (
        ProviderManager(cfg, drivers=drivers, plugins=(BreakerPlugin(clock=clock),)) as one,
        ProviderManager(cfg, drivers=drivers, plugins=(BreakerPlugin(clock=clock),)) as two,
    ):
        for manager in (one, two, one, two):
            scripted(manager, "primary").push(ServerError("down"))
            await manager.complete(prompt="hi", model="primary/p")
        assert two.extensions["breaker"].state(PRIMARY) == "open"
        assert await shared.get("breaker:primary/p:state") == f"open:{clock.now!r}".encode()


async def test_inert_without_the_section_or_when_disabled() -> None:
    drivers = {"swarmgate.providers": {"scripted": ScriptedProvider}}
    for cfg in (config(), config({"enabled": False}), config(fallback={"circuitBreaker": False})):
        plugin = BreakerPlugin()
        async with ProviderManager(cfg, drivers=drivers, plugins=(plugin,)) as manager:
            assert "breaker" not in manager.extensions
            scripted(manager, "primary").push(*[ServerError("down")] * 10)
            for _ in range(10):
                await manager.complete(prompt="hi", model="primary/p")
            assert len(scripted(manager, "primary").calls) == 10
            assert not plugin.active


async def test_the_guides_fallback_shorthand_turns_it_on_with_defaults() -> None:
    drivers = {"swarmgate.providers": {"scripted": ScriptedProvider}}
    cfg = config(fallback={"enabled": True, "maxRetries": 5, "circuitBreaker": True})
    plugin = BreakerPlugin()
    async with ProviderManager(cfg, drivers=drivers, plugins=(plugin,)) as manager:
        assert "breaker" in manager.extensions
        assert plugin.settings == BreakerSettings()
        scripted(manager, "primary").push(*[ServerError("down")] * 6)
        for _ in range(6):
            await manager.complete(prompt="hi", model="primary/p")
        assert len(scripted(manager, "primary").calls) == 5  # the default failureThreshold


BAD: list[tuple[Any, str, str]] = [
    ({"failureThreshold": 0}, "routing.circuitBreaker.failureThreshold", "at least 1"),
    ({"timeout": -5}, "routing.circuitBreaker.timeout", "positive"),
    ({"failureRateThreshold": 50}, "routing.circuitBreaker.failureRateThreshold", "fraction"),
    ({"window": 0}, "routing.circuitBreaker.window", "positive"),
    ({"halfOpenMaxRequests": 0}, "routing.circuitBreaker.halfOpenMaxRequests", "at least 1"),
    ({"countedErrors": ["invalid_request"]}, "routing.circuitBreaker.countedErrors[0]", "not the provider's fault"),
    ({"countedErrors": ["timeout", "gremlins"]}, "routing.circuitBreaker.countedErrors[1]", "unknown error kind"),
    ({"failureThreshold": "5"}, "routing.circuitBreaker.failureThreshold", "expected an integer"),
    ({"resetTimeout": 5}, "routing.circuitBreaker.resetTimeout", "unknown key"),
]


@pytest.mark.parametrize(("section", "path", "message"), BAD)
async def test_bad_values_are_named_by_path(section: Any, path: str, message: str) -> None:
    drivers = {"swarmgate.providers": {"scripted": ScriptedProvider}}
    with pytest.raises(ConfigError) as info:
        await ProviderManager(config(section), drivers=drivers, plugins=(BreakerPlugin(),)).initialize()
    assert [p for p, _ in info.value.problems] == [path]
    assert message in info.value.problems[0][1]


async def test_a_bad_shorthand_is_named() -> None:
    drivers = {"swarmgate.providers": {"scripted": ScriptedProvider}}
    with pytest.raises(ConfigError, match=r"routing.fallback.circuitBreaker: expected true or false"):
        await ProviderManager(
            config(fallback={"circuitBreaker": "yes"}), drivers=drivers, plugins=(BreakerPlugin(),)
        ).initialize()
