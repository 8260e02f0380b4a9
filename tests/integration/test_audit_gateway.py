"""The audit log and the compliance controls end to end, behind the real HTTP
gateway (uvicorn on loopback) with the official ``openai`` SDK as the
client and every plugin loaded from its entry point: a request is recorded
with its caller (the key's name, never the key) and the client's address,
an admin action with the admin key's fingerprint; a request outside the
allowed data-residency regions is refused with the clear error; erasure
keeps the chain verifiable; no key is anywhere in the audit file."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from click.testing import CliRunner

from swarmgate.cli import build_cli
from swarmgate.plugins import ALLOW_ENV, BLOCK_ENV
from swarmgate.testing import FakeUpstream, OpenAIWire
from swarmgate.testing.leaks import assert_no_secrets
from swarmgate_audit import open_log
from swarmgate_server import run_gateway

PLUGINS = "swarmgate,swarmgate-openai,swarmgate-server,swarmgate-usage,swarmgate-audit,swarmgate-compliance"
CALLER_KEY = "sk-cA9xQ2mV7rT4kP8zW1nB"
ADMIN_KEY = "sk-Zq3Lw8Ye5Rt1Ux6Io2Pa"
UPSTREAM_KEYS = ("sk-Hj4Kd9Gs2Fa7Lq1Wm5Xc", "sk-Vb8Nc3Mx6Zl0Pk4Oj9Ih")


@pytest.fixture(autouse=True)
def _plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_ENV, PLUGINS)
    monkeypatch.delenv(BLOCK_ENV, raising=False)


@pytest.fixture
def upstreams() -> Iterator[tuple[FakeUpstream, FakeUpstream]]:
    with FakeUpstream.in_thread(OpenAIWire()) as eu, FakeUpstream.in_thread(OpenAIWire()) as us:
        yield eu, us


def config(tmp_path: Path, eu: FakeUpstream, us: FakeUpstream) -> dict[str, Any]:
    model = {"inputCostPerToken": 0.000001, "outputCostPerToken": 0.000002}
    return {
        "providers": {
            "eu": {
                "type": "openai",
                "endpoint": eu.url,
                "apiKey": UPSTREAM_KEYS[0],
                "region": "eu-west-1",
                "priority": 2,
                "models": {"gpt-4o-mini": model},
            },
            "us": {
                "type": "openai",
                "endpoint": us.url,
                "apiKey": UPSTREAM_KEYS[1],
                "region": "us-west-2",
                "priority": 1,
                "models": {"gpt-4o-mini": model},
            },
        },
        "monitoring": {"usageLog": {"path": str(tmp_path / "usage.db")}},
        "security": {
            "audit": {"path": str(tmp_path / "audit.db"), "includeBodies": True, "commitInterval": 20},
            "compliance": {"gdpr": True, "dataResidency": "eu"},
        },
        "server": {"apiKeys": [{"key": CALLER_KEY, "name": "eu-team"}], "adminKey": ADMIN_KEY},
    }


def test_requests_and_admin_actions_through_the_gateway(
    tmp_path: Path, upstreams: tuple[FakeUpstream, FakeUpstream]
) -> None:
    eu, us = upstreams
    with run_gateway(config(tmp_path, eu, us)) as gateway:
        client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=CALLER_KEY, max_retries=0)
        answer = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "I am bob@example.org, call +44 20 7946 0958"}]
        )
        assert answer.choices[0].message.content
        assert len(eu.requests) == 1  # "us" comes first by priority but is outside the regions
        assert us.requests == []
        with pytest.raises(openai.APIStatusError) as refused:
            client.chat.completions.create(model="us/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        assert refused.value.status_code == 503
        assert "provider us is in us-west-2, outside the allowed regions [eu]" in str(refused.value)
        assert us.requests == []
        removed = httpx.delete(f"{gateway.url}/admin/providers/us", headers={"authorization": f"Bearer {ADMIN_KEY}"})
        assert removed.status_code == 200
        audit = gateway.app.manager.extensions["audit"]
        deadline = time.monotonic() + 10
        records = audit.records_sync()
        while len(records) < 3 and time.monotonic() < deadline:  # committed within commitInterval
            time.sleep(0.02)
            records = audit.records_sync()
    cfg_file = tmp_path / "gateway.json"
    cfg_file.write_text(json.dumps(config(tmp_path, eu, us)))
    erased = CliRunner().invoke(
        build_cli(), ["compliance", "forget", "eu-team", "--yes", "--json", "--config", str(cfg_file)]
    )
    assert erased.exit_code == 0, erased.output
    report = json.loads(erased.output)
    answered, failed, admin = records[:3]
    assert (answered.kind, answered.who, answered.client) == ("request", "eu-team", "127.0.0.1")
    assert answered.data["provider"] == "eu"
    assert answered.data["status"] == 200
    assert answered.personal is not None
    assert answered.personal["bodies"]["prompt"][0]["text"] == "I am [EMAIL], call [PHONE]"
    assert (failed.data["status"], failed.data["error_kind"]) == (503, "no_provider_available")
    assert admin.kind == "admin"
    assert admin.data == {"action": "providers.remove"}
    assert admin.who == "key:" + hashlib.sha256(ADMIN_KEY.encode()).hexdigest()[:8]
    assert admin.client == "127.0.0.1"
    assert (report["usage_records"], report["audit_records"]) == (2, 2)

    recorded = open_log(tmp_path / "audit.db")
    try:
        verified = recorded.verify_sync()
        after = recorded.records_sync()
    finally:
        recorded.close()
    assert verified.ok, verified.broken
    assert verified.erased == 2
    assert [r.who for r in after[:2]] == [None, None]
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("audit.db*"))
    assert_no_secrets({"audit.db": stored}, [CALLER_KEY, ADMIN_KEY, *UPSTREAM_KEYS])
    assert b"bob@example.org" not in stored
