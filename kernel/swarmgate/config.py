"""Configuration: loading, ``${ENV}`` substitution, structuring and validation.

The format is the feature guide's JSON (camelCase keys) or the same in YAML.
One cattrs converter maps camelCase keys to the snake_case attributes of the
attrs classes below, strictly: a wrong type, an unknown key or a missing
required key is a :class:`~swarmgate.errors.ConfigError` naming the dotted
path of every bad value (``providers.openai.models.gpt-4.maxTokens``).

Sections owned by plugins (``optimization``, ``security``, ``monitoring``,
``server``, ``plugins`` and
the plugin-specific parts of ``routing``) stay plain mappings here; a plugin
structures its own part with :func:`parse_section`, getting the same
path-naming errors.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin

import attrs
import cattrs
import yaml
from cattrs.cols import homogenous_tuple_structure_factory, list_structure_factory
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from swarmgate.errors import ConfigError

T = TypeVar("T")

# ---------------------------------------------------------------------------
# The schema


@attrs.frozen
class ModelConfig:
    """One model of a provider. Prices are per token; ``cost_per_token``
    applies to input and output alike unless the specific prices are set.
    ``upstream_name`` is sent to the provider when it differs from the key."""

    max_tokens: int | None = None
    temperature: float | None = None
    cost_per_token: float | None = None
    input_cost_per_token: float | None = None
    output_cost_per_token: float | None = None
    context_window: int | None = None
    upstream_name: str | None = None

    def price(self, input_tokens: int, output_tokens: int) -> float:
        """The cost of a call with these token counts (0 when unpriced)."""
        base = self.cost_per_token or 0.0
        in_price = self.input_cost_per_token if self.input_cost_per_token is not None else base
        out_price = self.output_cost_per_token if self.output_cost_per_token is not None else base
        return input_tokens * in_price + output_tokens * out_price


@attrs.frozen
class TimeoutsConfig:
    """Timeouts in milliseconds (``routing.timeouts``, overridden per provider
    by ``providers.<name>.timeouts`` and per request by ``timeouts``).

    ``connect``: opening a connection; ``firstToken``: a stream's first
    token (a slow first token fails over); ``streamIdle``: silence between
    stream events once output started; ``total``: the whole request, all
    attempts included. ``None`` means the default: the provider's
    ``timeout`` for ``firstToken`` and ``streamIdle``, ``min(timeout, 10 s)``
    for ``connect``, 10 minutes for ``total``.
    """

    connect: float | None = None
    first_token: float | None = None
    stream_idle: float | None = None
    total: float | None = None

    def over(self, defaults: TimeoutsConfig | None) -> TimeoutsConfig:
        """These values, with ``defaults`` filling the unset ones."""
        if defaults is None:
            return self
        return TimeoutsConfig(
            self.connect if self.connect is not None else defaults.connect,
            self.first_token if self.first_token is not None else defaults.first_token,
            self.stream_idle if self.stream_idle is not None else defaults.stream_idle,
            self.total if self.total is not None else defaults.total,
        )


NO_TIMEOUTS = TimeoutsConfig()


@attrs.frozen
class HedgingConfig:
    """Hedged requests (``routing.hedging``, off by default): when a
    non-streamed answer has not arrived after ``delay`` ms (default: the
    target's predicted p95 latency), the same request also goes to the next
    candidate; the first answer wins and the other is cancelled. At most
    ``maxRatio`` of requests are hedged (the hedge budget)."""

    enabled: bool = False
    delay: float | None = None
    max_ratio: float = 0.1


@attrs.frozen
class ProviderConfig:
    """One configured provider. ``type`` names its driver (entry point in
    ``swarmgate.providers``); ``timeout`` is milliseconds. Keys this class
    does not know are kept in ``settings`` for the driver, which validates
    them against its own ``settings_class``. ``proxy`` (``http://``,
    ``https://`` or ``socks5://`` URL, credentials allowed) routes the
    provider's HTTP traffic through a proxy.

    Keys (see :mod:`swarmgate.keys`): ``api_key`` (one), ``api_keys`` (a
    list), ``api_key_file`` (a file with one key per line) and
    ``key_source`` (``{"type": ..., ...}``, a key source driver) may be
    combined; the provider uses every key they give in turn, and sets a
    rejected one aside for ``set_aside_for`` ms. A driver instance sees
    exactly one key, as ``api_key``.
    """

    type: str
    endpoint: str | None = None
    api_key: str | None = attrs.field(default=None, repr=False)
    models: dict[str, ModelConfig] = attrs.field(factory=dict)
    default_model: str | None = None
    priority: int = 100
    enabled: bool = True
    weight: float = 1.0
    timeout: float = 60_000.0
    timeouts: TimeoutsConfig = NO_TIMEOUTS
    headers: dict[str, str] = attrs.field(factory=dict, repr=False)
    proxy: str | None = attrs.field(default=None, repr=False)
    health_check: dict[str, Any] | None = None
    rate_limit: dict[str, Any] | None = None
    retry: dict[str, Any] | None = None
    budget: dict[str, Any] | None = None
    #: Where the provider processes data (``us-east-1``, ``eu``, ...); data-residency rules read it.
    region: str | None = None
    #: More keys, used in turn with ``api_key`` (each may be a ``${ENV}`` reference).
    api_keys: tuple[str, ...] = attrs.field(default=(), repr=False)
    #: A file holding one key per line (a mounted secret), re-read at every rotation.
    api_key_file: str | None = None
    #: ``{"type": "<key source>", ...options}``: keys from a key source driver.
    key_source: dict[str, Any] | None = attrs.field(default=None, repr=False)
    #: How long (ms) a key the upstream rejected is left unused.
    set_aside_for: float = 600_000.0
    settings: dict[str, Any] = attrs.field(factory=dict)

    def resolve_default_model(self) -> str | None:
        """``default_model``, else the first configured model, else ``None``."""
        if self.default_model:
            return self.default_model
        return next(iter(self.models), None)


@attrs.frozen
class LoadBalancingConfig:
    """``algorithm`` names a balancer (entry point in ``swarmgate.balancers``);
    other keys are kept in ``settings`` for the balancer, which validates them
    against its own ``settings_class``."""

    algorithm: str = "round-robin"
    weights: dict[str, float] = attrs.field(factory=dict)
    settings: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class RouteConfig:
    """A named route: ordered ``provider/model`` targets. With ``ordered``
    the order is kept; otherwise the routing strategy may reorder them.
    ``fallbacks`` are tried, in order, after every target failed over (the
    way a model's fallback chain follows it)."""

    targets: tuple[str, ...]
    ordered: bool = False
    fallbacks: tuple[str, ...] = ()


@attrs.frozen
class RoutingConfig:
    """The ``routing`` section. ``strategy`` names an entry point in
    ``swarmgate.strategies``. The guide's plugin-owned sub-sections are kept
    as mappings for their plugins."""

    strategy: str = "priority"
    timeouts: TimeoutsConfig = NO_TIMEOUTS
    stream_failover: str = "error"
    hedging: HedgingConfig = attrs.field(factory=HedgingConfig)
    fallback_enabled: bool = True
    fallback_chains: tuple[tuple[str, ...], ...] = ()
    load_balancing: LoadBalancingConfig = attrs.field(factory=LoadBalancingConfig)
    parameters: dict[str, float] = attrs.field(factory=dict)
    health_check_interval: float | None = None
    health_check: dict[str, Any] | None = None
    budget_limits: dict[str, Any] | None = None
    circuit_breaker: dict[str, Any] | None = None
    sla: dict[str, Any] | None = None
    fallback: dict[str, Any] | None = None
    ml_config: dict[str, Any] | None = None
    retry: dict[str, Any] | None = None


@attrs.frozen
class StateConfig:
    """Where shared state lives: ``backend`` names an entry point in
    ``swarmgate.state`` (``memory`` built in); ``options`` go to it."""

    backend: str = "memory"
    options: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class SwarmgateConfig:
    """The whole configuration."""

    providers: dict[str, ProviderConfig] = attrs.field(factory=dict)
    routing: RoutingConfig = attrs.field(factory=RoutingConfig)
    routes: dict[str, RouteConfig] = attrs.field(factory=dict)
    optimization: dict[str, Any] = attrs.field(factory=dict)
    security: dict[str, Any] = attrs.field(factory=dict)
    #: Plugin-owned: the usage log, analytics windows, alerts and their delivery.
    monitoring: dict[str, Any] = attrs.field(factory=dict)
    #: Plugin-owned: the HTTP gateway (listen address, caller keys, limits) and its dashboard.
    server: dict[str, Any] = attrs.field(factory=dict)
    state: StateConfig = attrs.field(factory=StateConfig)
    plugins: dict[str, Any] = attrs.field(factory=dict)
    source: str | None = attrs.field(default=None, eq=False)

    def section(self, dotted: str) -> Any:
        """The raw value at a dotted camelCase path (``optimization.caching``),
        or ``None`` when absent. Plugins pass it to :func:`parse_section`."""
        node: Any = self
        for part in dotted.split("."):
            if attrs.has(type(node)):
                node = getattr(node, snake(part), None)
            elif isinstance(node, Mapping):
                node = node.get(part)
            else:
                return None
            if node is None:
                return None
        return node

    def with_provider(self, name: str, provider: ProviderConfig | None) -> SwarmgateConfig:
        """A copy with ``name`` added, replaced, or (``None``) removed."""
        providers = dict(self.providers)
        if provider is None:
            providers.pop(name, None)
        else:
            providers[name] = provider
        return attrs.evolve(self, providers=providers)


# ---------------------------------------------------------------------------
# Names


def camel(name: str) -> str:
    """``max_tokens`` -> ``maxTokens``."""
    head, *tail = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in tail)


_CAMEL_RE = re.compile(r"(?<!^)(?=[A-Z])")


def snake(name: str) -> str:
    """``maxTokens`` -> ``max_tokens``."""
    return _CAMEL_RE.sub("_", name).lower()


# ---------------------------------------------------------------------------
# The converter


def _strict(expected: type, name: str) -> Callable[[Any, Any], Any]:
    def structure(value: Any, _: Any) -> Any:
        if isinstance(value, bool) and expected is not bool:
            raise TypeError(f"expected {name}, got {value!r}")
        if expected is float and isinstance(value, int):
            return float(value)
        if not isinstance(value, expected):
            raise TypeError(f"expected {name}, got {_show(value)}")
        return value

    return structure


def _show(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, str | int | float | bool | type(None)) else type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def _structure_route(value: Any, _: Any) -> RouteConfig:
    if isinstance(value, list):
        value = {"targets": value}
    if not isinstance(value, Mapping):
        raise TypeError(f"expected a list of 'provider/model' targets or an object, got {_show(value)}")
    return _ROUTE_FN(value, RouteConfig)  # type: ignore[no-any-return]


def _structure_load_balancing(value: Any, _: Any) -> LoadBalancingConfig:
    if isinstance(value, str):
        return LoadBalancingConfig(algorithm=value)
    if not isinstance(value, Mapping):
        raise TypeError(f"expected an algorithm name or an object, got {_show(value)}")
    if "settings" in value:
        raise TypeError("'settings' is reserved: put balancer settings at the top level of loadBalancing")
    core = {k: v for k, v in value.items() if k in ("algorithm", "weights")}
    core["settings"] = {k: v for k, v in value.items() if k not in ("algorithm", "weights")}
    return _LB_FN(core, LoadBalancingConfig)  # type: ignore[no-any-return]


_PROVIDER_KEYS = frozenset(camel(a.name) for a in attrs.fields(ProviderConfig)) - {"settings"}


def _structure_provider(value: Any, _: Any) -> ProviderConfig:
    if not isinstance(value, Mapping):
        raise TypeError(f"expected an object, got {_show(value)}")
    if "settings" in value:
        raise TypeError("'settings' is reserved: put provider-type settings at the top level of the provider")
    core = {k: v for k, v in value.items() if k in _PROVIDER_KEYS}
    core["settings"] = {k: v for k, v in value.items() if k not in _PROVIDER_KEYS}
    return _PROVIDER_FN(core, ProviderConfig)  # type: ignore[no-any-return]


converter = cattrs.Converter(forbid_extra_keys=True)
"""The one converter: camelCase keys, strict scalars, unknown keys refused."""

for _typ, _name in ((int, "an integer"), (float, "a number"), (str, "a string"), (bool, "true or false")):
    converter.register_structure_hook(_typ, _strict(_typ, _name))


def _structure_factory(cls: type) -> Callable[[Any, Any], Any]:
    overrides: dict[str, Any] = {a.name: override(rename=camel(a.name)) for a in attrs.fields(cls)}
    return make_dict_structure_fn(cls, converter, _cattrs_forbid_extra_keys=True, **overrides)


def _unstructure_factory(cls: type) -> Callable[[Any], Any]:
    overrides: dict[str, Any] = {
        a.name: override(rename=camel(a.name), omit=a.name == "source") for a in attrs.fields(cls)
    }
    return make_dict_unstructure_fn(cls, converter, **overrides)


def _sequence_factory(typ: Any) -> Callable[[Any, Any], Any]:
    """Lists and homogeneous tuples that refuse a string (cattrs would split it)."""
    if get_origin(typ) is list:
        inner = list_structure_factory(typ, converter)
    else:
        inner = homogenous_tuple_structure_factory(typ, converter)

    def structure(value: Any, cls: Any) -> Any:
        if not isinstance(value, list | tuple):
            raise TypeError(f"expected a list, got {_show(value)}")
        return inner(value, cls)

    return structure


def _is_sequence(typ: Any) -> bool:
    args = get_args(typ)
    return get_origin(typ) is list or (get_origin(typ) is tuple and len(args) == 2 and args[1] is Ellipsis)


converter.register_structure_hook_factory(_is_sequence, _sequence_factory)
converter.register_structure_hook_factory(attrs.has, _structure_factory)
converter.register_unstructure_hook_factory(attrs.has, _unstructure_factory)
_ROUTE_FN = _structure_factory(RouteConfig)
_LB_FN = _structure_factory(LoadBalancingConfig)
_PROVIDER_FN = _structure_factory(ProviderConfig)
converter.register_structure_hook(RouteConfig, _structure_route)
converter.register_structure_hook(LoadBalancingConfig, _structure_load_balancing)
converter.register_structure_hook(ProviderConfig, _structure_provider)


# ---------------------------------------------------------------------------
# Error paths


class InvalidValue(ValueError):
    """Raise from an attrs validator of a config class: ``key`` is the
    camelCase key (relative to the object being validated) and ``reason``
    says what is wrong; the ConfigError then names the full path."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


def _friendly(typ: Any) -> str:
    origin = get_origin(typ)
    if origin is Union or type(typ).__name__ == "UnionType":
        parts = [_friendly(t) for t in get_args(typ) if t is not type(None)]
        return " or ".join(parts) + (" or null" if type(None) in get_args(typ) else "")
    if origin in (dict, Mapping) or typ is dict:
        return "an object"
    if origin in (list, tuple) or typ in (list, tuple):
        return "a list"
    if attrs.has(typ):
        return "an object"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(typ, str(typ))


def _lookup(raw: Any, path: list[str | int]) -> Any:
    node = raw
    for key in path:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def _dotted(path: list[str | int]) -> str:
    out = ""
    for key in path:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out


def _problems(exc: BaseException, raw: Any, path: list[str | int], typ: Any) -> list[tuple[str, str]]:
    if isinstance(exc, ForbiddenExtraKeysError):
        allowed = sorted(camel(a.name) for a in attrs.fields(exc.cl) if a.name != "source") if attrs.has(exc.cl) else []
        return [
            (_dotted([*path, key]), f"unknown key (expected one of: {', '.join(allowed)})")
            for key in sorted(exc.extra_fields)
        ]
    if isinstance(exc, ClassValidationError | IterableValidationError):
        out: list[tuple[str, str]] = []
        without: list[Exception]
        if isinstance(exc, ClassValidationError):
            attribute_notes, without = exc.group_exceptions()
            for sub, attribute in attribute_notes:
                out += _problems(sub, raw, [*path, camel(attribute.name)], attribute.type)
        else:
            item_notes, without = exc.group_exceptions()
            for sub, item in item_notes:
                key: str | int = item.index
                out += _problems(sub, raw, [*path, key], item.type)
        for sub in without:
            out += _problems(sub, raw, path, typ)
        return out
    if isinstance(exc, KeyError):
        return [(_dotted(path), "required key missing")]
    if isinstance(exc, InvalidValue):
        return [(_dotted([*path, exc.key]) if exc.key else _dotted(path), exc.reason)]
    if isinstance(exc, ValueError):
        return [(_dotted(path), str(exc))]
    if isinstance(exc, TypeError) and str(exc).startswith(("expected ", "'settings'")):
        return [(_dotted(path), str(exc))]
    return [(_dotted(path), f"expected {_friendly(typ)}, got {_show(_lookup(raw, path))}")]


def _join(prefix: str, rel: str) -> str:
    if not prefix or not rel:
        return prefix or rel
    return prefix + rel if rel.startswith("[") else f"{prefix}.{rel}"


def parse_section(cls: type[T], data: Any, path: str, *, source: str | None = None) -> T:
    """Structure ``data`` (camelCase mapping) into ``cls`` (an attrs class).

    Raises :class:`ConfigError` naming, relative to ``path``, every bad value.
    ``None`` gives ``cls()`` (all defaults).
    """
    if data is None:
        data = {}
    try:
        return converter.structure(data, cls)
    except Exception as exc:  # noqa: BLE001 - every cattrs failure becomes a ConfigError
        problems = [_hide_secret(_join(path, rel), msg) for rel, msg in _problems(exc, data, [], cls)]
        raise ConfigError(problems or [(path, str(exc))], source=source) from None


#: Config paths whose values are credentials: a problem there never quotes the value.
_SECRET_PATH = re.compile(r"(^|\.)(apiKey|apiKeys|keySource|proxy|headers)($|[.\[])")
_GOT = re.compile(r", got .*$", re.DOTALL)


def _hide_secret(path: str, message: str) -> tuple[str, str]:
    """``(path, message)`` with the offending value cut from the message when
    ``path`` holds a credential (an API key put where a list belongs, say)."""
    if _SECRET_PATH.search(path):
        message = _GOT.sub(" (the value is not shown: it may be a secret)", message)
    return path, message


def to_dict(config: SwarmgateConfig) -> dict[str, Any]:
    """The config as camelCase JSON-ready data (API keys and proxy URLs masked)."""
    data: dict[str, Any] = converter.unstructure(config)
    balancing = data.get("routing", {}).get("loadBalancing", {})
    balancing.update(balancing.pop("settings", {}) or {})
    for provider in data.get("providers", {}).values():
        settings = provider.pop("settings", {}) or {}
        provider.update(settings)
        for secret in ("apiKey", "proxy"):
            if provider.get(secret):
                provider[secret] = "***"
        if provider.get("apiKeys"):
            provider["apiKeys"] = ["***" for _ in provider["apiKeys"]]
        if isinstance(provider.get("keySource"), Mapping):
            provider["keySource"] = _mask_secret_fields(provider["keySource"])
    return data


def _mask_secret_fields(node: Any) -> Any:
    """``node`` with the values of credential-looking fields (``token``,
    ``password``, ``secretId``...) replaced by ``"***"``, recursively."""
    from swarmgate.logs import looks_secret

    if isinstance(node, Mapping):
        return {
            k: "***" if isinstance(k, str) and looks_secret(k) and v else _mask_secret_fields(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_mask_secret_fields(v) for v in node]
    return node


# ---------------------------------------------------------------------------
# Loading

_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _substitute(
    node: Any, path: list[str | int], env: Mapping[str, str], missing: list[tuple[list[str | int], str]]
) -> Any:
    if isinstance(node, str):
        if "${" not in node:
            return node

        def repl(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            missing.append((path, name))
            return match.group(0)

        return _ENV_RE.sub(repl, node)
    if isinstance(node, Mapping):
        return {k: _substitute(v, [*path, k], env, missing) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, [*path, i], env, missing) for i, v in enumerate(node)]
    return node


def _read_file(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([("", f"cannot read config file: {exc.strerror or exc}")], source=str(path)) from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
            problem = getattr(exc, "problem", None) or str(exc)
            raise ConfigError([("", f"invalid YAML at {where}{problem}")], source=str(path)) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            [("", f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}")], source=str(path)
        ) from None


def load_config(
    config: str | os.PathLike[str] | Mapping[str, Any] | SwarmgateConfig,
    *,
    env: Mapping[str, str] | None = None,
) -> SwarmgateConfig:
    """Load and validate a configuration.

    ``config`` is a path to a ``.json``/``.yaml``/``.yml`` file, a mapping in
    the same format, or an already-built :class:`SwarmgateConfig` (returned
    as is). ``${NAME}`` and ``${NAME:-default}`` in strings are replaced from
    ``env`` (default ``os.environ``); an unset variable is an error unless it
    sits inside a provider with ``"enabled": false``.

    Raises :class:`ConfigError` listing the path and problem of every bad value.
    """
    if isinstance(config, SwarmgateConfig):
        return config
    source: str | None = None
    if isinstance(config, Mapping):
        raw: Any = config
    elif not isinstance(config, str | os.PathLike):
        raise ConfigError([("", f"the top level must be an object, got {_show(config)}")])
    else:
        path = Path(config)
        source = str(path)
        raw = _read_file(path)
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError([("", f"the top level must be an object, got {_show(raw)}")], source=source)
    missing: list[tuple[list[str | int], str]] = []
    raw = _substitute(raw, [], os.environ if env is None else env, missing)
    problems: list[tuple[str, str]] = []
    for where, name in missing:
        if where[:1] == ["providers"] and len(where) > 1:
            provider = raw.get("providers", {}).get(where[1], {})
            if isinstance(provider, Mapping) and provider.get("enabled", True) is False:
                continue
        problems.append((_dotted(where), f"environment variable ${{{name}}} is not set"))
    try:
        parsed = parse_section(SwarmgateConfig, raw, "", source=source)
    except ConfigError as exc:
        problems.extend(exc.problems)
        raise ConfigError(problems, source=source) from None
    problems.extend(validate(parsed))
    if problems:
        raise ConfigError(problems, source=source)
    return attrs.evolve(parsed, source=source)


def _key_problems(base: str, provider: ProviderConfig) -> list[tuple[str, str]]:
    """What is wrong with a provider's key settings (values never quoted)."""
    problems: list[tuple[str, str]] = []
    if provider.api_key is not None and not provider.api_key.strip():
        problems.append((f"{base}.apiKey", "is empty"))
    for i, key in enumerate(provider.api_keys):
        if not key.strip():
            problems.append((f"{base}.apiKeys[{i}]", "is empty"))
    if provider.api_key_file is not None and not provider.api_key_file.strip():
        problems.append((f"{base}.apiKeyFile", "must name a file"))
    source = provider.key_source
    if source is not None:
        kind = source.get("type")
        if not isinstance(kind, str) or not kind:
            problems.append((f"{base}.keySource.type", "must name a key source (e.g. 'env', 'file')"))
    if not (provider.set_aside_for > 0 and math.isfinite(provider.set_aside_for)):
        problems.append((f"{base}.setAsideFor", "must be a positive number of milliseconds"))
    return problems


def _split_target(text: str) -> tuple[str, str] | None:
    provider, sep, model = text.partition("/")
    return (provider, model) if sep and provider and model else None


#: What a stream does when its target fails after output started: end with the
#: error, or continue on the next target (assistant prefill where the target
#: supports it, otherwise a clean restart announced by a StreamFailover event).
STREAM_FAILOVER = frozenset({"error", "continue"})


def validate(config: SwarmgateConfig) -> list[tuple[str, str]]:
    """Cross-field checks the types cannot express; returns ``(path, message)`` pairs."""
    problems: list[tuple[str, str]] = []
    names = sorted(config.providers)
    for name, provider in config.providers.items():
        base = f"providers.{name}"
        if "/" in name:
            problems.append((base, "a provider name may not contain '/'"))
        if not provider.type:
            problems.append((f"{base}.type", "must name a provider type"))
        if provider.default_model and provider.models and provider.default_model not in provider.models:
            problems.append(
                (
                    f"{base}.defaultModel",
                    f"{provider.default_model!r} is not one of its models: {sorted(provider.models)}",
                )
            )
        if provider.timeout <= 0:
            problems.append((f"{base}.timeout", "must be a positive number of milliseconds"))
        if provider.weight < 0:
            problems.append((f"{base}.weight", "must not be negative"))
        problems.extend(_key_problems(base, provider))
        for model_name, model in provider.models.items():
            for field in ("cost_per_token", "input_cost_per_token", "output_cost_per_token"):
                value = getattr(model, field)
                if value is not None and value < 0:
                    problems.append((f"{base}.models.{model_name}.{camel(field)}", "must not be negative"))
            if model.max_tokens is not None and model.max_tokens <= 0:
                problems.append((f"{base}.models.{model_name}.maxTokens", "must be a positive integer"))
    if config.routing.stream_failover not in STREAM_FAILOVER:
        problems.append(
            (
                "routing.streamFailover",
                f"expected one of {sorted(STREAM_FAILOVER)}, got {config.routing.stream_failover!r}",
            )
        )
    hedging = config.routing.hedging
    if not 0 <= hedging.max_ratio <= 1:
        problems.append(("routing.hedging.maxRatio", "must be between 0 and 1"))
    if hedging.delay is not None and hedging.delay <= 0:
        problems.append(("routing.hedging.delay", "must be a positive number of milliseconds"))
    timeouts = [("routing.timeouts", config.routing.timeouts)]
    timeouts += [(f"providers.{n}.timeouts", p.timeouts) for n, p in config.providers.items()]
    for where, value in timeouts:
        for attribute in attrs.fields(TimeoutsConfig):
            amount = getattr(value, attribute.name)
            if amount is not None and amount <= 0:
                problems.append((f"{where}.{camel(attribute.name)}", "must be a positive number of milliseconds"))
    for i, chain in enumerate(config.routing.fallback_chains):
        for j, name in enumerate(chain):
            if name not in config.providers:
                problems.append(
                    (f"routing.fallbackChains[{i}][{j}]", f"unknown provider {name!r} (configured: {names})")
                )
    for name, route in config.routes.items():
        if name in config.providers:
            problems.append((f"routes.{name}", "a route may not have the name of a provider"))
        if not route.targets:
            problems.append((f"routes.{name}.targets", "needs at least one 'provider/model' target"))
        listed = [("targets", i, text) for i, text in enumerate(route.targets)]
        listed += [("fallbacks", i, text) for i, text in enumerate(route.fallbacks)]
        for key, i, text in listed:
            target = _split_target(text)
            where = f"routes.{name}.{key}[{i}]"
            if target is None:
                problems.append((where, f"expected 'provider/model', got {text!r}"))
                continue
            provider_cfg = config.providers.get(target[0])
            if provider_cfg is None:
                problems.append((where, f"unknown provider {target[0]!r} (configured: {names})"))
            elif provider_cfg.models and target[1] not in provider_cfg.models:
                problems.append(
                    (
                        where,
                        f"provider {target[0]!r} has no model {target[1]!r} (models: {sorted(provider_cfg.models)})",
                    )
                )
    for name, weight in config.routing.load_balancing.weights.items():
        if name not in config.providers:
            problems.append(
                (f"routing.loadBalancing.weights.{name}", f"unknown provider {name!r} (configured: {names})")
            )
        elif weight < 0:
            problems.append((f"routing.loadBalancing.weights.{name}", "must not be negative"))
    return problems
