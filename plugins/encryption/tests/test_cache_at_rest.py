"""Cached responses encrypted at rest, end to end: a ProviderManager with
the encryption and cache plugins. The entries in the StateStore are
envelopes bound to their key names; an entry modified IN THE STORE, or
copied under another request's key, is refused, reported (counted and
logged as tampered) and never returned; entries survive a data key
rotation and a restart on the same keyring."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from structlog.testing import capture_logs

from swarmgate import CompletionRequest, ConfigError, ProviderManager
from swarmgate.testing import ScriptedProvider
from swarmgate_cache import CachePlugin, ResponseCache
from swarmgate_encryption import CACHE_AAD, EncryptionPlugin, EncryptionService, generate_key_text, key_id_of

pytestmark = pytest.mark.anyio

Config = Callable[..., dict[str, Any]]
ENTRIES = "cache:default:e:"


@pytest.fixture
def gateway(make_config: Config, drivers: Any, clock: Any) -> Callable[..., ProviderManager]:
    """``gateway(**encryption)``: the encryption and cache plugins (fake clock) on the shared store."""

    def build(**encryption: Any) -> ProviderManager:
        return ProviderManager(
            make_config(caching={"statsInterval": 0}, keyRotation=60_000, **encryption),
            drivers=drivers,
            plugins=[EncryptionPlugin(clock=clock, background=False), CachePlugin(clock=clock, monotonic=clock)],
        )

    return build


def parts(manager: ProviderManager) -> tuple[EncryptionService, ResponseCache, ScriptedProvider]:
    service, cache, provider = manager.extensions["encryption"], manager.extensions["cache"], manager.provider("p")
    assert isinstance(service, EncryptionService)
    assert isinstance(cache, ResponseCache)
    assert isinstance(provider, ScriptedProvider)
    return service, cache, provider


def ask(prompt: str) -> dict[str, Any]:
    return {"prompt": prompt, "model": "p/m", "temperature": 0}


async def entry_of(manager: ProviderManager, prompt: str) -> tuple[str, bytes]:
    """The store key name and stored bytes of ``prompt``'s cache entry."""
    _, cache, _ = parts(manager)
    name = ENTRIES + cache.key_for(CompletionRequest.create(prompt, model="p/m", temperature=0))
    stored = await manager.state.get(name)
    assert stored is not None
    return name, stored


async def test_entries_are_stored_encrypted_and_served(gateway: Any) -> None:
    async with gateway() as manager:
        service, cache, provider = parts(manager)
        provider.push("the confidential answer")
        first = await manager.complete(**ask("a private question"))
        assert (first.content, first.cached) == ("the confidential answer", False)
        name, stored = await entry_of(manager, "a private question")
        assert b"confidential" not in stored
        assert b"private" not in stored
        assert key_id_of(stored) == service.current_key_id()
        # The plaintext is the cache's JSON entry, bound to its store key name.
        entry = orjson.loads(service.decrypt(stored, CACHE_AAD + name.encode()))
        assert entry["content"] == "the confidential answer"
        # Key names are keyed hashes: not the cache's plain hash of the request.
        assert name.removeprefix(ENTRIES) != ResponseCache(manager, cache.settings).key_for(
            CompletionRequest.create("a private question", model="p/m", temperature=0)
        )
        second = await manager.complete(**ask("a private question"))
        assert (second.content, second.cached) == ("the confidential answer", True)
        assert len(provider.calls) == 1


async def test_an_entry_tampered_with_in_the_store_is_refused_and_reported(gateway: Any) -> None:
    async with gateway() as manager:
        service, cache, provider = parts(manager)
        provider.push("the genuine answer", "a fresh answer")
        await manager.complete(**ask("q"))
        name, stored = await entry_of(manager, "q")
        forged = bytearray(stored)
        forged[-20] ^= 0x01  # one bit of the ciphertext, in the store
        await manager.state.set(name, bytes(forged))
        with capture_logs() as logs:
            response = await manager.complete(**ask("q"))
        # Never returned: the provider answered again.
        assert (response.content, response.cached) == ("a fresh answer", False)
        assert len(provider.calls) == 2
        # Reported: logged by both plugins, counted by both.
        events = {e["event"]: e for e in logs if e["log_level"] == "warning"}
        assert set(events) == {"encryption_record_tampered", "cache_entry_tampered"}
        assert "authentication failed" in events["encryption_record_tampered"]["reason"]
        assert "TamperedError" in events["cache_entry_tampered"]["error"]
        assert (await cache.stats())["tampered"] == 1
        assert service.status()["tampered"] == 1
        # The tampered entry was replaced by the fresh answer, served from now on.
        again = await manager.complete(**ask("q"))
        assert (again.content, again.cached) == ("a fresh answer", True)


async def test_an_entry_copied_under_another_key_is_refused(gateway: Any) -> None:
    async with gateway() as manager:
        _service, cache, provider = parts(manager)
        provider.push("answer to one", "answer to two", "answer to two, again")
        await manager.complete(**ask("one"))
        await manager.complete(**ask("two"))
        _, stored_one = await entry_of(manager, "one")
        name_two, _ = await entry_of(manager, "two")
        # A valid envelope, under the wrong key name: prompt two must not get prompt one's answer.
        await manager.state.set(name_two, stored_one)
        response = await manager.complete(**ask("two"))
        assert (response.content, response.cached) == ("answer to two, again", False)
        assert (await cache.stats())["tampered"] == 1
        assert (await manager.complete(**ask("one"))).content == "answer to one"


async def test_garbage_and_plaintext_in_the_store_are_refused(gateway: Any) -> None:
    async with gateway() as manager:
        _service, cache, _provider = parts(manager)
        await manager.complete(**ask("q"))
        name, _ = await entry_of(manager, "q")
        plaintext_entry = orjson.dumps(
            {
                "content": "injected",
                "provider": "p",
                "model": "m",
                "tokens": [1, 1, 2],
                "finish": "stop",
                "tool_calls": None,
                "cost": 0.0,
                "at": 0.0,
                "tags": [],
            }
        )
        for junk in (b"", b"\x01" * 40, plaintext_entry):
            await manager.state.set(name, junk)
            response = await manager.complete(**ask("q"))
            assert response.content != "injected"
            assert not response.cached
        assert (await cache.stats())["tampered"] == 3


async def test_entries_survive_rotation_and_restart(gateway: Any, clock: Any) -> None:
    async with gateway() as manager:
        service, _, provider = parts(manager)
        provider.push("before rotation")
        await manager.complete(**ask("old"))
        old_key = service.current_key_id()
        clock.advance(61)  # the scheduled key takes over
        provider.push("after rotation")
        await manager.complete(**ask("new"))
        assert service.current_key_id() != old_key
        _, stored_old = await entry_of(manager, "old")
        _, stored_new = await entry_of(manager, "new")
        assert (key_id_of(stored_old), key_id_of(stored_new)) == (old_key, service.current_key_id())
        assert (await manager.complete(**ask("old"))).cached
    # A restarted gateway on the same backend (keyring in the StateStore) serves both.
    async with gateway() as manager:
        _, _, provider = parts(manager)
        old, new = await manager.complete(**ask("old")), await manager.complete(**ask("new"))
        assert (old.content, old.cached) == ("before rotation", True)
        assert (new.content, new.cached) == ("after rotation", True)
        assert provider.calls == []


async def test_the_sqlite_keyring_across_restarts(gateway: Any, make_config: Config, drivers: Any, clock: Any) -> None:
    async with gateway(keyring="sqlite") as manager:
        parts(manager)[2].push("kept")
        await manager.complete(**ask("q"))
    async with gateway(keyring="sqlite") as manager:
        response = await manager.complete(**ask("q"))
        assert (response.content, response.cached) == ("kept", True)
        assert parts(manager)[0].status()["keyring"].startswith("sqlite:")


async def test_without_encrypt_cache_entries_stay_plain(gateway: Any) -> None:
    async with gateway(encryptCache=False) as manager:
        _service, _cache, provider = parts(manager)
        provider.push("plain answer")
        await manager.complete(**ask("q"))
        _, stored = await entry_of(manager, "q")
        assert b"plain answer" in stored
        assert "cache_codec" not in manager.extensions


async def test_no_master_key_or_the_wrong_one_never_falls_back_to_plaintext(
    gateway: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with gateway() as manager:
        await manager.complete(**ask("q"))
    monkeypatch.delenv("SWARMGATE_MASTER_KEY")
    with pytest.raises(ConfigError, match="SWARMGATE_MASTER_KEY is not set"):
        async with gateway():
            pass
    monkeypatch.setenv("SWARMGATE_MASTER_KEY", generate_key_text())
    with pytest.raises(ConfigError, match="does not unwrap"):
        async with gateway():
            pass
