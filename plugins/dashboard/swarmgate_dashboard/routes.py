"""The dashboard's routes, mounted by the gateway (``gateway_routes`` hook).

* ``GET /dashboard`` -- the page (HTML; no data in it, so it is open: the
  page asks for the admin key when its feed says one is needed);
* ``GET /dashboard/`` -- a redirect to ``/dashboard`` (the page's URLs are
  relative, so it also works behind a proxy that adds a path prefix);
* ``/dashboard/static/...`` -- its scripts, styles and the vendored chart
  library, shipped inside the package (no CDN);
* ``GET /dashboard/api/summary?window=&since=`` -- the feed the page polls
  (:meth:`~swarmgate_dashboard.service.DashboardService.summary`):
  protected like the gateway's admin API.

Access to the feed is the admin API's, applied by the gateway itself
(``manager.extensions["gateway"]``, a
:class:`~swarmgate_server.GatewayService`) with the keys in force now, so a
config reload that changes them applies to the feed at once: with
``server.adminKey`` set it needs that key (``Authorization: Bearer <key>``
or ``x-api-key``; 401 without a key or with an unknown one, 403 with a
caller's key); without one it is open only while no caller key is
configured (``server.apiKeys``, or a caller-key store in
``manager.extensions["caller_keys"]``), else 403. While the gateway is
starting or draining the feed answers 503, like the gateway's own
endpoints. Errors are OpenAI-shaped JSON, like the gateway's.
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING, Any, Final

import orjson
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from swarmgate import InvalidRequestError
from swarmgate.logs import get_logger
from swarmgate_server import GATEWAY_EXTENSION, GatewayError, GatewayService

if TYPE_CHECKING:
    from swarmgate_dashboard.service import DashboardService

log = get_logger("swarmgate.dashboard")

#: The page's path.
PAGE: Final = "/dashboard"
#: What the page may load and talk to: its own origin only.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
_PAGE_HEADERS: Final = {
    "cache-control": "no-cache",
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


def _page_html() -> bytes:
    return resources.files("swarmgate_dashboard").joinpath("static", "index.html").read_bytes()


def check_access(service: DashboardService, request: Request) -> None:
    """Raise a 503/401/403 :class:`~swarmgate_server.GatewayError` unless
    the gateway is serving and ``request`` may read the feed (the admin
    API's rule, with the gateway's current keys)."""
    gateway = service.manager.extensions.get(GATEWAY_EXTENSION)
    if not isinstance(gateway, GatewayService):
        raise GatewayError(
            503, "the dashboard's feed is served by the swarmgate gateway, which is not running", code="unavailable"
        )
    gateway.require_ready()
    gateway.require_admin(request, what="the dashboard")


def _json(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS),
        status_code=status,
        media_type="application/json",
        headers={"cache-control": "no-store", **(headers or {})},
    )


def _error(error: GatewayError) -> Response:
    headers = {name.decode(): value.decode() for name, value in error.headers()}
    return Response(
        error.openai_body(),
        status_code=error.status,
        media_type="application/json",
        headers={"cache-control": "no-store", **headers},
    )


def build_routes(service: DashboardService) -> list[BaseRoute]:
    """The dashboard's routes over ``service``."""
    page = _page_html()

    async def dashboard(request: Request) -> Response:
        """The page."""
        return Response(page, media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)

    async def slash(request: Request) -> Response:
        """``/dashboard/`` -> ``/dashboard``."""
        return RedirectResponse(PAGE, status_code=307)

    async def summary(request: Request) -> Response:
        """The feed (see :meth:`DashboardService.summary`)."""
        try:
            check_access(service, request)
            params = request.query_params
            window = params.get("window") or None
            if window is not None and window.strip().lower() == "all":
                window = None
            raw_since = params.get("since")
            since: float | None = None
            if raw_since:
                try:
                    since = float(raw_since)
                except ValueError:
                    raise GatewayError(
                        400, "'since' must be a number (unix seconds)", code="invalid_request", param="since"
                    ) from None
            try:
                document = await service.summary(window, since)
            except InvalidRequestError as exc:
                raise GatewayError(400, f"window: {exc.message}", code="invalid_request", param="window") from None
        except GatewayError as error:
            return _error(error)
        return _json(document)

    return [
        Route(PAGE, dashboard, methods=["GET"], name="dashboard"),
        Route(PAGE + "/", slash, methods=["GET"]),
        Route(PAGE + "/api/summary", summary, methods=["GET"], name="dashboard-summary"),
        Mount(
            PAGE + "/static",
            app=StaticFiles(packages=[("swarmgate_dashboard", "static")]),
            name="dashboard-static",
        ),
    ]
