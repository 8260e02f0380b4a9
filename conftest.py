"""Shared pytest set-up: every async test runs on asyncio and on trio."""

from collections.abc import Iterator

import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """anyio's pytest plugin runs each ``@pytest.mark.anyio`` test once per backend."""
    return str(request.param)


def pytest_configure(config: pytest.Config) -> None:
    """Keep every file swarmgate writes by default (usage log, audit log, key
    store) in a temporary directory, never in the user's home."""
    import os
    import tempfile

    os.environ["SWARMGATE_HOME"] = tempfile.mkdtemp(prefix="swarmgate-test-home-")


@pytest.fixture(autouse=True)
def _swarmgate_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Each test gets its own data directory: a usage log, audit log or key
    store written by one test is never read by another.

    Its own MonkeyPatch, not the ``monkeypatch`` fixture: requesting that here
    would create it before the folders' autouse fixtures, so it would be torn
    down after them and put back the environment they had set (an allow-list
    leaked into every later test that way)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SWARMGATE_HOME", str(tmp_path_factory.mktemp("home")))
        yield
