"""A typed facade over pluggy: one method per hook, explicit load order.

Loading (``PluginHost.load``): the kernel's essential plugin ``core`` first,
then every entry point in the ``swarmgate`` group that the allow-list
(``SWARMGATE_PLUGINS``) and block-list (``SWARMGATE_DISABLE_PLUGINS``)
admit, then plugins passed in code, then ``check_pending()``. Both lists
are comma-separated entry-point or distribution names; the kernel's own
entry points (``core`` and its built-in drivers) cannot be blocked.

An entry point may name a module (registered as is) or a class
(instantiated with no arguments, one instance per host, so every
``ProviderManager`` has its own plugin state).

Dispatch: the implementations of each hook are resolved once into a tuple
of ``(function, argument names, is_async)`` in call order and cached until
the next register/unregister; a hook call is then a plain loop.
"""

from __future__ import annotations

import functools
import importlib.metadata as md
import inspect
import operator
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import pluggy

from swarmgate import hookspecs
from swarmgate.errors import PluginError
from swarmgate.logs import get_logger
from swarmgate.models import CompletionRequest, CompletionResponse, HealthStatus, Target

if TYPE_CHECKING:
    import click

    from swarmgate.alerts import Alert
    from swarmgate.config import ProviderConfig
    from swarmgate.errors import SwarmgateError
    from swarmgate.manager import FailureDecision, ProviderManager, RequestContext
    from swarmgate.provider import Provider

GROUP = "swarmgate"
ALLOW_ENV = "SWARMGATE_PLUGINS"
BLOCK_ENV = "SWARMGATE_DISABLE_PLUGINS"
ESSENTIAL = frozenset({"core"})
#: The kernel's own distribution: its entry points (core, priority, round-robin, memory) are never blocked.
KERNEL = "swarmgate"

log = get_logger("swarmgate.plugins")

#: One resolved hook implementation: a callable taking the hook's arguments
#: positionally, in the hookspec's order (the implementation itself when it
#: takes them all, else an adapter passing the ones it names), whether it is
#: a coroutine function, and the plugin's name.
_Impl = tuple[Callable[..., Any], bool, str]


def _positional(function: Callable[..., Any], spec: Sequence[str], wanted: Sequence[str]) -> Callable[..., Any]:
    """``function`` (taking the arguments named ``wanted``) as a callable
    taking all of ``spec``'s arguments positionally. Made once per hook
    implementation: a call then builds no keyword dict and no argument list
    (pluggy's own dispatch does both, on every call)."""
    positions = tuple(spec.index(name) for name in wanted)
    if positions == tuple(range(len(spec))):
        return function
    if not positions:
        return lambda *args: function()
    if len(positions) == 1:
        (only,) = positions
        return lambda *args: function(args[only])
    pick = operator.itemgetter(*positions)
    return lambda *args: function(*pick(args))


@attrs.frozen
class PluginInfo:
    """One loaded plugin: its name, where it came from, and what it implements."""

    name: str
    distribution: str | None
    version: str | None
    entry_point: str | None
    hooks: tuple[str, ...]


def _names_from_env(var: str) -> frozenset[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return frozenset(part.strip() for part in raw.split(",") if part.strip())


def admitted(ep_name: str, distribution: str | None) -> str | None:
    """``None`` when the allow/block lists admit this plugin, else the reason."""
    if ep_name in ESSENTIAL or distribution == KERNEL:
        return None
    names = {ep_name} | ({distribution} if distribution else set())
    blocked = _names_from_env(BLOCK_ENV)
    if blocked and names & blocked:
        return f"blocked by {BLOCK_ENV}"
    allowed = _names_from_env(ALLOW_ENV)
    if allowed is not None and not names & allowed:
        return f"not in {ALLOW_ENV}"
    return None


@functools.cache
def entry_points(group: str) -> tuple[md.EntryPoint, ...]:
    """Installed entry points of ``group`` (cached; see :func:`refresh_entry_points`)."""
    return tuple(sorted(md.entry_points(group=group), key=lambda ep: (ep.name != "core", ep.name)))


def refresh_entry_points() -> None:
    """Forget cached entry points (after installing a plugin at run time)."""
    entry_points.cache_clear()


def distribution_of(ep: md.EntryPoint) -> tuple[str | None, str | None]:
    """``(distribution name, version)`` that declares ``ep``."""
    dist = ep.dist
    if dist is None:
        return None, None
    return dist.metadata["Name"], dist.version


class PluginHost:
    """Owns one pluggy ``PluginManager`` and calls its hooks, typed."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self._impls: dict[str, tuple[_Impl, ...]] = {}
        self._info: dict[str, PluginInfo] = {}

    # -- loading -------------------------------------------------------------

    def load(self, extra: Iterable[object] = ()) -> None:
        """Register ``core``, the admitted entry points, then ``extra``; check specs."""
        for ep in entry_points(GROUP):
            dist, version = distribution_of(ep)
            if admitted(ep.name, dist) is not None or self.pm.has_plugin(ep.name):
                continue
            try:
                obj = ep.load()
            except Exception as exc:
                raise PluginError(
                    f"plugin {ep.name!r} (from {dist or 'an unknown distribution'}) failed to import: "
                    f"{type(exc).__name__}: {exc}; reinstall it or block it with {BLOCK_ENV}={ep.name}",
                    namespace=GROUP,
                    name=ep.name,
                    distribution=dist,
                ) from exc
            self.register(obj, ep.name, distribution=dist, version=version, entry_point=ep.value)
        for obj in extra:
            self.register(obj)
        self.pm.check_pending()

    def register(
        self,
        plugin: object,
        name: str | None = None,
        *,
        distribution: str | None = None,
        version: str | None = None,
        entry_point: str | None = None,
    ) -> str:
        """Register a module, instance or class (instantiated). Returns its name."""
        if inspect.isclass(plugin):
            plugin = plugin()
        registered = self.pm.register(plugin, name)
        if registered is None:
            raise PluginError(f"plugin {name!r} is blocked", namespace=GROUP, name=name or "?")
        for caller in self.pm.get_hookcallers(plugin) or ():
            for impl in caller.get_hookimpls():
                if impl.plugin is plugin and (impl.hookwrapper or impl.wrapper) and caller.name in _ASYNC_HOOKS:
                    self.pm.unregister(plugin)
                    raise PluginError(
                        f"plugin {registered!r}: wrapper implementations of {caller.name!r} are not supported",
                        namespace=GROUP,
                        name=registered,
                    )
        hooks = tuple(sorted(c.name for c in self.pm.get_hookcallers(plugin) or ()))
        self._info[registered] = PluginInfo(registered, distribution, version, entry_point, hooks)
        self._impls.clear()
        return registered

    def unregister(self, name: str) -> None:
        """Remove a plugin by name (no effect if absent)."""
        if self.pm.has_plugin(name):
            self.pm.unregister(name=name)
            self._info.pop(name, None)
            self._impls.clear()

    def discard(self, plugin: object) -> bool:
        """Unregister ``plugin`` (the object itself, whatever its name). A hook
        plugin that the config leaves inactive calls this from
        ``plugin_setup`` so that its request hooks cost nothing; it is then
        inactive until the manager is rebuilt. Returns whether it was registered."""
        for name, _info in list(self._info.items()):
            if self.pm.get_plugin(name) is plugin:
                self.unregister(name)
                return True
        return False

    def plugins(self) -> list[PluginInfo]:
        """What is registered, in registration order."""
        return list(self._info.values())

    def get(self, name: str) -> object | None:
        """The registered plugin object called ``name``."""
        return self.pm.get_plugin(name)

    # -- dispatch ------------------------------------------------------------

    def _resolve(self, hook: str) -> tuple[_Impl, ...]:
        impls = self._impls.get(hook)
        if impls is None:
            caller = getattr(self.pm.hook, hook)
            spec = tuple(caller.spec.argnames) if caller.spec is not None else ()
            impls = tuple(
                (
                    _positional(impl.function, spec, impl.argnames),
                    inspect.iscoroutinefunction(impl.function),
                    impl.plugin_name,
                )
                for impl in reversed(caller.get_hookimpls())
            )
            self._impls[hook] = impls
        return impls

    def has_impls(self, hook: str) -> bool:
        """Whether any plugin implements ``hook``."""
        return bool(self._resolve(hook))

    async def _first(self, hook: str, args: tuple[Any, ...]) -> Any:
        """The first non-``None`` result; ``args`` in the hookspec's order."""
        for fn, is_async, _ in self._resolve(hook):
            result = fn(*args)
            if is_async:
                result = await result
            if result is not None:
                return result
        return None

    async def _each(self, hook: str, args: tuple[Any, ...], *, swallow: bool) -> None:
        """Call every implementation; ``args`` in the hookspec's order."""
        for fn, is_async, plugin in self._resolve(hook):
            try:
                result = fn(*args)
                if is_async:
                    await result
            except Exception as exc:
                if not swallow:
                    raise
                log.error("hook_failed", hook=hook, plugin=plugin, error=f"{type(exc).__name__}: {exc}")

    async def before_request(
        self, request: CompletionRequest, context: RequestContext
    ) -> tuple[CompletionRequest, CompletionResponse | None]:
        """Run ``before_request``; returns the (possibly replaced) request and
        a short-circuit response, if one was returned."""
        for fn, is_async, plugin in self._resolve("before_request"):
            result = fn(request, context)
            if is_async:
                result = await result
            if result is None:
                continue
            if isinstance(result, CompletionResponse):
                return request, result
            if isinstance(result, CompletionRequest):
                request = result
                continue
            raise TypeError(f"before_request of plugin {plugin!r} returned {type(result).__name__}")
        return request, None

    async def filter_targets(
        self, request: CompletionRequest, candidates: Sequence[Target], context: RequestContext
    ) -> dict[Target, str]:
        """Every target some plugin rules out, with the first reason given."""
        dropped: dict[Target, str] = {}
        for fn, is_async, _plugin in self._resolve("filter_targets"):
            result = fn(request, candidates, context)
            if is_async:
                result = await result
            if result:
                for target, reason in result:
                    dropped.setdefault(target, reason)
        return dropped

    async def select_provider(
        self, request: CompletionRequest, candidates: Sequence[Target], context: RequestContext
    ) -> Sequence[Target]:
        """The first ordering any plugin returns (the candidates unchanged if none)."""
        result = await self._first("select_provider", (request, candidates, context))
        return candidates if result is None else result

    async def after_response(
        self, request: CompletionRequest, response: CompletionResponse, context: RequestContext
    ) -> None:
        """Run every ``after_response``; exceptions are logged, not raised."""
        await self._each("after_response", (request, response, context), swallow=True)

    async def before_attempt(self, request: CompletionRequest, target: Target, context: RequestContext) -> None:
        """Run every ``before_attempt``; the first exception propagates (a refusal)."""
        await self._each("before_attempt", (request, target, context), swallow=False)

    async def request_failed(self, request: CompletionRequest, error: SwarmgateError, context: RequestContext) -> None:
        """Run every ``request_failed``; exceptions are logged, not raised."""
        await self._each("request_failed", (request, error, context), swallow=True)

    async def on_failure(
        self, request: CompletionRequest, target: Target, error: SwarmgateError, context: RequestContext
    ) -> FailureDecision | None:
        """The first decision any plugin returns; failing plugins count as ``None``."""
        for fn, is_async, plugin in self._resolve("on_failure"):
            try:
                result = fn(request, target, error, context)
                if is_async:
                    result = await result
            except Exception as exc:  # noqa: BLE001 - contract: a failing on_failure counts as None
                log.error("hook_failed", hook="on_failure", plugin=plugin, error=f"{type(exc).__name__}: {exc}")
                continue
            if result is not None:
                return result  # type: ignore[no-any-return]
        return None

    async def deliver_alert(self, alert: Alert, manager: ProviderManager) -> None:
        """Run every ``deliver_alert``; exceptions are logged."""
        await self._each("deliver_alert", (alert, manager), swallow=True)

    async def health_probe(self, manager: ProviderManager, name: str, provider: Provider) -> HealthStatus:
        """The first health status any plugin returns; an exception is unhealthy."""
        try:
            result = await self._first("health_probe", (manager, name, provider))
        except Exception as exc:  # noqa: BLE001 - contract: a failing probe means unhealthy
            return HealthStatus(False, detail=f"{type(exc).__name__}: {exc}")
        return result if result is not None else HealthStatus(False, detail="no health probe for this provider")

    async def plugin_setup(self, manager: ProviderManager) -> None:
        """Run every ``plugin_setup``; the first exception aborts."""
        await self._each("plugin_setup", (manager,), swallow=False)

    async def plugin_shutdown(self, manager: ProviderManager) -> None:
        """Run every ``plugin_shutdown``; exceptions are logged."""
        await self._each("plugin_shutdown", (manager,), swallow=True)

    async def provider_changed(
        self, manager: ProviderManager, name: str, old: ProviderConfig | None, new: ProviderConfig | None
    ) -> None:
        """Run every ``provider_changed``; exceptions are logged."""
        await self._each("provider_changed", (manager, name, old, new), swallow=True)

    def default_config(self) -> Mapping[str, Any] | None:
        """The first default config a plugin offers, or ``None``."""
        result: Mapping[str, Any] | None = self.pm.hook.default_config()
        return result

    def gateway_routes(self, manager: ProviderManager) -> list[Any]:
        """Every route plugins add to the HTTP gateway, flattened."""
        results: list[Sequence[Any] | None] = self.pm.hook.gateway_routes(manager=manager)
        return [route for routes in reversed(results) if routes for route in routes]

    def register_commands(self, cli: click.Group) -> None:
        """Let every plugin add its CLI commands."""
        self.pm.hook.register_commands(cli=cli)


_ASYNC_HOOKS = frozenset(
    {
        "before_request",
        "filter_targets",
        "select_provider",
        "after_response",
        "before_attempt",
        "request_failed",
        "on_failure",
        "health_probe",
        "deliver_alert",
        "plugin_setup",
        "plugin_shutdown",
        "provider_changed",
    }
)
