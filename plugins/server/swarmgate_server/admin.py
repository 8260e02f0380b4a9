"""The gateway's other endpoints (Starlette): models, health, metrics, the
OpenAPI document, and the admin API.

Access: ``/health`` and ``/openapi.json`` are open; ``/v1/models``,
``/health/providers`` and ``/metrics`` need a key (a caller's or the
admin's) when keys are configured; everything under ``/admin/`` needs the
admin key (``server.adminKey``). Without an admin key the admin API is open
only while no caller key is configured either (a gateway on loopback for
one user); otherwise it answers 403.

Every error is OpenAI-shaped JSON: ``{"error": {"message", "type", "param",
"code"}}`` (config problems add ``problems``: one ``{"path", "message"}``
each).
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from importlib import metadata
from typing import TYPE_CHECKING, Any, Final

import anyio
import attrs
import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from swarmgate import (
    ConfigError,
    InvalidRequestError,
    PluginError,
    ProviderConfig,
    SwarmgateError,
    Target,
    UnknownModelError,
    load_config,
)
from swarmgate import registry as _registry
from swarmgate.config import to_dict
from swarmgate.logs import get_logger
from swarmgate.plugins import ALLOW_ENV, BLOCK_ENV
from swarmgate_server.auth import Caller
from swarmgate_server.errors import GatewayError, from_swarmgate
from swarmgate_server.settings import load_settings

if TYPE_CHECKING:
    from swarmgate_server.app import Gateway

log = get_logger("swarmgate.server.admin")

try:
    __version__ = metadata.version("swarmgate-server")
except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

Handler = Callable[[Request], Awaitable[Response]]

#: Config keys whose values are masked in ``GET /admin/config``.
SECRET_KEY: Final = re.compile(r"(?i)(key|secret|token|password|credential|proxy)")
#: Default and largest ``limit`` of ``GET /admin/usage``.
USAGE_LIMIT: Final = 100
USAGE_LIMIT_MAX: Final = 10_000
#: How far back ``GET /admin/usage`` looks for the newest records, widening in turn (seconds; ``None``: all).
USAGE_LOOKBACK: Final = (3_600.0, 86_400.0, 7 * 86_400.0, 31 * 86_400.0, None)


def _default(value: Any) -> Any:
    if attrs.has(type(value)):
        return attrs.asdict(value)
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    return str(value)


#: Content types of the usual exporter formats (an exporter's own ``content_type`` wins).
CONTENT_TYPES: Final = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "prometheus": "text/plain; version=0.0.4; charset=utf-8",
}


def content_type(fmt: str) -> str:
    """The content type of metrics exported as ``fmt``: the installed
    exporter's ``content_type``, else the format's usual one."""
    try:
        exporter = _registry.load_driver(_registry.EXPORTERS, fmt)
    except PluginError:
        return CONTENT_TYPES.get(fmt, "text/plain; charset=utf-8")
    found = getattr(exporter, "content_type", None)
    return found if isinstance(found, str) else CONTENT_TYPES.get(fmt, "text/plain; charset=utf-8")


class JSON(Response):
    """A JSON response encoded with orjson (attrs values and tuples included)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, default=_default, option=orjson.OPT_NON_STR_KEYS)


def error_response(error: GatewayError, extra: Mapping[str, Any] | None = None) -> Response:
    """``error`` as an OpenAI-shaped JSON response."""
    body = orjson.loads(error.openai_body())
    if extra:
        body["error"].update(extra)
    headers = {name.decode(): value.decode() for name, value in error.headers()}
    return JSON(body, status_code=error.status, headers=headers)


def _problem_list(error: ConfigError) -> list[dict[str, str]]:
    return [{"path": path, "message": message} for path, message in error.problems]


def mask_secrets(node: Any, key: str = "") -> Any:
    """``node`` with every value under a secret-looking key replaced by ``***``."""
    if isinstance(node, Mapping):
        return {k: mask_secrets(v, str(k)) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [mask_secrets(v, key) for v in node]
    if key and SECRET_KEY.search(key) and node not in (None, "", {}, []) and not isinstance(node, bool):
        return "***"
    return node


#: What ``GET /admin/optimize/routing`` optimises for.
REPLAY_TARGETS: Final = ("cost", "performance", "reliability")
_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_SPAN_UNIT: Final = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0}


def _span_ms(text: str | None) -> float | None:
    """A ``window`` query parameter (``<n>[smhd]``) in milliseconds;
    ``None`` when absent; a 400 answer when malformed."""
    if not text:
        return None
    match = _SPAN.match(text)
    if match is None or float(match.group(1)) <= 0:
        raise GatewayError(
            400, f"'window' must be <n>[smhd] such as 6h or 7d, got {text!r}", code="invalid_request", param="window"
        )
    return float(match.group(1)) * _SPAN_UNIT[match.group(2)] * 1000.0


class AdminAPI:
    """The Starlette side of a :class:`~swarmgate_server.app.Gateway`."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    # -- plumbing ----------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        """Every route of the Starlette side."""
        caller, admin, open_ = self._caller, self._admin, self._open
        return [
            Route("/v1/models", caller(self.list_models), methods=["GET"]),
            Route("/v1/models/{model:path}", caller(self.get_model), methods=["GET"]),
            Route("/v1/chat/completions", open_(self.method_not_allowed)),
            Route("/v1/completions", open_(self.method_not_allowed)),
            Route("/v1/messages", open_(self.method_not_allowed)),
            Route("/health", open_(self.health), methods=["GET"]),
            Route("/health/providers", caller(self.health_providers), methods=["GET"]),
            Route("/metrics", caller(self.metrics), methods=["GET"]),
            Route("/openapi.json", open_(self.openapi), methods=["GET"]),
            Route("/admin/status", admin(self.status), methods=["GET"]),
            Route("/admin/providers", admin(self.list_providers), methods=["GET"]),
            Route("/admin/providers", admin(self.add_provider), methods=["POST"]),
            Route("/admin/providers/{name}", admin(self.get_provider), methods=["GET"]),
            Route("/admin/providers/{name}", admin(self.update_provider), methods=["PATCH"]),
            Route("/admin/providers/{name}", admin(self.remove_provider), methods=["DELETE"]),
            Route("/admin/providers/{name}/keys", admin(self.key_status), methods=["GET"]),
            Route("/admin/providers/{name}/keys/rotate", admin(self.rotate_keys), methods=["POST"]),
            Route("/admin/health/check", admin(self.check_health), methods=["POST"]),
            Route("/admin/analytics", admin(self.analytics), methods=["GET"]),
            Route("/admin/metrics", admin(self.raw_metrics), methods=["GET"]),
            Route("/admin/export", admin(self.export), methods=["GET"]),
            Route("/admin/recommendations", admin(self.recommendations), methods=["GET"]),
            Route("/admin/analyze/bottlenecks", admin(self.bottlenecks), methods=["GET"]),
            Route("/admin/optimize/routing", admin(self.optimize_routing), methods=["GET"]),
            Route("/admin/cache/stats", admin(self.cache_stats), methods=["GET"]),
            Route("/admin/cache/invalidate", admin(self.cache_invalidate), methods=["POST"]),
            Route("/admin/config", admin(self.get_config), methods=["GET"]),
            Route("/admin/config/reload", admin(self.reload_config), methods=["POST"]),
            Route("/admin/usage", admin(self.usage), methods=["GET"]),
        ]

    def _wrap(self, handler: Handler, access: str) -> Handler:
        gateway = self.gateway

        async def endpoint(request: Request) -> Response:
            try:
                if not gateway.ready:
                    raise GatewayError(
                        503, "the gateway is not serving (starting or shutting down)", code="unavailable"
                    )
                if access == "admin":
                    self._check_admin(request)
                elif access == "caller":
                    request.state.caller = await self._authenticate(request)
                return await handler(request)
            except GatewayError as error:
                return error_response(error)
            except ConfigError as error:
                return error_response(
                    GatewayError(400, str(error), code="invalid_config"), {"problems": _problem_list(error)}
                )
            except PluginError as error:
                return error_response(GatewayError(404, str(error), code="plugin_not_installed"))
            except SwarmgateError as error:
                return error_response(from_swarmgate(error))

        endpoint.__name__ = handler.__name__
        endpoint.__doc__ = handler.__doc__
        return endpoint

    def admin_only(self, app: Any) -> Any:
        """``app`` (a plugin's ASGI route under ``/admin/``) behind the admin
        key, answering 503 while the gateway is starting or draining (like
        the gateway's own admin routes)."""
        service = self.gateway.service

        async def guarded(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                try:
                    service.require_ready()
                    service.require_admin(Request(scope))
                except GatewayError as error:
                    await error_response(error)(scope, receive, send)
                    return
            await app(scope, receive, send)

        return guarded

    def plugin_missing(self, distribution: str, what: str) -> Handler:
        """An admin endpoint answering 404 ``plugin_not_installed``: ``what``
        needs ``distribution``, which is not installed or not loaded."""

        async def missing(request: Request) -> Response:
            raise GatewayError(
                404,
                f"{what} needs the plugin '{distribution}', which is not active: install it "
                f"(and keep it allowed by {ALLOW_ENV} / {BLOCK_ENV} when those are set)",
                code="plugin_not_installed",
            )

        return self._admin(missing)

    def own_paths(self) -> frozenset[str]:
        """The paths of the gateway's own OpenAPI document (plugins' excluded)."""
        from swarmgate_server.openapi import spec

        return frozenset(spec(__version__)["paths"])

    def _open(self, handler: Handler) -> Handler:
        return self._wrap(handler, "open")

    def _caller(self, handler: Handler) -> Handler:
        return self._wrap(handler, "caller")

    def _admin(self, handler: Handler) -> Handler:
        return self._wrap(handler, "admin")

    async def _authenticate(self, request: Request) -> Caller | None:
        authorization = request.headers.get("authorization")
        api_key = request.headers.get("x-api-key")
        return await self.gateway.authenticate(
            authorization.encode("latin-1") if authorization else None,
            api_key.encode("latin-1") if api_key else None,
        )

    def _check_admin(self, request: Request) -> None:
        self.gateway.service.require_admin(request, what="the admin API")

    def _audit(
        self, request: Request, action: str, target: str | None, details: Mapping[str, Any] | None = None
    ) -> None:
        """Record an admin action in the audit log when one is active
        (``manager.extensions["audit"].record_admin``): the actor is the
        admin key's fingerprint (never the key), the client its address.
        A log that cannot take it is reported as an error log line: the
        action has happened and is not undone."""
        audit = self.gateway.manager.extensions.get("audit")
        record = getattr(audit, "record_admin", None)
        if record is None:
            return
        actor = self.gateway.service.admin_actor(request)
        client = request.client.host if request.client else None
        try:
            record(action, actor, target, details, client=client)
        except Exception as exc:  # noqa: BLE001 - the action stands; say loudly that it went unrecorded
            log.error("admin_action_not_audited", action=action, target=target, error=f"{type(exc).__name__}: {exc}")

    @staticmethod
    async def _json_body(request: Request) -> Any:
        body = await request.body()
        try:
            return orjson.loads(body) if body else None
        except orjson.JSONDecodeError as exc:
            raise GatewayError(400, f"the request body is not valid JSON: {exc}", code="invalid_json") from None

    async def _json_object(self, request: Request) -> dict[str, Any]:
        data = await self._json_body(request)
        if not isinstance(data, dict):
            raise GatewayError(400, "the request body must be a JSON object", code="invalid_json")
        return data

    # -- /v1 ---------------------------------------------------------------------------

    def _model_ids(self, caller: Caller | None) -> list[tuple[str, str]]:
        """``(id, owned_by)`` for every routable model name the caller may use."""
        manager = self.gateway.manager
        seen: set[str] = set()
        out: list[tuple[str, str]] = []

        def add(name: str, owner: str) -> None:
            if name not in seen and (caller is None or caller.models is None or caller.models.allows(name)):
                seen.add(name)
                out.append((name, owner))

        for name in manager.providers():
            for model in manager.config.providers[name].models:
                add(model, name)
        for name in manager.providers():
            for model in manager.config.providers[name].models:
                add(f"{name}/{model}", name)
        for route in manager.config.routes:
            add(route, "swarmgate")
        add("auto", "swarmgate")
        return out

    async def list_models(self, request: Request) -> Response:
        """``GET /v1/models``: every model name, ``provider/model`` target and
        route the caller may request (Anthropic's shape when the request
        carries ``anthropic-version``)."""
        ids = self._model_ids(request.state.caller)
        created = int(self.gateway.started_at)
        if "anthropic-version" in request.headers:
            stamp = datetime.fromtimestamp(created, UTC).isoformat().replace("+00:00", "Z")
            data = [{"type": "model", "id": i, "display_name": i, "created_at": stamp} for i, _ in ids]
            return JSON(
                {
                    "data": data,
                    "has_more": False,
                    "first_id": ids[0][0] if ids else None,
                    "last_id": ids[-1][0] if ids else None,
                }
            )
        return JSON(
            {
                "object": "list",
                "data": [{"id": i, "object": "model", "created": created, "owned_by": o} for i, o in ids],
            }
        )

    async def get_model(self, request: Request) -> Response:
        """``GET /v1/models/{model}``."""
        wanted = request.path_params["model"]
        for model, owner in self._model_ids(request.state.caller):
            if model == wanted:
                return JSON(
                    {"id": model, "object": "model", "created": int(self.gateway.started_at), "owned_by": owner}
                )
        raise GatewayError(404, f"the model {wanted!r} does not exist", code="model_not_found", param="model")

    async def method_not_allowed(self, request: Request) -> Response:
        """The completion endpoints answer only POST."""
        raise GatewayError(405, f"{request.method} is not allowed here: use POST", code="method_not_allowed")

    # -- health, metrics, openapi --------------------------------------------------------

    async def health(self, request: Request) -> Response:
        """``GET /health``: liveness (503 while starting or draining)."""
        gateway = self.gateway
        manager = gateway.manager
        handles = [manager.handle(n) for n in manager.providers()]
        return JSON(
            {
                "status": "ok",
                "version": __version__,
                "uptime": round(time.time() - gateway.started_at, 3),
                "inflight": gateway.inflight,
                "providers": {"live": len(handles), "healthy": sum(1 for h in handles if h is not None and h.healthy)},
            }
        )

    async def health_providers(self, request: Request) -> Response:
        """``GET /health/providers``: each provider's health, breaker states,
        uptime and in-flight calls (from the health and breaker plugins when
        they are active)."""
        return JSON({"providers": self.provider_health()})

    def provider_health(self) -> list[dict[str, Any]]:
        """The rows of ``/health/providers``."""
        manager = self.gateway.manager
        monitor = manager.extensions.get("health")
        snapshot_of = getattr(monitor, "snapshot", None)
        snapshot = snapshot_of() if callable(snapshot_of) else {}
        breaker = manager.extensions.get("breaker")
        rows = []
        for name, config in manager.config.providers.items():
            handle = manager.handle(name)
            health = snapshot.get(name) if isinstance(snapshot, Mapping) else None
            circuits = None
            if breaker is not None and hasattr(breaker, "state"):
                circuits = {model: breaker.state(Target(name, model)) for model in config.models}
            rows.append(
                {
                    "name": name,
                    "type": config.type,
                    "enabled": config.enabled,
                    "live": handle is not None,
                    "healthy": handle.healthy if handle is not None else False,
                    "detail": handle.health_detail
                    if handle is not None
                    else ("disabled" if not config.enabled else ""),
                    "inflight": handle.inflight if handle is not None else 0,
                    "uptime": health.get("uptime") if isinstance(health, Mapping) else None,
                    "health": health,
                    "breaker": circuits,
                }
            )
        return rows

    async def metrics(self, request: Request) -> Response:
        """``GET /metrics``: Prometheus exposition (needs ``swarmgate-prometheus``)."""
        try:
            text = await self.gateway.manager.export_metrics("prometheus")
        except PluginError as exc:
            raise GatewayError(
                404,
                f"Prometheus metrics need the 'prometheus' exporter: install 'swarmgate-prometheus' ({exc})",
                code="plugin_not_installed",
            ) from None
        return Response(text, media_type=content_type("prometheus"))

    async def openapi(self, request: Request) -> Response:
        """``GET /openapi.json``: the OpenAPI 3.1 document of this API."""
        from swarmgate_server.openapi import spec

        return JSON(spec(__version__, self.gateway.service.documented))

    # -- admin: status and providers -----------------------------------------------------

    async def status(self, request: Request) -> Response:
        """``GET /admin/status``: version, uptime, in-flight requests, plugins, providers."""
        gateway = self.gateway
        manager = gateway.manager
        return JSON(
            {
                "version": __version__,
                "uptime": round(time.time() - gateway.started_at, 3),
                "inflight": gateway.inflight,
                "providers": manager.providers(),
                "plugins": [p.name for p in manager.plugins.plugins()],
                "callerKeys": len(gateway.settings.api_keys),
                "config": manager.config.source,
            }
        )

    def _provider(self, name: str) -> dict[str, Any]:
        manager = self.gateway.manager
        config = manager.config.providers.get(name)
        if config is None:
            raise UnknownModelError(f"unknown provider {name!r} (configured: {sorted(manager.config.providers)})")
        handle = manager.handle(name)
        masked = to_dict(attrs.evolve(manager.config, providers={name: config}))["providers"][name]
        return {
            "name": name,
            "type": config.type,
            "enabled": config.enabled,
            "live": handle is not None,
            "healthy": handle.healthy if handle is not None else False,
            "inflight": handle.inflight if handle is not None else 0,
            "config": masked,
        }

    async def list_providers(self, request: Request) -> Response:
        """``GET /admin/providers``: every configured provider (keys masked)."""
        return JSON({"providers": [self._provider(n) for n in self.gateway.manager.config.providers]})

    async def get_provider(self, request: Request) -> Response:
        """``GET /admin/providers/{name}``."""
        return JSON(self._provider(request.path_params["name"]))

    async def add_provider(self, request: Request) -> Response:
        """``POST /admin/providers`` with ``{"name": ..., "config": {...}}`` (the
        guide's provider format): add it now, no restart."""
        data = await self._json_object(request)
        name, config = data.get("name"), data.get("config")
        if not isinstance(name, str) or not name:
            raise GatewayError(400, "'name' must be a non-empty string", code="invalid_request", param="name")
        if not isinstance(config, dict):
            raise GatewayError(
                400, "'config' must be an object (the provider's config)", code="invalid_request", param="config"
            )
        await self.gateway.manager.add_provider(name, config)
        log.info("admin_provider_added", provider=name)
        self._audit(request, "providers.add", name, {"type": config.get("type")})
        return JSON(self._provider(name), status_code=201)

    async def update_provider(self, request: Request) -> Response:
        """``PATCH /admin/providers/{name}`` with the keys to change; requests in
        flight finish on the old instance."""
        name = request.path_params["name"]
        changes = await self._json_object(request)
        await self.gateway.manager.update_provider(name, changes)
        log.info("admin_provider_updated", provider=name, keys=sorted(changes))
        self._audit(request, "providers.update", name, {"keys": sorted(changes)})
        return JSON(self._provider(name))

    async def remove_provider(self, request: Request) -> Response:
        """``DELETE /admin/providers/{name}``; requests in flight on it finish first."""
        name = request.path_params["name"]
        await self.gateway.manager.remove_provider(name)
        log.info("admin_provider_removed", provider=name)
        self._audit(request, "providers.remove", name)
        return JSON({"removed": name})

    async def key_status(self, request: Request) -> Response:
        """``GET /admin/providers/{name}/keys``: each API key's fingerprint and
        state (active or set aside, failures, last use); never a key."""
        name = request.path_params["name"]
        return JSON({"provider": name, "keys": self.gateway.manager.provider_key_status(name)})

    async def rotate_keys(self, request: Request) -> Response:
        """``POST /admin/providers/{name}/keys/rotate``: re-read the provider's
        key sources (no body), or use ``{"keys": [...]}``; in-flight requests
        finish on the keys they started with. Answers the new keys' fingerprints."""
        name = request.path_params["name"]
        data = await self._json_body(request)
        if data is not None and not isinstance(data, dict):
            raise GatewayError(400, "the request body must be a JSON object", code="invalid_json")
        keys = (data or {}).get("keys")
        if keys is not None and (not isinstance(keys, list) or not all(isinstance(k, str) for k in keys)):
            raise GatewayError(400, "'keys' must be a list of strings", code="invalid_request", param="keys")
        fingerprints = await self.gateway.manager.rotate_provider_keys(name, keys)
        log.info("admin_keys_rotated", provider=name, keys=fingerprints)
        self._audit(request, "keys.rotate", name, {"keys": fingerprints, "source": "given" if keys else "reread"})
        return JSON({"provider": name, "keys": fingerprints})

    async def check_health(self, request: Request) -> Response:
        """``POST /admin/health/check[?provider=NAME]``: probe now (concurrently)."""
        name = request.query_params.get("provider")
        results = await self.gateway.manager.check_health(name)
        return JSON({n: {"healthy": s.healthy, "latency": s.latency, "detail": s.detail} for n, s in results.items()})

    # -- admin: analytics, cache, usage ----------------------------------------------------

    async def analytics(self, request: Request) -> Response:
        """``GET /admin/analytics?window=1h``: the analytics service's figures."""
        window = request.query_params.get("window") or None
        try:
            return JSON(await self.gateway.manager.get_analytics(window))
        except (ValueError, InvalidRequestError) as exc:
            raise GatewayError(400, f"window: {exc}", code="invalid_request", param="window") from None

    async def raw_metrics(self, request: Request) -> Response:
        """``GET /admin/metrics``: the raw counters behind the analytics."""
        return JSON(await self.gateway.manager.get_metrics())

    async def export(self, request: Request) -> Response:
        """``GET /admin/export?format=json|csv|prometheus``: the metrics as that exporter renders them."""
        fmt = request.query_params.get("format") or "json"
        try:
            text = await self.gateway.manager.export_metrics(fmt)
        except PluginError as exc:
            raise GatewayError(404, str(exc), code="plugin_not_installed", param="format") from None
        return Response(text, media_type=content_type(fmt))

    async def recommendations(self, request: Request) -> Response:
        """``GET /admin/recommendations[?window=7d]``: the analytics'
        recommendations; with ``window``, the advisor's over that span."""
        lookback = _span_ms(request.query_params.get("window"))
        if lookback is None:
            return JSON({"recommendations": await self.gateway.manager.get_optimization_recommendations()})
        return JSON({"recommendations": await self._advisor().recommendations(lookback)})

    def _advisor(self) -> Any:
        advisor = self.gateway.manager.extensions.get("advisor")
        if advisor is None:
            raise GatewayError(
                404,
                "no advisor is active: install 'swarmgate-advisor' (and keep monitoring.advisor enabled)",
                code="plugin_not_installed",
            )
        return advisor

    async def bottlenecks(self, request: Request) -> Response:
        """``GET /admin/analyze/bottlenecks[?window=1d]``: where the recorded
        traffic loses time or fails (the advisor's findings over ``window``,
        default ``monitoring.advisor.lookback``)."""
        lookback = _span_ms(request.query_params.get("window"))
        return JSON(await self._advisor().bottlenecks(lookback))

    async def optimize_routing(self, request: Request) -> Response:
        """``GET /admin/optimize/routing?target=cost|performance|reliability[&window=7d]``:
        the recorded traffic replayed under the other strategies and weights."""
        target = request.query_params.get("target")
        if target not in REPLAY_TARGETS:
            raise GatewayError(
                400,
                f"'target' must be one of {', '.join(REPLAY_TARGETS)}, got {target!r}",
                code="invalid_request",
                param="target",
            )
        lookback = _span_ms(request.query_params.get("window"))
        report = await self._advisor().replay(target, lookback)
        return JSON(report.to_dict() if hasattr(report, "to_dict") else report)

    def _cache(self) -> Any:
        cache = self.gateway.manager.extensions.get("cache")
        if cache is None:
            raise GatewayError(
                404,
                "no response cache is active: install 'swarmgate-cache' and enable optimization.caching",
                code="plugin_not_installed",
            )
        return cache

    async def cache_stats(self, request: Request) -> Response:
        """``GET /admin/cache/stats``."""
        stats = self._cache().stats()
        if hasattr(stats, "__await__"):
            stats = await stats
        return JSON(stats)

    async def cache_invalidate(self, request: Request) -> Response:
        """``POST /admin/cache/invalidate`` with any of ``key``, ``provider``,
        ``model``, ``tag``, ``olderThan`` (seconds), ``all``: drop those entries."""
        data = await self._json_body(request) or {}
        if not isinstance(data, dict):
            raise GatewayError(400, "the request body must be a JSON object", code="invalid_json")
        allowed = {"key", "provider", "model", "tag", "olderThan", "older_than", "all"}
        unknown = set(data) - allowed
        if unknown:
            raise GatewayError(
                400,
                f"unknown key(s): {sorted(unknown)} (known: key, provider, model, tag, olderThan, all)",
                code="invalid_request",
            )
        older = data.get("olderThan", data.get("older_than"))
        if older is not None and (isinstance(older, bool) or not isinstance(older, int | float) or older < 0):
            raise GatewayError(
                400, "'olderThan' must be a non-negative number of seconds", code="invalid_request", param="olderThan"
            )
        everything = data.get("all", False)
        if not isinstance(everything, bool):
            raise GatewayError(400, "'all' must be true or false", code="invalid_request", param="all")
        selectors = {k: data.get(k) for k in ("key", "provider", "model", "tag")}
        for key, value in selectors.items():
            if value is not None and not isinstance(value, str):
                raise GatewayError(400, f"'{key}' must be a string", code="invalid_request", param=key)
        if not everything and older is None and not any(selectors.values()):
            raise GatewayError(
                400, "say what to invalidate: key, provider, model, tag, olderThan or all", code="invalid_request"
            )
        count = self._cache().invalidate(**selectors, older_than=older, all=everything)
        if hasattr(count, "__await__"):
            count = await count
        answer: dict[str, Any] = {"invalidated": count}
        cache = self._cache()
        backend, settings = getattr(cache, "backend", None), getattr(cache, "settings", None)
        if isinstance(backend, str):
            answer["backend"] = backend
        if isinstance(getattr(settings, "namespace", None), str):
            answer["namespace"] = settings.namespace  # type: ignore[union-attr]
        log.info("admin_cache_invalidated", count=count, **{k: v for k, v in selectors.items() if v})
        self._audit(
            request,
            "cache.invalidate",
            None,
            {**{k: v for k, v in selectors.items() if v}, "olderThan": older, "all": everything, "count": count},
        )
        return JSON(answer)

    async def usage(self, request: Request) -> Response:
        """``GET /admin/usage?since=&until=&limit=``: recent usage records (newest last)."""
        log_ = self.gateway.manager.extensions.get("usage")
        if log_ is None:
            raise GatewayError(
                404,
                "no usage log is active: install 'swarmgate-usage' (and keep monitoring.usageLog enabled)",
                code="plugin_not_installed",
            )
        params = request.query_params

        def number(key: str) -> float | None:
            raw = params.get(key)
            if raw is None:
                return None
            try:
                return float(raw)
            except ValueError:
                raise GatewayError(
                    400, f"'{key}' must be a number (unix seconds)", code="invalid_request", param=key
                ) from None

        limit = number("limit")
        count = USAGE_LIMIT if limit is None else int(limit)
        if not 1 <= count <= USAGE_LIMIT_MAX:
            raise GatewayError(
                400, f"'limit' must be between 1 and {USAGE_LIMIT_MAX}", code="invalid_request", param="limit"
            )
        since, until = number("since"), number("until")
        if since is None and until is None:
            # The newest ``count`` records: widen the look-back until there are enough.
            now = time.time()
            for span in USAGE_LOOKBACK:
                records = await log_.records(since=now - span if span is not None else None)
                if len(records) >= count:
                    break
            records = records[-count:]
        else:
            records = await log_.records(since=since, until=until, limit=count)
        return JSON({"records": [attrs.asdict(r) if attrs.has(type(r)) else r for r in records]})

    # -- admin: config -----------------------------------------------------------------------

    async def get_config(self, request: Request) -> Response:
        """``GET /admin/config``: the active config, secrets masked."""
        return JSON(mask_secrets(to_dict(self.gateway.manager.config)))

    async def reload_config(self, request: Request) -> Response:
        """``POST /admin/config/reload``: re-read the config file; add, update
        and remove providers to match it (in-flight requests finish on the
        instances they started with) and apply the ``server`` section (keys,
        limits). Other sections need a restart: they are listed under
        ``notApplied`` when they changed."""
        gateway = self.gateway
        manager = gateway.manager
        source = manager.config.source
        if source is None:
            raise GatewayError(
                409, "the gateway was not started from a config file: there is nothing to reload", code="no_config_file"
            )
        new = await anyio.to_thread.run_sync(load_config, source)
        settings = load_settings(new.server)
        old = manager.config
        added = [n for n in new.providers if n not in old.providers]
        removed = [n for n in old.providers if n not in new.providers]
        updated = [n for n in new.providers if n in old.providers and new.providers[n] != old.providers[n]]
        for name in added:
            await manager.add_provider(name, new.providers[name])
        for name in updated:
            config: ProviderConfig = new.providers[name]
            await manager.update_provider(name, config)
        for name in removed:
            await manager.remove_provider(name)
        not_applied = [
            section
            for section in ("routing", "routes", "optimization", "security", "monitoring", "state", "plugins")
            if getattr(new, section) != getattr(old, section)
        ]
        if (settings.host, settings.port) != (gateway.settings.host, gateway.settings.port):
            not_applied.append("server.host/port")
        gateway.configure(settings)
        log.info("config_reloaded", added=added, updated=updated, removed=removed, not_applied=not_applied)
        self._audit(
            request,
            "config.reload",
            source,
            {"added": added, "updated": updated, "removed": removed, "notApplied": not_applied},
        )
        return JSON(
            {
                "source": source,
                "added": added,
                "updated": updated,
                "removed": removed,
                "notApplied": not_applied,
            }
        )


async def not_found(request: Request, exc: Exception) -> Response:
    """Unknown paths and methods, OpenAI-shaped."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    message = (
        f"unknown path: {request.method} {request.url.path}" if status == 404 else str(getattr(exc, "detail", exc))
    )
    code = "unknown_url" if status == 404 else "method_not_allowed" if status == 405 else "error"
    return error_response(GatewayError(status, message, code=code))
