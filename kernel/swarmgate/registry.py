"""Named drivers chosen by configuration, looked up with stevedore.

``"type": "openai"`` is the entry point ``openai`` in ``swarmgate.providers``;
``"strategy": "cost-optimized"`` one in ``swarmgate.strategies``; likewise
``swarmgate.balancers``, ``swarmgate.state``, ``swarmgate.exporters`` and
``swarmgate.key_sources``.
A name nobody provides, a blocked one, or one whose import fails is a
:class:`~swarmgate.errors.PluginError` that names the distribution to install.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stevedore import DriverManager
from stevedore.exception import NoMatches

from swarmgate.errors import PluginError
from swarmgate.plugins import admitted, distribution_of, entry_points

PROVIDERS = "swarmgate.providers"
STRATEGIES = "swarmgate.strategies"
BALANCERS = "swarmgate.balancers"
STATE = "swarmgate.state"
EXPORTERS = "swarmgate.exporters"
KEY_SOURCES = "swarmgate.key_sources"

_WHAT = {
    PROVIDERS: "provider type",
    STRATEGIES: "routing strategy",
    BALANCERS: "load balancer",
    STATE: "state backend",
    EXPORTERS: "metrics exporter",
    KEY_SOURCES: "key source",
}

#: First-party names whose distribution is not simply ``swarmgate-<name>``.
KNOWN_DISTRIBUTIONS: Mapping[tuple[str, str], str] = {
    (STRATEGIES, "cost-optimized"): "swarmgate-cost",
    (STRATEGIES, "performance-optimized"): "swarmgate-performance",
    (STRATEGIES, "reliability-optimized"): "swarmgate-reliability",
    (STRATEGIES, "intelligent"): "swarmgate-intelligent",
    (BALANCERS, "weighted-round-robin"): "swarmgate-wrr",
    (BALANCERS, "p2c-ewma"): "swarmgate-p2c",
    (EXPORTERS, "prometheus"): "swarmgate-prometheus",
}

_cache: dict[tuple[str, str], Any] = {}


def distribution_for(namespace: str, name: str) -> str:
    """The distribution that provides ``name`` in ``namespace`` (first-party naming)."""
    return KNOWN_DISTRIBUTIONS.get((namespace, name), f"swarmgate-{name}")


def available(namespace: str) -> list[str]:
    """Names installed in ``namespace`` (blocked ones included)."""
    return sorted({ep.name for ep in entry_points(namespace)})


def load_driver(namespace: str, name: str, overrides: Mapping[str, Any] | None = None) -> Any:
    """The driver object (usually a class) registered as ``name`` in ``namespace``.

    ``overrides`` maps names to drivers supplied in code (tests, embedding);
    they win over entry points. Results are cached per process.
    """
    if overrides and name in overrides:
        return overrides[name]
    what = _WHAT.get(namespace, namespace)
    matches = [distribution_of(ep)[0] for ep in entry_points(namespace) if ep.name == name]
    dist = matches[0] if matches else None
    reason = admitted(name, dist) if matches else None  # an unknown name gets the "install ..." error below
    if reason is not None:
        raise PluginError(
            f"{what} {name!r} (from {dist}) is {reason}", namespace=namespace, name=name, distribution=dist
        )
    key = (namespace, name)
    if key in _cache:
        return _cache[key]

    def failed(_manager: Any, entry_point: Any, exc: BaseException) -> None:
        raise PluginError(
            f"{what} {name!r} is installed (from {dist or 'an unknown distribution'}) but failed to load: "
            f"{type(exc).__name__}: {exc}",
            namespace=namespace,
            name=name,
            distribution=dist,
        ) from exc

    try:
        manager = DriverManager(namespace, name, invoke_on_load=False, on_load_failure_callback=failed)
    except NoMatches:
        installed = available(namespace)
        hint = distribution_for(namespace, name)
        raise PluginError(
            f"unknown {what} {name!r}: no installed plugin provides it "
            f"(installed: {', '.join(installed) or 'none'}); install the distribution {hint!r} "
            f"or a plugin that registers {name!r} in the entry-point group {namespace!r}",
            namespace=namespace,
            name=name,
            distribution=hint,
        ) from None
    driver = manager.driver
    _cache[key] = driver
    return driver


def clear_cache() -> None:
    """Forget loaded drivers (tests; after installing a plugin at run time)."""
    _cache.clear()
