"""The server tests' fixtures live in server_testkit (a uniquely named module, so that
plugin test folders never collide as packages); this makes them visible to pytest."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # server_testkit (tests run with --import-mode=importlib)

from server_testkit import (
    _fresh_recorders,
    _fresh_upstreams,
    _plugin_allow_list,
    gateway,
    keyed_gateway,
    keyed_recorder,
    recorder,
    upstreams,
)

__all__ = [
    "_fresh_recorders",
    "_fresh_upstreams",
    "_plugin_allow_list",
    "gateway",
    "keyed_gateway",
    "keyed_recorder",
    "recorder",
    "upstreams",
]
