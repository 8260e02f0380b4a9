"""Caller keys through a live gateway (uvicorn on loopback) with the
official openai SDK as the client, the ratelimit and budget plugins
enforcing each key's limits (switched on by the store alone: the config has
neither of their sections), the audit plugin recording admin actions, and
the admin API under /admin/keys."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from swarmgate import CompletionRequest, hookimpl
from swarmgate.plugins import ALLOW_ENV, BLOCK_ENV
from swarmgate.testing import FakeUpstream
from swarmgate.testing.leaks import assert_no_secrets
from swarmgate_keys import Hasher, KeySpec, KeyStore
from swarmgate_server import RunningGateway, run_gateway

ADMIN_KEY = "sk-admin-keys-tests-0123456789"
CONFIG_KEY = "sk-config-key-0123456789abcdef"
MESSAGES: Any = [{"role": "user", "content": "hello"}]
ADMIN = {"authorization": "Bearer " + ADMIN_KEY}


class Callers:
    """Remembers ``request.caller`` of every request the gateway runs."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: list[str | None] = []

    @hookimpl
    def before_request(self, request: CompletionRequest) -> None:
        with self.lock:
            self.seen.append(request.caller)


class Live:
    """The gateway under test, the store file it reads, and a second store
    on that file (as another process would open it)."""

    def __init__(self, running: RunningGateway, store: KeyStore, callers: Callers, audit_path: Path) -> None:
        self.running = running
        self.url = running.url
        self.store = store
        self.callers = callers
        self.audit_path = audit_path

    def client(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0)

    def ask(self, key: str, model: str = "gpt-4o-mini", **extra: Any) -> str | None:
        answer = self.client(key).chat.completions.create(model=model, messages=MESSAGES, **extra)
        return answer.choices[0].message.content


@pytest.fixture(scope="module")
def live(
    upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory, make_config: Callable[..., dict[str, Any]]
) -> Iterator[Live]:
    home = tmp_path_factory.mktemp("gateway")
    store_path = home / "keys.db"
    audit_path = home / "audit.db"
    pepper = "pepper-for-the-tests-0123456789"
    # No optimization.rateLimiting nor routing.budgetLimits: the store (a
    # caller directory) switches the ratelimit and budget plugins on.
    config = make_config(
        upstream,
        store_path,
        security={
            "callerKeys": {"path": str(store_path), "pepperEnv": "KEYS_TEST_PEPPER"},
            "audit": {"path": str(audit_path), "commitInterval": 10},
        },
    )
    callers = Callers()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(
            ALLOW_ENV,
            "swarmgate-openai,swarmgate-server,swarmgate-keys,swarmgate-ratelimit,swarmgate-budget,swarmgate-audit",
        )
        patch.delenv(BLOCK_ENV, raising=False)
        patch.setenv("KEYS_TEST_PEPPER", pepper)
        with (
            KeyStore(store_path, Hasher(pepper.encode())) as store,
            run_gateway(config, plugins=[callers]) as running,
        ):
            yield Live(running, store, callers, audit_path)


def test_a_store_key_is_accepted_and_names_the_caller(live: Live) -> None:
    issued = live.store.create(KeySpec(name="alice"))
    assert live.ask(issued.key)
    assert live.callers.seen[-1] == "alice"
    # The config's keys still work beside the store's.
    assert live.ask(CONFIG_KEY)
    assert live.callers.seen[-1] == "from-config"


@pytest.mark.parametrize("key", [None, "sg-" + "x" * 43, "sk-not-a-key-at-all"])
def test_a_request_without_a_valid_key_is_refused(live: Live, key: str | None) -> None:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    response = httpx.post(
        live.url + "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": MESSAGES}, headers=headers
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] in ("missing_api_key", "invalid_api_key")


def test_a_revoked_key_is_refused_at_once(live: Live, store_path_of_live: Path, pepper: str) -> None:
    issued = live.store.create(KeySpec(name="bob"))
    assert live.ask(issued.key)
    # Revoked by another store on the same file (another gateway, the CLI):
    # the gateway's next request sees it, with no delay.
    with KeyStore(store_path_of_live, Hasher(pepper.encode())) as other:
        other.revoke("bob")
    with pytest.raises(openai.AuthenticationError):
        live.ask(issued.key)


@pytest.fixture
def store_path_of_live(live: Live) -> Path:
    return live.store.path


def test_an_expired_key_is_refused(live: Live) -> None:
    issued = live.store.create(KeySpec(name="temp", expires_at=time.time() + 0.5))
    assert live.ask(issued.key)
    time.sleep(0.6)
    with pytest.raises(openai.AuthenticationError):
        live.ask(issued.key)


def test_allowed_models_are_enforced(live: Live) -> None:
    issued = live.store.create(KeySpec(name="narrow", models=("gpt-4o-mini",)))
    assert live.ask(issued.key, "gpt-4o-mini")
    assert live.ask(issued.key, "primary/gpt-4o-mini")  # a bare model name admits it on any provider
    for model in ("gpt-4o", "fast", "primary/gpt-4o"):
        with pytest.raises(openai.PermissionDeniedError) as raised:
            live.ask(issued.key, model)
        assert raised.value.status_code == 403
        assert "may not use model" in str(raised.value)
    routes = live.store.create(KeySpec(name="routes-only", models=("fast",)))
    assert live.ask(routes.key, "fast")
    with pytest.raises(openai.PermissionDeniedError):
        live.ask(routes.key, "gpt-4o-mini")
    listed = httpx.get(live.url + "/v1/models", headers={"authorization": f"Bearer {issued.key}"}).json()
    assert {m["id"] for m in listed["data"]} == {"gpt-4o-mini", "primary/gpt-4o-mini"}


def test_each_key_has_its_own_rate_limit(live: Live) -> None:
    limited = live.store.create(KeySpec(name="slow-caller", requests_per_minute=2, burst_capacity=2))
    other = live.store.create(KeySpec(name="other-caller"))
    assert live.ask(limited.key)
    assert live.ask(limited.key)
    with pytest.raises(openai.RateLimitError) as raised:
        live.ask(limited.key)
    assert "caller:slow-caller" in str(raised.value)
    assert raised.value.response.headers.get("retry-after")
    assert live.ask(other.key)  # another key is not held back


def test_each_key_has_its_own_budget(live: Live) -> None:
    # A request reserves its worst case (prompt + max_tokens at the model's
    # prices) before it goes out: about 0.02 here, so the first fits in 0.05,
    # and what the answers cost soon leaves too little for another.
    capped = live.store.create(KeySpec(name="thrifty", daily_budget=0.05))
    answered = 0
    refusal: openai.RateLimitError | None = None
    for _ in range(20):
        try:
            live.ask(capped.key, max_tokens=8)
        except openai.RateLimitError as exc:
            refusal = exc
            break
        answered += 1
    assert answered >= 1
    assert refusal is not None
    assert "budget" in str(refusal).lower()
    assert live.ask(live.store.create(KeySpec(name="unlimited")).key)
    nothing = live.store.create(KeySpec(name="zero", daily_budget=0.0))
    with pytest.raises(openai.RateLimitError):
        live.ask(nothing.key)


def test_the_admin_api_creates_lists_and_revokes(live: Live) -> None:
    created = httpx.post(
        live.url + "/admin/keys",
        json={"name": "carol", "models": ["gpt-4o-mini"], "requestsPerMinute": 100, "expires": "30d"},
        headers=ADMIN,
    )
    assert created.status_code == 201
    body = created.json()
    key, record = body["key"], body["record"]
    assert created.headers["cache-control"] == "no-store"
    assert body["warnings"] == []  # ratelimit and budget are active
    assert record["name"] == "carol"
    assert record["status"] == "active"
    assert record["expiresAt"] > time.time() + 29 * 86_400
    assert live.ask(key)
    assert live.callers.seen[-1] == "carol"

    listed = httpx.get(live.url + "/admin/keys", headers=ADMIN)
    assert listed.status_code == 200
    assert record in listed.json()["keys"]
    active = httpx.get(live.url + "/admin/keys", params={"status": "active"}, headers=ADMIN).json()["keys"]
    assert all(k["status"] == "active" for k in active)
    for ref in (record["id"], record["fingerprint"], "carol"):
        assert httpx.get(live.url + f"/admin/keys/{ref}", headers=ADMIN).json() == record

    revoked = httpx.delete(live.url + "/admin/keys/carol", headers=ADMIN)
    assert revoked.status_code == 200
    assert revoked.json()["revoked"]["status"] == "revoked"
    assert revoked.json()["changed"] is True
    with pytest.raises(openai.AuthenticationError):
        live.ask(key)
    again = httpx.delete(live.url + f"/admin/keys/{record['id']}", headers=ADMIN)
    assert again.json()["changed"] is False
    # Nothing the admin API shows after the creation holds the key.
    assert_no_secrets([listed.text, revoked.text, again.text], [key])


def test_admin_api_errors(live: Live) -> None:
    url = live.url + "/admin/keys"
    assert httpx.get(url).status_code == 401
    caller = live.store.create(KeySpec(name="not-admin"))
    assert httpx.get(url, headers={"authorization": f"Bearer {caller.key}"}).status_code in (401, 403)
    for body, path in (({"name": "admin"}, "name"), ({"name": "ok", "requestsPerMinute": -1}, "requestsPerMinute")):
        bad = httpx.post(url, json=body, headers=ADMIN)
        assert bad.status_code == 400
        assert bad.json()["error"]["problems"][0]["path"] == path
    assert httpx.post(url, content=b"{", headers=ADMIN).json()["error"]["code"] == "invalid_json"
    taken = httpx.post(url, json={"name": "not-admin"}, headers=ADMIN)
    assert (taken.status_code, taken.json()["error"]["code"]) == (409, "key_name_taken")
    missing = httpx.delete(url + "/ck_0000", headers=ADMIN)
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "key_not_found")
    assert httpx.get(url, params={"status": "lost"}, headers=ADMIN).status_code == 400


def test_admin_actions_are_audited_without_the_key(live: Live) -> None:
    from swarmgate.logs import fingerprint

    created = httpx.post(live.url + "/admin/keys", json={"name": "audited"}, headers=ADMIN).json()
    httpx.delete(live.url + "/admin/keys/audited", headers=ADMIN)
    audit = live.running.app.manager.extensions["audit"]

    def actions() -> list[Any]:
        records = audit.records_sync(kind="admin")
        return [r for r in records if r.personal and r.personal.get("target") == created["record"]["id"]]

    deadline = time.monotonic() + 5
    while len(actions()) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    found = actions()
    assert [r.data["action"] for r in found] == ["keys.create", "keys.revoke"]
    assert all(r.personal["actor"] == fingerprint(ADMIN_KEY) for r in found)
    assert found[0].personal["details"]["fingerprint"] == created["record"]["fingerprint"]
    files = {p.name: p.read_bytes() for p in live.audit_path.parent.iterdir() if p.name.startswith("audit.db")}
    assert_no_secrets(files, [created["key"]])


def test_a_gateway_without_caller_keys_says_so(upstream: FakeUpstream, tmp_path: Path, make_config: Any) -> None:
    config = make_config(upstream, tmp_path / "keys.db")
    del config["security"]
    with run_gateway(config) as running:
        answer = httpx.get(running.url + "/admin/keys", headers=ADMIN)
        assert answer.status_code == 409
        assert answer.json()["error"]["code"] == "caller_keys_disabled"
        assert "security.callerKeys" in answer.json()["error"]["message"]
    assert not (tmp_path / "keys.db").exists()


def test_limits_no_plugin_enforces_are_reported(
    upstream: FakeUpstream, tmp_path: Path, make_config: Any, monkeypatch: pytest.MonkeyPatch, pepper: str
) -> None:
    monkeypatch.setenv("KEYS_TEST_PEPPER", pepper)
    with run_gateway(make_config(upstream, tmp_path / "keys.db")) as running:
        answer = httpx.post(
            running.url + "/admin/keys", json={"name": "x", "requestsPerMinute": 5, "dailyBudget": 1}, headers=ADMIN
        )
        assert answer.status_code == 201
        warnings = answer.json()["warnings"]
        assert len(warnings) == 2
        assert "swarmgate-ratelimit" in warnings[0]
        assert "swarmgate-budget" in warnings[1]
