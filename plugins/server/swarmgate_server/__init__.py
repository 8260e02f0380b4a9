"""swarmgate-server: the HTTP gateway.

* :func:`create_app` / :class:`Gateway` -- the ASGI application:
  ``/v1/chat/completions``, ``/v1/completions`` and ``/v1/models``
  (OpenAI), ``/v1/messages`` (Anthropic), ``/health``,
  ``/health/providers``, ``/metrics``, ``/openapi.json`` and the admin API
  under ``/admin/``;
* :func:`serve` -- run it with uvicorn (the ``serve`` command);
  :func:`run_gateway` -- run it in a background thread (tests, embedding);
* :class:`ServerSettings`, :class:`ApiKeySettings`, :func:`load_settings`
  -- the ``server`` config section;
* :class:`KeyRing`, :class:`KeyAuthenticator`, :class:`Caller` -- caller
  authentication (config keys, and the seam for a caller-key store);
* :func:`admin_request`, :func:`aadmin_request`, :func:`admin_options`,
  :class:`AdminAPIError` -- calling a running gateway's admin API from CLI
  commands (``--url``);
* :class:`GatewayError` -- an HTTP error answer;
* :class:`GatewayService`, :data:`GATEWAY_EXTENSION` -- what the running
  gateway publishes as ``manager.extensions["gateway"]`` for plugin routes
  (readiness, the admin-key rule with the current keys, the admin actor,
  error responses, OpenAPI entries);
* :class:`ServerPlugin` -- the entry point that adds ``serve``.

The public API is exactly ``__all__``.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from swarmgate_server.auth import AUTHENTICATOR_EXTENSION, Caller, KeyAuthenticator, KeyRing, ModelFilter
from swarmgate_server.errors import GatewayError, from_swarmgate
from swarmgate_server.extension import GATEWAY_EXTENSION, GatewayService
from swarmgate_server.plugin import ServerPlugin
from swarmgate_server.settings import ApiKeySettings, ServerSettings, key_digest, load_settings

if TYPE_CHECKING:
    from swarmgate_server.app import Gateway, app_from_env, create_app
    from swarmgate_server.client import AdminAPIError, aadmin_request, admin_options, admin_request
    from swarmgate_server.serving import RunningGateway, run_gateway, serve

#: Imported on first use: the web stack (Starlette, uvicorn) and the HTTP
#: client stay out of processes that only load the plugin (every
#: ProviderManager does, through the entry point).
_LAZY = {
    "Gateway": "swarmgate_server.app",
    "app_from_env": "swarmgate_server.app",
    "create_app": "swarmgate_server.app",
    "AdminAPIError": "swarmgate_server.client",
    "aadmin_request": "swarmgate_server.client",
    "admin_options": "swarmgate_server.client",
    "admin_request": "swarmgate_server.client",
    "RunningGateway": "swarmgate_server.serving",
    "run_gateway": "swarmgate_server.serving",
    "serve": "swarmgate_server.serving",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "AUTHENTICATOR_EXTENSION",
    "GATEWAY_EXTENSION",
    "AdminAPIError",
    "ApiKeySettings",
    "Caller",
    "Gateway",
    "GatewayError",
    "GatewayService",
    "KeyAuthenticator",
    "KeyRing",
    "ModelFilter",
    "RunningGateway",
    "ServerPlugin",
    "ServerSettings",
    "aadmin_request",
    "admin_options",
    "admin_request",
    "app_from_env",
    "create_app",
    "from_swarmgate",
    "key_digest",
    "load_settings",
    "run_gateway",
    "serve",
]
