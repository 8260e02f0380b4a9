"""``serve`` as users run it (a subprocess, SIGTERM included), its errors,
and the admin-API client helpers other CLI commands reuse."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from click.testing import CliRunner
from server_testkit import ADMIN_KEY, Upstreams, gateway_config

from swarmgate.cli import build_cli
from swarmgate.testing import ScriptedReply
from swarmgate_server import AdminAPIError, aadmin_request, admin_request

SERVE = "from swarmgate.cli import main; main()"


def read_line(process: subprocess.Popen[str], timeout: float = 20.0) -> str:
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    if not selector.select(timeout):
        process.kill()
        raise AssertionError("serve printed nothing in time: " + (process.stderr.read() if process.stderr else ""))
    return process.stdout.readline()


def test_serve_answers_then_drains_on_sigterm(upstreams: Upstreams, tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(gateway_config(upstreams, adminKey=ADMIN_KEY)))
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE, "serve", "--config", str(path), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    try:
        line = read_line(process)
        assert line.startswith("swarmgate gateway listening on http://127.0.0.1:"), line
        url = line.split(" on ", 1)[1].strip()
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        assert client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]).choices
        assert admin_request("GET", "/admin/status", url=url, admin_key=ADMIN_KEY)["providers"]
        # A stream in flight when SIGTERM arrives still finishes.
        upstreams.primary.enqueue(ScriptedReply(content="a b c d e f g h", chunk_delay=0.05))
        pieces: list[str] = []
        started = threading.Event()

        def consume() -> None:
            for chunk in client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
            ):
                if chunk.choices and chunk.choices[0].delta.content:
                    pieces.append(chunk.choices[0].delta.content)
                    started.set()

        reader = threading.Thread(target=consume)
        reader.start()
        assert started.wait(10)
        process.send_signal(signal.SIGTERM)
        reader.join(10)
        assert "".join(pieces) == "a b c d e f g h"
        assert process.wait(15) == 0
        with pytest.raises(httpx.ConnectError):
            httpx.get(url + "/health")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_serve_with_a_bad_config_is_one_line_and_status_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"providers": {}, "server": {"port": "eighty", "bodyTimeout": "slow"}}))
    result = CliRunner().invoke(build_cli(), ["serve", "--config", str(path)])
    assert result.exit_code == 2
    assert "server.port" in result.output
    assert "server.bodyTimeout" in result.output
    assert "Traceback" not in result.output


def test_serve_is_registered() -> None:
    result = CliRunner().invoke(build_cli(), ["serve", "--help"])
    assert result.exit_code == 0
    assert "--workers" in result.output
    assert "--port" in result.output


def test_admin_client(keyed_gateway: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWARMGATE_URL", keyed_gateway.url)
    monkeypatch.setenv("SWARMGATE_ADMIN_KEY", ADMIN_KEY)
    providers = admin_request("GET", "/admin/providers")["providers"]
    assert {p["name"] for p in providers} == {"primary", "backup", "claude", "slow"}
    with pytest.raises(AdminAPIError) as denied:
        admin_request("GET", "/admin/providers", admin_key="wrong-key-0000")
    assert denied.value.status == 401
    assert "HTTP 401" in str(denied.value)
    with pytest.raises(AdminAPIError) as missing:
        admin_request("DELETE", "/admin/providers/nobody")
    assert missing.value.status == 404
    monkeypatch.delenv("SWARMGATE_URL")
    with pytest.raises(AdminAPIError, match="SWARMGATE_URL"):
        admin_request("GET", "/admin/status")
    with pytest.raises(AdminAPIError, match="cannot reach"):
        admin_request("GET", "/admin/status", url="http://127.0.0.1:9")


@pytest.mark.anyio
async def test_async_admin_client(keyed_gateway: Any) -> None:
    status = await aadmin_request("GET", "/admin/status", url=keyed_gateway.url, admin_key=ADMIN_KEY)
    assert status["callerKeys"] == 2
    document = await aadmin_request("GET", "/openapi.json", url=keyed_gateway.url)
    assert document["openapi"] == "3.1.0"
