"""``GatewayService``: what the gateway publishes for plugin routes, as
``manager.extensions["gateway"]``.

The gateway publishes it once the manager is initialized and before it asks
the plugins for their routes (``gateway_routes``), and withdraws it when it
stops. A plugin route uses it to follow the gateway's rules instead of
copying them:

* :attr:`ready` / :attr:`draining` and :meth:`require_ready` (503 while the
  gateway is starting or shutting down, like its own endpoints);
* :meth:`require_admin` -- the admin API's access rule with the keys in
  force *now* (a config reload that changes ``server.adminKey`` or
  ``server.apiKeys`` applies at once), raising the gateway's 401/403;
* :meth:`admin_actor` -- the admin key's fingerprint, the actor the audit
  log records for an admin action (never the key);
* :meth:`error_response` -- a :class:`~swarmgate_server.GatewayError` as the
  gateway's JSON error (OpenAI's shape);
* :meth:`document` -- add a route's operations to ``/openapi.json``.

Routes a plugin mounts under ``/admin/`` are already served behind
:meth:`require_ready` and :meth:`require_admin`; other routes (the
dashboard's feed) call them themselves.

Importing this module does not import the web stack: the service is built
by the gateway, which has.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, Protocol

from swarmgate import PluginError
from swarmgate.logs import fingerprint
from swarmgate_server.auth import credentials
from swarmgate_server.errors import GatewayError

if TYPE_CHECKING:
    from starlette.responses import Response

    from swarmgate_server.app import Gateway

#: Where the gateway publishes its :class:`GatewayService`.
GATEWAY_EXTENSION: Final = "gateway"
#: The operations an OpenAPI path item may hold.
_OPERATIONS: Final = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
#: What else a path item may hold besides operations.
_PATH_ITEM_KEYS: Final = frozenset({"summary", "description", "parameters", "servers", "$ref"})
_PATH: Final = re.compile(r"^/[^\s?#]*$")


class HasHeaders(Protocol):
    """What :meth:`GatewayService.require_admin` reads: a Starlette
    ``Request`` (or ``HTTPConnection``), or anything with case-insensitive
    ``headers``."""

    @property
    def headers(self) -> Mapping[str, str]: ...


def presented_key(request: HasHeaders) -> str | None:
    """The key ``request`` presents (``Authorization: Bearer``, else ``x-api-key``)."""
    headers = request.headers
    authorization = headers.get("authorization")
    api_key = headers.get("x-api-key")
    return credentials(
        authorization.encode("latin-1") if authorization else None,
        api_key.encode("latin-1") if api_key else None,
    )


class GatewayService:
    """The running gateway, as plugin routes see it (see the module docstring)."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self._paths: dict[str, dict[str, Any]] = {}

    @property
    def ready(self) -> bool:
        """Whether the gateway is serving: started and not shutting down."""
        return self._gateway.ready

    @property
    def draining(self) -> bool:
        """Whether the gateway is shutting down (refusing new requests,
        letting the in-flight ones finish)."""
        return self._gateway.draining

    @property
    def inflight(self) -> int:
        """Requests and streams being served now."""
        return self._gateway.inflight

    def require_ready(self) -> None:
        """Raise a 503 :class:`~swarmgate_server.GatewayError` (code
        ``unavailable``) unless the gateway is serving."""
        if not self._gateway.ready:
            raise GatewayError(503, "the gateway is not serving (starting or shutting down)", code="unavailable")

    def require_admin(self, request: HasHeaders, *, what: str = "this endpoint") -> None:
        """Raise unless ``request`` may use the admin API, with the keys in
        force now. With ``server.adminKey`` set: 401 ``missing_api_key``
        without a key, 401 ``invalid_api_key`` with an unknown one, 403
        ``admin_only`` with a caller's key. Without an admin key the admin
        API is open only while no caller key is configured (``server.apiKeys``
        or a caller-key store); otherwise 403 ``admin_disabled``. ``what``
        names the endpoint in the messages."""
        gateway = self._gateway
        keys = gateway.keys
        if keys.has_admin_key:
            key = presented_key(request)
            if key is None:
                raise GatewayError(
                    401, f"{what} needs the admin key (Authorization: Bearer <key>)", code="missing_api_key"
                )
            if not keys.is_admin(key):
                if keys.identify(key) is not None:
                    raise GatewayError(403, "this key is not the admin key", code="admin_only")
                raise GatewayError(401, "invalid API key", code="invalid_api_key")
            return
        if keys.has_keys or gateway.authenticator is not None:
            raise GatewayError(
                403,
                f"{what} is disabled while caller keys are configured and server.adminKey is not",
                code="admin_disabled",
            )

    def admin_actor(self, request: HasHeaders) -> str:
        """Who performs an admin action, for the audit log: the presented
        key's fingerprint (never the key), ``"anonymous"`` without one (an
        open admin API)."""
        key = presented_key(request)
        return fingerprint(key) if key else "anonymous"

    def error_response(self, error: GatewayError) -> Response:
        """``error`` as the gateway answers it: OpenAI-shaped JSON with its
        status and headers (``Retry-After``, ``WWW-Authenticate``)."""
        from swarmgate_server.admin import error_response

        return error_response(error)

    def document(self, path: str, item: Mapping[str, Any]) -> None:
        """Add ``path`` with the OpenAPI 3.1 path item ``item`` (operations
        by lower-case method; ``#/components/responses/...`` of the
        gateway's document such as ``Unauthorized``, ``Forbidden``,
        ``NotFound``, ``Unavailable`` may be referenced) to ``/openapi.json``.
        Call it from ``gateway_routes``. Raises :class:`~swarmgate.PluginError`
        for a malformed item or a path already documented."""
        if not isinstance(path, str) or not _PATH.match(path):
            raise PluginError(
                f"an OpenAPI path must start with '/', got {path!r}", namespace="swarmgate", name="gateway_routes"
            )
        if not isinstance(item, Mapping) or not item:
            raise PluginError(
                f"the OpenAPI path item of {path!r} must be a non-empty mapping",
                namespace="swarmgate",
                name="gateway_routes",
            )
        unknown = sorted(str(k) for k in item if k not in _OPERATIONS and k not in _PATH_ITEM_KEYS)
        if unknown:
            raise PluginError(
                f"the OpenAPI path item of {path!r} has unknown key(s) {unknown} (operations: {sorted(_OPERATIONS)})",
                namespace="swarmgate",
                name="gateway_routes",
            )
        if path in self._paths or path in self._gateway.admin.own_paths():
            raise PluginError(
                f"the OpenAPI document already has the path {path!r}", namespace="swarmgate", name="gateway_routes"
            )
        self._paths[path] = dict(item)

    @property
    def documented(self) -> Mapping[str, Mapping[str, Any]]:
        """The path items plugins added with :meth:`document`."""
        return self._paths
