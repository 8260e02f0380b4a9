"""The microkernel's promise: a plugin built and installed from its own
directory, knowing nothing but the kernel's public API and entry points,
adds a provider type, a hook and a CLI command that a config can then use.

The plugin is installed into a temporary target directory (not the test
environment, which would leak it into every other test) and exercised in
subprocesses that put that directory on ``PYTHONPATH``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PYPROJECT = """
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "swarmgate-echo3p"
version = "1.2.3"
dependencies = ["swarmgate"]

[project.entry-points."swarmgate.providers"]
echo3p = "swarmgate_echo3p:EchoProvider"

[project.entry-points.swarmgate]
echo3p = "swarmgate_echo3p:EchoHooks"
"""

MODULE = '''
"""A third-party swarmgate plugin: a provider type, a hook and a command."""
import attrs
import click
from swarmgate import Provider, ProviderReply, TextDelta, TokenUsage, hookimpl


@attrs.frozen
class EchoSettings:
    shout: bool = False


class EchoProvider(Provider):
    settings_class = EchoSettings

    async def complete(self, call):
        text = call.request.prompt_text()
        return ProviderReply(text.upper() if self.settings.shout else text, TokenUsage.of(1, 1))

    async def stream(self, call):
        yield TextDelta(call.request.prompt_text())


class EchoHooks:
    @hookimpl
    def before_request(self, request):
        return attrs.evolve(request, tags=(*request.tags, "seen-by-echo3p"))

    @hookimpl
    def after_response(self, request, response):
        print("echo3p after_response", request.tags)

    @hookimpl
    def register_commands(self, cli):
        @cli.command("echo3p-hello")
        def hello():
            """Say hello from a third-party plugin."""
            click.echo("hello from echo3p")
'''

USE_IT = """
import anyio
from swarmgate import ProviderManager

async def main():
    config = {"providers": {"mine": {"type": "echo3p", "shout": True, "models": {"m": {"costPerToken": 0.5}}}}}
    async with ProviderManager(config) as manager:
        response = await manager.complete(prompt="hello plugin")
        print(response.content, response.provider, response.cost)
        print(sorted(p.name for p in manager.plugins.plugins()))

anyio.run(main)
"""


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    (src / "pyproject.toml").write_text(PYPROJECT)
    (src / "swarmgate_echo3p").mkdir()
    (src / "swarmgate_echo3p" / "__init__.py").write_text(textwrap.dedent(MODULE))
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "--target",
            str(target),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    return target


def run(plugin_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "PYTHONPATH": str(plugin_path), **env}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=environ, timeout=60)


@pytest.mark.slow
def test_a_third_party_provider_type_and_hook_work_through_entry_points(plugin_path: Path) -> None:
    result = run(plugin_path, "-c", USE_IT)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "echo3p after_response ('seen-by-echo3p',)" in lines
    assert "HELLO PLUGIN mine 1.0" in lines
    assert "echo3p" in lines[-1]


@pytest.mark.slow
def test_its_cli_command_and_plugins_list(plugin_path: Path) -> None:
    cli = "from swarmgate.cli import main; main()"
    result = run(plugin_path, "-c", cli, "echo3p-hello")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "hello from echo3p"
    listing = json.loads(run(plugin_path, "-c", cli, "plugins", "list", "--json").stdout)
    mine = [row for row in listing if row["distribution"] == "swarmgate-echo3p"]
    assert {(row["group"], row["name"], row["version"]) for row in mine} == {
        ("swarmgate", "echo3p", "1.2.3"),
        ("swarmgate.providers", "echo3p", "1.2.3"),
    }


@pytest.mark.slow
def test_blocking_the_plugin_gives_a_clear_error(plugin_path: Path) -> None:
    result = run(plugin_path, "-c", USE_IT, SWARMGATE_DISABLE_PLUGINS="swarmgate-echo3p")
    assert result.returncode != 0
    assert (
        "providers.mine.type: provider type 'echo3p' (from swarmgate-echo3p) is blocked by SWARMGATE_DISABLE_PLUGINS"
        in (result.stderr)
    )
    listing = run(
        plugin_path,
        "-c",
        "from swarmgate.cli import main; main()",
        "plugins",
        "list",
        "--json",
        SWARMGATE_DISABLE_PLUGINS="echo3p",
    )
    rows = [row for row in json.loads(listing.stdout) if row["name"] == "echo3p"]
    assert {row["status"] for row in rows} == {"blocked by SWARMGATE_DISABLE_PLUGINS"}
