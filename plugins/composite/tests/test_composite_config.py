"""Configuration: the composite's keys, its targets checked at start-up (no
unknown providers, no cycles), dynamic changes, the runtime cycle guard and
the aggregated health probe."""

from __future__ import annotations

from typing import Any, cast

import pytest

from swarmgate import (
    CompletionRequest,
    ConfigError,
    InvalidRequestError,
    ProviderManager,
    SwarmgateError,
    registry,
)
from swarmgate.testing import ScriptedProvider, attempt_error
from swarmgate_composite import CompositeProvider

DRIVERS = {registry.PROVIDERS: {"scripted": ScriptedProvider, "composite": CompositeProvider}}


def scripted_provider(**extra: Any) -> dict[str, Any]:
    return {"type": "scripted", "models": {"m": {}}, **extra}


def composite(targets: list[str], mode: str = "race", **extra: Any) -> dict[str, Any]:
    return {"type": "composite", "mode": mode, "targets": targets, "models": {"x": {}}, **extra}


async def start_error(providers: dict[str, Any]) -> list[tuple[str, str]]:
    """The problems a manager with ``providers`` reports at start-up."""
    manager = ProviderManager({"providers": providers}, drivers=DRIVERS)
    with pytest.raises(ConfigError) as info:
        await manager.initialize()
    return list(info.value.problems)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("settings", "path", "message"),
    [
        ({"targets": ["a/m"]}, "providers.c.mode", "required key missing"),
        ({"mode": "race"}, "providers.c.targets", "required key missing"),
        ({"mode": "relay", "targets": ["a/m"]}, "providers.c.mode", "unknown mode 'relay'"),
        ({"mode": "race", "targets": []}, "providers.c.targets", "needs at least one"),
        ({"mode": "race", "targets": ["a/m", "a"]}, "providers.c.targets[1]", "expected 'provider/model', got 'a'"),
        ({"mode": "race", "targets": ["a/m"], "combiner": {}}, "providers.c.combiner", "only for mode 'fanout'"),
        ({"mode": "fanout", "targets": ["a/m"], "minSuccesses": 2}, "providers.c.minSuccesses", "between 1 and"),
        (
            {"mode": "fanout", "targets": ["a/m"], "minSuccesses": "2"},
            "providers.c.minSuccesses",
            "expected an integer",
        ),
        ({"mode": "sequential", "targets": ["a/m"], "minSuccesses": 1}, "providers.c.minSuccesses", "only for mode"),
        ({"mode": "race", "targets": ["a/m"], "refineInstructions": "x"}, "providers.c.refineInstructions", "only"),
        (
            {"mode": "sequential", "targets": ["a/m"], "refineInstructions": " "},
            "providers.c.refineInstructions",
            "empty",
        ),
        ({"mode": "fanout", "targets": ["a/m"], "combiner": {"type": "jury"}}, "providers.c.combiner.type", "unknown"),
        ({"mode": "fanout", "targets": ["a/m"], "combiner": {"type": "judge"}}, "providers.c.combiner.target", "needs"),
        (
            {"mode": "fanout", "targets": ["a/m"], "combiner": {"type": "majority", "target": "a/m"}},
            "providers.c.combiner.target",
            "only for a judge",
        ),
        ({"mode": "fanout", "targets": ["a/m"], "combiner": {"kind": "x"}}, "providers.c.combiner.kind", "unknown key"),
        ({"mode": "fanout", "targets": ["a/m"], "candidateTimeout": 0}, "providers.c.candidateTimeout", "positive"),
    ],
)
async def test_bad_settings_name_their_path(settings: dict[str, Any], path: str, message: str) -> None:
    problems = await start_error({"a": scripted_provider(), "c": {"type": "composite", **settings}})
    assert [p for p, _ in problems] == [path]
    assert message in problems[0][1]


@pytest.mark.anyio
async def test_unknown_disabled_missing_model_and_self_targets_are_refused() -> None:
    problems = await start_error(
        {
            "a": scripted_provider(),
            "off": scripted_provider(enabled=False),
            "c": composite(["a/m", "nowhere/m", "off/m", "a/gpt-9", "c/x"]),
        }
    )
    assert problems == [
        ("providers.c.targets[1]", "unknown provider 'nowhere' (configured: ['a', 'c', 'off'])"),
        ("providers.c.targets[2]", "provider 'off' is disabled"),
        ("providers.c.targets[3]", "provider 'a' has no model 'gpt-9' (models: ['m'])"),
        ("providers.c.targets[4]", "a composite cannot target itself (c/x)"),
    ]


@pytest.mark.anyio
async def test_an_unknown_judge_is_refused() -> None:
    problems = await start_error(
        {"a": scripted_provider(), "c": composite(["a/m"], "fanout", combiner={"type": "judge", "target": "j/m"})}
    )
    assert problems == [("providers.c.combiner.target", "unknown provider 'j' (configured: ['a', 'c'])")]


@pytest.mark.anyio
async def test_a_candidate_timeout_must_leave_time_to_combine() -> None:
    problems = await start_error(
        {"a": scripted_provider(), "c": composite(["a/m"], "fanout", timeout=1000, candidateTimeout=1000)}
    )
    assert problems == [
        ("providers.c.candidateTimeout", "must be less than the composite's timeout (1000 ms) to leave time to combine")
    ]


@pytest.mark.anyio
async def test_a_cycle_through_other_composites_is_refused() -> None:
    problems = await start_error(
        {
            "a": scripted_provider(),
            "c1": composite(["a/m", "c2/x"]),
            "c2": composite(["c3/x"], "fanout"),
            "c3": composite(["a/m", "c1/x"], "sequential"),
        }
    )
    assert problems == [("providers.c1.targets[1]", "leads back to this composite: c1 -> c2 -> c3 -> c1")]


@pytest.mark.anyio
async def test_a_judge_that_leads_back_is_a_cycle() -> None:
    problems = await start_error(
        {
            "a": scripted_provider(),
            "c1": composite(["a/m"], "fanout", combiner={"type": "judge", "target": "c2/x"}),
            "c2": composite(["c1/x"]),
        }
    )
    assert problems == [("providers.c1.combiner.target", "leads back to this composite: c1 -> c2 -> c1")]


@pytest.mark.anyio
async def test_nested_composites_without_a_cycle_work() -> None:
    config = {
        "providers": {
            "a": scripted_provider(content="from a"),
            "b": scripted_provider(content="from b"),
            "inner": composite(["a/m", "b/m"], "fanout"),
            "outer": composite(["inner/x"], "sequential"),
        }
    }
    async with ProviderManager(config, drivers=DRIVERS) as manager:
        response = await manager.complete(model="outer/x", prompt="hi")
        (call,) = cast(ScriptedProvider, manager.provider("a")).calls
    assert response.content == "from a"
    assert response.metadata["composite"]["winner"] == "inner/x"
    assert call.request.metadata["composite"]["path"] == ["outer", "inner"]


@pytest.mark.anyio
async def test_dynamic_changes_are_checked_too() -> None:
    config = {"providers": {"a": scripted_provider(), "c1": composite(["a/m"])}}
    async with ProviderManager(config, drivers=DRIVERS) as manager:
        with pytest.raises(ConfigError) as added:
            await manager.add_provider("c2", composite(["ghost/m"]))
        assert added.value.problems == (
            ("providers.c2.targets[0]", "unknown provider 'ghost' (configured: ['a', 'c1'])"),
        )
        await manager.add_provider("c2", composite(["c1/x"]))
        with pytest.raises(ConfigError) as updated:
            await manager.update_provider("c1", {"targets": ["a/m", "c2/x"]})
        assert updated.value.problems == (("providers.c1.targets[1]", "leads back to this composite: c1 -> c2 -> c1"),)
        # The old c1 still serves.
        assert (await manager.complete(model="c2/x", prompt="hi")).content == "ok"


@pytest.mark.anyio
async def test_a_request_that_already_passed_through_is_refused() -> None:
    """The runtime guard behind the start-up check (e.g. a composite
    registered under another type name, invisible to that check)."""
    config = {"providers": {"a": scripted_provider(), "c": composite(["a/m"])}}
    request = CompletionRequest.create("hi", model="c/x", metadata={"composite": {"path": ["c"]}})
    async with ProviderManager(config, drivers=DRIVERS) as manager:
        with pytest.raises(SwarmgateError) as info:
            await manager.complete(request)
    error = attempt_error(info.value)
    assert isinstance(error, InvalidRequestError)
    assert "composite cycle: c -> c" in error.message


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("mode", "extra", "healthy"),
    [("race", {}, True), ("sequential", {}, True), ("fanout", {"minSuccesses": 2}, False)],
)
async def test_health_is_enough_healthy_targets(mode: str, extra: dict[str, Any], healthy: bool) -> None:
    config = {
        "providers": {
            "up": scripted_provider(),
            "down": scripted_provider(healthy=False),
            "c": composite(["up/m", "down/m"], mode, **extra),
        }
    }
    async with ProviderManager(config, drivers=DRIVERS) as manager:
        status = (await manager.check_health("c"))["c"]
    assert status.healthy is healthy
    needed = extra.get("minSuccesses", 1)
    assert status.detail == (
        f"1 of 2 targets healthy, {needed} needed: up: healthy (scripted); down: unhealthy (scripted)"
    )
    assert status.latency is not None


@pytest.mark.anyio
async def test_the_entry_point_builds_it() -> None:
    """Loaded by its ``type`` through the entry point, like any provider type."""
    config = {"providers": {"a": scripted_provider(), "c": composite(["a/m"])}}
    async with ProviderManager(config, drivers={registry.PROVIDERS: {"scripted": ScriptedProvider}}) as manager:
        assert type(manager.provider("c")) is CompositeProvider
        assert (await manager.complete(model="c/x", prompt="hi")).content == "ok"
