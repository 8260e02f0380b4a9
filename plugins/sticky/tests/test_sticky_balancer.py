"""The sticky balancer: key precedence, rendezvous hashing, tier changes,
and end to end through ProviderManager."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace
from typing import Any

import pytest

from swarmgate import (
    CompletionRequest,
    ConfigError,
    Message,
    PluginError,
    ProviderManager,
    RequestContext,
    ServerError,
    Target,
    load_config,
)
from swarmgate.testing.scripted import ScriptedProvider
from swarmgate_sticky import DEFAULT_STICKY_KEY, StickyBalancer, StickySettings, load_settings

pytestmark = pytest.mark.anyio

DRIVERS = {"swarmgate.providers": {"scripted": ScriptedProvider}}
NAMES = ("a", "b", "c", "d")


def config(
    names: tuple[str, ...] = NAMES,
    *,
    algorithm: str = "sticky",
    weights: dict[str, float] | None = None,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    providers = {name: {"type": "scripted", "content": name, "models": {"m": {}}} for name in names}
    balancing: dict[str, Any] = {"algorithm": algorithm}
    if weights is not None:
        balancing["weights"] = weights
    data: dict[str, Any] = {"providers": providers, "routing": {"loadBalancing": balancing}}
    if settings is not None:
        data["plugins"] = {"sticky": settings}
    return data


def tier(names: tuple[str, ...] = NAMES) -> list[Target]:
    return [Target(name, "m") for name in names]


def first(manager: ProviderManager, request: CompletionRequest, names: tuple[str, ...] = NAMES) -> str:
    order = manager.balancer.order(request, tier(names), RequestContext("t", manager, 0.0))
    assert sorted(t.provider for t in order) == sorted(names)
    return order[0].provider


def user(name: str) -> CompletionRequest:
    return CompletionRequest.create("hello", user=name)


async def test_a_user_stays_on_one_target_and_users_spread() -> None:
    async with ProviderManager(config(), drivers=DRIVERS) as manager:
        assert isinstance(manager.balancer, StickyBalancer)
        homes = {}
        for i in range(40):
            answers = {(await manager.complete(prompt=f"question {j}", user=f"user-{i}")).provider for j in range(5)}
            assert len(answers) == 1
            homes[i] = answers.pop()
        spread = Counter(first(manager, user(f"u{i}")) for i in range(2000))
    assert set(homes.values()) == set(NAMES)
    assert all(400 <= count <= 600 for count in spread.values()), spread


async def test_removing_a_target_moves_only_its_share() -> None:
    async with ProviderManager(config(), drivers=DRIVERS) as manager:
        requests = [user(f"u{i}") for i in range(2000)]
        before = [first(manager, r) for r in requests]
        after = [first(manager, r, ("a", "b", "d")) for r in requests]
    moved = [(old, new) for old, new in zip(before, after, strict=True) if old != new]
    assert moved
    assert all(old == "c" for old, _ in moved)  # nobody else moved
    assert len(moved) == before.count("c")  # and everyone on c did
    assert all(110 <= count <= 230 for count in Counter(new for _, new in moved).values())  # spread over the rest


async def test_adding_a_target_takes_only_its_share() -> None:
    async with ProviderManager(config((*NAMES, "e")), drivers=DRIVERS) as manager:
        requests = [user(f"u{i}") for i in range(2000)]
        before = [first(manager, r) for r in requests]
        after = [first(manager, r, (*NAMES, "e")) for r in requests]
    moved = [(old, new) for old, new in zip(before, after, strict=True) if old != new]
    assert all(new == "e" for _, new in moved)
    assert 300 <= len(moved) <= 500  # about a fifth


async def test_remove_provider_end_to_end_keeps_everyone_else_in_place() -> None:
    async with ProviderManager(config(), drivers=DRIVERS) as manager:
        before = {i: (await manager.complete(prompt="hi", user=f"u{i}")).provider for i in range(60)}
        await manager.remove_provider("b")
        after = {i: (await manager.complete(prompt="hi", user=f"u{i}")).provider for i in range(60)}
    assert "b" in before.values()
    assert {i for i in before if before[i] != after[i]} == {i for i in before if before[i] == "b"}


async def test_a_sticky_target_missing_from_the_tier_falls_back_consistently() -> None:
    async with ProviderManager(config(), drivers=DRIVERS) as manager:
        home = (await manager.complete(prompt="hi", user="alice")).provider
        others = tuple(n for n in NAMES if n != home)
        excluded = {"exclude": [home]}
        stand_ins = {
            (await manager.complete(prompt="hi", user="alice", preferences=excluded)).provider for _ in range(5)
        }
        assert stand_ins == {first(manager, user("alice"), others)}
        assert (await manager.complete(prompt="hi", user="alice")).provider == home  # back home


async def test_failover_follows_the_keys_own_order() -> None:
    async with ProviderManager(config(), drivers=DRIVERS) as manager:
        order = [t.provider for t in manager.balancer.order(user("bob"), tier(), RequestContext("t", manager, 0.0))]
        home = manager.provider(order[0])
        assert isinstance(home, ScriptedProvider)
        home.push(ServerError("down"))
        response = await manager.complete(prompt="hi", user="bob")
    assert [a.provider for a in response.attempts] == order[:2]


async def test_key_precedence_and_sources() -> None:
    async with ProviderManager(config(), drivers=DRIVERS) as manager:
        balancer = manager.balancer
        assert isinstance(balancer, StickyBalancer)
        key = balancer.key
        assert balancer.settings.sticky_key == DEFAULT_STICKY_KEY
        everything = CompletionRequest.create("hi", user="u1", metadata={"user": "m1", "session": "s1", "caller": "c1"})
        assert key(everything) == b"id\x00u1"
        assert key(CompletionRequest.create("hi", user="", metadata={"user": "m1", "session": "s1"})) == b"id\x00m1"
        assert key(CompletionRequest.create("hi", metadata={"session": "s1", "caller": "c1"})) == b"id\x00s1"
        assert key(CompletionRequest.create("hi", metadata={"caller": 42})) == b"id\x0042"
        assert key(CompletionRequest.create("hi", system="be brief")) == b"prefix\x00be brief\x00hi"
        assert key(CompletionRequest(messages=(Message("assistant", "only"),))) is None
        # One identity, whichever source carries it.
        assert first(manager, user("zoe")) == first(manager, CompletionRequest.create("x", metadata={"user": "zoe"}))


async def test_conversations_and_shared_prompts_stick_by_prefix() -> None:
    settings = {"prefixLength": 40}
    async with ProviderManager(config(settings=settings), drivers=DRIVERS) as manager:
        system = "You are a support agent for ACME. " * 3  # longer than prefixLength
        turns = [
            CompletionRequest.create(system=system, messages=[{"role": "user", "content": f"question {i}"}])
            for i in range(20)
        ]
        # The system prompt fills the prefix: every request sharing it sticks together.
        assert len({first(manager, r) for r in turns}) == 1
        conversation = [Message("system", "short"), Message("user", "plan my trip to Rome")]
        homes = set()
        for i in range(10):
            history = (*conversation, Message("assistant", f"answer {i}"), Message("user", f"follow-up {i}"))
            homes.add(first(manager, CompletionRequest(messages=history)))
        assert len(homes) == 1  # every turn of a conversation shares system + first user message
        openers = {first(manager, CompletionRequest.create(f"topic {i}", system="short")) for i in range(40)}
        assert len(openers) > 1  # different conversations spread


async def test_weights_scale_each_targets_share() -> None:
    async with ProviderManager(config(("a", "b"), weights={"a": 3, "b": 1}), drivers=DRIVERS) as manager:
        shares = Counter(first(manager, user(f"u{i}"), ("a", "b")) for i in range(4000))
    assert 2850 <= shares["a"] <= 3150, shares


async def test_zero_weight_targets_are_never_first() -> None:
    async with ProviderManager(config(weights={"a": 1, "b": 1, "c": 0, "d": 0}), drivers=DRIVERS) as manager:
        orders = [manager.balancer.order(user(f"u{i}"), tier(), RequestContext("t", manager, 0.0)) for i in range(200)]
    assert all({t.provider for t in order[:2]} == {"a", "b"} for order in orders)


async def test_requests_without_a_key_go_round_robin() -> None:
    async with ProviderManager(config(settings={"stickyKey": ["user"]}), drivers=DRIVERS) as manager:
        picks = [(await manager.complete(prompt="same prompt")).provider for _ in range(8)]
    assert picks == list(NAMES) * 2


async def test_the_assignment_is_the_same_in_every_process() -> None:
    """The hash is stable (not Python's salted hash()): two managers, or two
    gateway instances on different machines, agree with no shared state;
    these golden values pin it."""
    async with (
        ProviderManager(config(), drivers=DRIVERS) as one,
        ProviderManager(config(), drivers=DRIVERS) as two,
    ):
        for i in range(50):
            assert first(one, user(f"u{i}")) == first(two, user(f"u{i}"))
        golden = [first(one, user(name)) for name in ("alice", "bob", "carol", "dave", "erin", "frank")]
    assert golden == GOLDEN


GOLDEN = ["a", "b", "a", "d", "b", "d"]


async def test_single_target_tiers_pass_through() -> None:
    async with ProviderManager(config(), drivers=DRIVERS) as manager:
        one = [Target("a", "m")]
        assert manager.balancer.order(user("x"), one, RequestContext("t", manager, 0.0)) is one


def test_settings_errors_name_the_path() -> None:
    def problems(settings: Any) -> list[tuple[str, str]]:
        with pytest.raises(ConfigError) as info:
            load_settings(load_config(config(settings=settings)))
        return list(info.value.problems)

    assert problems({"stickyKey": ["user", "cookie"]}) == [
        ("plugins.sticky.stickyKey[1]", "unknown source 'cookie' (expected 'user', 'prefix' or 'metadata.<field>')")
    ]
    assert problems({"stickyKey": []}) == [("plugins.sticky.stickyKey", "needs at least one source")]
    assert problems({"stickyKey": "user"}) == [("plugins.sticky.stickyKey", 'expected a list, got "user"')]
    assert problems({"prefixLength": 0}) == [
        ("plugins.sticky.prefixLength", "must be a positive number of characters, got 0")
    ]
    assert problems({"prefix": 10})[0][0] == "plugins.sticky.prefix"
    assert load_settings(load_config(config())) == StickySettings()


async def test_a_bad_setting_fails_start_up() -> None:
    manager = ProviderManager(config(settings={"prefixLength": -1}), drivers=DRIVERS)
    with pytest.raises(ConfigError, match=r"plugins\.sticky\.prefixLength: must be a positive"):
        await manager.initialize()


def test_settings_inside_load_balancing_once_the_kernel_keeps_them() -> None:
    """The proposed kernel change keeps routing.loadBalancing's extra keys in
    ``LoadBalancingConfig.settings``; they are read from there, with that path."""
    base = load_config(config())

    def with_inline(inline: dict[str, Any], plugins: dict[str, Any] | None = None) -> Any:
        routing = SimpleNamespace(load_balancing=SimpleNamespace(weights={}, settings=inline))
        section = {"plugins.sticky": plugins}.get
        return SimpleNamespace(routing=routing, source=None, section=section, providers=base.providers)

    assert load_settings(with_inline({"prefixLength": 7})).prefix_length == 7
    with pytest.raises(ConfigError, match=r"routing\.loadBalancing\.stickyKey\[0\]: unknown source"):
        load_settings(with_inline({"stickyKey": ["nope"]}))
    with pytest.raises(ConfigError, match=r"plugins\.sticky: the sticky settings are already given"):
        load_settings(with_inline({"prefixLength": 7}, {"prefixLength": 8}))


async def test_swapping_the_balancer_is_a_config_edit() -> None:
    for algorithm, distinct in (("round-robin", 4), ("sticky", 1)):
        async with ProviderManager(config(algorithm=algorithm), drivers=DRIVERS) as manager:
            picks = {(await manager.complete(prompt="hi", user="alice")).provider for _ in range(8)}
        assert len(picks) == distinct, algorithm


async def test_a_blocked_plugin_is_a_start_up_error_naming_the_distribution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWARMGATE_DISABLE_PLUGINS", "swarmgate-sticky")
    manager = ProviderManager(config(), drivers=DRIVERS)
    with pytest.raises(PluginError, match=r"'sticky' \(from swarmgate-sticky\) is blocked"):
        await manager.initialize()
