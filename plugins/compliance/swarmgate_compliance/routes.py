"""The compliance plugin's admin endpoint, mounted by the gateway
(``gateway_routes`` hook; imported only then, so the web stack stays out of
processes that merely load the plugin).

``DELETE /admin/callers/{caller}/records`` -- the GDPR right to erasure:
``await manager.extensions["compliance"].forget(caller, actor=...)``, the
actor being the admin key's fingerprint (never the key), as the gateway
reports it. Answers the :class:`~swarmgate_compliance.ForgetReport` as
JSON: ``{"caller", "usage_records", "audit_records"}`` (``null`` for a log
that is not active). Under ``/admin/``, so the gateway serves it behind the
admin key and answers 503 while it starts or drains. Errors are the
gateway's (OpenAI-shaped JSON): 400 ``invalid_request`` for a blank caller,
404 ``plugin_not_installed`` when the service is gone, 500
``erasure_failed`` when a log could not erase (nothing is reported erased
that was not).

The route is added to the gateway's ``/openapi.json``
(``GatewayService.document``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from swarmgate.logs import get_logger
from swarmgate_server import GatewayError, GatewayService

if TYPE_CHECKING:
    from swarmgate import ProviderManager

log = get_logger("swarmgate.compliance")

#: The erasure endpoint's path.
FORGET_PATH: Final = "/admin/callers/{caller}/records"

_REPORT_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["caller", "usage_records", "audit_records"],
    "properties": {
        "caller": {"type": "string"},
        "usage_records": {
            "type": ["integer", "null"],
            "description": "Requests deleted from the usage log (null: no usage log is active).",
        },
        "audit_records": {
            "type": ["integer", "null"],
            "description": "Audit records whose personal fields were erased (null: no audit log is active).",
        },
    },
}

#: The endpoint's OpenAPI 3.1 path item.
OPENAPI: Final[dict[str, Any]] = {
    "parameters": [
        {
            "name": "caller",
            "in": "path",
            "required": True,
            "schema": {"type": "string"},
            "description": "The caller whose records to erase (request.caller: an API key's name).",
        }
    ],
    "delete": {
        "summary": "Erase a caller's records (GDPR right to erasure)",
        "description": (
            "Deletes the caller's requests from the usage log and erases the personal fields of its "
            "audit records (the audit chain stays verifiable; an audit.forget record names the admin "
            "key's fingerprint). Needs swarmgate-compliance."
        ),
        "tags": ["admin"],
        "security": [{"bearer": []}, {"apiKey": []}],
        "responses": {
            "200": {
                "description": "What was erased.",
                "content": {"application/json": {"schema": _REPORT_SCHEMA}},
            },
            "400": {"$ref": "#/components/responses/BadRequest"},
            "401": {"$ref": "#/components/responses/Unauthorized"},
            "403": {"$ref": "#/components/responses/Forbidden"},
            "404": {"$ref": "#/components/responses/NotFound"},
            "500": {
                "description": "A log could not erase the caller's records.",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            },
            "503": {"$ref": "#/components/responses/Unavailable"},
        },
    },
}


def build_routes(manager: ProviderManager, gateway: GatewayService) -> list[BaseRoute]:
    """The erasure route, documented in ``gateway``'s OpenAPI document."""

    async def forget(request: Request) -> Response:
        """``DELETE /admin/callers/{caller}/records``."""
        caller = request.path_params["caller"]
        service = manager.extensions.get("compliance")
        try:
            if service is None:
                raise GatewayError(
                    404,
                    "erasing a caller's records needs the compliance plugin, which is not active",
                    code="plugin_not_installed",
                )
            try:
                report = await service.forget(caller, actor=gateway.admin_actor(request))
            except ValueError as exc:
                raise GatewayError(400, str(exc), code="invalid_request", param="caller") from None
            except Exception as exc:  # noqa: BLE001 - a log's own failure, answered as a 500 naming it
                log.error("compliance_forget_failed", error=f"{type(exc).__name__}: {exc}")
                raise GatewayError(
                    500, f"the records could not be erased: {type(exc).__name__}: {exc}", code="erasure_failed"
                ) from None
        except GatewayError as error:
            return gateway.error_response(error)
        return Response(orjson.dumps(report.to_dict()), media_type="application/json")

    gateway.document(FORGET_PATH, OPENAPI)
    return [Route(FORGET_PATH, forget, methods=["DELETE"], name="compliance-forget")]
