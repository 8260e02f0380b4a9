"""A plugin installs alone on top of the kernel: ``pip install ./kernel ./plugins/openai``
in a brand-new virtual environment is a working stack for that provider, and
nothing else (no sim, no embedded default) comes with it. Every other
provider plugin is installed the same way, each into its own venv (in
parallel), and must load its type and build a provider.

This builds real wheels and installs their dependencies from the package
registry into a temporary venv, so it takes a while; it is still part of the
suite because it is the only test that catches an undeclared dependency.
"""

from __future__ import annotations

import json
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


# Each plugin with the first-party plugins it depends on, and a minimal provider config.
ALONE: dict[str, tuple[tuple[str, ...], dict[str, object]]] = {
    "claude": ((), {"type": "claude", "apiKey": "k", "models": {"m": {}}}),
    "qwen": (("openai",), {"type": "qwen", "apiKey": "k", "models": {"m": {}}}),
    "local": (("openai",), {"type": "local", "models": {"m": {}}}),
    "http": (
        (),
        {
            "type": "http",
            "endpoint": "http://127.0.0.1:9",
            "body": {"p": "{prompt}"},
            "response": {"text": "text"},
            "models": {"m": {}},
        },
    ),
    "websocket": ((), {"type": "websocket", "url": "ws://127.0.0.1:9/ws", "models": {"m": {}}}),
    "proxy": (
        ("openai",),
        {
            "type": "proxy",
            "via": "http://127.0.0.1:9",
            "target": {"type": "openai"},
            "endpoint": "http://127.0.0.1:9/v1",
            "models": {"m": {}},
        },
    ),
    "composite": (("sim",), {"type": "composite", "mode": "race", "targets": ["s/m"], "models": {"m": {}}}),
    "sim": ((), {"type": "sim", "models": {"m": {}}}),
}

BUILD = """
import json, sys, anyio
from swarmgate import ProviderManager

async def main(provider):
    providers = {"p": provider, "s": {"type": "sim", "models": {"m": {}}, "priority": 9}}
    if provider["type"] != "composite":
        del providers["s"]
    async with ProviderManager({"providers": providers}) as manager:
        print(type(manager.provider("p")).__module__.split(".")[0])

anyio.run(main, json.loads(sys.argv[1]))
"""


@pytest.mark.slow
def test_every_plugin_installs_alone(tmp_path: Path) -> None:
    jobs = {}
    for name, (needs, _) in ALONE.items():
        env_dir = tmp_path / name
        venv.create(env_dir, with_pip=True)
        paths = [str(ROOT / "kernel"), *(str(ROOT / "plugins" / n) for n in (*needs, name))]
        jobs[name] = subprocess.Popen(
            [str(env_dir / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *paths],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    for name, job in jobs.items():
        _, err = job.communicate(timeout=600)
        assert job.returncode == 0, f"{name}: {err}"
    for name, (_, provider) in ALONE.items():
        python = tmp_path / name / "bin" / "python"
        result = subprocess.run(
            [str(python), "-c", BUILD, json.dumps(provider)], capture_output=True, text=True, timeout=60, cwd=tmp_path
        )
        assert result.returncode == 0, f"{name}: {result.stderr}"
        assert result.stdout.strip() == f"swarmgate_{name}", name
