"""GDPR erasure through the gateway's admin API, on a live gateway (uvicorn on
loopback): ``DELETE /admin/callers/{caller}/records`` behind the admin key,
the caller's usage records deleted and audit records erased (the chain still
verifies, the erasure recorded by the admin key's fingerprint), the endpoint
in ``/openapi.json``."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
from compliance_helpers import ALLOWED, PRICES
from openapi_spec_validator import validate

from swarmgate.logs import fingerprint
from swarmgate.plugins import ALLOW_ENV
from swarmgate_audit import open_log as open_audit
from swarmgate_compliance.routes import FORGET_PATH
from swarmgate_server import run_gateway

ADMIN_KEY = "sk-admin-compliance-0123456789"
ALICE_KEY = "sk-alice-compliance-0123456789"
BOB_KEY = "sk-bob-compliance-0123456789"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def gateway_config(tmp: Path) -> dict[str, Any]:
    return {
        "providers": {"sim": {"type": "sim", "timeScale": 0, "models": {"m": dict(PRICES)}}},
        "monitoring": {"usageLog": {"path": str(tmp / "usage.db"), "commitInterval": 20}},
        "security": {"audit": {"path": str(tmp / "audit.db")}, "compliance": {"gdpr": True}},
        "server": {
            "adminKey": ADMIN_KEY,
            "apiKeys": [{"key": ALICE_KEY, "name": "alice"}, {"key": BOB_KEY, "name": "bob"}],
            "shutdownTimeout": 2000,
        },
    }


def test_erasure_through_the_admin_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_ENV, ALLOWED + ",swarmgate-server")
    with run_gateway(gateway_config(tmp_path)) as gateway, httpx.Client(base_url=gateway.url, timeout=10) as http:
        for key in (ALICE_KEY, BOB_KEY, ALICE_KEY):
            body = {"model": "m", "messages": [{"role": "user", "content": "my name is Alice"}]}
            assert http.post("/v1/chat/completions", json=body, headers=bearer(key)).status_code == 200
        path = "/admin/callers/alice/records"
        assert http.delete(path).status_code == 401
        refused = http.delete(path, headers=bearer(ALICE_KEY))
        assert (refused.status_code, refused.json()["error"]["code"]) == (403, "admin_only")

        erased = http.delete(path, headers=bearer(ADMIN_KEY))
        assert erased.status_code == 200, erased.text
        assert erased.json() == {"caller": "alice", "usage_records": 2, "audit_records": 2}
        usage = http.get("/admin/usage", headers=bearer(ADMIN_KEY)).json()["records"]
        assert [r["caller"] for r in usage] == ["bob"]
        again = http.delete(path, headers=bearer(ADMIN_KEY)).json()
        assert again == {"caller": "alice", "usage_records": 0, "audit_records": 0}

        blank = http.delete("/admin/callers/%20/records", headers=bearer(ADMIN_KEY))
        assert (blank.status_code, blank.json()["error"]["code"]) == (400, "invalid_request")
        assert http.get(path, headers=bearer(ADMIN_KEY)).status_code == 405

        document = http.get("/openapi.json").json()
        operation = document["paths"][FORGET_PATH]["delete"]
        assert operation["tags"] == ["admin"]
        validate(document)

    audit = open_audit(tmp_path / "audit.db")
    try:
        report = audit.verify_sync()
        requests = audit.records_sync(kind="request")
        forgets = [r for r in audit.records_sync(kind="admin") if r.data.get("action") == "audit.forget"]
    finally:
        audit.close()
    assert report.ok
    assert [r.who for r in requests] == [None, "bob", None]
    assert [r.who for r in forgets] == [fingerprint(ADMIN_KEY)] * 2
    assert [r.data["records"] for r in forgets] == [2, 0]
    with sqlite3.connect(tmp_path / "audit.db") as conn:
        personal = repr(conn.execute("SELECT * FROM personal").fetchall())
    conn.close()
    assert "alice" not in personal
    assert ADMIN_KEY not in personal
