"""Where swarmgate keeps its files by default (usage log, audit log, keys).

``$SWARMGATE_HOME`` if set, else ``$XDG_DATA_HOME/swarmgate``, else
``~/.local/share/swarmgate``. Plugins put relative paths from their config
under this directory; the directory is created on first use.
"""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """The data directory (created if missing)."""
    home = os.environ.get("SWARMGATE_HOME")
    if home:
        path = Path(home)
    else:
        base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        path = Path(base) / "swarmgate"
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_path(name: str | os.PathLike[str]) -> Path:
    """``name`` as is when absolute, else under :func:`data_dir`; its parent is created."""
    path = Path(name).expanduser()
    if not path.is_absolute():
        path = data_dir() / path
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
