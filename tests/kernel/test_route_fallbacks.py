"""``routes.<name>.fallbacks``: targets tried after every target of the route failed over."""

from __future__ import annotations

from typing import Any

import pytest

from swarmgate import ConfigError, ProviderManager, ServerError, load_config
from swarmgate.testing.scripted import ScriptedProvider

pytestmark = pytest.mark.anyio

DRIVERS = {"swarmgate.providers": {"scripted": ScriptedProvider}}


def config(route: dict[str, Any]) -> dict[str, Any]:
    scripted = {"type": "scripted", "timeout": 500}
    return {
        "providers": {
            "east": {**scripted, "models": {"gpt": {}}},
            "west": {**scripted, "models": {"gpt": {}}},
            "backup": {**scripted, "models": {"claude": {}, "other": {}}},
            "off": {**scripted, "enabled": False, "models": {"gpt": {}}},
        },
        "routes": {"gpt": route},
    }


def provider(manager: ProviderManager, name: str) -> ScriptedProvider:
    found = manager.provider(name)
    assert isinstance(found, ScriptedProvider)
    return found


async def test_fallbacks_come_after_every_target_and_never_before() -> None:
    cfg = config({"targets": ["east/gpt", "west/gpt"], "fallbacks": ["backup/claude"]})
    async with ProviderManager(cfg, drivers=DRIVERS) as manager:
        served = {(await manager.complete(prompt="hi", model="gpt")).provider for _ in range(6)}
        assert served == {"east", "west"}  # the balancer spreads over the targets only
        provider(manager, "east").push(ServerError("down"))
        provider(manager, "west").push(ServerError("down"))
        response = await manager.complete(prompt="hi", model="gpt")
        assert (response.provider, response.model) == ("backup", "claude")
        tried = [attempt.provider for attempt in response.attempts]
        assert sorted(tried[:2]) == ["east", "west"]
        assert tried[2:] == ["backup"]
        assert len(response.attempts) == 3


async def test_fallbacks_alone_serve_when_no_target_is_live() -> None:
    cfg = config({"targets": ["off/gpt"], "fallbacks": ["backup/other"]})
    async with ProviderManager(cfg, drivers=DRIVERS) as manager:
        response = await manager.complete(prompt="hi", model="gpt")
    assert (response.provider, response.model) == ("backup", "other")


def test_fallbacks_are_checked_like_targets() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(config({"targets": ["east/gpt"], "fallbacks": ["nowhere/x", "backup/missing", "bad"]}))
    paths = [path for path, _ in caught.value.problems]
    assert paths == ["routes.gpt.fallbacks[0]", "routes.gpt.fallbacks[1]", "routes.gpt.fallbacks[2]"]


def test_a_route_without_fallbacks_is_unchanged() -> None:
    loaded = load_config(config({"targets": ["east/gpt"], "ordered": True}))
    assert loaded.routes["gpt"].fallbacks == ()
    assert load_config(config(["east/gpt"])).routes["gpt"].targets == ("east/gpt",)  # type: ignore[arg-type]
