"""Shared set-up of the dashboard's tests: which plugins load from entry
points, fake upstreams on loopback, and the browser (Debian's chromium,
installed by scripts/install-browser.sh when missing)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # dashboard_helpers (tests run with --import-mode=importlib)

from dashboard_helpers import CHROMIUM, PLUGINS, REPO, Upstreams

from swarmgate.plugins import ALLOW_ENV, BLOCK_ENV
from swarmgate.testing import FakeUpstream, OpenAIWire, ScriptedReply

#: Seconds the browser install may take (apt-get on a slow mirror).
INSTALL_TIMEOUT = 900


@pytest.fixture(autouse=True)
def _plugin_allow_list() -> Iterator[None]:
    """Per test: a session-wide allow-list leaked into every later test of the run."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ALLOW_ENV, PLUGINS)
        patch.delenv(BLOCK_ENV, raising=False)
        yield


@pytest.fixture(scope="session")
def upstreams() -> Iterator[Upstreams]:
    with FakeUpstream.in_thread(OpenAIWire()) as primary, FakeUpstream.in_thread(OpenAIWire()) as backup:
        yield Upstreams(primary, backup)


@pytest.fixture(autouse=True)
def _fresh_upstreams(request: pytest.FixtureRequest) -> None:
    if "upstreams" in request.fixturenames:
        up: Upstreams = request.getfixturevalue("upstreams")
        for upstream in (up.primary, up.backup):
            upstream.clear()
            upstream.requests.clear()
            upstream.default = ScriptedReply()


@pytest.fixture(scope="session")
def chromium() -> str:
    """The browser's path; installs it (scripts/install-browser.sh) when missing."""
    if not CHROMIUM.exists():
        script = REPO / "scripts" / "install-browser.sh"
        result = subprocess.run(
            ["bash", str(script)], capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False
        )
        detail = f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        assert result.returncode == 0, f"{script} failed (exit {result.returncode}):\n{detail}"
        assert CHROMIUM.exists(), f"{script} ran but {CHROMIUM} is missing:\n{detail}"
    return str(CHROMIUM)
