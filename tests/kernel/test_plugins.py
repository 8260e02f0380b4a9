"""The plugin host: load order, allow/block lists, dispatch semantics."""

from __future__ import annotations

from typing import Any

import pytest

from swarmgate import CompletionRequest, PluginError, ProviderManager, hookimpl
from swarmgate.plugins import ALLOW_ENV, BLOCK_ENV, PluginHost, admitted
from swarmgate.testing.scripted import ScriptedProvider

DRIVERS = {"swarmgate.providers": {"scripted": ScriptedProvider}}
CONFIG = {"providers": {"a": {"type": "scripted", "models": {"m": {}}}}}


def test_core_is_loaded_first_and_cannot_be_blocked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BLOCK_ENV, "core")
    monkeypatch.setenv(ALLOW_ENV, "")
    host = PluginHost()
    host.load()
    names = [p.name for p in host.plugins()]
    assert names == ["core"]
    core = host.plugins()[0]
    assert core.distribution == "swarmgate"
    assert "select_provider" in core.hooks


def test_allow_and_block_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    assert admitted("x", "swarmgate-x") is None
    monkeypatch.setenv(ALLOW_ENV, "swarmgate-x, y")
    assert admitted("x", "swarmgate-x") is None
    assert admitted("y", None) is None
    assert admitted("z", "swarmgate-z") == f"not in {ALLOW_ENV}"
    monkeypatch.setenv(BLOCK_ENV, "x")
    assert admitted("x", "swarmgate-x") == f"blocked by {BLOCK_ENV}"


def test_wrappers_on_async_request_hooks_are_refused() -> None:
    class Wrapper:
        @hookimpl(wrapper=True)
        def before_request(self) -> Any:
            return (yield)

    host = PluginHost()
    with pytest.raises(PluginError, match="wrapper implementations of 'before_request' are not supported"):
        host.register(Wrapper(), "wrapper")
    assert host.get("wrapper") is None


@pytest.mark.anyio
async def test_dispatch_order_first_result_and_argument_subsets() -> None:
    calls: list[str] = []

    class First:
        @hookimpl(tryfirst=True)
        async def before_request(self, request: CompletionRequest) -> None:
            calls.append("first")

    class Rewriter:
        @hookimpl
        def before_request(self, request: CompletionRequest) -> CompletionRequest:
            calls.append("rewriter")
            return CompletionRequest.create("rewritten")

    class Last:
        @hookimpl(trylast=True)
        async def before_request(self, request: CompletionRequest, context: Any) -> None:
            calls.append(f"last saw {request.prompt_text()}")

    class Decider:
        @hookimpl
        async def on_failure(self) -> None:
            calls.append("decider")

    async with ProviderManager(CONFIG, drivers=DRIVERS, plugins=(Last(), Rewriter(), First(), Decider())) as manager:
        await manager.complete(prompt="original")
        assert manager.plugins.plugins()[0].name == "core"
    assert calls == ["first", "rewriter", "last saw rewritten"]


@pytest.mark.anyio
async def test_first_result_hook_stops_at_the_first_answer() -> None:
    called: list[str] = []

    class Picks:
        @hookimpl
        def select_provider(self, candidates: Any) -> list[Any]:
            called.append("picks")
            return list(reversed(candidates))

    cfg = {
        "providers": {"a": {"type": "scripted", "models": {"m": {}}}, "b": {"type": "scripted", "models": {"m": {}}}}
    }
    async with ProviderManager(cfg, drivers=DRIVERS, plugins=(Picks(),)) as manager:
        assert (await manager.complete(prompt="x", model="m")).provider == "b"
    assert called == ["picks"]


@pytest.mark.anyio
async def test_plugin_setup_failure_aborts_initialize_and_closes_providers() -> None:
    class Bad:
        @hookimpl
        async def plugin_setup(self, manager: ProviderManager) -> None:
            raise ValueError("bad section")

    manager = ProviderManager(CONFIG, drivers=DRIVERS, plugins=(Bad(),))
    with pytest.raises(ValueError, match="bad section"):
        await manager.initialize()
    with pytest.raises(RuntimeError, match="closed"):
        await manager.complete(prompt="x")


@pytest.mark.anyio
async def test_lifecycle_hooks_and_provider_changed() -> None:
    events: list[str] = []

    class Watcher:
        @hookimpl
        def plugin_setup(self, manager: ProviderManager) -> None:
            events.append(f"setup {sorted(manager.providers())}")

        @hookimpl
        async def provider_changed(self, name: str, old: Any, new: Any) -> None:
            events.append(f"changed {name} {old is not None} {new is not None}")

        @hookimpl
        def plugin_shutdown(self) -> None:
            events.append("shutdown")

    async with ProviderManager(CONFIG, drivers=DRIVERS, plugins=(Watcher(),)) as manager:
        await manager.add_provider("b", {"type": "scripted"})
        await manager.remove_provider("b")
    assert events == ["setup ['a']", "changed b False True", "changed b True False", "shutdown"]


@pytest.mark.anyio
async def test_an_inactive_plugin_can_discard_itself() -> None:
    class Inactive:
        @hookimpl
        def plugin_setup(self, manager: ProviderManager) -> None:
            assert manager.plugins.discard(self)

        @hookimpl
        def before_request(self) -> None:
            raise AssertionError("a discarded plugin's hooks must not run")

    async with ProviderManager(CONFIG, drivers=DRIVERS, plugins=(Inactive(),)) as manager:
        await manager.complete(prompt="x")
        assert not manager.plugins.has_impls("before_request")
        assert not manager.plugins.discard(object())
