"""The public API is exactly the curated ``__all__``; the kernel imports no plugin."""

from __future__ import annotations

import ast
from pathlib import Path

import swarmgate


def test_public_names_are_exactly_all() -> None:
    public = {name for name in dir(swarmgate) if not name.startswith("_")}
    # Submodules show up as attributes once anything imported them (which
    # depends on the tests run before): every module of the package is allowed.
    package = Path(swarmgate.__file__).parent
    modules = {path.stem for path in package.glob("*.py")} | {
        path.parent.name for path in package.glob("*/__init__.py")
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
