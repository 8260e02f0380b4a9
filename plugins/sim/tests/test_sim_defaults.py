"""The embedded default: loads with no config, routes, fails over, prices."""

from __future__ import annotations

from typing import Any

import pytest

from swarmgate import NoProviderAvailableError, ProviderManager, Target, load_config
from swarmgate_sim import SimPlugin, SimProvider, embedded_default

NAMES = ["sim-qwen", "sim-openai", "sim-claude", "sim-local"]


def instant(**changes: dict[str, Any]) -> dict[str, Any]:
    """The embedded default with no waiting, fixed seeds, no random failures
    (unless ``changes`` set them) and ``changes`` merged into providers."""
    config = embedded_default()
    for i, (name, provider) in enumerate(config["providers"].items()):
        provider.update(timeScale=0, seed=i, failureRate=0.0, midStreamFailureRate=0.0, outages=[])
        provider.update(changes.get(name.replace("-", "_"), {}))
    return config


def test_embedded_default_is_valid_and_fresh() -> None:
    config = load_config(embedded_default())
    assert list(config.providers) == NAMES
    assert {p.type for p in config.providers.values()} == {"sim"}
    assert config.routing.strategy == "priority"
    assert config.routing.load_balancing.algorithm == "round-robin"
    assert config.routing.fallback_enabled
    assert config.routing.fallback_chains[0] == tuple(NAMES)
    assert set(config.routes) == {"fast", "smart"}
    assert config.providers["sim-local"].models["llama-3.1-8b"].price(1000, 1000) == 0.0
    gpt4o = config.providers["sim-openai"].models["gpt-4o"]
    assert gpt4o.price(1_000_000, 1_000_000) == pytest.approx(12.5)
    first = embedded_default()
    first["providers"].clear()
    assert list(embedded_default()["providers"]) == NAMES
    assert SimPlugin().default_config() == embedded_default()


@pytest.mark.anyio
async def test_manager_without_config_uses_the_embedded_default() -> None:
    async with ProviderManager() as manager:
        assert manager.providers() == NAMES
        assert all(isinstance(manager.provider(n), SimProvider) for n in NAMES)
        assert manager.provider("sim-qwen").profile.outages  # the flaky one has its outage window
        assert "fast" in manager.models()
        health = await manager.check_health()
        assert all(status.healthy for status in health.values())


@pytest.mark.anyio
async def test_priority_then_round_robin_then_last_resort() -> None:
    async with ProviderManager(instant()) as manager:
        first = await manager.complete(prompt="hello")
        assert (first.provider, first.model) == ("sim-qwen", "qwen-turbo")
        assert first.metadata["simulated"] is True
        assert first.content.startswith("[simulated sim-qwen/qwen-turbo]")
        model = manager.model_config(Target(first.provider, first.model))
        assert first.cost == pytest.approx(model.price(first.tokens.input, first.tokens.output))
    down = {"sim_qwen": {"failureRate": 1.0, "failureKinds": {"overloaded": 1}}}
    async with ProviderManager(instant(**down)) as manager:
        served = [(await manager.complete(prompt=f"q{i}")).provider for i in range(6)]
    assert set(served) == {"sim-openai", "sim-claude"}  # equal priority: round-robin
    assert served[0] != served[1]
    all_down = {
        name: {"failureRate": 1.0, "failureKinds": {"server_error": 1}}
        for name in ("sim_qwen", "sim_openai", "sim_claude")
    }
    async with ProviderManager(instant(**all_down)) as manager:
        last = await manager.complete(prompt="hello")
    assert last.provider == "sim-local"
    assert next(a.provider for a in last.attempts if not a.ok) == "sim-qwen"
    assert last.cost == 0.0


@pytest.mark.anyio
async def test_flaky_provider_fails_over_along_its_fallback_chain() -> None:
    flaky = {"sim_qwen": {"failureRate": 1.0, "failureKinds": {"rate_limited": 1}}}
    async with ProviderManager(instant(**flaky)) as manager:
        response = await manager.complete(prompt="hello", model="qwen-turbo")
    assert (response.provider, response.model) == ("sim-openai", "gpt-4o-mini")
    failed = response.attempts[0]
    assert (failed.provider, failed.model, failed.ok, failed.error_kind) == (
        "sim-qwen",
        "qwen-turbo",
        False,
        "rate_limited",
    )
    assert response.attempts[-1].ok


@pytest.mark.anyio
async def test_outage_of_the_flaky_provider_fails_over_and_shows_in_health() -> None:
    outage = {"sim_qwen": {"outages": [{"startS": 0, "durationS": 3600}]}}
    async with ProviderManager(instant(**outage)) as manager:
        response = await manager.complete(prompt="hello")
        health = await manager.check_health("sim-qwen")
    assert response.provider in {"sim-openai", "sim-claude"}
    assert response.attempts[0].error_kind == "connection_error"
    assert not health["sim-qwen"].healthy


@pytest.mark.anyio
async def test_routes_and_forced_provider() -> None:
    async with ProviderManager(instant()) as manager:
        fast = await manager.complete(prompt="hello", model="fast")
        smart = await manager.complete(prompt="hello", model="smart")
        forced = await manager.complete(prompt="hello", provider="sim-local")
        stream = [event async for event in manager.stream(prompt="hello", model="smart")]
    assert (fast.provider, fast.model) == ("sim-openai", "gpt-4o-mini")
    assert (smart.provider, smart.model) == ("sim-claude", "claude-3-5-sonnet")
    assert (forced.provider, forced.model) == ("sim-local", "llama-3.1-8b")
    final = stream[-1].response
    assert final is not None
    assert final.provider == "sim-claude"
    assert final.content[:80] == smart.content[:80]  # same prompt, same text (lengths are drawn)


@pytest.mark.anyio
async def test_forced_provider_that_fails_does_not_fail_over() -> None:
    down = {"sim_local": {"failureRate": 1.0, "failureKinds": {"connection_error": 1}}}
    async with ProviderManager(instant(**down)) as manager:
        with pytest.raises(NoProviderAvailableError) as caught:
            await manager.complete(prompt="hello", provider="sim-local")
    assert [(a.provider, a.error_kind) for a in caught.value.attempts] == [("sim-local", "connection_error")]
