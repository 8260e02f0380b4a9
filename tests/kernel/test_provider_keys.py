"""Provider API keys: sources, several keys in turn, set-aside, rotation, status."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest
import structlog

from swarmgate import (
    AuthenticationError,
    CompletionResponse,
    ConfigError,
    FinishEvent,
    InvalidRequestError,
    KeySource,
    NoProviderAvailableError,
    PermissionDeniedError,
    PluginError,
    ProviderCall,
    ProviderConfig,
    ProviderManager,
    ProviderReply,
    SwarmgateError,
    Target,
    UnknownModelError,
    hookimpl,
)
from swarmgate.config import to_dict
from swarmgate.logs import fingerprint
from swarmgate.testing.scripted import ScriptedProvider

pytestmark = pytest.mark.anyio


@attrs.define
class Upstream:
    """What the fake provider type saw and accepts (shared by every instance)."""

    valid: set[str]
    seen: list[str | None] = attrs.field(factory=list)
    pause: float = 0.0
    status: int = 401
    instances: list[ScriptedProvider] = attrs.field(factory=list)

    def drivers(self) -> dict[str, Any]:
        upstream = self

        class Keyed(ScriptedProvider):
            """Accepts only ``upstream.valid`` keys; echoes a bad key in its error, like real upstreams."""

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                upstream.instances.append(self)

            def _check(self) -> None:
                key = self.config.api_key
                upstream.seen.append(key)
                if key not in upstream.valid:
                    cls = PermissionDeniedError if upstream.status == 403 else AuthenticationError
                    raise cls(f"Incorrect API key provided: {key}", provider=self.name, upstream_status=upstream.status)

            async def complete(self, call: ProviderCall) -> ProviderReply:
                if upstream.pause:
                    await anyio.sleep(upstream.pause)
                self._check()
                return await super().complete(call)

            async def stream(self, call: ProviderCall) -> Any:
                self._check()
                async for event in super().stream(call):
                    yield event

        return {"swarmgate.providers": {"keyed": Keyed, "scripted": ScriptedProvider}}


def config(primary: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "providers": {
            "primary": {"type": "keyed", "priority": 1, "timeout": 2000, "models": {"m": {}}, **primary},
            "spare": {"type": "scripted", "priority": 2, "timeout": 2000, "models": {"s": {}}},
        },
        "routing": {"fallbackChains": [["primary", "spare"]]},
        **extra,
    }


class Observer:
    """Counts the failures the pipeline reports to plugins."""

    def __init__(self) -> None:
        self.failures: list[str] = []
        self.changes: list[tuple[str | None, str | None]] = []

    @hookimpl
    def on_failure(self, error: SwarmgateError) -> None:
        self.failures.append(error.kind.value)

    @hookimpl
    def provider_changed(self, old: ProviderConfig | None, new: ProviderConfig | None) -> None:
        self.changes.append((old.api_key if old else None, new.api_key if new else None))


def manager_for(
    upstream: Upstream, cfg: Any, env: dict[str, str] | None = None, plugins: tuple[object, ...] = ()
) -> ProviderManager:
    return ProviderManager(cfg, drivers=upstream.drivers(), env=env or {}, plugins=plugins)


def scripted(manager: ProviderManager, name: str) -> ScriptedProvider:
    provider = manager.provider(name)
    assert isinstance(provider, ScriptedProvider)
    return provider


async def ask(manager: ProviderManager, n: int = 1) -> list[CompletionResponse]:
    return [await manager.complete(prompt="hi", model="primary/m") for _ in range(n)]


# ---------------------------------------------------------------------------
# Sources


async def test_keys_from_every_source_in_order_without_duplicates(tmp_path: Path) -> None:
    keyfile = tmp_path / "keys.txt"
    keyfile.write_text("# mounted secret\nkey-file-one\n\n  key-file-two  \nkey-env-one\n")
    envfile = tmp_path / "source.txt"
    envfile.write_text("key-source-file\n")
    env = {"ONE": "key-env-one", "TWO": "key-env-two", "SRC": "key-source-env"}
    cfg = config(
        {
            "apiKey": "${ONE}",
            "apiKeys": ["${TWO}", "key-literal"],
            "apiKeyFile": str(keyfile),
            "keySource": {"type": "env", "variables": ["SRC"]},
        }
    )
    cfg["providers"]["other"] = {
        "type": "keyed",
        "models": {"o": {}},
        "keySource": {"type": "file", "path": str(envfile)},
    }
    every = ["key-env-one", "key-env-two", "key-literal", "key-file-one", "key-file-two", "key-source-env"]
    upstream = Upstream(set(every) | {"key-source-file"})
    async with manager_for(upstream, cfg, env) as manager:
        status = manager.provider_key_status("primary")
        assert [s["fingerprint"] for s in status] == [fingerprint(k) for k in every]
        assert [s["fingerprint"] for s in manager.provider_key_status("other")] == [fingerprint("key-source-file")]
        assert manager.provider_key_status("spare") == []
        await ask(manager, len(every))
        assert upstream.seen == every
        # The driver instances see one key each, and nothing of the other sources.
        configs = [p.config for p in upstream.instances if p.name == "primary"]
        assert [c.api_key for c in configs] == every
        assert all(c.api_keys == () and c.api_key_file is None and c.key_source is None for c in configs)


async def test_a_relative_key_file_is_found_next_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "primary.keys").write_text("key-next-to-config\n")
    path = tmp_path / "swarmgate.json"
    path.write_text(json.dumps(config({"apiKeyFile": "secrets/primary.keys"})))
    upstream = Upstream({"key-next-to-config"})
    async with manager_for(upstream, str(path)) as manager:
        await ask(manager)
    assert upstream.seen == ["key-next-to-config"]


@pytest.mark.parametrize(
    ("primary", "env", "path", "problem"),
    [
        ({"apiKeys": ["${SET}", "${UNSET}"]}, {"SET": "key-set-123"}, "providers.primary.apiKeys[1]", "${UNSET}"),
        ({"apiKeyFile": "/nonexistent/keys.txt"}, {}, "providers.primary.apiKeyFile", "cannot read the key file"),
        ({"keySource": {"type": "env", "variables": ["NOPE"]}}, {}, "providers.primary.keySource.variables[0]", "NOPE"),
        ({"keySource": {"type": "env"}}, {}, "providers.primary.keySource.variables", "required"),
        ({"keySource": {"type": "file", "path": 3}}, {}, "providers.primary.keySource.path", "string"),
        ({"keySource": {"path": "x"}}, {}, "providers.primary.keySource.type", "must name a key source"),
        ({"apiKeys": "key-not-a-list-123"}, {}, "providers.primary.apiKeys", "expected a list"),
        ({"setAsideFor": 0}, {}, "providers.primary.setAsideFor", "positive"),
    ],
)
async def test_unusable_key_settings_are_config_errors_naming_the_path(
    primary: dict[str, Any], env: dict[str, str], path: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as info:
        async with manager_for(Upstream(set()), config(primary), env):
            pass
    text = str(info.value)
    assert path in text, text
    assert problem in text, text
    assert "key-set-123" not in text
    assert "key-not-a-list-123" not in text


async def test_key_file_problems_name_the_file_never_the_keys(tmp_path: Path) -> None:
    empty = tmp_path / "empty.keys"
    empty.write_text("# nothing yet\n\n")
    with pytest.raises(ConfigError, match=r"providers\.primary\.apiKeyFile: the key file .*empty\.keys.* holds no key"):
        async with manager_for(Upstream(set()), config({"apiKeyFile": str(empty)})):
            pass
    broken = tmp_path / "broken.keys"
    broken.write_text("key-fine-1234\nkey with-space-5678\n")
    with pytest.raises(ConfigError) as info:
        async with manager_for(Upstream(set()), config({"apiKeyFile": str(broken)})):
            pass
    text = str(info.value)
    assert "line 2" in text
    assert "whitespace" in text
    assert "with-space-5678" not in text
    assert "key-fine-1234" not in text


async def test_unknown_key_source_names_the_path_and_the_distribution() -> None:
    with pytest.raises(
        PluginError, match=r"providers\.primary\.keySource\.type: unknown key source 'vault'.*swarmgate-vault"
    ):
        async with manager_for(Upstream(set()), config({"keySource": {"type": "vault"}})):
            pass


async def test_a_provider_type_that_needs_a_key_gets_one_from_any_source(tmp_path: Path) -> None:
    class NeedsKey(ScriptedProvider):
        requires_api_key = True

    drivers = {"swarmgate.providers": {"keyed": NeedsKey, "scripted": ScriptedProvider}}
    with pytest.raises(ConfigError, match=r"providers\.primary\.apiKey: provider type 'keyed' needs an API key"):
        async with ProviderManager(config({}), drivers=drivers):
            pass
    keyfile = tmp_path / "k"
    keyfile.write_text("key-from-file-1\n")
    async with ProviderManager(config({"apiKeyFile": str(keyfile)}), drivers=drivers) as manager:
        assert manager.provider("primary").config.api_key == "key-from-file-1"


async def test_a_key_source_plugin_is_found_and_closed() -> None:
    @attrs.frozen
    class VaultSettings:
        mount: str
        token: str

    closed: list[str] = []

    class Vault(KeySource):
        settings_class = VaultSettings

        async def keys(self) -> list[str]:
            assert self.settings.token == self.env["VAULT_TOKEN"]
            return [f"key-{self.settings.mount}-a", f"key-{self.settings.mount}-b"]

        async def aclose(self) -> None:
            closed.append(self.path)

    upstream = Upstream({"key-llm-a", "key-llm-b"})
    drivers = {**upstream.drivers(), "swarmgate.key_sources": {"vault": Vault}}
    cfg = config({"keySource": {"type": "vault", "mount": "llm", "token": "${VAULT_TOKEN}"}})
    env = {"VAULT_TOKEN": "vault-token-123456"}
    async with ProviderManager(cfg, drivers=drivers, env=env) as manager:
        await ask(manager, 2)
        assert upstream.seen == ["key-llm-a", "key-llm-b"]
        assert closed == ["providers.primary.keySource"]
        # A config dump masks the source's credential-looking options.
        dumped = to_dict(manager.config)["providers"]["primary"]["keySource"]
        assert dumped == {"type": "vault", "mount": "llm", "token": "***"}
    with pytest.raises(ConfigError, match=r"providers\.primary\.keySource\.mount: required key missing"):
        async with ProviderManager(config({"keySource": {"type": "vault", "token": "t"}}), drivers=drivers):
            pass


async def test_a_literal_key_in_a_config_file_is_a_warning_naming_the_provider(tmp_path: Path) -> None:
    path = tmp_path / "swarmgate.json"
    path.write_text(json.dumps(config({"apiKey": "${ONE}", "apiKeys": ["key-literal-98765"]})))
    with structlog.testing.capture_logs() as events:
        async with manager_for(Upstream({"key-literal-98765"}), str(path), {"ONE": "key-env-12345"}):
            pass
    warnings = [e for e in events if e["event"] == "literal_api_key_in_config"]
    assert [(w["provider"], w["path"], w["log_level"]) for w in warnings] == [
        ("primary", "providers.primary.apiKeys[0]", "warning")
    ]
    assert "key-literal-98765" not in repr(events)
    with structlog.testing.capture_logs() as events:  # a config given in code is the caller's business
        async with manager_for(Upstream(set()), config({"apiKey": "key-literal-98765"})):
            pass
    assert not [e for e in events if e["event"] == "literal_api_key_in_config"]


# ---------------------------------------------------------------------------
# Several keys in turn, set aside on rejection


async def test_several_keys_are_used_in_turn() -> None:
    upstream = Upstream({"key-a-1111", "key-b-2222", "key-c-3333"})
    async with manager_for(upstream, config({"apiKeys": ["key-a-1111", "key-b-2222", "key-c-3333"]})) as manager:
        await ask(manager, 4)
        events = [e async for e in manager.stream(prompt="hi", model="primary/m")]
        assert isinstance(events[-1], FinishEvent)
        status = manager.provider_key_status("primary")
    assert upstream.seen == ["key-a-1111", "key-b-2222", "key-c-3333", "key-a-1111", "key-b-2222"]
    assert [s["active"] for s in status] == [True, True, True]
    assert all(s["last_used"] is not None and s["last_used"] <= time.time() for s in status)


async def test_a_rejected_key_is_set_aside_and_the_next_key_answers() -> None:
    upstream = Upstream({"key-good-2222"})
    observer = Observer()
    cfg = config({"apiKeys": ["key-bad-1111", "key-good-2222"]})
    async with manager_for(upstream, cfg, plugins=(observer,)) as manager:
        started = time.time()
        (response,) = await ask(manager)
        assert response.provider == "primary"
        # One attempt: the rejected key is not a provider failure.
        assert [(a.provider, a.ok) for a in response.attempts] == [("primary", True)]
        assert observer.failures == []
        assert manager.stats(Target("primary", "m")).failures == 0
        bad, good = manager.provider_key_status("primary")
        assert bad["fingerprint"] == fingerprint("key-bad-1111")
        assert (bad["active"], bad["failures"]) == (False, 1)
        assert started + 590 < bad["set_aside_until"] < time.time() + 601
        assert (good["active"], good["failures"], good["set_aside_until"]) == (True, 0, None)
        # While it is set aside, the bad key is skipped.
        await ask(manager, 3)
    assert upstream.seen == ["key-bad-1111"] + ["key-good-2222"] * 4


async def test_a_stream_moves_to_the_next_key_before_its_first_token() -> None:
    upstream = Upstream({"key-good-2222"})
    observer = Observer()
    cfg = config({"apiKeys": ["key-bad-1111", "key-good-2222"]})
    async with manager_for(upstream, cfg, plugins=(observer,)) as manager:
        events = [e async for e in manager.stream(prompt="hi", model="primary/m")]
        final = events[-1]
        assert isinstance(final, FinishEvent)
        assert final.response is not None
        assert final.response.provider == "primary"
        assert [a.ok for a in final.response.attempts] == [True]
        assert observer.failures == []
        assert [s["active"] for s in manager.provider_key_status("primary")] == [False, True]
        for provider in upstream.instances:
            assert not provider.closed
    assert upstream.seen == ["key-bad-1111", "key-good-2222"]


async def test_a_set_aside_key_comes_back_after_the_period() -> None:
    upstream = Upstream({"key-good-2222"})
    cfg = config({"apiKeys": ["key-flaky-1111", "key-good-2222"], "setAsideFor": 100})
    async with manager_for(upstream, cfg) as manager:
        await ask(manager)
        assert upstream.seen == ["key-flaky-1111", "key-good-2222"]
        upstream.valid.add("key-flaky-1111")  # fixed upstream
        await anyio.sleep(0.15)
        status = manager.provider_key_status("primary")
        assert [s["active"] for s in status] == [True, True]
        assert status[0]["set_aside_until"] is None
        await ask(manager, 2)
    assert upstream.seen[2:] == ["key-flaky-1111", "key-good-2222"]


async def test_when_every_key_is_rejected_the_auth_error_fails_over() -> None:
    upstream = Upstream(set())
    observer = Observer()
    cfg = config({"apiKeys": ["key-bad-1111", "key-bad-2222"]})
    async with manager_for(upstream, cfg, plugins=(observer,)) as manager:
        (response,) = await ask(manager)
        assert response.provider == "spare"
        assert [(a.provider, a.error_kind) for a in response.attempts] == [
            ("primary", "authentication"),
            ("spare", None),
        ]
        assert observer.failures == ["authentication"]  # once: the provider's failure, not each key's
        assert upstream.seen == ["key-bad-1111", "key-bad-2222"]
        # Every key set aside: the next request still tries one (the first to come back), once.
        (again,) = await ask(manager)
        assert again.provider == "spare"
        assert upstream.seen[2:] == ["key-bad-1111"]
        # ... and a key that works again is back at once.
        upstream.valid.add("key-bad-2222")
        await ask(manager)  # key-bad-1111 was tried last: key-bad-2222's period ends first now
        assert upstream.seen[3:] == ["key-bad-2222"]
        assert [s["active"] for s in manager.provider_key_status("primary")] == [False, True]
        (fixed,) = await ask(manager)  # key-bad-1111 is still set aside: skipped
        assert fixed.provider == "primary"
        assert upstream.seen[4:] == ["key-bad-2222"]


async def test_a_403_from_the_upstream_sets_the_key_aside_a_407_does_not() -> None:
    upstream = Upstream({"key-good-2222"}, status=403)
    async with manager_for(upstream, config({"apiKeys": ["key-bad-1111", "key-good-2222"]})) as manager:
        (response,) = await ask(manager)
        assert response.provider == "primary"
    assert upstream.seen == ["key-bad-1111", "key-good-2222"]
    upstream = Upstream({"key-good-2222"}, status=407)  # the proxy wants its own credentials
    async with manager_for(upstream, config({"apiKeys": ["key-bad-1111", "key-good-2222"]})) as manager:
        (response,) = await ask(manager)
        assert response.provider == "spare"
        assert [s["active"] for s in manager.provider_key_status("primary")] == [True, True]
    assert upstream.seen == ["key-bad-1111"]


async def test_an_echoed_key_never_reaches_an_attempt_or_an_error() -> None:
    keys = ["key-echoed-aaaa1111", "key-echoed-bbbb2222"]
    upstream = Upstream(set())
    async with manager_for(upstream, config({"apiKeys": keys})) as manager:
        with pytest.raises(NoProviderAvailableError) as info:
            await manager.complete(prompt="hi", provider="primary", model="m")
    error = info.value
    shown = [str(error), repr(error), str(error.to_dict()), repr(error.last_error), str(error.attempts)]
    for key in keys:
        assert all(key not in text for text in shown), shown
    assert fingerprint(keys[1]) in str(error)


# ---------------------------------------------------------------------------
# Rotation


async def test_rotation_while_twenty_requests_are_in_flight_drops_none() -> None:
    upstream = Upstream({"key-old-1111", "key-new-2222"}, pause=0.2)
    observer = Observer()
    async with manager_for(upstream, config({"apiKey": "key-old-1111"}), plugins=(observer,)) as manager:
        old_instance = scripted(manager, "primary")
        responses: list[CompletionResponse] = []

        async def one() -> None:
            responses.extend(await ask(manager))

        async with anyio.create_task_group() as group:
            for _ in range(20):
                group.start_soon(one)
            await anyio.sleep(0.05)
            assert manager.handle("primary").inflight == 20  # type: ignore[union-attr]
            assert await manager.rotate_provider_keys("primary", ["key-new-2222"]) == [fingerprint("key-new-2222")]
            assert not old_instance.closed  # still answering the twenty
            fresh = [await manager.complete(prompt="hi", model="primary/m")]
        assert old_instance.closed  # closed after its last call
        assert len(responses) == 20
        assert all(r.provider == "primary" and r.content == "ok" for r in responses)
        assert fresh[0].provider == "primary"
        assert upstream.seen == ["key-old-1111"] * 20 + ["key-new-2222"]
        assert manager.provider("primary").config.api_key == "key-new-2222"
        assert [s["fingerprint"] for s in manager.provider_key_status("primary")] == [fingerprint("key-new-2222")]
        assert observer.failures == []
        assert observer.changes == []  # explicit keys leave the config as written


async def test_rotation_rereads_env_file_and_source_and_keeps_unchanged_keys(tmp_path: Path) -> None:
    keyfile = tmp_path / "keys"
    keyfile.write_text("key-file-1111\nkey-file-2222\n")
    env = {"MAIN": "key-env-1111", "SRC": "key-src-1111"}
    cfg = config({"apiKey": "${MAIN}", "apiKeyFile": str(keyfile), "keySource": {"type": "env", "variables": ["SRC"]}})
    upstream = Upstream({"key-env-2222", "key-file-2222", "key-file-3333", "key-src-2222"})
    observer = Observer()
    async with manager_for(upstream, cfg, env, plugins=(observer,)) as manager:
        assert not await manager.refresh_credentials("primary")  # nothing changed
        await ask(manager, 2)  # key-env-1111 is rejected and set aside, key-file-1111 too; key-file-2222 answers
        replaced = scripted(manager, "primary")  # key-env-1111's instance
        env["MAIN"] = "key-env-2222"
        env["SRC"] = "key-src-2222"
        keyfile.write_text("key-file-2222\nkey-file-3333\n")
        rotated = await manager.rotate_provider_keys("primary")
        expected = ["key-env-2222", "key-file-2222", "key-file-3333", "key-src-2222"]
        assert rotated == [fingerprint(k) for k in expected]
        assert manager.config.providers["primary"].api_key == "key-env-2222"
        assert observer.changes == [("key-env-1111", "key-env-2222")]
        status = {s["fingerprint"]: s for s in manager.provider_key_status("primary")}
        assert status[fingerprint("key-file-2222")]["last_used"] is not None  # the same slot, kept
        assert all(s["active"] for s in status.values())
        assert replaced.closed  # rotated out while idle: closed at once
        seen_before = len(upstream.seen)
        await ask(manager, 4)
        assert sorted(str(k) for k in upstream.seen[seen_before:]) == sorted(expected)
        assert not await manager.refresh_credentials("primary")


async def test_a_failed_rotation_keeps_the_keys_in_use() -> None:
    env = {"MAIN": "key-env-1111"}
    upstream = Upstream({"key-env-1111"})
    async with manager_for(upstream, config({"apiKey": "${MAIN}"}), env) as manager:
        del env["MAIN"]
        with pytest.raises(
            ConfigError, match=r"providers\.primary\.apiKey: environment variable \$\{MAIN\} is not set"
        ):
            await manager.rotate_provider_keys("primary")
        assert not await manager.refresh_credentials("primary")
        with pytest.raises(UnknownModelError):
            await manager.rotate_provider_keys("nope", ["key-x-123456"])
        with pytest.raises(UnknownModelError):
            manager.provider_key_status("nope")
        for bad in ([], "key-a-string", ["key with space 1234"], [""]):
            with pytest.raises(InvalidRequestError) as info:
                await manager.rotate_provider_keys("primary", bad)
            assert "space 1234" not in str(info.value)
        await ask(manager)
    assert upstream.seen == ["key-env-1111"]


async def test_explicit_keys_last_until_the_sources_are_read_again(tmp_path: Path) -> None:
    env = {"MAIN": "key-env-1111"}
    upstream = Upstream({"key-env-1111", "key-given-2222", "key-env-3333"})
    async with manager_for(upstream, config({"apiKey": "${MAIN}"}), env) as manager:
        await manager.rotate_provider_keys("primary", ["key-given-2222"])
        await manager.update_provider("primary", {"timeout": 3000})  # not a key setting: the given key stays
        assert manager.config.providers["primary"].timeout == 3000
        await ask(manager)
        assert await manager.refresh_credentials("primary")  # back to the sources
        await ask(manager)
        await manager.rotate_provider_keys("primary", ["key-given-2222"])
        await manager.update_provider("primary", {"apiKey": "key-env-3333"})  # a key setting: the config wins
        await ask(manager)
    assert upstream.seen == ["key-given-2222", "key-env-1111", "key-env-3333"]


async def test_update_provider_keeps_the_secret_settings() -> None:
    cfg = config({"apiKey": "key-one-1111", "apiKeys": ["key-two-2222"], "proxy": "http://u:pw-123456@127.0.0.1:9"})
    upstream = Upstream({"key-one-1111", "key-two-2222"})
    async with manager_for(upstream, cfg) as manager:
        await manager.update_provider("primary", {"priority": 5})
        updated = manager.config.providers["primary"]
        assert (updated.api_key, updated.api_keys, updated.proxy) == (
            "key-one-1111",
            ("key-two-2222",),
            "http://u:pw-123456@127.0.0.1:9",
        )
        dumped = to_dict(manager.config)["providers"]["primary"]
        assert (dumped["apiKey"], dumped["apiKeys"], dumped["proxy"]) == ("***", ["***"], "***")
        assert "key-two-2222" not in repr(manager.config)
        assert "key-two-2222" not in repr(manager.handle("primary"))


async def test_a_health_probe_uses_a_key_that_is_not_set_aside() -> None:
    probed: list[str | None] = []

    class Probed(ScriptedProvider):
        async def health_check(self) -> Any:
            probed.append(self.config.api_key)
            return await super().health_check()

    upstream = Upstream({"key-good-2222"})
    drivers = {"swarmgate.providers": {"keyed": upstream.drivers()["swarmgate.providers"]["keyed"], "scripted": Probed}}
    cfg = config({"apiKeys": ["key-bad-1111", "key-good-2222"]})
    cfg["providers"]["spare"]["apiKeys"] = ["key-spare-aaaa", "key-spare-bbbb"]
    async with ProviderManager(cfg, drivers=drivers) as manager:
        assert (await manager.check_health("spare"))["spare"].healthy
        assert probed == ["key-spare-aaaa"]
        await ask(manager)
        assert [s["active"] for s in manager.provider_key_status("primary")] == [False, True]
