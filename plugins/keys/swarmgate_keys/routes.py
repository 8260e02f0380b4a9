"""The caller-key admin API, mounted by the gateway (``gateway_routes``)
under ``/admin/``, where it serves them behind its admin key:

* ``GET /admin/keys[?status=active|expired|revoked]`` -- every key (never
  the key itself: id, name, fingerprint, status, limits, times, metadata);
* ``POST /admin/keys`` with a :func:`~swarmgate_keys.spec.spec_from_json`
  body (``name``, ``models``, ``requestsPerMinute``, ``tokensPerMinute``,
  ``burstCapacity``, ``dailyBudget``, ``monthlyBudget``, ``expires`` such as
  ``"30d"`` or ``expiresAt``, ``metadata``) -- 201 with ``key`` (in clear,
  this once), ``record`` and ``warnings`` (limits no active plugin enforces);
* ``GET /admin/keys/{ref}`` -- one key by id, fingerprint or live name;
* ``DELETE /admin/keys/{ref}`` -- revoke it: every gateway reading the
  store refuses it from its next request.

Provider-key rotation is the gateway's own
``POST /admin/providers/{name}/keys/rotate``. Creations and revocations are
recorded in the audit log when one is active (actor: the admin key's
fingerprint). Errors are OpenAI-shaped JSON, like the gateway's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from swarmgate import ConfigError
from swarmgate.logs import fingerprint, get_logger
from swarmgate_keys.spec import IssuedKey, KeySpec, spec_from_json
from swarmgate_keys.store import KeyNameTakenError, KeyNotFoundError
from swarmgate_server import GatewayError
from swarmgate_server.auth import credentials

if TYPE_CHECKING:
    from swarmgate_keys.plugin import CallerKeyService, KeysPlugin

log = get_logger("swarmgate.keys")

STATUSES: Final = ("active", "expired", "revoked")
_NO_STORE: Final = {"cache-control": "no-store"}


def _json(content: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json", headers=_NO_STORE)


def _error(error: GatewayError, extra: dict[str, Any] | None = None) -> Response:
    body = orjson.loads(error.openai_body())
    if extra:
        body["error"].update(extra)
    headers = {name.decode(): value.decode() for name, value in error.headers()}
    return Response(
        orjson.dumps(body), status_code=error.status, media_type="application/json", headers={**_NO_STORE, **headers}
    )


def enforcement_warnings(spec: KeySpec, extensions: dict[str, Any]) -> list[str]:
    """What in ``spec`` no active plugin would enforce."""
    warnings = []
    if (spec.requests_per_minute is not None or spec.tokens_per_minute is not None) and "ratelimit" not in extensions:
        warnings.append(
            "the rate limit of this key is not enforced: the swarmgate-ratelimit plugin is not active "
            "(install it, and do not set optimization.rateLimiting.enabled to false)"
        )
    if (spec.daily_budget is not None or spec.monthly_budget is not None) and "budget" not in extensions:
        warnings.append(
            "the budget of this key is not enforced: the swarmgate-budget plugin is not active "
            "(install it, and do not set routing.budgetLimits.enabled to false)"
        )
    return warnings


def issued_json(issued: IssuedKey, warnings: list[str]) -> dict[str, Any]:
    """The answer to a creation."""
    return {"key": issued.key, "record": issued.record.to_json(), "warnings": warnings}


def build_routes(plugin: KeysPlugin) -> list[BaseRoute]:
    """The admin routes over ``plugin``'s service (see the module docstring)."""

    def service() -> CallerKeyService:
        found = plugin.service
        if found is None:
            raise GatewayError(
                409,
                'caller keys are not enabled on this gateway: set security.callerKeys (e.g. {"enabled": true})',
                code="caller_keys_disabled",
            )
        return found

    def audit(request: Request, action: str, target: str, details: dict[str, Any]) -> None:
        manager = plugin.manager
        record = getattr(manager.extensions.get("audit"), "record_admin", None) if manager is not None else None
        if record is None:
            return
        authorization = request.headers.get("authorization")
        api_key = request.headers.get("x-api-key")
        key = credentials(
            authorization.encode("latin-1") if authorization else None,
            api_key.encode("latin-1") if api_key else None,
        )
        client = request.client.host if request.client else None
        try:
            record(action, fingerprint(key) if key else "anonymous", target, details, client=client)
        except Exception as exc:  # noqa: BLE001 - the action stands; say loudly that it went unrecorded
            log.error("admin_action_not_audited", action=action, target=target, error=f"{type(exc).__name__}: {exc}")

    async def handle(request: Request, work: Any) -> Response:
        try:
            result: Response = await work(request)
            return result
        except GatewayError as error:
            return _error(error)
        except ConfigError as error:
            problems = [{"path": path, "message": message} for path, message in error.problems]
            return _error(GatewayError(400, str(error), code="invalid_request"), {"problems": problems})
        except KeyNotFoundError as error:
            return _error(GatewayError(404, error.message, code="key_not_found"))
        except KeyNameTakenError as error:
            return _error(GatewayError(409, error.message, code="key_name_taken", param="name"))

    async def list_keys(request: Request) -> Response:
        wanted = request.query_params.get("status")
        if wanted is not None and wanted not in STATUSES:
            raise GatewayError(400, f"'status' must be one of {list(STATUSES)}", code="invalid_request", param="status")
        keys = await service().list()
        rows = [k.to_json() for k in keys]
        if wanted is not None:
            rows = [row for row in rows if row["status"] == wanted]
        return _json({"keys": rows})

    async def create_key(request: Request) -> Response:
        store = service()
        body = await request.body()
        try:
            data = orjson.loads(body) if body else None
        except orjson.JSONDecodeError as exc:
            raise GatewayError(400, f"the request body is not valid JSON: {exc}", code="invalid_json") from None
        spec = spec_from_json(data)
        issued = await store.create(spec)
        record = issued.record
        audit(
            request,
            "keys.create",
            record.id,
            {
                "name": record.name,
                "fingerprint": record.fingerprint,
                "models": list(record.models) if record.models is not None else None,
                "expiresAt": record.expires_at,
                "requestsPerMinute": record.requests_per_minute,
                "tokensPerMinute": record.tokens_per_minute,
                "dailyBudget": record.daily_budget,
                "monthlyBudget": record.monthly_budget,
            },
        )
        extensions = plugin.manager.extensions if plugin.manager is not None else {}
        return _json(issued_json(issued, enforcement_warnings(spec, extensions)), status=201)

    async def keys_endpoint(request: Request) -> Response:
        if request.method == "POST":
            return await handle(request, create_key)
        return await handle(request, list_keys)

    async def get_key(request: Request) -> Response:
        key = await service().get(request.path_params["ref"])
        return _json(key.to_json())

    async def revoke_key(request: Request) -> Response:
        key, changed = await service().revoke(request.path_params["ref"])
        if changed:
            audit(request, "keys.revoke", key.id, {"name": key.name, "fingerprint": key.fingerprint})
        return _json({"revoked": key.to_json(), "changed": changed})

    async def key_endpoint(request: Request) -> Response:
        if request.method == "DELETE":
            return await handle(request, revoke_key)
        return await handle(request, get_key)

    # One route per path: the gateway refuses a second plugin route on a path already taken.
    return [
        Route("/admin/keys", keys_endpoint, methods=["GET", "POST"]),
        Route("/admin/keys/{ref}", key_endpoint, methods=["GET", "DELETE"]),
    ]
