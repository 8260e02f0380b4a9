"""The public API is exactly the curated ``__all__``; the kernel imports no plugin."""

from __future__ import annotations

import ast
from pathlib import Path

import swarmgate


def test_public_names_are_exactly_all() -> None:
    public = {name for name in dir(swarmgate) if not name.startswith("_")}
    modules = {
        "alerts",
        "batching",
        "deadlines",
        "builtins",
        "callers",
        "paths",
        "config",
        "errors",
        "hookspecs",
        "http",
        "keys",
        "logs",
        "manager",
        "models",
        "plugins",
        "provider",
        "registry",
        "requests",
        "routing",
        "state",
        "stats",
        "cli",
        "testing",
        "transport",
    }
    assert public - modules - {"annotations"} == set(swarmgate.__all__) - {"__version__"}
    assert swarmgate.EnhancedProviderManager is swarmgate.ProviderManager


def test_kernel_imports_no_plugin_package() -> None:
    root = Path(swarmgate.__file__).parent
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith("swarmgate_"), f"{path} imports plugin {name}"
