"""The least-outstanding balancer, end to end through ProviderManager with
scripted providers whose answers are held in flight by delays."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from swarmgate import PluginError, ProviderManager, RequestContext, Target
from swarmgate.testing.scripted import Outcome, ScriptedProvider
from swarmgate_least_outstanding import LeastOutstandingBalancer

pytestmark = pytest.mark.anyio

DRIVERS = {"swarmgate.providers": {"scripted": ScriptedProvider}}
#: Long enough never to finish within a test: held requests are cancelled at its end.
HOLD = 60.0


def config(*, weights: dict[str, float] | None = None, algorithm: str = "least-outstanding") -> dict[str, Any]:
    providers = {name: {"type": "scripted", "content": name, "models": {"m": {}}} for name in ("a", "b", "c")}
    balancing: dict[str, Any] = {"algorithm": algorithm}
    if weights is not None:
        balancing["weights"] = weights
    return {"providers": providers, "routing": {"loadBalancing": balancing}}


def scripted(manager: ProviderManager, name: str) -> ScriptedProvider:
    provider = manager.provider(name)
    assert isinstance(provider, ScriptedProvider)
    return provider


async def until(condition: Callable[[], bool]) -> None:
    """Let other tasks run until ``condition`` holds (bounded, no sleeping)."""
    for _ in range(1000):
        if condition():
            return
        await anyio.lowlevel.checkpoint()
    raise AssertionError("condition never held")


def inflight(manager: ProviderManager) -> dict[str, int]:
    return {name: manager.stats(Target(name, "m")).inflight for name in ("a", "b", "c")}


def tier_order(manager: ProviderManager) -> list[str]:
    tier = [Target("a", "m"), Target("b", "m"), Target("c", "m")]
    order = manager.balancer.order(None, tier, RequestContext("t", manager, 0.0))  # type: ignore[arg-type]
    return [t.provider for t in order]


async def test_the_least_loaded_target_wins_under_concurrent_requests() -> None:
    async with ProviderManager(config(), drivers=DRIVERS) as manager, anyio.create_task_group() as tg:
        assert isinstance(manager.balancer, LeastOutstandingBalancer)
        scripted(manager, "a").push(Outcome(delay=HOLD), Outcome(delay=HOLD))
        scripted(manager, "b").push(Outcome(delay=HOLD))
        # Pin load with forced requests (they bypass the balancer but count as in flight).
        for name in ("a", "a", "b"):
            tg.start_soon(lambda n=name: manager.complete(prompt="hold", provider=n))
        await until(lambda: inflight(manager) == {"a": 2, "b": 1, "c": 0})

        assert tier_order(manager) == ["c", "b", "a"]
        response = await manager.complete(prompt="hi")
        assert response.provider == "c"

        # Now c is busy too: the two least loaded (b, c) share, a stays last.
        scripted(manager, "c").push(Outcome(delay=HOLD))
        tg.start_soon(lambda: manager.complete(prompt="hold", provider="c"))
        await until(lambda: inflight(manager)["c"] == 1)
        orders = [tier_order(manager) for _ in range(4)]
        assert all(order[2] == "a" for order in orders)
        assert {order[0] for order in orders} == {"b", "c"}
        tg.cancel_scope.cancel()


async def test_a_burst_of_concurrent_requests_spreads_evenly() -> None:
    async with ProviderManager(config(), drivers=DRIVERS) as manager, anyio.create_task_group() as tg:
        for name in ("a", "b", "c"):
            scripted(manager, name).push(*[Outcome(delay=HOLD)] * 4)
        for _ in range(9):
            tg.start_soon(lambda: manager.complete(prompt="burst"))
        await until(lambda: sum(inflight(manager).values()) == 9)
        assert inflight(manager) == {"a": 3, "b": 3, "c": 3}
        tg.cancel_scope.cancel()


async def test_with_nothing_in_flight_it_rotates_like_round_robin() -> None:
    async with ProviderManager(config(), drivers=DRIVERS) as manager:
        picks = [(await manager.complete(prompt="hi")).provider for _ in range(6)]
    assert picks == ["a", "b", "c", "a", "b", "c"]


async def test_ties_go_to_the_higher_weight() -> None:
    async with ProviderManager(config(weights={"a": 1, "b": 3, "c": 2}), drivers=DRIVERS) as manager:
        assert [tier_order(manager) for _ in range(3)] == [["b", "c", "a"]] * 3
        manager.stats(Target("b", "m")).inflight += 1  # b busy: fewer in flight beats weight
        try:
            assert tier_order(manager) == ["c", "a", "b"]
        finally:
            manager.stats(Target("b", "m")).inflight -= 1


async def test_single_target_tiers_pass_through() -> None:
    async with ProviderManager(config(), drivers=DRIVERS) as manager:
        tier = [Target("a", "m")]
        assert manager.balancer.order(None, tier, RequestContext("t", manager, 0.0)) is tier  # type: ignore[arg-type]


async def test_a_provider_update_takes_effect_at_once() -> None:
    async with ProviderManager(config(), drivers=DRIVERS) as manager:
        assert tier_order(manager) == ["a", "b", "c"]
        await manager.update_provider("c", {"weight": 5.0})
        assert [tier_order(manager)[0] for _ in range(3)] == ["c", "c", "c"]


async def test_swapping_the_balancer_is_a_config_edit() -> None:
    """With one request stuck on a, round-robin still sends every third
    request there; least-outstanding steers around it."""
    for algorithm, expected in (("round-robin", {"a": 2, "b": 2, "c": 2}), ("least-outstanding", {"b": 3, "c": 3})):
        async with (
            ProviderManager(config(algorithm=algorithm), drivers=DRIVERS) as manager,
            anyio.create_task_group() as tg,
        ):
            scripted(manager, "a").push(Outcome(delay=HOLD))
            tg.start_soon(lambda m=manager: m.complete(prompt="hold", provider="a"))
            await until(lambda m=manager: inflight(m)["a"] == 1)
            picks = Counter([(await manager.complete(prompt="hi")).provider for _ in range(6)])
            assert picks == expected, algorithm
            tg.cancel_scope.cancel()


async def test_a_blocked_plugin_is_a_start_up_error_naming_the_distribution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWARMGATE_DISABLE_PLUGINS", "swarmgate-least-outstanding")
    manager = ProviderManager(config(), drivers=DRIVERS)
    with pytest.raises(PluginError, match=r"'least-outstanding' \(from swarmgate-least-outstanding\) is blocked"):
        await manager.initialize()
