"""Caller keys: missing, wrong and good keys (Bearer and x-api-key), hashed
keys, allowed models, the caller's name and policy in the pipeline, the
admin key, and a caller-key store plugged in through the extension."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import openai
import pytest
from server_testkit import ADMIN_KEY, TEAM_A_KEY, TEAM_B_KEY, Recorder, Upstreams, gateway_config

from swarmgate import ConfigError, ProviderManager, hookimpl
from swarmgate_server import AUTHENTICATOR_EXTENSION, load_settings, run_gateway
from swarmgate_server.auth import KeyRing, ModelFilter, credentials

MESSAGES: Any = [{"role": "user", "content": "hello"}]


def client(gateway: Any, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)


def test_good_keys_name_the_caller(keyed_gateway: Any, keyed_recorder: Recorder) -> None:
    client(keyed_gateway, TEAM_A_KEY).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    # team-b's key is configured only as its SHA-256 hash; x-api-key works as well as Bearer.
    message = anthropic.Anthropic(base_url=keyed_gateway.url, api_key=TEAM_B_KEY, max_retries=0).messages.create(
        model="claude-3-5-haiku", max_tokens=10, messages=MESSAGES
    )
    assert message.content[0].text
    callers = [request.caller for request in keyed_recorder.requests]
    assert callers == ["team-a", "team-b"]


def test_bad_keys(keyed_gateway: Any) -> None:
    url = keyed_gateway.url + "/v1/chat/completions"
    body = {"model": "gpt-4o-mini", "messages": MESSAGES}
    assert httpx.post(url, json=body).status_code == 401
    assert httpx.post(url, json=body, headers={"authorization": "Bearer wrong-key-123456"}).status_code == 401
    assert httpx.post(url, json=body, headers={"authorization": "Basic " + TEAM_A_KEY}).status_code == 401
    assert httpx.post(url, json=body, headers={"x-api-key": TEAM_A_KEY[:-1]}).status_code == 401
    ok = httpx.post(url, json=body, headers={"authorization": "bearer " + TEAM_A_KEY})
    assert ok.status_code == 200
    # The models listing and provider health need a key too; /health does not.
    assert httpx.get(keyed_gateway.url + "/v1/models").status_code == 401
    assert httpx.get(keyed_gateway.url + "/health/providers").status_code == 401
    assert httpx.get(keyed_gateway.url + "/health").status_code == 200


def test_allowed_models(keyed_gateway: Any, upstreams: Upstreams) -> None:
    team_a = client(keyed_gateway, TEAM_A_KEY)
    team_a.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    team_a.chat.completions.create(model="primary/gpt-4o-mini", messages=MESSAGES)  # a bare name admits it anywhere
    team_a.chat.completions.create(model="fast", messages=MESSAGES)  # a route listed by name
    for model in ("claude-3-5-haiku", "auto", "slow-model"):
        with pytest.raises(openai.PermissionDeniedError, match="may not use model"):
            team_a.chat.completions.create(model=model, messages=MESSAGES)
    assert len(upstreams.claude.completions) == 0
    # The listing shows team-a only what it may use.
    ids = {m.id for m in team_a.models.list()}
    assert ids == {"gpt-4o-mini", "primary/gpt-4o-mini", "backup/gpt-4o-mini", "fast"}
    # team-b has no model restriction.
    client(keyed_gateway, TEAM_B_KEY).chat.completions.create(model="claude-3-5-haiku", messages=MESSAGES)


def test_caller_policies_reach_the_manager(keyed_gateway: Any) -> None:
    manager = keyed_gateway.app.manager
    policy = manager.caller_policy("team-b")
    assert policy.requests_per_minute == 100
    assert policy.daily_budget == 5.0
    assert manager.caller_policy("team-a").allowed_models == ("gpt-4o-mini", "fast")
    assert manager.caller_policy("stranger").requests_per_minute is None


def test_admin_key(keyed_gateway: Any) -> None:
    url = keyed_gateway.url + "/admin/providers"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"authorization": "Bearer not-the-admin-key"}).status_code == 401
    forbidden = httpx.get(url, headers={"authorization": "Bearer " + TEAM_A_KEY})
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["code"] == "admin_only"
    ok = httpx.get(url, headers={"authorization": "Bearer " + ADMIN_KEY})
    assert ok.status_code == 200
    assert {p["name"] for p in ok.json()["providers"]} == {"primary", "backup", "claude", "slow"}
    # The admin key works on the API too, as the caller "admin".
    completion = client(keyed_gateway, ADMIN_KEY).chat.completions.create(model="claude-3-5-haiku", messages=MESSAGES)
    assert completion.choices[0].message.content


def test_admin_api_closed_when_keys_but_no_admin_key(upstreams: Upstreams) -> None:
    config = gateway_config(upstreams, apiKeys=[{"key": TEAM_A_KEY, "name": "team-a"}])
    with run_gateway(config) as gateway:
        response = httpx.get(gateway.url + "/admin/status", headers={"authorization": "Bearer " + TEAM_A_KEY})
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "admin_disabled"


def test_open_gateway_accepts_anything(gateway: Any) -> None:
    completion = client(gateway, "any-key-at-all").chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert completion.choices[0].message.content
    assert httpx.get(gateway.url + "/admin/status").status_code == 200


class KeyStore:
    """A caller-key store as another plugin would publish it (async lookup)."""

    def __init__(self) -> None:
        self.revoked: set[str] = set()

    async def authenticate(self, key: str) -> str | None:
        if key.startswith("vk-") and key not in self.revoked:
            return "virtual-" + key[3:]
        return None

    def policy(self, caller: str) -> Any:
        from swarmgate import CallerPolicy

        return CallerPolicy(allowed_models=("gpt-4o-mini",)) if caller.startswith("virtual-") else None


class KeyStorePlugin:
    def __init__(self, store: KeyStore) -> None:
        self.store = store

    @hookimpl
    def plugin_setup(self, manager: ProviderManager) -> None:
        manager.extensions[AUTHENTICATOR_EXTENSION] = self.store
        manager.add_caller_directory(self.store)


def test_a_caller_key_store_plugs_in(upstreams: Upstreams) -> None:
    store = KeyStore()
    recorder = Recorder()
    with run_gateway(gateway_config(upstreams), plugins=[KeyStorePlugin(store), recorder]) as gateway:
        url = gateway.url + "/v1/chat/completions"
        body = {"model": "gpt-4o-mini", "messages": MESSAGES}
        assert httpx.post(url, json=body).status_code == 401  # a store makes keys required
        assert httpx.post(url, json=body, headers={"x-api-key": "vk-alice"}).status_code == 200
        assert recorder.requests[-1].caller == "virtual-alice"
        denied = httpx.post(url, json={**body, "model": "claude-3-5-haiku"}, headers={"x-api-key": "vk-alice"})
        assert denied.status_code == 403
        store.revoked.add("vk-alice")
        assert httpx.post(url, json=body, headers={"x-api-key": "vk-alice"}).status_code == 401


def test_key_settings_are_validated() -> None:
    with pytest.raises(ConfigError) as short:
        load_settings({"apiKeys": [{"key": "short", "name": "x"}]})
    assert "server.apiKeys[0].key" in str(short.value)
    with pytest.raises(ConfigError) as hashed:
        load_settings({"adminKey": "sha256:abc"})
    assert "server.adminKey" in str(hashed.value)
    with pytest.raises(ConfigError) as duplicate:
        load_settings(
            {"apiKeys": [{"key": TEAM_A_KEY, "name": "a"}, {"key": TEAM_A_KEY, "name": "a"}], "adminKey": TEAM_A_KEY}
        )
    message = str(duplicate.value)
    assert "server.apiKeys[1].name: duplicate name 'a'" in message
    assert "server.apiKeys[1].key: the same key as apiKeys[0]" in message
    assert "server.apiKeys[0].key: the same key as server.adminKey" in message
    with pytest.raises(ConfigError, match=r"server\.apiKeys\[0\]\.name"):
        load_settings({"apiKeys": [{"key": TEAM_A_KEY}]})
    with pytest.raises(ConfigError, match=r"server\.apiKeys\[0\]\.dailyBudget"):
        load_settings({"apiKeys": [{"key": TEAM_A_KEY, "name": "a", "dailyBudget": -1}]})


def test_key_ring_and_credentials() -> None:
    settings = load_settings(
        {"apiKeys": [{"key": TEAM_A_KEY, "name": "a", "models": ["gpt-*", "fast"]}], "adminKey": ADMIN_KEY}
    )
    ring = KeyRing(settings)
    caller = ring.identify(TEAM_A_KEY)
    assert caller is not None
    assert caller.name == "a"
    assert ring.identify(ADMIN_KEY) is not None
    assert ring.is_admin(ADMIN_KEY)
    assert not ring.is_admin(TEAM_A_KEY)
    assert ring.identify("nope-nope-nope") is None
    assert credentials(b"Bearer  abc ", None) == "abc"
    assert credentials(b"Token abc", b"xyz") == "xyz"
    assert credentials(None, None) is None
    models = ModelFilter(["gpt-*", "fast", "claude/opus"])
    assert models.allows("gpt-4o")
    assert models.allows("openai/gpt-4o")
    assert models.allows("fast")
    assert models.allows("opus", provider="claude")
    assert not models.allows("opus")
    assert not models.allows("claude-3")
