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


def create_private(path: str | os.PathLike[str]) -> None:
    """Create ``path`` empty and readable by its owner only (mode 0600) if it
    does not exist yet. SQLite gives a database's ``-wal`` and ``-shm`` files
    the database's permissions, so usage, audit and key stores created this
    way stay private to the gateway's user."""
    target = Path(path)
    if target.exists():
        return
    try:
        fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    os.close(fd)
