"""ProviderManager: the request pipeline.

For every request::

    before_request hooks      (may answer, refuse, or rewrite)
    candidate targets         (forced provider, provider/model, route, model name, "auto";
                               plus fallback chains)
    filters                   (exclude, constraints; unhealthy targets last)
    select_provider hook      (the configured strategy and balancer by default)
    preferred providers first
    attempt each target       (driver call under the provider's timeout)
      success -> after_response hooks -> the response
      failure -> on_failure hooks decide: retry, fail over, or abort
    nothing left -> NoProviderAvailableError listing every attempt

Streaming runs the same pipeline; a failure before the first token fails
over invisibly, a failure after it ends the stream with the error.

Providers can be added, replaced and removed while requests are in flight:
each request holds the provider instance it started with; a replaced or
removed instance is closed when its last in-flight call ends.

A provider with several API keys has one driver instance per key (see
:mod:`swarmgate.keys`); each attempt takes the next key in turn, a key the
upstream rejects is set aside and the same target is tried again at once
with the next one. Keys are rotated at run time the same way providers are
replaced: new instances are swapped in, old ones close after their last call.
"""

from __future__ import annotations

import itertools
import math
import operator
import os
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import AsyncGeneratorType
from typing import Any, Literal, overload

import anyio
import attrs

from swarmgate import keys as keyring
from swarmgate import registry
from swarmgate.alerts import PROVIDER_DOWN, PROVIDER_RECOVERED, Alert, AlertCallback, AlertHub, subscribe
from swarmgate.callers import NO_POLICY, CallerDirectory, CallerPolicy
from swarmgate.config import (
    ModelConfig,
    ProviderConfig,
    SwarmgateConfig,
    _read_file,
    load_config,
    parse_section,
    validate,
)
from swarmgate.deadlines import current_time, new_watchdog
from swarmgate.errors import (
    ConfigError,
    InvalidRequestError,
    NoProviderAvailableError,
    PluginError,
    ProviderTimeoutError,
    RequestCancelledError,
    ServerError,
    SwarmgateError,
    UnknownModelError,
)
from swarmgate.keys import KeyRing, KeySlot, KeyTemplates, is_key_error
from swarmgate.logs import ensure_redaction, fingerprint, get_logger, register_secret, scrub_secrets
from swarmgate.models import (
    ZERO_USAGE,
    Attempt,
    CompletionRequest,
    CompletionResponse,
    ErrorEvent,
    FinishEvent,
    HealthStatus,
    Message,
    ProviderEvent,
    ProviderReply,
    StreamEvent,
    StreamFailover,
    StreamStart,
    Target,
    TextDelta,
    TokenUsage,
    ToolCallDelta,
    UsageEvent,
)
from swarmgate.plugins import PluginHost
from swarmgate.provider import Provider, ProviderCall
from swarmgate.requests import build_request
from swarmgate.routing import Balancer, Strategy
from swarmgate.state import StateStore
from swarmgate.stats import TargetStats, estimate_tokens

log = get_logger("swarmgate.manager")

#: Upper bound on attempts for one request, whatever plugins decide.
MAX_ATTEMPTS = 32
#: Candidate plans kept per manager before the cache is dropped and rebuilt.
MAX_CACHED_PLANS = 4096
#: Hedge budget burst: how many hedges may happen back to back.
HEDGE_BURST = 5.0
#: Observations a target needs before its moving average sets a hedge delay.
HEDGE_MIN_SAMPLES = 10
#: The default ``timeouts.total`` of a request (all attempts included), in milliseconds.
DEFAULT_TOTAL_TIMEOUT_MS = 600_000.0

CANCELLED_BY_CALLER = "the caller cancelled the request"
LOST_HEDGE = "lost the hedge race"

#: Seconds aclose() waits for queued alerts to be delivered.
ALERT_DRAIN_TIMEOUT = 5.0

_ids = itertools.count(1)
_ID_PREFIX = os.urandom(4).hex()


def _new_id() -> str:
    return f"sg-{_ID_PREFIX}{next(_ids):08x}"


@attrs.frozen
class FailureDecision:
    """What to do after a failed attempt (returned by ``on_failure`` hooks)."""

    action: Literal["retry", "failover", "abort", "switch"]
    delay: float = 0.0
    target: Target | None = None

    @classmethod
    def retry(cls, delay: float = 0.0) -> FailureDecision:
        """Try the same target again after ``delay`` seconds."""
        return cls("retry", delay)

    @classmethod
    def failover(cls) -> FailureDecision:
        """Move on to the next target."""
        return cls("failover")

    @classmethod
    def abort(cls) -> FailureDecision:
        """Stop and raise the error."""
        return cls("abort")

    @classmethod
    def switch(cls, target: Target, delay: float = 0.0) -> FailureDecision:
        """Try ``target`` next (after ``delay`` seconds), e.g. a model with a
        larger context window; the remaining targets follow it."""
        return cls("switch", delay, target)


@attrs.define
class RequestContext:
    """Per-request scratch space shared by the kernel and hooks.

    ``attempts`` grows as targets are tried; ``state`` is for plugins (key
    it by plugin name); ``ordered`` is set when the targets' order is fixed
    (an ordered route).
    """

    id: str
    manager: ProviderManager
    started: float
    stream: bool = False
    attempts: list[Attempt] = attrs.field(factory=list)
    state: dict[str, Any] = attrs.field(factory=dict)
    ordered: bool = False
    fallback: tuple[Target, ...] = ()
    #: When the whole request must be over (anyio clock; ``timeouts.total``).
    deadline: float = math.inf
    #: The targets in the order they will be tried (a live list: switches insert into it)
    #: and the index of the one being tried.
    targets: list[Target] = attrs.field(factory=list)
    index: int = 0

    def elapsed_ms(self) -> float:
        """Milliseconds since the request started."""
        return (time.perf_counter() - self.started) * 1000.0


def _keyless_ring(handle: ProviderHandle) -> KeyRing:
    return KeyRing((KeySlot(handle.provider),))


@attrs.define(eq=False)
class ProviderHandle:
    """A live provider and its bookkeeping.

    ``provider`` is the driver instance of the first key (the one to inspect
    or script in tests); ``keys`` holds every key's instance
    (:class:`~swarmgate.keys.KeyRing`), and an attempt uses the one the
    ring picks. ``inflight`` counts calls on any of them.
    """

    name: str
    config: ProviderConfig
    provider: Provider
    keys: KeyRing = attrs.field(default=attrs.Factory(_keyless_ring, takes_self=True))
    #: Builds and starts one more driver instance using a key (for rotation).
    factory: Callable[[str | None], Awaitable[Provider]] | None = attrs.field(default=None, repr=False)
    inflight: int = 0
    retired: bool = False
    closed: bool = False
    healthy: bool = True
    health_detail: str = ""
    #: Health marks by source (a health monitor, a breaker, ...); healthy only if all agree.
    health_marks: dict[str, tuple[bool, str]] = attrs.field(factory=dict)


@attrs.frozen
class _Plan:
    primary: tuple[Target, ...]
    fallback: tuple[Target, ...]
    ordered: bool


#: Config sections that switch on a security capability, and the plugin (entry-point
#: name in the ``swarmgate`` group, package ``swarmgate_<name>``) that provides it. A
#: missing one must stop the start: running without the encryption, audit, compliance
#: or caller-key checks the config asks for would fail open. (Other sections are read
#: by several plugins -- the cost strategy reads ``routing.budgetLimits``, the advisor
#: reads ``optimization.caching`` -- so their owners check them.)
CAPABILITIES: tuple[tuple[str, str], ...] = (
    ("security.audit", "audit"),
    ("security.encryption", "encryption"),
    ("security.compliance", "compliance"),
    ("security.callerKeys", "keys"),
)


def _switched_on(value: Any) -> bool:
    if value is None or value is False:
        return False
    return not (isinstance(value, Mapping) and value.get("enabled") is False)


def missing_capabilities(config: SwarmgateConfig, plugins: PluginHost) -> None:
    """Raise ConfigError when the config switches on a capability whose
    plugin is not installed or is disabled (``SWARMGATE_DISABLE_PLUGINS``),
    naming the distribution to install: a cache the config asks to encrypt
    must never silently store plaintext because the encryption plugin is
    missing."""
    packages = {type(p).__module__.split(".")[0] for p in plugins.pm.get_plugins()}
    problems = [
        (
            path,
            f"needs the plugin {name!r}: install 'swarmgate-{name}' (or 'qwen-swarm-enhanced'), or remove the section",
        )
        for path, name in CAPABILITIES
        if _switched_on(config.section(path)) and plugins.get(name) is None and f"swarmgate_{name}" not in packages
    ]
    if problems:
        raise ConfigError(problems)


class ProviderManager:
    """The gateway's core object. See the module docstring for the pipeline.

    ``config`` is a path (JSON/YAML), a mapping in the feature guide's
    format, a :class:`~swarmgate.config.SwarmgateConfig`, or ``None`` for
    the embedded default a plugin offers (``swarmgate-sim``). ``plugins``
    are extra plugin objects registered after the entry points; ``drivers``
    maps an entry-point namespace to ``{name: driver}`` supplied in code.
    """

    def __init__(
        self,
        config: str | os.PathLike[str] | Mapping[str, Any] | SwarmgateConfig | None = None,
        *,
        plugins: Iterable[object] = (),
        drivers: Mapping[str, Mapping[str, Any]] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._config_source = config
        self._extra_plugins = tuple(plugins)
        self._drivers = {k: dict(v) for k, v in (drivers or {}).items()}
        self._env = env
        self.plugins = PluginHost()
        self._config: SwarmgateConfig | None = None
        self._handles: dict[str, ProviderHandle] = {}
        self._stats: dict[Target, TargetStats] = {}
        self._plans: dict[tuple[str, str | None], _Plan] = {}
        self._strategies: dict[str, Strategy] = {}
        self._balancer: Balancer | None = None
        self._state: StateStore | None = None
        self._initialized = False
        self._closed = False
        self._lock = anyio.Lock()
        #: Services plugins publish for each other, by name (e.g. a shared
        #: predictor that several strategies read). Set in ``plugin_setup``.
        self.extensions: dict[str, Any] = {}
        #: Each provider's apiKey/apiKeys as written (re-resolved by rotation).
        self._key_templates: dict[str, KeyTemplates] = {}
        #: Keys given to rotate_provider_keys, in force until the next re-read.
        self._key_overrides: dict[str, tuple[str, ...]] = {}
        self._hedge_tokens: float | None = None  # the hedge budget; None while hedging is off
        self._alerts: AlertHub | None = None
        self._alert_callbacks: list[AlertCallback] = []  # shared with the hub
        self._caller_directories: list[CallerDirectory] = []

    # -- lifecycle -----------------------------------------------------------

    async def initialize(self) -> None:
        """Load plugins and config, build and start providers, run ``plugin_setup``.

        Raises :class:`ConfigError` or :class:`PluginError` naming what is wrong.
        Calling it again is a no-op.
        """
        if self._initialized:
            return
        ensure_redaction()
        self.plugins.load(self._extra_plugins)
        source = self._config_source
        if source is None:
            source = self.plugins.default_config()
            if source is None:
                raise ConfigError(
                    [
                        (
                            "",
                            "no config given and no installed plugin offers a default; "
                            "pass a config, or install 'swarmgate-sim' (or 'qwen-swarm-enhanced') for the embedded default",
                        )
                    ]
                )
        config = load_config(source, env=self._env)
        self._config = config
        self._hedge_tokens = HEDGE_BURST if config.routing.hedging.enabled else None
        self._key_templates = self._read_templates(source)
        if isinstance(source, str | os.PathLike):
            for provider_name, path in keyring.literal_key_paths(self._key_templates):
                if provider_name in config.providers:
                    log.warning(
                        "literal_api_key_in_config",
                        provider=provider_name,
                        path=path,
                        hint="use a ${ENV} reference, apiKeyFile or keySource instead",
                    )
        missing_capabilities(config, self.plugins)
        self._state = self._make_state(config)
        self._strategies[config.routing.strategy] = self._load_strategy(config.routing.strategy, "routing.strategy")
        self._balancer = self._load_routing_driver(
            registry.BALANCERS, config.routing.load_balancing.algorithm, "routing.loadBalancing.algorithm"
        )
        balancing = config.routing.load_balancing
        if balancing.settings and getattr(type(self._balancer), "settings_class", None) is None:
            raise ConfigError(
                [
                    (f"routing.loadBalancing.{key}", f"unknown key for load balancer {balancing.algorithm!r}")
                    for key in sorted(balancing.settings)
                ]
            )
        handles: dict[str, ProviderHandle] = {}
        try:
            for name, provider_config in config.providers.items():
                if provider_config.enabled:
                    handles[name] = await self._build(name, provider_config)
        except BaseException:
            for handle in handles.values():
                await self._close_handle(handle)
            raise
        self._handles = handles
        self._alerts = AlertHub(self, self._alert_callbacks)
        self._alerts.start()
        self._initialized = True
        try:
            await self.plugins.plugin_setup(self)
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        """Run ``plugin_shutdown``, close every provider and the state store. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._initialized:
            await self.plugins.plugin_shutdown(self)
        if self._alerts is not None:
            with anyio.move_on_after(ALERT_DRAIN_TIMEOUT):
                await self._alerts.deliver_pending()
            await self._alerts.aclose()
        for handle in list(self._handles.values()):
            await self._close_handle(handle)
        self._handles = {}
        if self._state is not None:
            await self._state.aclose()

    async def __aenter__(self) -> ProviderManager:
        await self.initialize()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- what is configured --------------------------------------------------

    @property
    def config(self) -> SwarmgateConfig:
        """The active configuration."""
        if self._config is None:
            raise RuntimeError("the ProviderManager is not initialized: await manager.initialize() first")
        return self._config

    @property
    def state(self) -> StateStore:
        """The shared state store (``state.backend``)."""
        if self._state is None:
            raise RuntimeError("the ProviderManager is not initialized: await manager.initialize() first")
        return self._state

    def providers(self) -> list[str]:
        """Names of the live (enabled) providers."""
        return list(self._handles)

    def provider(self, name: str) -> Provider:
        """The live driver instance of provider ``name`` (with several keys:
        the first key's; each attempt uses the instance of the key in turn)."""
        handle = self._handles.get(name)
        if handle is None:
            raise UnknownModelError(f"unknown provider {name!r} (live: {sorted(self._handles)})")
        return handle.provider

    def handle(self, name: str) -> ProviderHandle | None:
        """Bookkeeping for provider ``name`` (health, in-flight count), if live."""
        return self._handles.get(name)

    def priority_of(self, name: str) -> int:
        """The configured priority of provider ``name`` (lower is tried first)."""
        handle = self._handles.get(name)
        return handle.config.priority if handle else 1_000_000

    def weight_of(self, name: str) -> float:
        """Provider ``name``'s load-balancing weight: ``routing.loadBalancing.weights``,
        else its own ``weight`` (1.0 for an unknown provider)."""
        weights = self.config.routing.load_balancing.weights
        if name in weights:
            return weights[name]
        handle = self._handles.get(name)
        return handle.config.weight if handle else 1.0

    def stats(self, target: Target) -> TargetStats:
        """Live statistics of one target (created on first use)."""
        stats = self._stats.get(target)
        if stats is None:
            stats = self._stats[target] = TargetStats()
        return stats

    def all_stats(self) -> dict[Target, TargetStats]:
        """Live statistics of every target that has seen traffic."""
        return dict(self._stats)

    def model_config(self, target: Target) -> ModelConfig:
        """The model config of ``target`` (defaults when the provider lists none)."""
        handle = self._handles.get(target.provider)
        if handle is None:
            return ModelConfig()
        return handle.config.models.get(target.model) or ModelConfig()

    def models(self) -> list[str]:
        """Every routable model id: ``provider/model`` for each live model, then route names."""
        out = [f"{name}/{model}" for name, handle in self._handles.items() for model in handle.config.models]
        out.extend(self.config.routes)
        return out

    def estimate_cost(self, target: Target, request: CompletionRequest) -> float:
        """Worst-case cost of ``request`` on ``target``: estimated prompt tokens
        plus the requested (or the model's) max tokens, at the target's prices."""
        model = self.model_config(target)
        max_out = request.max_tokens or model.max_tokens or 1024
        return model.price(estimate_tokens(request.prompt_text()), max_out)

    # -- callers ---------------------------------------------------------------

    def add_caller_directory(self, directory: CallerDirectory) -> None:
        """Let ``directory`` answer :meth:`caller_policy` (after those added before it).

        A plugin registers its directory in ``plugin_setup``: the plugins that
        enforce caller limits (rate limits, budgets) run their setup
        ``trylast`` and stay active when a directory is registered by then,
        since any caller it knows may carry limits."""
        self._caller_directories.append(directory)

    @property
    def caller_directories(self) -> tuple[CallerDirectory, ...]:
        """The registered caller directories, in the order they are asked."""
        return tuple(self._caller_directories)

    def caller_policy(self, caller: str | None) -> CallerPolicy:
        """What ``caller`` may do: the first directory's policy that knows it,
        else :data:`~swarmgate.callers.NO_POLICY` (no limits of its own)."""
        if caller is not None:
            for directory in self._caller_directories:
                policy = directory.policy(caller)
                if policy is not None:
                    return policy
        return NO_POLICY

    # -- alerts ----------------------------------------------------------------

    def on_alert(self, callback: AlertCallback) -> Callable[[], None]:
        """Call ``callback`` (sync or async, taking an :class:`~swarmgate.alerts.Alert`)
        for every alert, off the request path; returns a function that unsubscribes it.
        May be called before :meth:`initialize`."""
        return subscribe(self._alert_callbacks, callback)

    def emit_alert(self, alert: Alert) -> None:
        """Queue ``alert`` for delivery; never blocks or raises (dropped
        before :meth:`initialize` and after :meth:`aclose`)."""
        if self._alerts is not None and not self._closed:
            self._alerts.emit(alert)

    @property
    def alerts(self) -> AlertHub | None:
        """The alert hub (recent alerts, delivery counters), once initialized."""
        return self._alerts

    # -- analytics (provided by plugins) -------------------------------------------

    def _service(self, name: str, distribution: str) -> Any:
        service = self.extensions.get(name)
        if service is None:
            raise PluginError(
                f"no {name} service is active: install {distribution!r} (or 'qwen-swarm-enhanced') "
                "and make sure the config does not disable it",
                namespace="swarmgate",
                name=name,
                distribution=distribution,
            )
        return service

    async def get_analytics(self, window: str | None = None) -> Mapping[str, Any]:
        """Per-provider and per-model figures in the feature guide's shape
        (``providers``: name, successRate, avgLatency, p50/p95/p99, ttft,
        avgCost, totalRequests, totalCost, tokens, uptime, inflight; ``models``;
        ``cache``; ``window``). ``window`` is ``1m``, ``1h``, ``1d`` (the live
        sliding windows) or a longer span answered from the usage log
        (``7d``, ``30d``); ``None`` means since start. Needs ``swarmgate-analytics``."""
        result: Mapping[str, Any] = await self._service("analytics", "swarmgate-analytics").analytics(window)
        return result

    async def get_metrics(self) -> Mapping[str, Any]:
        """The raw counters behind the analytics. Needs ``swarmgate-analytics``."""
        result: Mapping[str, Any] = await self._service("analytics", "swarmgate-analytics").metrics()
        return result

    async def export_metrics(self, format: str = "json") -> str:  # noqa: A002 - the guide's name
        """The metrics rendered by the exporter named ``format`` (entry point in
        ``swarmgate.exporters``: ``json``, ``csv``, ``prometheus``, ...)."""
        exporter = self._driver_class(registry.EXPORTERS, format, "format")
        rendered: str = await exporter().render(self)
        return rendered

    async def get_optimization_recommendations(self) -> list[Mapping[str, Any]]:
        """Data-driven recommendations (type, description, impact, action).
        Needs ``swarmgate-analytics``."""
        result: list[Mapping[str, Any]] = await self._service("analytics", "swarmgate-analytics").recommendations()
        return result

    # -- health --------------------------------------------------------------

    def set_health(self, name: str, healthy: bool, detail: str = "", *, source: str = "default") -> None:
        """Mark a provider healthy or not, on behalf of ``source`` (a health
        monitor, a breaker, ...): it counts as healthy only while every source
        says so. Unhealthy providers are tried only after every healthy one."""
        handle = self._handles.get(name)
        if handle is None:
            return
        handle.health_marks[source] = (healthy, detail)
        sick = [d or s for s, (ok, d) in handle.health_marks.items() if not ok]
        was_healthy = handle.healthy
        handle.healthy = not sick
        handle.health_detail = "; ".join(sick)
        if was_healthy and sick:
            self.emit_alert(
                Alert(PROVIDER_DOWN, f"provider {name!r} is down: {handle.health_detail}", "critical", name)
            )
        elif not was_healthy and not sick:
            self.emit_alert(Alert(PROVIDER_RECOVERED, f"provider {name!r} recovered", "info", name))

    async def check_health(self, name: str | None = None) -> dict[str, HealthStatus]:
        """Probe one provider (or all) through the ``health_probe`` hook,
        concurrently, without changing their health marks."""
        names = [name] if name is not None else list(self._handles)
        results: dict[str, HealthStatus] = {}

        async def probe(n: str) -> None:
            handle = self._handles.get(n)
            if handle is None:
                results[n] = HealthStatus(False, detail="unknown provider")
                return
            started = time.perf_counter()
            status = HealthStatus(False, detail=f"no answer to the health probe within {handle.config.timeout:g} ms")
            with anyio.move_on_after(handle.config.timeout / 1000.0):
                status = await self.plugins.health_probe(self, n, handle.keys.active().provider)
            if status.detail:
                detail = scrub_secrets(status.detail)
                if detail != status.detail:
                    status = attrs.evolve(status, detail=detail)
            if status.latency is None:
                status = attrs.evolve(status, latency=(time.perf_counter() - started) * 1000.0)
            results[n] = status

        async with anyio.create_task_group() as tg:
            for n in names:
                tg.start_soon(probe, n)
        return {n: results[n] for n in names}

    # -- dynamic providers ---------------------------------------------------

    async def add_provider(self, name: str, config: ProviderConfig | Mapping[str, Any]) -> None:
        """Add provider ``name`` (config in the guide's format) at run time.

        Raises :class:`ConfigError` for a bad config or an existing name.
        """
        async with self._lock:
            if name in self.config.providers:
                raise ConfigError(
                    [(f"providers.{name}", "a provider with this name already exists; use update_provider")]
                )
            provider_config = self._parse_provider(name, config)
            self._follow_key_templates(name, None, provider_config)
            await self._install(name, None, provider_config)

    async def update_provider(self, name: str, changes: Mapping[str, Any] | ProviderConfig) -> None:
        """Change provider ``name``'s config: a partial mapping (camelCase)
        laid over the current one, or a whole :class:`ProviderConfig` that
        replaces it (a config file reloaded).

        Requests in flight finish on the old instance; new ones use the new one.
        Keys given to :meth:`rotate_provider_keys` stay in force unless the
        change touches the key settings (``apiKey``, ``apiKeys``,
        ``apiKeyFile``, ``keySource``).
        """
        async with self._lock:
            old = self.config.providers.get(name)
            if old is None:
                raise UnknownModelError(f"unknown provider {name!r} (configured: {sorted(self.config.providers)})")
            if isinstance(changes, ProviderConfig):
                new = self._parse_provider(name, changes)
            else:
                from swarmgate.config import to_dict

                raw = to_dict(attrs.evolve(self.config, providers={name: old}))["providers"][name]
                raw = {k: v for k, v in raw.items() if v is not None}
                # to_dict masks the secrets: put the real values back before laying the changes over.
                for key, value in (
                    ("apiKey", old.api_key),
                    ("apiKeys", list(old.api_keys)),
                    ("keySource", old.key_source),
                    ("proxy", old.proxy),
                ):
                    if value:
                        raw[key] = value
                raw.update(changes)
                new = self._parse_provider(name, raw)
            self._follow_key_templates(name, old, new)
            await self._install(name, old, new)

    # -- provider keys -----------------------------------------------------------

    async def rotate_provider_keys(self, name: str, keys: Sequence[str] | None = None) -> list[str]:
        """Replace provider ``name``'s API keys at run time, without a restart
        and without dropping a request; returns the new keys' fingerprints
        (``key:1a2b3c4d``), in the order they are used.

        ``keys=None`` re-reads the provider's key sources: ``${ENV}``
        references in ``apiKey``/``apiKeys`` (substituted again), ``apiKeyFile``
        and ``keySource``; this also ends keys given here before. Explicit
        ``keys`` replace all of them until the next re-read or a config change
        of the key settings.

        New driver instances are built and started for new keys, then swapped
        in at once: requests in flight finish on the instances they started
        with, which close after their last call. A key kept from before keeps
        its instance and its set-aside state. When the re-read changes
        ``apiKey``/``apiKeys``, the live config follows and ``provider_changed``
        runs. Raises :class:`UnknownModelError` for a provider that is not
        live, :class:`InvalidRequestError` for unusable ``keys``, and
        :class:`ConfigError` (naming the path, never a key) when a source
        cannot be read; the old keys then stay in use.
        """
        fingerprints, _ = await self._rotate(name, keys)
        return fingerprints

    def provider_key_status(self, name: str) -> list[dict[str, Any]]:
        """Each key of live provider ``name``, in the order they are used:
        ``fingerprint`` (``key:1a2b3c4d``), ``active`` (not set aside),
        ``set_aside_until`` (unix time, or ``None``), ``failures`` (times set
        aside) and ``last_used`` (unix time of its last pick, or ``None``).
        Empty for a provider without keys. Never shows a key."""
        handle = self._handles.get(name)
        if handle is None:
            raise UnknownModelError(f"unknown or disabled provider {name!r} (live: {sorted(self._handles)})")
        return handle.keys.status()

    async def refresh_credentials(self, name: str) -> bool:
        """Re-read provider ``name``'s key sources (:meth:`rotate_provider_keys`
        with no keys) and report whether its keys changed. A source that
        cannot be read (an unset variable, a missing file) is logged, not
        raised: the keys in use stay. ``False`` for a provider that is not live."""
        if name not in self._handles:
            return False
        try:
            _, changed = await self._rotate(name, None)
        except ConfigError as exc:
            log.warning("credential_refresh_failed", provider=name, problems=[f"{p}: {m}" for p, m in exc.problems])
            return False
        return changed

    async def _rotate(self, name: str, keys: Sequence[str] | None) -> tuple[list[str], bool]:
        """:meth:`rotate_provider_keys`; also says whether anything changed."""
        given: tuple[str, ...] | None = None
        if keys is not None:
            if isinstance(keys, str) or not isinstance(keys, Sequence):
                raise InvalidRequestError("keys must be a list of API keys")
            try:
                given = tuple(keyring.unique(keyring.check_key(k, f"keys[{i}]") for i, k in enumerate(keys)))
            except ConfigError as exc:
                raise InvalidRequestError("; ".join(f"{p}: {m}" for p, m in exc.problems)) from None
            if not given:
                raise InvalidRequestError("keys must hold at least one API key")
        async with self._lock:
            handle = self._handles.get(name)
            old = self.config.providers.get(name)
            if handle is None or old is None:
                raise UnknownModelError(f"unknown or disabled provider {name!r} (live: {sorted(self._handles)})")
            new = old
            if given is None:
                templates = self._key_templates.get(name)
                if templates is not None:
                    single, several = keyring.resolve_templates(name, templates, self._env)
                    new = attrs.evolve(
                        old,
                        api_key=old.api_key if single is None else single,
                        api_keys=old.api_keys if several is None else several,
                    )
                resolved = await self._resolve_keys(name, new)
                for key in resolved:
                    register_secret(key)
                if handle.factory is not None:
                    self._check_keys_needed(name, new, resolved, handle)
            else:
                resolved = list(given)
                for key in resolved:
                    register_secret(key)
            changed = await self._swap_keys(handle, resolved)
            if given is None:
                self._key_overrides.pop(name, None)
            else:
                self._key_overrides[name] = given
            if new != old:
                handle.config = new
                self._config = self.config.with_provider(name, new)
                changed = True
            fingerprints = [fingerprint(k) for k in resolved]
            if changed:
                log.info("provider_keys_rotated", provider=name, keys=fingerprints)
        if new != old:
            await self.plugins.provider_changed(self, name, old, new)
        return fingerprints, changed

    async def _swap_keys(self, handle: ProviderHandle, keys: Sequence[str]) -> bool:
        """Give ``handle`` one instance per key in ``keys`` (kept ones keep
        theirs), copy-on-write; retire the instances no longer used. Returns
        whether the keys changed."""
        ring = handle.keys
        wanted: list[str | None] = list(keys) or [None]
        if ring.keys() == wanted:
            return False
        assert handle.factory is not None
        kept = {slot.key: slot for slot in ring.slots if not slot.retired}
        slots: list[KeySlot] = []
        started: list[KeySlot] = []
        try:
            for key in wanted:
                slot = kept.pop(key, None)
                if slot is None:
                    slot = keyring.slot_for(await handle.factory(key), key)
                    started.append(slot)
                slots.append(slot)
        except BaseException:
            for slot in started:
                await self._close_slot(handle.name, slot)
            raise
        ring.slots = tuple(slots)
        handle.provider = slots[0].provider
        for slot in kept.values():
            slot.retired = True
            if slot.inflight == 0:
                await self._close_slot(handle.name, slot)
        return True

    @staticmethod
    def _check_keys_needed(name: str, config: ProviderConfig, keys: Sequence[str], handle: ProviderHandle) -> None:
        if not keys and getattr(type(handle.provider), "requires_api_key", False):
            raise ConfigError(
                [(f"providers.{name}.apiKey", f"provider type {config.type!r} needs an API key and none was found")]
            )

    def _read_templates(self, source: Any) -> dict[str, KeyTemplates]:
        """The providers' keys as written in ``source`` (a path or a mapping)."""
        if isinstance(source, SwarmgateConfig):
            return {}
        raw = source if isinstance(source, Mapping) else _read_file(Path(source))
        return keyring.key_templates(raw)

    def _follow_key_templates(self, name: str, old: ProviderConfig | None, new: ProviderConfig) -> None:
        """Keep provider ``name``'s key templates and explicit keys in step with
        a config change: re-read the templates from the config file when the
        manager was started from one (a reload), else drop templates that no
        longer match; explicit keys end when the key settings change."""
        keys_changed = old is None or (old.api_key, old.api_keys, old.api_key_file, old.key_source) != (
            new.api_key,
            new.api_keys,
            new.api_key_file,
            new.key_source,
        )
        if keys_changed:
            self._key_overrides.pop(name, None)
        source = self._config_source
        if isinstance(source, str | os.PathLike):
            try:
                templates = self._read_templates(source).get(name)
            except ConfigError:
                templates = None
            if templates is not None:
                try:
                    single, several = keyring.resolve_templates(name, templates, self._env)
                except ConfigError:
                    single, several = None, None
                if (single is None or single == new.api_key) and (several is None or several == new.api_keys):
                    self._key_templates[name] = templates
                    return
            self._key_templates.pop(name, None)
        elif keys_changed:
            self._key_templates.pop(name, None)

    def _base_dir(self) -> Path | None:
        """The config file's directory (relative key file paths start there)."""
        source = self._config_source
        return Path(source).resolve().parent if isinstance(source, str | os.PathLike) else None

    async def _resolve_keys(self, name: str, config: ProviderConfig) -> list[str]:
        """Every key ``config`` gives, in order, without duplicates: ``apiKey``,
        ``apiKeys``, the lines of ``apiKeyFile``, then the key source's keys.
        Raises :class:`ConfigError` naming the path of what cannot be read."""
        base = f"providers.{name}"
        # Keys written in the config go to the driver as they are (it judges
        # what its upstream accepts); keys read from files and sources are stripped and checked.
        found: list[str] = [config.api_key] if config.api_key else []
        found.extend(config.api_keys)
        if config.api_key_file:
            found.extend(
                await keyring.read_key_file(config.api_key_file, f"{base}.apiKeyFile", base_dir=self._base_dir())
            )
        if config.key_source is not None:
            found.extend(await self._read_key_source(name, config.key_source))
        return keyring.unique(found)

    async def _read_key_source(self, name: str, spec: Mapping[str, Any]) -> list[str]:
        path = f"providers.{name}.keySource"
        kind = spec.get("type")
        cls = self._driver_class(registry.KEY_SOURCES, str(kind), f"{path}.type")
        if not (isinstance(cls, type) and issubclass(cls, keyring.KeySource)):
            raise PluginError(
                f"{path}.type: key source {kind!r} is not a swarmgate KeySource subclass ({cls!r})",
                namespace=registry.KEY_SOURCES,
                name=str(kind),
            )
        options = {k: v for k, v in spec.items() if k != "type"}
        settings: Any = options if cls.settings_class is None else parse_section(cls.settings_class, options, path)
        env = os.environ if self._env is None else self._env
        source = cls(settings, provider=name, path=path, env=env, base_dir=self._base_dir())
        try:
            keys = await source.keys()
        finally:
            await source.aclose()
        if isinstance(keys, str) or not isinstance(keys, Sequence):
            raise ConfigError([(path, f"key source {kind!r} did not return a list of keys")])
        checked = [keyring.check_key(k, f"{path} (key {i + 1})") for i, k in enumerate(keys)]
        if not checked:
            raise ConfigError([(path, f"key source {kind!r} returned no key")])
        return checked

    async def remove_provider(self, name: str) -> None:
        """Remove provider ``name``; in-flight requests on it finish first."""
        async with self._lock:
            old = self.config.providers.get(name)
            if old is None:
                raise UnknownModelError(f"unknown provider {name!r} (configured: {sorted(self.config.providers)})")
            await self._install(name, old, None)

    def _parse_provider(self, name: str, config: ProviderConfig | Mapping[str, Any]) -> ProviderConfig:
        parsed = (
            config if isinstance(config, ProviderConfig) else parse_section(ProviderConfig, config, f"providers.{name}")
        )
        problems = [
            p for p in validate(self.config.with_provider(name, parsed)) if p[0].startswith(f"providers.{name}")
        ]
        if problems:
            raise ConfigError(problems)
        return parsed

    async def _install(self, name: str, old: ProviderConfig | None, new: ProviderConfig | None) -> None:
        handle = await self._build(name, new) if new is not None and new.enabled else None
        handles = dict(self._handles)
        previous = handles.pop(name, None)
        if handle is not None:
            handles[name] = handle
        self._handles = handles
        self._config = self.config.with_provider(name, new)
        self._plans.clear()
        if previous is not None:
            previous.retired = True
            if previous.inflight == 0:
                await self._close_handle(previous)
        await self.plugins.provider_changed(self, name, old, new)

    # -- building ------------------------------------------------------------

    def _driver_class(self, namespace: str, name: str, path: str) -> Any:
        """The driver registered as ``name`` in ``namespace`` (drivers given in
        code first); a PluginError names ``path``."""
        try:
            return registry.load_driver(namespace, name, self._drivers.get(namespace))
        except PluginError as exc:
            raise PluginError(
                f"{path}: {exc}", namespace=exc.namespace, name=exc.name, distribution=exc.distribution
            ) from None

    def _load_routing_driver(self, namespace: str, name: str, path: str) -> Any:
        return self._driver_class(namespace, name, path)(self)

    def _load_strategy(self, name: str, path: str) -> Strategy:
        strategy: Strategy = self._load_routing_driver(registry.STRATEGIES, name, path)
        return strategy

    def strategy(self, name: str | None = None) -> Strategy:
        """The strategy called ``name`` (default: ``routing.strategy``), loaded once."""
        name = name or self.config.routing.strategy
        strategy = self._strategies.get(name)
        if strategy is None:
            try:
                strategy = self._strategies[name] = self._load_strategy(name, "strategy")
            except PluginError as exc:
                raise InvalidRequestError(str(exc)) from None
        return strategy

    @property
    def balancer(self) -> Balancer:
        """The configured load balancer."""
        assert self._balancer is not None
        return self._balancer

    def _make_state(self, config: SwarmgateConfig) -> StateStore:
        try:
            factory = registry.load_driver(registry.STATE, config.state.backend, self._drivers.get(registry.STATE))
        except PluginError as exc:
            raise PluginError(
                f"state.backend: {exc}", namespace=exc.namespace, name=exc.name, distribution=exc.distribution
            ) from None
        store: StateStore = factory(config.state.options)
        return store

    async def _build(self, name: str, config: ProviderConfig) -> ProviderHandle:
        path = f"providers.{name}"
        try:
            cls = registry.load_driver(registry.PROVIDERS, config.type, self._drivers.get(registry.PROVIDERS))
        except PluginError as exc:
            raise PluginError(
                f"{path}.type: {exc}", namespace=exc.namespace, name=exc.name, distribution=exc.distribution
            ) from None
        if not (isinstance(cls, type) and issubclass(cls, Provider)):
            raise PluginError(
                f"{path}.type: provider type {config.type!r} is not a swarmgate Provider subclass ({cls!r})",
                namespace=registry.PROVIDERS,
                name=config.type,
            )
        settings_class = cls.settings_class
        settings: Any
        if settings_class is None:
            if config.settings:
                raise ConfigError(
                    [
                        (f"{path}.{key}", f"unknown key for provider type {config.type!r}")
                        for key in sorted(config.settings)
                    ]
                )
            settings = None
        else:
            settings = parse_section(settings_class, config.settings, path)
        for secret in (config.api_key, *config.api_keys, config.proxy):
            register_secret(secret)
        override = self._key_overrides.get(name)
        keys = list(override) if override is not None else await self._resolve_keys(name, config)
        for secret in keys:
            register_secret(secret)
        if cls.requires_api_key and not keys:
            raise ConfigError(
                [
                    (
                        f"{path}.apiKey",
                        f"provider type {config.type!r} needs an API key (apiKey, apiKeys, apiKeyFile or keySource)",
                    )
                ]
            )
        effective = attrs.evolve(config, timeouts=config.timeouts.over(self.config.routing.timeouts))

        async def factory(key: str | None) -> Provider:
            # Each instance sees exactly one key, as api_key: no driver needs to know about several.
            instance_config = attrs.evolve(effective, api_key=key, api_keys=(), api_key_file=None, key_source=None)
            provider = cls(name, instance_config, settings)
            provider.manager = self
            await provider.start()
            return provider

        slots: list[KeySlot] = []
        try:
            wanted: list[str | None] = [*keys] if keys else [None]  # None: one instance without a key
            for wanted_key in wanted:
                slots.append(keyring.slot_for(await factory(wanted_key), wanted_key))
        except BaseException:
            for slot in slots:
                await self._close_slot(name, slot)
            raise
        ring = KeyRing(slots, config.set_aside_for / 1000.0)
        return ProviderHandle(name, config, slots[0].provider, ring, factory)

    async def _close_handle(self, handle: ProviderHandle) -> None:
        """Close every instance of a handle (retired, or the manager closing)."""
        if handle.closed:
            return
        handle.closed = True
        for slot in handle.keys.slots:
            await self._close_slot(handle.name, slot)

    async def _close_slot(self, name: str, slot: KeySlot) -> None:
        """Close one driver instance (once), shielded; a failure is logged."""
        if slot.closed:
            return
        slot.closed = True
        with anyio.CancelScope(shield=True):
            try:
                await slot.provider.aclose()
            except Exception as exc:  # noqa: BLE001 - a failing close must not stop the others
                log.warning(
                    "provider_close_failed", provider=name, key=slot.fingerprint, error=f"{type(exc).__name__}: {exc}"
                )

    # -- planning ------------------------------------------------------------

    def _plan(self, request: CompletionRequest) -> _Plan:
        key = (request.model, request.provider)
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) >= MAX_CACHED_PLANS:  # arbitrary model names to pass-through providers
                self._plans.clear()
            plan = self._plans[key] = self._make_plan(request.model, request.provider)
        return plan

    def _resolve_model(self, handle: ProviderHandle, model: str) -> str:
        if model == "auto":
            default = handle.config.resolve_default_model()
            if default is None:
                raise UnknownModelError(
                    f"provider {handle.name!r} has no models and no defaultModel; name a model explicitly"
                )
            return default
        models = handle.config.models
        if models and model not in models:
            raise UnknownModelError(f"provider {handle.name!r} has no model {model!r} (models: {sorted(models)})")
        return model

    def _make_plan(self, model: str, forced: str | None) -> _Plan:
        config = self.config
        handles = self._handles
        if forced is not None:
            handle = handles.get(forced)
            if handle is None:
                state = "disabled" if forced in config.providers else "unknown"
                raise UnknownModelError(f"{state} provider {forced!r} (live providers: {sorted(handles)})")
            provider, _, rest = model.partition("/")
            if rest and provider == forced:
                model = rest
            return _Plan((Target(forced, self._resolve_model(handle, model)),), (), True)
        route = config.routes.get(model)
        if route is not None:
            targets = []
            for text in route.targets:
                provider, _, name = text.partition("/")
                if provider in handles:
                    targets.append(Target(provider, name))
            fallback = []
            for text in route.fallbacks:
                provider, _, name = text.partition("/")
                if provider in handles:
                    fallback.append(Target(provider, name))
            if not targets and not fallback:
                raise UnknownModelError(f"route {model!r} has no live target (targets: {list(route.targets)})")
            return _Plan(tuple(targets), tuple(fallback), route.ordered)
        if model == "auto":
            targets = [
                Target(name, default)
                for name, handle in handles.items()
                if (default := handle.config.resolve_default_model()) is not None
            ]
            if not targets:
                raise UnknownModelError("no live provider has a default model to serve model 'auto'")
            return _Plan(tuple(targets), (), False)
        provider, _, name = model.partition("/")
        if name and provider in handles:
            primary: tuple[Target, ...] = (Target(provider, self._resolve_model(handles[provider], name)),)
        else:
            primary = tuple(Target(p, model) for p, h in handles.items() if model in h.config.models)
            if not primary:
                primary = tuple(Target(p, model) for p, h in handles.items() if not h.config.models)
            if not primary:
                known = sorted({m for h in handles.values() for m in h.config.models})
                raise UnknownModelError(
                    f"unknown model {model!r}: no live provider serves it "
                    f"(models: {known}; routes: {sorted(config.routes)}; or use 'provider/model' or 'auto')"
                )
        return _Plan(primary, self._fallback_for(primary), False)

    def _fallback_for(self, primary: tuple[Target, ...]) -> tuple[Target, ...]:
        routing = self.config.routing
        if not routing.fallback_enabled or not routing.fallback_chains:
            return ()
        first = primary[0].provider
        chain = next((c for c in routing.fallback_chains if c and c[0] == first), None)
        if chain is None:
            chain = next((c[c.index(first) :] for c in routing.fallback_chains if first in c), ())
        seen = {t.provider for t in primary}
        out = []
        for name in chain[1:]:
            handle = self._handles.get(name)
            if name in seen or handle is None:
                continue
            default = handle.config.resolve_default_model()
            if default is not None:
                out.append(Target(name, default))
                seen.add(name)
        return tuple(out)

    def _filter(self, request: CompletionRequest, targets: Sequence[Target], dropped: list[str]) -> list[Target]:
        """The targets that pass exclusions and constraints; ``dropped`` gets the reasons for the rest."""
        prefs = request.preferences
        exclude = prefs.exclude
        limits = prefs.constraints
        handles = self._handles
        passed: list[Target] = []
        for target in targets:
            handle = handles.get(target.provider)
            if handle is None:
                dropped.append(f"{target}: provider removed")
                continue
            if target.provider in exclude:
                dropped.append(f"{target}: excluded by preferences")
                continue
            if limits.max_cost is not None:
                cost = self.estimate_cost(target, request)
                if cost > limits.max_cost:
                    dropped.append(f"{target}: predicted cost {cost:.6f} > maxCost {limits.max_cost}")
                    continue
            if limits.max_latency is not None or limits.min_reliability is not None:
                predictor = self.extensions.get("predict")
                if predictor is not None and getattr(predictor, "learning", False):
                    prediction = predictor.predict(target, request)
                    if limits.max_latency is not None and prediction.latency_ms > limits.max_latency:
                        dropped.append(
                            f"{target}: predicted latency {prediction.latency_ms:.0f}ms > maxLatency {limits.max_latency}"
                        )
                        continue
                    if limits.min_reliability is not None and prediction.reliability < limits.min_reliability:
                        dropped.append(
                            f"{target}: predicted reliability {prediction.reliability:.3f}"
                            f" < minReliability {limits.min_reliability}"
                        )
                        continue
                    passed.append(target)
                    continue
                stats = self._stats.get(target)
                if stats is not None:
                    if (
                        limits.max_latency is not None
                        and stats.latency is not None
                        and stats.latency > limits.max_latency
                    ):
                        dropped.append(
                            f"{target}: observed latency {stats.latency:.0f}ms > maxLatency {limits.max_latency}"
                        )
                        continue
                    if limits.min_reliability is not None and stats.reliability < limits.min_reliability:
                        dropped.append(
                            f"{target}: reliability {stats.reliability:.3f} < minReliability {limits.min_reliability}"
                        )
                        continue
            passed.append(target)
        return passed

    async def _targets(self, request: CompletionRequest, context: RequestContext) -> list[Target]:
        plan = self._plan(request)
        dropped: list[str] = []
        primary = self._filter(request, plan.primary, dropped)
        fallback = self._filter(request, plan.fallback, dropped) if plan.fallback else []
        context.ordered = plan.ordered
        context.fallback = tuple(fallback)
        if self.plugins.has_impls("filter_targets"):
            ruled_out = await self.plugins.filter_targets(request, primary + fallback, context)
            if ruled_out:
                dropped.extend(f"{t}: {reason}" for t, reason in ruled_out.items())
                primary = [t for t in primary if t not in ruled_out]
                fallback = [t for t in fallback if t not in ruled_out]
                context.fallback = tuple(fallback)
        if len(primary) > 1 and not plan.ordered:
            primary = list(await self.plugins.select_provider(request, primary, context))
        preferred = request.preferences.providers
        if preferred and len(primary) > 1:
            rank = {name: i for i, name in enumerate(preferred)}
            primary.sort(key=lambda t: rank.get(t.provider, len(rank)))
        targets = primary + [t for t in fallback if t not in primary]
        handles = self._handles
        for t in targets:
            live = handles.get(t.provider)
            if live is not None and not live.healthy:
                targets.sort(key=lambda t: not (t.provider in handles and handles[t.provider].healthy))
                break
        if not targets:
            raise NoProviderAvailableError(
                "no provider can take this request: " + "; ".join(dropped or ["no candidate targets"])
            )
        return targets

    # -- the request pipeline --------------------------------------------------

    @overload
    async def complete(
        self,
        request: CompletionRequest | Mapping[str, Any] | None = None,
        /,
        *,
        stream: Literal[False] = False,
        **fields: Any,
    ) -> CompletionResponse: ...

    @overload
    async def complete(
        self, request: CompletionRequest | Mapping[str, Any] | None = None, /, *, stream: Literal[True], **fields: Any
    ) -> AsyncGenerator[StreamEvent, None]: ...

    async def complete(
        self, request: CompletionRequest | Mapping[str, Any] | None = None, /, *, stream: bool = False, **fields: Any
    ) -> CompletionResponse | AsyncGenerator[StreamEvent, None]:
        """Answer one request; see the module docstring for the pipeline.

        ``request`` is a :class:`CompletionRequest`, a mapping in the guide's
        format, or omitted in favour of keyword fields (``prompt=...``,
        ``messages=...``, ``model=...``). With ``stream=True`` (or a request
        whose ``stream`` is true) this returns the async iterator of
        :meth:`stream` instead of a response.

        Raises :class:`SwarmgateError` subclasses: the refusing hook's error,
        the aborting attempt's error, or :class:`NoProviderAvailableError`
        with every attempt when all targets failed.
        """
        req = build_request(request, fields)
        if stream or req.stream:
            return self._stream(req if req.stream else _streamed(req), "raise")
        if not self._initialized or self._closed:
            self._not_ready()
        context = RequestContext(_new_id(), self, time.perf_counter(), deadline=self._deadline(req))
        try:
            return await self._complete(req, context)
        except BaseException as exc:
            if self.plugins.has_impls("request_failed"):
                await self._report_failure(req, exc, context)
            raise

    async def _complete(self, req: CompletionRequest, context: RequestContext) -> CompletionResponse:
        req, early = await self.plugins.before_request(req, context)
        if early is not None:
            await self.plugins.after_response(req, early, context)
            return early
        targets = context.targets = await self._targets(req, context)
        index = 0
        last_error: SwarmgateError | None = None
        while index < len(targets):
            target = targets[index]
            context.index = index
            handle = self._handles.get(target.provider)
            if handle is None:
                index += 1
                continue
            hedge = self._hedge(req, targets, index, context) if self._hedge_tokens is not None else None
            try:
                if hedge is None:
                    reply, attempt = await self._attempt(handle, target, req, context)
                else:
                    reply, attempt = await self._hedged(handle, target, hedge, req, context)
            except _BothFailed as both:
                last_error = both.errors[-1]
                await self._both_failed(req, both, context)
                index += 2
                continue
            except SwarmgateError as error:
                last_error = error
                action, index = await self._decide(req, target, error, context, targets, index)
                if action == "abort":
                    raise self._with_attempts(error, context) from None
                continue
            response = self._response(reply, attempt, context)
            await self.plugins.after_response(req, response, context)
            return response
        raise self._exhausted(context, last_error)

    async def _report_failure(self, request: CompletionRequest, exc: BaseException, context: RequestContext) -> None:
        """Run ``request_failed`` (shielded) for a request ending with ``exc``:
        a SwarmgateError as is, a cancellation as RequestCancelledError, any
        other exception (a bug) as a ServerError naming it."""
        if isinstance(exc, SwarmgateError):
            error: SwarmgateError = exc
        elif isinstance(exc, Exception) and not isinstance(exc, anyio.get_cancelled_exc_class()):
            error = ServerError(f"internal error: {type(exc).__name__}: {exc}")
            _scrub_error(error)
        else:
            error = RequestCancelledError(CANCELLED_BY_CALLER)
        if not error.attempts:
            error.attempts = tuple(context.attempts)
        with anyio.CancelScope(shield=True):
            await self.plugins.request_failed(request, error, context)

    async def _both_failed(self, request: CompletionRequest, both: _BothFailed, context: RequestContext) -> None:
        """Tell ``on_failure`` observers about both failed lanes of a hedge (refusals excepted)."""
        refused = {(a.provider, a.model) for a in context.attempts if a.refused}
        for failed, error in zip(both.targets, both.errors, strict=True):
            if (failed.provider, failed.model) not in refused:
                await self.plugins.on_failure(request, failed, error, context)

    async def _admit(self, request: CompletionRequest, target: Target, context: RequestContext) -> None:
        """Run ``before_attempt``; a refusal is recorded as a refused attempt and re-raised."""
        try:
            await self.plugins.before_attempt(request, target, context)
        except SwarmgateError as error:
            context.attempts.append(
                Attempt(
                    target.provider,
                    target.model,
                    False,
                    0.0,
                    error_kind=error.kind.value,
                    error=error.message,
                    refused=True,
                )
            )
            raise

    def _hedge(
        self, request: CompletionRequest, targets: list[Target], index: int, context: RequestContext
    ) -> tuple[ProviderHandle, Target, float] | None:
        """The backup to hedge ``targets[index]`` with, and after how many
        seconds, if hedging is on, a next target exists, a delay is known and
        the hedge budget allows; else ``None``."""
        hedging = self.config.routing.hedging
        assert self._hedge_tokens is not None
        self._hedge_tokens = min(HEDGE_BURST, self._hedge_tokens + hedging.max_ratio)
        if index + 1 >= len(targets) or self._hedge_tokens < 1.0 or len(context.attempts) > 0:
            return None
        backup = targets[index + 1]
        handle = self._handles.get(backup.provider)
        if handle is None:
            return None
        delay_ms = hedging.delay
        if delay_ms is None:
            predictor = self.extensions.get("predict")
            estimate = getattr(predictor, "hedge_delay", None)
            delay_ms = estimate(targets[index], request) if estimate is not None else None
        if delay_ms is None:
            stats = self._stats.get(targets[index])
            if stats is None or stats.latency is None or stats.requests < HEDGE_MIN_SAMPLES:
                return None
            delay_ms = stats.latency * 2.0  # a moving average's rough p95 when no predictor is loaded
        self._hedge_tokens -= 1.0
        return handle, backup, delay_ms / 1000.0

    async def _hedged(
        self,
        handle: ProviderHandle,
        target: Target,
        hedge: tuple[ProviderHandle, Target, float],
        request: CompletionRequest,
        context: RequestContext,
    ) -> tuple[ProviderReply, Attempt]:
        """Run the attempt on ``target``; if it is still going after the hedge
        delay, start the same request on the backup too. The first answer
        wins and the other attempt is cancelled (recorded as ``cancelled``).
        A primary that fails before the delay raises its error (normal
        failover follows); if both fail, :class:`_BothFailed`."""
        backup_handle, backup, delay = hedge
        won: list[tuple[ProviderReply, Attempt]] = []
        failed: dict[Target, SwarmgateError] = {}
        primary_over = anyio.Event()

        async def run(h: ProviderHandle, t: Target, scope: anyio.CancelScope) -> None:
            try:
                won.append(await self._attempt(h, t, request, context, cancel_note=LOST_HEDGE))
                scope.cancel()
            except SwarmgateError as error:
                failed[t] = error
            finally:
                if t == target:
                    primary_over.set()

        async def run_backup(scope: anyio.CancelScope) -> None:
            with anyio.move_on_after(delay):
                await primary_over.wait()
            if not primary_over.is_set():
                await run(backup_handle, backup, scope)

        async with anyio.create_task_group() as group:
            group.start_soon(run, handle, target, group.cancel_scope)
            group.start_soon(run_backup, group.cancel_scope)
        if won:
            return won[0]
        if backup in failed:
            raise _BothFailed([target, backup], [failed[target], failed[backup]])
        raise failed[target]

    def _not_ready(self) -> None:
        state = "closed" if self._closed else "not initialized: await manager.initialize() first (or use 'async with')"
        raise RuntimeError(f"the ProviderManager is {state}")

    def _deadline(self, request: CompletionRequest) -> float:
        """The absolute (anyio clock) deadline of a request starting now."""
        total = request.timeouts.total if request.timeouts is not None else None
        if total is None:
            total = self.config.routing.timeouts.total or DEFAULT_TOTAL_TIMEOUT_MS
        return current_time() + total / 1000.0

    def _call(self, handle: ProviderHandle, target: Target, request: CompletionRequest) -> ProviderCall:
        model = handle.config.models.get(target.model)
        upstream = target.model
        if model is None:
            model = _NO_MODEL
        elif model.upstream_name:
            upstream = model.upstream_name
        timeout = handle.config.timeout / 1000.0
        configured = handle.provider.config.timeouts  # the provider's, over routing.timeouts
        first_token, stream_idle = configured.first_token, configured.stream_idle
        if request.timeouts is not None:
            first_token = request.timeouts.first_token or first_token
            stream_idle = request.timeouts.stream_idle or stream_idle
        return ProviderCall(
            request,
            target.model,
            upstream,
            model,
            timeout,
            first_token / 1000.0 if first_token else timeout,
            stream_idle / 1000.0 if stream_idle else timeout,
        )

    async def _attempt(
        self,
        handle: ProviderHandle,
        target: Target,
        request: CompletionRequest,
        context: RequestContext,
        *,
        cancel_note: str = CANCELLED_BY_CALLER,
    ) -> tuple[ProviderReply, Attempt]:
        if self.plugins.has_impls("before_attempt"):
            await self._admit(request, target, context)
        call = self._call(handle, target, request)
        stats = self.stats(target)
        handle.inflight += 1
        stats.inflight += 1
        started = time.perf_counter()
        watchdog = new_watchdog()
        try:
            try:
                # A watchdog costs a fraction of a CancelScope(deadline=...) (see swarmgate.deadlines).
                with watchdog.until(min(watchdog.now() + call.timeout, context.deadline)):
                    reply = await self._complete_keyed(handle, call)
            except SwarmgateError as exc:
                error: SwarmgateError = exc
            except TimeoutError:
                error = self._timeout_error(target, context, f"no answer within {call.timeout:g}s")
            except Exception as exc:  # noqa: BLE001 - a driver bug is one failed attempt, not a crash
                error = ServerError(
                    f"provider driver raised {type(exc).__name__}: {exc}", provider=target.provider, model=target.model
                )
            else:
                if not reply.tokens.total and (reply.content or reply.tool_calls):
                    reply = self._estimate_usage(reply, request)
                latency = (time.perf_counter() - started) * 1000.0
                cost = reply.cost
                if cost is None:
                    cost = call.model_config.price(reply.tokens.input, reply.tokens.output)
                attempt = Attempt(target.provider, target.model, True, latency, cost, reply.tokens)
                context.attempts.append(attempt)
                stats.record(True, latency, None, cost)
                return reply, attempt
            self._record_failure(target, error, started, context, stats)
            raise error
        except SwarmgateError:
            raise
        except BaseException:  # cancelled (a hedge lost, the caller gone): record it, then let it go
            latency = (time.perf_counter() - started) * 1000.0
            context.attempts.append(
                Attempt(target.provider, target.model, False, latency, error_kind="cancelled", error=cancel_note)
            )
            raise
        finally:
            watchdog.close()
            handle.inflight -= 1
            stats.inflight -= 1
            if handle.retired and handle.inflight == 0:
                await self._close_handle(handle)

    async def _complete_keyed(self, handle: ProviderHandle, call: ProviderCall) -> ProviderReply:
        """``complete`` on the instance of the key the ring picks; a key the
        upstream rejects is set aside and the call made again at once with
        the next key, until none is left (then the rejection is raised)."""
        ring = handle.keys
        slot = ring.pick()
        tried: list[KeySlot] = []
        while True:
            slot.inflight += 1
            rejected: SwarmgateError | None = None
            try:
                reply = await slot.provider.complete(call)
            except SwarmgateError as error:
                if slot.key is None or not is_key_error(error):
                    raise
                rejected = error
            finally:
                slot.inflight -= 1
                if slot.retired and slot.inflight == 0:
                    await self._close_slot(handle.name, slot)
            if rejected is None:
                if slot.set_aside_until is not None:
                    slot.set_aside_until = None  # a key set aside that works again is back at once
                return reply
            following = self._set_aside(handle, slot, rejected, tried)
            if following is None:
                raise rejected
            slot = following

    def _set_aside(
        self, handle: ProviderHandle, slot: KeySlot, error: SwarmgateError, tried: list[KeySlot]
    ) -> KeySlot | None:
        """Set ``slot``'s key aside after ``error``; the next key to try for
        this attempt, or ``None`` when none is left. Not a provider failure:
        no failed attempt, no ``on_failure``, no change to the target's stats."""
        ring = handle.keys
        ring.set_aside(slot)
        tried.append(slot)
        following = ring.next_usable(tried)
        log.warning(
            "provider_key_set_aside",
            provider=handle.name,
            key=slot.fingerprint,
            kind=error.kind.value,
            status=error.upstream_status,
            seconds=ring.set_aside_for,
            next_key=following.fingerprint if following is not None else None,
        )
        return following

    @staticmethod
    def _timeout_error(target: Target, context: RequestContext, what: str) -> ProviderTimeoutError:
        if anyio.current_time() >= context.deadline:
            what = f"the request's total deadline passed ({what.split(' within ')[0]})"
        return ProviderTimeoutError(what, provider=target.provider, model=target.model)

    @staticmethod
    def _estimate_usage(reply: ProviderReply, request: CompletionRequest) -> ProviderReply:
        """A reply whose driver reported no usage, with estimated tokens, flagged."""
        tokens = TokenUsage.of(estimate_tokens(request.prompt_text()), estimate_tokens(reply.content))
        return attrs.evolve(reply, tokens=tokens, metadata={**reply.metadata, "usage_estimated": True})

    def _record_failure(
        self,
        target: Target,
        error: SwarmgateError,
        started: float,
        context: RequestContext,
        stats: TargetStats,
        tokens: TokenUsage | None = None,
        cost: float = 0.0,
        ttft: float | None = None,
    ) -> None:
        if error.provider is None:
            error.provider, error.model = target.provider, target.model
        _scrub_error(error)
        if not cost and error.cost:
            cost = error.cost
        latency = (time.perf_counter() - started) * 1000.0
        context.attempts.append(
            Attempt(
                target.provider,
                target.model,
                False,
                latency,
                cost,
                tokens or TokenUsage(),
                ttft,
                error.kind.value,
                error.message,
                error.upstream_status,
            )
        )
        stats.record(False, latency, cost=cost)
        log.info(
            "attempt_failed", request_id=context.id, target=str(target), kind=error.kind.value, error=error.message
        )

    async def _decide(
        self,
        request: CompletionRequest,
        target: Target,
        error: SwarmgateError,
        context: RequestContext,
        targets: list[Target],
        index: int,
    ) -> tuple[str, int]:
        """Ask ``on_failure`` what to do; wait any delay; return the action
        (``retry``, ``next`` or ``abort``) and the index of the next target
        (``targets`` gains a switched-to target in place). A refusal by a
        ``before_attempt`` hook skips ``on_failure``: next target or abort,
        as ``error.failover`` says."""
        if context.attempts and context.attempts[-1].refused:
            return ("next", index + 1) if error.failover else ("abort", index)
        decision = await self.plugins.on_failure(request, target, error, context)
        if len(context.attempts) >= MAX_ATTEMPTS or anyio.current_time() >= context.deadline:
            return "abort", index
        if decision is None:
            return ("next" if error.failover else "abort"), index + 1
        if decision.delay > 0 and decision.action != "abort":
            await anyio.sleep(decision.delay)
        if decision.action == "retry":
            return "retry", index
        if decision.action == "switch" and decision.target is not None:
            if decision.target.provider not in self._handles:
                return "next", index + 1
            later = targets[index + 1 :]
            if decision.target in later:
                targets.pop(index + 1 + later.index(decision.target))  # tried now, not twice
            targets.insert(index + 1, decision.target)
            return "next", index + 1
        if decision.action == "abort":
            return "abort", index
        return "next", index + 1

    def _response(
        self, reply: ProviderReply, attempt: Attempt, context: RequestContext, ttft: float | None = None
    ) -> CompletionResponse:
        metadata = reply.metadata
        if reply.model and reply.model != attempt.model:
            metadata = {**metadata, "upstream_model": reply.model}
        return CompletionResponse(
            content=reply.content,
            provider=attempt.provider,
            model=attempt.model,
            cost=attempt.cost,
            latency=context.elapsed_ms(),
            tokens=reply.tokens,
            finish_reason=reply.finish_reason,
            attempts=tuple(context.attempts),
            id=context.id,
            ttft=ttft,
            tool_calls=reply.tool_calls,
            metadata=metadata,
        )

    @staticmethod
    def _with_attempts(error: SwarmgateError, context: RequestContext) -> SwarmgateError:
        error.attempts = tuple(context.attempts)
        return error

    def _exhausted(self, context: RequestContext, last_error: SwarmgateError | None) -> SwarmgateError:
        """The error of a request whose every target failed: the refusal
        itself when every attempt was refused for the same reason (a budget,
        a rate limit), else NoProviderAvailableError listing the attempts."""
        if (
            last_error is not None
            and context.attempts
            and all(a.refused and a.error_kind == last_error.kind.value for a in context.attempts)
        ):
            return self._with_attempts(last_error, context)
        parts = [f"{a.provider}/{a.model}: {a.error_kind} ({a.error})" for a in context.attempts if not a.ok]
        waits = [a for a in context.attempts if a.error_kind == "rate_limited"]
        retry_after = None
        if waits and last_error is not None and last_error.retry_after is not None:
            retry_after = last_error.retry_after
        error = NoProviderAvailableError(
            f"all {len(parts)} attempt(s) failed: " + "; ".join(parts) if parts else "no provider could be tried",
            attempts=context.attempts,
            last_error=last_error,
            retry_after=retry_after,
        )
        return error

    # -- streaming -----------------------------------------------------------

    def stream(
        self,
        request: CompletionRequest | Mapping[str, Any] | None = None,
        /,
        *,
        errors: Literal["raise", "event"] = "raise",
        **fields: Any,
    ) -> AsyncGenerator[StreamEvent, None]:
        """Answer one request as a stream of events:
        ``StreamStart``, ``TextDelta``/``ToolCallDelta``..., ``UsageEvent``
        (with cost), ``FinishEvent`` (with the full response).

        Failures before the first event fail over like :meth:`complete`.
        A failure after output started ends the stream: by default the error
        is raised; with ``errors="event"`` an :class:`ErrorEvent` carrying
        it and the partial text is yielded last instead. Closing the
        iterator early cancels the upstream call.
        """
        req = build_request(request, fields)
        return self._stream(req if req.stream else _streamed(req), errors)

    async def _stream(self, req: CompletionRequest, errors: str) -> AsyncGenerator[StreamEvent, None]:
        if not self._initialized or self._closed:
            self._not_ready()
        context = RequestContext(_new_id(), self, time.perf_counter(), stream=True, deadline=self._deadline(req))
        # ``failure`` is what request_failed reports if the stream ends unanswered;
        # ``answered`` turns true once after_response ran.
        failure: BaseException | None = None
        answered = False
        try:
            try:
                req, early = await self.plugins.before_request(req, context)
                if early is not None:
                    answered = True
                    await self.plugins.after_response(req, early, context)
                    yield StreamStart(early.provider, early.model, early.id or context.id, early.cached, 0)
                    if early.content:
                        yield TextDelta(early.content)
                    # A cached answer's tool calls are replayed as deltas too, so a
                    # consumer assembling them from the events sees the same as live.
                    for index, call in enumerate(early.tool_calls or ()):
                        function = call.get("function") or {}
                        yield ToolCallDelta(
                            index, call.get("id"), function.get("name"), function.get("arguments") or ""
                        )
                    yield UsageEvent(early.tokens, early.cost)
                    yield FinishEvent(early.finish_reason, early)
                    return
                targets = context.targets = await self._targets(req, context)
            except SwarmgateError as error:
                if errors == "event":
                    failure = error
                    yield ErrorEvent(error)
                    return
                raise
            # The failover loop: try ``targets`` in turn; the last event is a
            # FinishEvent (after ``after_response`` ran), an ErrorEvent, or the
            # error is raised. (Inline, not a generator of its own: one level
            # fewer for every event.)
            index = 0
            last_error: SwarmgateError | None = None
            delivered = ""  # text the caller has received and that still stands
            announced = False  # a StreamStart has been yielded
            attempt_request = req
            while index < len(targets):
                target = targets[index]
                context.index = index
                handle = self._handles.get(target.provider)
                if handle is None:
                    index += 1
                    continue
                outcome = _StreamOutcome(announce=not announced, prefix=delivered)
                hedge = None
                if self._hedge_tokens is not None and not announced:
                    hedge = self._hedge(req, targets, index, context)
                try:
                    if hedge is None:
                        first: StreamEvent | None = None
                        events = self._stream_attempt(handle, target, attempt_request, context, outcome)
                    else:
                        index, outcome, events, first = await self._first_event_race(
                            handle, target, hedge, attempt_request, context, index
                        )
                        target = targets[index]
                    try:  # aclosing(events), without its two coroutines per stream
                        if first is not None:
                            yield first
                        async for event in events:
                            yield event
                    finally:
                        await events.aclose()
                except _BothFailed as both:
                    last_error = both.errors[-1]
                    await self._both_failed(req, both, context)
                    index += 2
                    continue
                except SwarmgateError as error:
                    last_error = error
                    announced = announced or outcome.started
                    if outcome.started and not self._may_continue(error, targets, index, context):
                        await self.plugins.on_failure(req, target, error, context)  # observers learn; no choice left
                        if errors == "event":
                            failure = self._with_attempts(error, context)
                            yield ErrorEvent(failure, delivered + outcome.text)
                            return
                        raise self._with_attempts(error, context) from None
                    action, index = await self._decide(req, target, error, context, targets, index)
                    if action == "retry" and outcome.started:
                        index += 1  # a broken stream continues on the next target, not again here
                    if action == "abort" or (announced and index >= len(targets)):
                        if errors == "event":
                            failure = self._with_attempts(error, context)
                            yield ErrorEvent(failure, delivered + outcome.text)
                            return
                        raise self._with_attempts(error, context) from None
                    if outcome.started:
                        delivered += outcome.text
                        attempt_request, delivered, failover = self._continuation(req, targets[index], delivered, error)
                        yield failover
                    continue
                assert outcome.response is not None
                await self.plugins.after_response(req, outcome.response, context)
                answered = True
                yield FinishEvent(outcome.response.finish_reason, outcome.response)
                return
            exhausted = self._exhausted(context, last_error)
            if errors == "event":
                failure = exhausted
                yield ErrorEvent(exhausted)
                return
            raise exhausted
        except BaseException as exc:
            # A consumer that stops after an ErrorEvent (its last event) closes
            # the stream: the request failed with that error, not by cancellation.
            if failure is None:
                failure = exc
            raise
        finally:
            if not answered and self.plugins.has_impls("request_failed"):
                await self._report_failure(req, failure or RequestCancelledError(CANCELLED_BY_CALLER), context)

    async def _first_event_race(
        self,
        handle: ProviderHandle,
        target: Target,
        hedge: tuple[ProviderHandle, Target, float],
        request: CompletionRequest,
        context: RequestContext,
        index: int,
    ) -> tuple[int, _StreamOutcome, AsyncGenerator[StreamEvent, None], StreamEvent | None]:
        """A hedged stream: start ``target``; if its first event has not come
        after the hedge delay, start the backup (``targets[index + 1]``) too.
        The first to produce an event wins and is returned (its index, its
        outcome, its stream, and that first event); the other is cancelled
        and recorded as such. A primary failing before the backup starts
        raises its error; both failing raises :class:`_BothFailed`."""
        backup_handle, backup, delay = hedge
        lanes = [(index, target, handle), (index + 1, backup, backup_handle)]
        outcomes = [_StreamOutcome(cancel_note=LOST_HEDGE), _StreamOutcome(cancel_note=LOST_HEDGE)]
        streams: list[AsyncGenerator[StreamEvent, None] | None] = [None, None]
        started_at = [0.0, 0.0]
        won: list[tuple[int, StreamEvent | None]] = []
        failed: dict[int, SwarmgateError] = {}
        primary_over = anyio.Event()

        async def pull(lane: int, scope: anyio.CancelScope) -> None:
            _, lane_target, lane_handle = lanes[lane]
            started_at[lane] = time.perf_counter()
            stream = streams[lane] = self._stream_attempt(lane_handle, lane_target, request, context, outcomes[lane])
            try:
                try:
                    event: StreamEvent | None = await stream.__anext__()
                except StopAsyncIteration:
                    event = None
                won.append((lane, event))
                scope.cancel()
            except SwarmgateError as error:
                failed[lane] = error
            finally:
                if lane == 0:
                    primary_over.set()

        async def pull_backup(scope: anyio.CancelScope) -> None:
            with anyio.move_on_after(delay):
                await primary_over.wait()
            if not primary_over.is_set():
                await pull(1, scope)

        async with anyio.create_task_group() as group:
            group.start_soon(pull, 0, group.cancel_scope)
            group.start_soon(pull_backup, group.cancel_scope)
        for lane, stream in enumerate(streams):
            if stream is not None and not (won and won[0][0] == lane):
                await stream.aclose()
        if won:
            lane, first = won[0]
            outcomes[lane].cancel_note = CANCELLED_BY_CALLER
            winner = streams[lane]
            assert winner is not None
            return lanes[lane][0], outcomes[lane], winner, first
        if 1 in failed:
            raise _BothFailed([target, backup], [failed[0], failed[1]])
        raise failed[0]

    def _may_continue(self, error: SwarmgateError, targets: list[Target], index: int, context: RequestContext) -> bool:
        """Whether a stream broken after output started goes on elsewhere."""
        return (
            self.config.routing.stream_failover == "continue"
            and error.failover
            and index + 1 < len(targets)
            and anyio.current_time() < context.deadline
        )

    def _continuation(
        self, request: CompletionRequest, target: Target, delivered: str, error: SwarmgateError
    ) -> tuple[CompletionRequest, str, StreamFailover]:
        """The request for the target taking over a broken stream: the partial
        answer as an assistant prefill where the target supports it (the text
        stands), else the original request (a restart: the text is void)."""
        handle = self._handles.get(target.provider)
        if handle is not None and handle.provider.supports_prefill and delivered:
            prefill = attrs.evolve(request, messages=(*request.messages, Message("assistant", delivered)))
            return prefill, delivered, StreamFailover(target.provider, target.model, "continue", error)
        return request, "", StreamFailover(target.provider, target.model, "restart", error)

    @staticmethod
    def _record_cancelled(
        target: Target,
        call: ProviderCall,
        request: CompletionRequest,
        started: float,
        context: RequestContext,
        outcome: _StreamOutcome,
        partial: str,
        usage: TokenUsage | None,
        ttft: float | None,
    ) -> None:
        """Record a stream attempt the caller stopped: the partial usage
        (estimated unless the upstream reported it) priced at the target."""
        tokens = ZERO_USAGE
        cost = 0.0
        if outcome.started or usage is not None:
            tokens = usage or TokenUsage.of(estimate_tokens(request.prompt_text()), estimate_tokens(partial))
            cost = call.model_config.price(tokens.input, tokens.output)
        latency = (time.perf_counter() - started) * 1000.0
        context.attempts.append(
            Attempt(target.provider, target.model, False, latency, cost, tokens, ttft, "cancelled", outcome.cancel_note)
        )

    async def _stream_attempt(
        self,
        handle: ProviderHandle,
        target: Target,
        request: CompletionRequest,
        context: RequestContext,
        outcome: _StreamOutcome,
    ) -> AsyncGenerator[StreamEvent, None]:
        """One streamed attempt. Yields everything but the final FinishEvent
        (left in ``outcome.response``); raises the attempt's error. If the
        caller stops it (closes the stream, is cancelled), the attempt is
        recorded as ``cancelled`` with the usage and cost consumed so far."""
        if self.plugins.has_impls("before_attempt"):
            await self._admit(request, target, context)
        call = self._call(handle, target, request)
        stats = self.stats(target)
        handle.inflight += 1
        stats.inflight += 1
        started = time.perf_counter()
        slot = handle.keys.pick()
        slot.inflight += 1
        upstream = slot.provider.stream(call)
        tried: list[KeySlot] = []
        next_event: Callable[[], Awaitable[ProviderEvent]]

        async def first_event() -> ProviderEvent:
            # The first event, made again on the next key whenever the upstream
            # rejects one; later events come straight from the upstream.
            nonlocal upstream, slot, next_event
            while True:
                try:
                    event = await upstream.__anext__()
                except SwarmgateError as error:
                    if slot.key is None or not is_key_error(error):
                        raise
                    following = self._set_aside(handle, slot, error, tried)
                    if following is None:
                        raise
                    rejected, closing = slot, upstream
                    slot = following
                    slot.inflight += 1
                    upstream = slot.provider.stream(call)
                    with anyio.CancelScope(shield=True):
                        await closing.aclose()  # type: ignore[attr-defined]
                        await self._release_slot(handle.name, rejected)
                    continue
                next_event = upstream.__anext__
                if slot.set_aside_until is not None:
                    slot.set_aside_until = None  # a key set aside that works again is back at once
                return event

        next_event = first_event
        text: list[str] = []
        usage: TokenUsage | None = None
        finish = "stop"
        ttft: float | None = None
        tool_calls: dict[int, dict[str, Any]] = {}
        reported_cost: float | None = None
        finish_metadata: Mapping[str, Any] = {}
        exhausted = False  # the upstream ended by itself (StopAsyncIteration)
        event: Any  # told apart by type(event) below, which mypy does not narrow on
        watchdog = new_watchdog()
        now = watchdog.now
        idle = call.stream_idle_timeout
        request_deadline = context.deadline
        try:
            try:
                # One watchdog for the whole stream: each event moves its deadline
                # (a float store), no timer is armed per event (see swarmgate.deadlines).
                first_deadline = min(now() + call.first_token_timeout, request_deadline)
                while True:
                    if outcome.started:
                        deadline = now() + idle
                        if deadline > request_deadline:
                            deadline = request_deadline
                    else:
                        deadline = first_deadline
                    try:
                        with watchdog.until(deadline):
                            event = await next_event()
                    except StopAsyncIteration:
                        exhausted = True
                        break
                    kind: type | None = type(event)
                    if kind not in _EVENT_KINDS:
                        kind = _event_kind(event)
                    if kind is TextDelta or kind is ToolCallDelta:
                        if not outcome.started:
                            outcome.started = True
                            ttft = (time.perf_counter() - started) * 1000.0
                            if outcome.announce:
                                yield StreamStart(
                                    target.provider, target.model, context.id, False, len(context.attempts) + 1
                                )
                        if kind is TextDelta:
                            delta = event.text
                            text.append(delta)
                            outcome.text += delta
                        else:
                            _merge_tool_call(tool_calls, event)
                        yield event
                    elif kind is UsageEvent:
                        usage = event.tokens
                        reported_cost = event.cost
                    elif kind is FinishEvent:
                        finish = event.finish_reason
                        if event.metadata:
                            finish_metadata = event.metadata
            except SwarmgateError as exc:
                error: SwarmgateError = exc
            except TimeoutError:
                if outcome.started:
                    what = f"stream stalled: no event within {call.stream_idle_timeout:g}s"
                else:
                    what = f"no first token within {call.first_token_timeout:g}s"
                error = self._timeout_error(target, context, what)
            except Exception as exc:  # noqa: BLE001 - a driver bug is one failed attempt, not a crash
                error = ServerError(
                    f"provider driver raised {type(exc).__name__}: {exc}", provider=target.provider, model=target.model
                )
            else:
                if not outcome.started:
                    outcome.started = True
                    ttft = (time.perf_counter() - started) * 1000.0
                    if outcome.announce:
                        yield StreamStart(target.provider, target.model, context.id, False, len(context.attempts) + 1)
                content = outcome.prefix + "".join(text)
                metadata: dict[str, Any] = dict(finish_metadata)
                if usage is None:
                    usage = TokenUsage.of(estimate_tokens(request.prompt_text()), estimate_tokens(content))
                    metadata["usage_estimated"] = True
                latency = (time.perf_counter() - started) * 1000.0
                cost = (
                    reported_cost if reported_cost is not None else call.model_config.price(usage.input, usage.output)
                )
                attempt = Attempt(target.provider, target.model, True, latency, cost, usage, ttft)
                context.attempts.append(attempt)
                stats.record(True, latency, ttft, cost)
                reply = ProviderReply(
                    content,
                    usage,
                    finish,
                    tuple(tool_calls[i] for i in sorted(tool_calls)) if tool_calls else None,
                    metadata=metadata,
                )
                yield UsageEvent(usage, cost)
                outcome.response = self._response(reply, attempt, context, ttft)
                return
            partial = "".join(text)
            tokens = usage or TokenUsage.of(estimate_tokens(request.prompt_text()), estimate_tokens(partial))
            if reported_cost is not None:
                cost = reported_cost
            else:
                cost = call.model_config.price(tokens.input, tokens.output) if outcome.started else 0.0
            self._record_failure(
                target, error, started, context, stats, tokens if outcome.started else None, cost, ttft
            )
            raise error
        except SwarmgateError:
            raise
        except BaseException:  # closed early or cancelled: record what was consumed, then let it go
            self._record_cancelled(target, call, request, started, context, outcome, "".join(text), usage, ttft)
            raise
        finally:
            watchdog.close()
            if exhausted and type(upstream) is AsyncGeneratorType and not slot.retired:
                slot.inflight -= 1  # a finished generator has nothing to close: no shielded cleanup
            else:
                with anyio.CancelScope(shield=True):
                    await upstream.aclose()  # type: ignore[attr-defined]
                    await self._release_slot(handle.name, slot)
            handle.inflight -= 1
            stats.inflight -= 1
            if handle.retired and handle.inflight == 0:
                await self._close_handle(handle)

    async def _release_slot(self, name: str, slot: KeySlot) -> None:
        """One call on ``slot`` ended: close it if it was rotated out and idle."""
        slot.inflight -= 1
        if slot.retired and slot.inflight == 0:
            await self._close_slot(name, slot)

    # -- chains --------------------------------------------------------------

    async def complete_with_chain(
        self,
        request: CompletionRequest | Mapping[str, Any] | None = None,
        /,
        *,
        chain: Sequence[Mapping[str, Any]],
        **fields: Any,
    ) -> CompletionResponse:
        """Run ``chain`` steps in order, each refining the previous output.

        Each step is ``{"provider": ..., "model": ..., "task": ...}`` (all
        optional). Step one answers the request with its ``task`` as a system
        instruction; every later step gets the original prompt, the previous
        answer and its own task. Returns the last step's answer with
        ``cost``, ``tokens``, ``attempts`` and ``latency`` summed over the
        chain and ``metadata["chain"]`` holding each step's response.
        """
        if not chain:
            raise InvalidRequestError("'chain' needs at least one step")
        base = build_request(request, fields)
        started = time.perf_counter()
        steps: list[CompletionResponse] = []
        for i, step in enumerate(chain):
            unknown = set(step) - {"provider", "model", "task"}
            if unknown:
                raise InvalidRequestError(f"chain[{i}]: unknown key(s) {sorted(unknown)}")
            task = step.get("task")
            messages = list(base.messages)
            if steps:
                messages.append(Message("assistant", steps[-1].content))
                messages.append(
                    Message(
                        "user",
                        f"Task: {task}. Improve the answer above accordingly."
                        if task
                        else "Review and improve the answer above.",
                    )
                )
            elif task:
                messages.insert(0, Message("system", f"Task: {task}"))
            req = attrs.evolve(
                base,
                messages=tuple(messages),
                provider=step.get("provider", base.provider),
                model=step.get("model", "auto" if step.get("provider") else base.model),
                stream=False,
            )
            steps.append(await self.complete(req))
        last = steps[-1]
        tokens = TokenUsage.of(sum(s.tokens.input for s in steps), sum(s.tokens.output for s in steps))
        return attrs.evolve(
            last,
            cost=sum(s.cost for s in steps),
            tokens=tokens,
            latency=(time.perf_counter() - started) * 1000.0,
            attempts=tuple(a for s in steps for a in s.attempts),
            metadata={**last.metadata, "chain": [s.to_dict() for s in steps]},
        )


_NO_MODEL = ModelConfig()

_REQUEST_FIELDS = attrs.fields(CompletionRequest)
_request_values = operator.attrgetter(*(f.name for f in _REQUEST_FIELDS))
_STREAM_INDEX = [f.name for f in _REQUEST_FIELDS].index("stream")
_POSITIONAL = all(f.init for f in _REQUEST_FIELDS)


def _streamed(request: CompletionRequest) -> CompletionRequest:
    """``attrs.evolve(request, stream=True)`` at half the cost: the fields read
    at once and passed by position (evolve's path if a field is not in ``__init__``)."""
    if not _POSITIONAL:
        return attrs.evolve(request, stream=True)
    values = list(_request_values(request))
    values[_STREAM_INDEX] = True
    return CompletionRequest(*values)


def _scrub_error(error: SwarmgateError) -> None:
    """Mask every registered secret (API keys, proxy passwords) in ``error``'s
    message, in place, whatever the driver did: an upstream that echoes a
    key back must not put it in an attempt, a log line or a usage record."""
    message = error.message
    clean = scrub_secrets(message)
    if clean != message:
        error.message = clean
        error.args = (clean, *error.args[1:])


class _BothFailed(Exception):
    """Both attempts of a hedged pair failed (each already recorded)."""

    def __init__(self, targets: list[Target], errors: list[SwarmgateError]) -> None:
        super().__init__("both hedged attempts failed")
        self.targets = targets
        self.errors = errors


@attrs.define
class _StreamOutcome:
    announce: bool = True  # yield StreamStart at the first output (not for a continuation)
    cancel_note: str = CANCELLED_BY_CALLER  # the attempt's error text if it gets cancelled
    prefix: str = ""  # text delivered by earlier targets that this attempt continues
    started: bool = False
    text: str = ""
    response: CompletionResponse | None = None


#: The event classes the stream loop tells apart by ``type(event) is``.
_EVENT_KINDS = frozenset((TextDelta, ToolCallDelta, UsageEvent, FinishEvent))


def _event_kind(event: object) -> type | None:
    """Which of the stream loop's event classes ``event`` is an instance of
    (a driver's subclass counts as its base), as the isinstance chain it replaces."""
    for kind in (TextDelta, ToolCallDelta, UsageEvent, FinishEvent):
        if isinstance(event, kind):
            return kind
    return None


def _merge_tool_call(calls: dict[int, dict[str, Any]], delta: ToolCallDelta) -> None:
    call = calls.setdefault(delta.index, {"id": None, "type": "function", "function": {"name": None, "arguments": ""}})
    if delta.id:
        call["id"] = delta.id
    if delta.name:
        call["function"]["name"] = delta.name
    call["function"]["arguments"] += delta.arguments


EnhancedProviderManager = ProviderManager
