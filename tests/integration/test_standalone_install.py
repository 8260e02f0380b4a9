"""A plugin installs alone on top of the kernel: ``pip install ./kernel ./plugins/openai``
in a brand-new virtual environment is a working stack for that provider, and
nothing else (no sim, no embedded default) comes with it.

This builds real wheels and installs their dependencies from the package
registry into a temporary venv, so it takes a while; it is still part of the
suite because it is the only test that catches an undeclared dependency.
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest

from swarmgate.testing import FakeUpstream, ScriptedReply

ROOT = Path(__file__).parents[2]

SCRIPT = """
import sys, anyio
from swarmgate import ConfigError, ProviderManager, TextDelta

async def main(url):
    config = {"providers": {"up": {"type": "openai", "endpoint": url, "models": {"m": {"costPerToken": 0.001}}}}}
    async with ProviderManager(config) as manager:
        response = await manager.complete(prompt="hi", model="m")
        print("complete", response.provider, response.content, response.tokens.total, response.cost)
        text = "".join([e.text async for e in manager.stream(prompt="hi", model="m") if isinstance(e, TextDelta)])
        print("stream", text)
    try:
        await ProviderManager().initialize()
    except ConfigError as error:
        print("no default:", "no installed plugin offers a default" in str(error))

anyio.run(main, sys.argv[1])
"""


@pytest.mark.slow
def test_kernel_plus_openai_alone(tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    install = subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            str(ROOT / "kernel"),
            str(ROOT / "plugins" / "openai"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr
    freeze = subprocess.run([str(python), "-m", "pip", "list"], capture_output=True, text=True, check=True).stdout
    assert "swarmgate-openai" in freeze
    assert "swarmgate-sim" not in freeze
    with FakeUpstream.in_thread() as upstream:
        upstream.default = ScriptedReply(content="standalone works", usage=(3, 2))
        result = subprocess.run(
            [str(python), "-c", SCRIPT, upstream.url], capture_output=True, text=True, timeout=60, cwd=tmp_path
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "complete up standalone works 5 0.005",
        "stream standalone works",
        "no default: True",
    ]
    assert sys.executable != str(python)
