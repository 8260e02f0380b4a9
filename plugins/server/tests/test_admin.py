"""The admin API: providers added, changed and removed while requests run;
config reload; analytics, recommendations, cache and usage through the
services plugins publish; health, metrics and the OpenAPI document."""

from __future__ import annotations

import hashlib
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import attrs
import httpx
import openai
import pytest
from openapi_spec_validator import validate
from server_testkit import ADMIN_KEY, PLUGINS, TEAM_A_KEY, Upstreams, gateway_config, wait_for

from swarmgate import ProviderManager, hookimpl
from swarmgate.plugins import ALLOW_ENV
from swarmgate.testing import ScriptedReply
from swarmgate_server import run_gateway
from swarmgate_server.admin import mask_secrets

MESSAGES: Any = [{"role": "user", "content": "hello"}]


def client(gateway: Any, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)


def stream_text(gateway: Any, model: str = "gpt-4o-mini") -> tuple[str, str]:
    """One streamed request: (provider that answered, text)."""
    raw = client(gateway).chat.completions.with_raw_response.create(model=model, messages=MESSAGES, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    return raw.headers["x-swarmgate-provider"], text


def test_providers_change_while_requests_run(upstreams: Upstreams) -> None:
    slow_words = "w1 w2 w3 w4 w5 w6 w7 w8 w9 w10"
    upstreams.primary.default = ScriptedReply(content=slow_words, chunk_delay=0.03)
    try:
        with run_gateway(gateway_config(upstreams)) as gateway, ThreadPoolExecutor(8) as pool:
            admin = httpx.Client(base_url=gateway.url)
            running = [pool.submit(stream_text, gateway) for _ in range(6)]
            wait_for(lambda: len(upstreams.primary.completions) >= 6, what="six streams in flight")
            # Add a provider, change one, remove the one serving the streams.
            added = admin.post(
                "/admin/providers",
                json={
                    "name": "extra",
                    "config": {
                        "type": "openai",
                        "endpoint": upstreams.slow.url,
                        "models": {"gpt-4o-mini": {}},
                        "priority": 9,
                    },
                },
            )
            assert added.status_code == 201, added.text
            assert added.json()["live"] is True
            assert admin.patch("/admin/providers/backup", json={"priority": 0}).json()["config"]["priority"] == 0
            assert admin.delete("/admin/providers/primary").json() == {"removed": "primary"}
            # Every stream in flight finishes on the instance it started with.
            for future in running:
                assert future.result(timeout=10) == ("primary", slow_words)
            # New requests see the new table.
            assert stream_text(gateway)[0] == "backup"
            assert stream_text(gateway, "extra/gpt-4o-mini")[0] == "extra"
            names = {p["name"] for p in admin.get("/admin/providers").json()["providers"]}
            assert names == {"backup", "claude", "slow", "extra"}
            assert "primary/gpt-4o-mini" not in {m.id for m in client(gateway).models.list()}
            # Mistakes are clear errors.
            duplicate = admin.post("/admin/providers", json={"name": "extra", "config": {"type": "openai"}})
            assert duplicate.status_code == 400
            assert duplicate.json()["error"]["problems"][0]["path"] == "providers.extra"
            bad = admin.post("/admin/providers", json={"name": "x", "config": {"type": "openai", "priority": "high"}})
            assert bad.status_code == 400
            assert bad.json()["error"]["problems"][0]["path"] == "providers.x.priority"
            unknown_type = admin.post("/admin/providers", json={"name": "y", "config": {"type": "warp-drive"}})
            assert unknown_type.status_code == 404
            assert admin.delete("/admin/providers/nobody").status_code == 404
            assert admin.patch("/admin/providers/backup", content=b"[1]").status_code == 400
    finally:
        upstreams.primary.default = ScriptedReply()


def test_config_reload(upstreams: Upstreams, tmp_path: Path) -> None:
    path = tmp_path / "swarmgate.json"
    config = gateway_config(upstreams, adminKey=ADMIN_KEY)
    path.write_text(json.dumps(config))
    upstreams.primary.default = ScriptedReply(content="still streaming after the reload", chunk_delay=0.03)
    try:
        with run_gateway(str(path)) as gateway, ThreadPoolExecutor(2) as pool:
            admin = httpx.Client(base_url=gateway.url, headers={"authorization": "Bearer " + ADMIN_KEY})
            in_flight = pool.submit(stream_text, gateway)
            wait_for(lambda: upstreams.primary.completions, what="a stream in flight")
            providers = config["providers"]
            providers["backup"]["priority"] = 0
            del providers["slow"]
            providers["extra"] = {"type": "openai", "endpoint": upstreams.slow.url, "models": {"extra-model": {}}}
            config["server"]["apiKeys"] = [{"key": TEAM_A_KEY, "name": "team-a"}]
            config["routing"] = {"strategy": "priority", "fallbackEnabled": False}
            path.write_text(json.dumps(config))
            result = admin.post("/admin/config/reload")
            assert result.status_code == 200, result.text
            body = result.json()
            assert (body["added"], body["updated"], body["removed"]) == (["extra"], ["backup"], ["slow"])
            assert body["notApplied"] == ["routing"]
            assert in_flight.result(timeout=10) == ("primary", "still streaming after the reload")
            assert gateway.app.manager.config.providers["backup"].priority == 0
            # The new caller key is in force at once.
            assert httpx.get(gateway.url + "/v1/models").status_code == 401
            models = client(gateway, TEAM_A_KEY).models.list()
            assert "extra-model" in {m.id for m in models}
            assert "slow-model" not in {m.id for m in models}
            # A broken file changes nothing and says why.
            path.write_text('{"providers": {"bad": {"type": "openai", "timeout": -5}}}')
            broken = admin.post("/admin/config/reload")
            assert broken.status_code == 400
            assert broken.json()["error"]["problems"][0]["path"] == "providers.bad.timeout"
            assert "extra" in gateway.app.manager.providers()
    finally:
        upstreams.primary.default = ScriptedReply()


def test_reload_needs_a_file(gateway: Any) -> None:
    response = httpx.post(gateway.url + "/admin/config/reload")
    assert response.status_code == 409


@attrs.frozen
class FakeRecord:
    id: str
    ts: float
    provider: str


class FakeServices:
    """Stand-ins for the analytics, cache and usage services other plugins publish."""

    def __init__(self) -> None:
        self.invalidated: list[dict[str, Any]] = []
        self.admin_actions: list[tuple[Any, ...]] = []

    def record_admin(
        self,
        action: str,
        actor: str | None,
        target: str | None = None,
        details: Any = None,
        *,
        client: str | None = None,
    ) -> str:
        self.admin_actions.append((action, actor, target, details, client))
        return "adm_1"

    async def analytics(self, window: str | None) -> dict[str, Any]:
        if window == "bogus":
            raise ValueError("unknown window 'bogus'")
        return {"window": window, "providers": [{"name": "primary", "totalRequests": 3}]}

    async def metrics(self) -> dict[str, Any]:
        return {"requests": 3}

    async def recommendations(self) -> list[dict[str, Any]]:
        return [{"type": "cost", "description": "use backup", "impact": "high", "action": "prefer backup"}]

    def stats(self) -> dict[str, Any]:
        return {"hits": 1, "misses": 2}

    def invalidate(self, **selectors: Any) -> int:
        self.invalidated.append(selectors)
        return 4

    async def records(
        self, *, since: float | None = None, until: float | None = None, limit: int | None = None
    ) -> list[Any]:
        rows = [FakeRecord(f"r{i}", 1000.0 + i, "primary") for i in range(5)]
        rows = [r for r in rows if (since is None or r.ts >= since) and (until is None or r.ts <= until)]
        return rows[:limit] if limit else rows


class PublishServices:
    def __init__(self, services: FakeServices) -> None:
        self.services = services

    @hookimpl
    def plugin_setup(self, manager: ProviderManager) -> None:
        for name in ("analytics", "cache", "usage", "audit"):
            manager.extensions[name] = self.services


def test_services_through_the_admin_api(upstreams: Upstreams) -> None:
    services = FakeServices()
    with run_gateway(gateway_config(upstreams), plugins=[PublishServices(services)]) as gateway:
        admin = httpx.Client(base_url=gateway.url)
        assert admin.get("/admin/analytics", params={"window": "1h"}).json()["window"] == "1h"
        assert admin.get("/admin/analytics", params={"window": "bogus"}).status_code == 400
        assert admin.get("/admin/metrics").json() == {"requests": 3}
        assert admin.get("/admin/recommendations").json()["recommendations"][0]["type"] == "cost"
        assert admin.get("/admin/cache/stats").json() == {"hits": 1, "misses": 2}
        done = admin.post("/admin/cache/invalidate", json={"provider": "primary", "olderThan": 60})
        assert done.json() == {"invalidated": 4}
        assert services.invalidated == [
            {"key": None, "provider": "primary", "model": None, "tag": None, "older_than": 60, "all": False}
        ]
        ((action, actor, target, details, client),) = services.admin_actions
        assert (action, actor, target, client) == ("cache.invalidate", "anonymous", None, "127.0.0.1")
        assert details == {"provider": "primary", "olderThan": 60, "all": False, "count": 4}
        removed = admin.delete("/admin/providers/slow", headers={"authorization": "Bearer sk-some-admin-0000"})
        assert removed.status_code == 200
        assert services.admin_actions[-1][:3] == (
            "providers.remove",
            "key:" + hashlib.sha256(b"sk-some-admin-0000").hexdigest()[:8],
            "slow",
        )
        assert admin.post("/admin/cache/invalidate", json={}).status_code == 400
        assert admin.post("/admin/cache/invalidate", json={"everything": True}).status_code == 400
        assert admin.post("/admin/cache/invalidate", json={"all": "yes"}).status_code == 400
        usage = admin.get("/admin/usage", params={"limit": 2}).json()["records"]
        assert [r["id"] for r in usage] == ["r3", "r4"]  # the newest, oldest first
        assert [r["id"] for r in admin.get("/admin/usage", params={"since": 1003}).json()["records"]] == ["r3", "r4"]
        assert admin.get("/admin/usage", params={"limit": "many"}).status_code == 400


def test_missing_services_say_what_to_install(gateway: Any) -> None:
    admin = httpx.Client(base_url=gateway.url)
    for path, needle in (
        ("/admin/analytics", "swarmgate-analytics"),
        ("/admin/recommendations", "swarmgate-analytics"),
        ("/admin/cache/stats", "swarmgate-cache"),
        ("/admin/usage", "swarmgate-usage"),
        ("/metrics", "swarmgate-prometheus"),
    ):
        response = admin.get(path)
        assert response.status_code == 404, path
        assert needle in response.json()["error"]["message"], path
    assert admin.get("/admin/export", params={"format": "nope"}).status_code == 404


def test_status_config_and_openapi(keyed_gateway: Any) -> None:
    admin = httpx.Client(base_url=keyed_gateway.url, headers={"authorization": "Bearer " + ADMIN_KEY})
    status = admin.get("/admin/status").json()
    assert status["callerKeys"] == 2
    assert "server" in status["plugins"] or "core" in status["plugins"]
    config = admin.get("/admin/config").json()
    text = json.dumps(config)
    for secret in (ADMIN_KEY, TEAM_A_KEY, "sk-upstream-primary-000"):
        assert secret not in text
    assert config["server"]["adminKey"] == "***"
    assert config["providers"]["primary"]["apiKey"] == "***"
    document = httpx.get(keyed_gateway.url + "/openapi.json").json()
    validate(document)
    assert {"/v1/chat/completions", "/v1/messages", "/admin/config/reload"} <= set(document["paths"])


def test_health_of_providers(upstreams: Upstreams) -> None:
    config = gateway_config(upstreams)
    config["routing"] = {"circuitBreaker": {"enabled": True, "failureThreshold": 1, "timeout": 60000}}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ALLOW_ENV, PLUGINS + ",swarmgate-breaker,swarmgate-health")
        with run_gateway(config) as gateway:
            upstreams.primary.enqueue(ScriptedReply.error(500))
            assert stream_text(gateway)[0] == "backup"
            rows = {row["name"]: row for row in httpx.get(gateway.url + "/health/providers").json()["providers"]}
            assert rows["primary"]["breaker"] == {"gpt-4o-mini": "open"}
            assert rows["backup"]["breaker"] == {"gpt-4o-mini": "closed"}
            assert rows["backup"]["healthy"] is True
            assert rows["claude"]["type"] == "claude"
            assert {"uptime", "inflight", "health", "live"} <= set(rows["slow"])
            health = httpx.get(gateway.url + "/health").json()
            assert health["status"] == "ok"
            assert health["providers"]["live"] == 4
            checked = httpx.post(gateway.url + "/admin/health/check", params={"provider": "backup"}).json()
            assert checked["backup"]["healthy"] is True


def test_anthropic_models_listing(gateway: Any) -> None:
    listing = httpx.get(gateway.url + "/v1/models", headers={"anthropic-version": "2023-06-01"}).json()
    assert listing["has_more"] is False
    assert listing["data"][0]["type"] == "model"
    assert listing["first_id"] == listing["data"][0]["id"]


def test_mask_secrets() -> None:
    masked = mask_secrets(
        {"apiKey": "s", "nested": [{"webhookToken": "t", "url": "u"}], "enabled": True, "proxy": None}
    )
    assert masked == {"apiKey": "***", "nested": [{"webhookToken": "***", "url": "u"}], "enabled": True, "proxy": None}


def test_concurrent_admin_and_traffic_do_not_interfere(gateway: Any) -> None:
    errors: list[BaseException] = []

    def traffic() -> None:
        try:
            for _ in range(10):
                client(gateway).chat.completions.create(model="claude-3-5-haiku", messages=MESSAGES)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    threads = [threading.Thread(target=traffic) for _ in range(3)]
    for thread in threads:
        thread.start()
    for _ in range(10):
        assert httpx.get(gateway.url + "/admin/providers").status_code == 200
    for thread in threads:
        thread.join(10)
    assert not errors


def test_provider_keys_rotate_at_run_time(upstreams: Upstreams) -> None:
    with run_gateway(gateway_config(upstreams)) as gateway:
        admin = httpx.Client(base_url=gateway.url)
        before = admin.get("/admin/providers/primary/keys").json()["keys"]
        assert [k["fingerprint"] for k in before] == [
            "key:" + hashlib.sha256(b"sk-upstream-primary-000").hexdigest()[:8]
        ]
        new_keys = ["sk-rotated-key-1111", "sk-rotated-key-2222"]
        rotated = admin.post("/admin/providers/primary/keys/rotate", json={"keys": new_keys})
        assert rotated.status_code == 200
        assert rotated.json()["keys"] == ["key:" + hashlib.sha256(k.encode()).hexdigest()[:8] for k in new_keys]
        assert not any(k in rotated.text for k in new_keys)
        for _ in range(2):
            client(gateway).chat.completions.create(model="primary/gpt-4o-mini", messages=MESSAGES)
        sent = {r.headers["authorization"] for r in upstreams.primary.completions[-2:]}
        assert sent == {"Bearer " + k for k in new_keys}
        assert len(admin.get("/admin/providers/primary/keys").json()["keys"]) == 2
        assert admin.post("/admin/providers/primary/keys/rotate", json={"keys": "one"}).status_code == 400
        assert admin.post("/admin/providers/nobody/keys/rotate").status_code == 404
