"""swarmgate-sim: simulated providers, the embedded default, and ``demo``.

* :class:`SimProvider` -- the ``sim`` provider type: realistic latency, cost
  and failure profiles, with no upstream, no API key and no network;
* :class:`SimPlugin` -- hooks: the embedded default config (four ``sim-*``
  providers) and the ``qwen-swarm-enhanced demo`` command;
* :func:`embedded_default` -- that config, as a fresh mapping.

The public API is exactly ``__all__``.
"""

from swarmgate_sim.defaults import embedded_default
from swarmgate_sim.plugin import SimPlugin
from swarmgate_sim.provider import SimProvider
from swarmgate_sim.settings import FAILURE_KINDS, Outage, SimSettings

__all__ = ["FAILURE_KINDS", "Outage", "SimPlugin", "SimProvider", "SimSettings", "embedded_default"]
