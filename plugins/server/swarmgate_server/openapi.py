"""The OpenAPI 3.1 document of the gateway's own API (``GET /openapi.json``).

Hand-written: the completion endpoints are served by a raw ASGI handler,
not by a framework that could generate it, and the schemas follow the
OpenAI and Anthropic wire formats the gateway speaks. The test suite
validates it with ``openapi-spec-validator``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    "400": {"$ref": "#/components/responses/BadRequest"},
    "401": {"$ref": "#/components/responses/Unauthorized"},
    "403": {"$ref": "#/components/responses/Forbidden"},
    "404": {"$ref": "#/components/responses/NotFound"},
    "408": {"$ref": "#/components/responses/RequestTimeout"},
    "413": {"$ref": "#/components/responses/TooLarge"},
    "422": {"$ref": "#/components/responses/Unprocessable"},
    "429": {"$ref": "#/components/responses/RateLimited"},
    "502": {"$ref": "#/components/responses/BadGateway"},
    "503": {"$ref": "#/components/responses/Unavailable"},
    "504": {"$ref": "#/components/responses/GatewayTimeout"},
}

_ADMIN_ERRORS = {k: _ERRORS[k] for k in ("400", "401", "403", "404")}

_ANSWER_HEADERS = {
    name: {"description": text, "schema": {"type": kind}}
    for name, text, kind in (
        ("x-request-id", "The request's id.", "string"),
        ("x-swarmgate-provider", "The provider that answered.", "string"),
        ("x-swarmgate-model", "The model that answered.", "string"),
        ("x-swarmgate-cost", "What the answer cost (not sent for streams: see the last chunk).", "string"),
        ("x-swarmgate-latency-ms", "Milliseconds until the answer (streams: until the first event).", "string"),
        ("x-swarmgate-attempts", "Upstream attempts made.", "string"),
        ("x-swarmgate-cache", "'hit' or 'miss'.", "string"),
    )
}

_STEERING = [
    {"name": name, "in": "header", "required": False, "description": text, "schema": {"type": "string"}}
    for name, text in (
        ("x-swarmgate-strategy", "Routing strategy for this request."),
        ("x-swarmgate-provider", "Preferred providers, comma-separated."),
        ("x-swarmgate-exclude", "Providers never to try, comma-separated."),
        ("x-swarmgate-max-cost", "Maximum predicted cost."),
        ("x-swarmgate-max-latency", "Maximum latency in milliseconds."),
        ("x-swarmgate-min-reliability", "Minimum reliability, 0 to 1."),
        ("x-swarmgate-cache", "bypass, refresh, allow, ttl=N (comma-separated)."),
    )
]


def _completion_op(summary: str, request: str, answer: str, chunk: str, tag: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "tags": [tag],
            "parameters": _STEERING,
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref(request)}}},
            "responses": {
                "200": {
                    "description": "The answer (JSON), or with stream=true an SSE stream of chunks.",
                    "headers": _ANSWER_HEADERS,
                    "content": {
                        "application/json": {"schema": _ref(answer)},
                        "text/event-stream": {
                            "schema": {"type": "string", "description": f"SSE events carrying {chunk} objects."}
                        },
                    },
                },
                **_ERRORS,
            },
        }
    }


def _admin(
    method: str, summary: str, *, body: dict[str, Any] | None = None, params: list[Any] | None = None
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "tags": ["admin"],
        "security": [{"bearer": []}],
        "responses": {"200": _json({"type": "object"}, "OK"), **_ADMIN_ERRORS},
    }
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if params:
        op["parameters"] = params
    return {method: op}


def _query(name: str, text: str, kind: str = "string") -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": text, "schema": {"type": kind}}


_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}, "description": "Provider name."}


def _schemas() -> dict[str, Any]:
    message = {
        "type": "object",
        "required": ["role"],
        "properties": {
            "role": {"type": "string", "enum": ["system", "developer", "user", "assistant", "tool"]},
            "content": {
                "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}, {"type": "null"}]
            },
            "name": {"type": "string"},
            "tool_calls": {"type": "array", "items": _ref("ToolCall")},
            "tool_call_id": {"type": "string"},
        },
    }
    usage = {
        "type": "object",
        "properties": {k: {"type": "integer"} for k in ("prompt_tokens", "completion_tokens", "total_tokens")},
    }
    steering = {
        "type": "object",
        "description": "Routing control (send with the SDK's extra_body).",
        "properties": {
            "strategy": {"type": "string"},
            "provider": {"type": "string", "description": "Force one provider."},
            "preferences": {
                "type": "object",
                "properties": {
                    "providers": {"type": "array", "items": {"type": "string"}},
                    "exclude": {"type": "array", "items": {"type": "string"}},
                    "constraints": {
                        "type": "object",
                        "properties": {
                            "maxCost": {"type": "number"},
                            "maxLatency": {"type": "number"},
                            "minReliability": {"type": "number"},
                        },
                    },
                },
            },
            "cache": {
                "type": "object",
                "properties": {
                    "bypass": {"type": "boolean"},
                    "refresh": {"type": "boolean"},
                    "allow": {"type": "boolean"},
                    "ttl": {"type": "number"},
                },
            },
            "tags": {"type": "array", "items": {"type": "string"}},
            "timeouts": {
                "type": "object",
                "properties": {k: {"type": "number"} for k in ("firstToken", "streamIdle", "total")},
            },
            "metadata": {"type": "object"},
            "extra": {"type": "object"},
        },
    }
    common = {
        "model": {"type": "string", "description": "A model, provider/model, a route, or 'auto'."},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1},
        "max_tokens": {"type": "integer", "minimum": 1},
        "stop": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "stream": {"type": "boolean"},
        "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
        "user": {"type": "string"},
        "swarmgate": _ref("Steering"),
    }
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["message", "type"],
                    "properties": {
                        "message": {"type": "string"},
                        "type": {"type": "string"},
                        "param": {"type": ["string", "null"]},
                        "code": {"type": ["string", "null"]},
                    },
                }
            },
        },
        "AnthropicError": {
            "type": "object",
            "required": ["type", "error"],
            "properties": {
                "type": {"const": "error"},
                "error": {
                    "type": "object",
                    "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
                },
            },
        },
        "Steering": steering,
        "ToolCall": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "type": {"const": "function"},
                "function": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "arguments": {"type": "string"}},
                },
            },
        },
        "ChatMessage": message,
        "ChatCompletionRequest": {
            "type": "object",
            "required": ["messages"],
            "properties": {
                **common,
                "messages": {"type": "array", "minItems": 1, "items": _ref("ChatMessage")},
                "max_completion_tokens": {"type": "integer", "minimum": 1},
                "tools": {"type": "array", "items": {"type": "object"}},
                "tool_choice": {"oneOf": [{"type": "string"}, {"type": "object"}]},
                "response_format": {"type": "object"},
            },
        },
        "ChatCompletion": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "object": {"const": "chat.completion"},
                "created": {"type": "integer"},
                "model": {"type": "string"},
                "choices": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "index": {"type": "integer"},
                            "message": message,
                            "finish_reason": {"type": "string"},
                        },
                    },
                },
                "usage": usage,
            },
        },
        "CompletionRequest": {
            "type": "object",
            "required": ["prompt"],
            "properties": {**common, "prompt": {"type": "string"}},
        },
        "Completion": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "object": {"const": "text_completion"},
                "created": {"type": "integer"},
                "model": {"type": "string"},
                "choices": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "text": {"type": "string"},
                            "index": {"type": "integer"},
                            "finish_reason": {"type": "string"},
                        },
                    },
                },
                "usage": usage,
            },
        },
        "MessagesRequest": {
            "type": "object",
            "required": ["model", "max_tokens", "messages"],
            "properties": {
                "model": {"type": "string"},
                "max_tokens": {"type": "integer", "minimum": 1},
                "system": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]},
                "messages": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["role", "content"],
                        "properties": {
                            "role": {"type": "string", "enum": ["user", "assistant"]},
                            "content": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]},
                        },
                    },
                },
                "temperature": {"type": "number", "minimum": 0, "maximum": 1},
                "top_p": {"type": "number"},
                "stop_sequences": {"type": "array", "items": {"type": "string"}},
                "tools": {"type": "array", "items": {"type": "object"}},
                "tool_choice": {"type": "object"},
                "metadata": {"type": "object"},
                "stream": {"type": "boolean"},
                "swarmgate": _ref("Steering"),
            },
        },
        "Message": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "type": {"const": "message"},
                "role": {"const": "assistant"},
                "model": {"type": "string"},
                "content": {"type": "array", "items": {"type": "object"}},
                "stop_reason": {"type": ["string", "null"]},
                "usage": {
                    "type": "object",
                    "properties": {"input_tokens": {"type": "integer"}, "output_tokens": {"type": "integer"}},
                },
            },
        },
        "ModelList": {
            "type": "object",
            "properties": {
                "object": {"const": "list"},
                "data": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "id": {"type": "string"},
                            "object": {"const": "model"},
                            "created": {"type": "integer"},
                            "owned_by": {"type": "string"},
                        },
                    },
                },
            },
        },
    }


def _responses() -> dict[str, Any]:
    items = {
        "BadRequest": "Malformed JSON, a wrong type, a bad header.",
        "Unauthorized": "Missing or invalid API key.",
        "Forbidden": "The key may not use this model, or is not the admin key.",
        "NotFound": "Unknown model, route, provider or path.",
        "RequestTimeout": "The body was not received in time, or the request's own total timeout passed.",
        "TooLarge": "The body exceeds server.maxBodySize.",
        "Unprocessable": "Understood but not supported (n > 1, logprobs, ...).",
        "RateLimited": "A rate limit or budget refused the request; see Retry-After.",
        "BadGateway": "Every upstream attempt failed.",
        "Unavailable": "No provider could take the request, upstreams overloaded, or the gateway is draining.",
        "GatewayTimeout": "The upstream did not answer in time.",
    }
    return {
        name: {
            "description": text,
            "content": {"application/json": {"schema": {"oneOf": [_ref("Error"), _ref("AnthropicError")]}}},
        }
        for name, text in items.items()
    }


def spec(version: str, extra: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document (``version`` is the gateway's); ``extra``
    adds plugins' path items (``GatewayService.document``) after the
    gateway's own (which win on a clash)."""
    document = _spec(version)
    if extra:
        paths = document["paths"]
        for path, item in extra.items():
            paths.setdefault(path, dict(item))
    return document


def _spec(version: str) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "swarmgate gateway",
            "version": version,
            "description": "OpenAI- and Anthropic-compatible LLM gateway with routing, failover and an admin API.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {"apiKey": []}],
        "tags": [
            {"name": "openai", "description": "OpenAI-compatible endpoints."},
            {"name": "anthropic", "description": "Anthropic-compatible endpoints."},
            {"name": "health", "description": "Liveness, provider health, metrics."},
            {"name": "admin", "description": "Run-time administration (admin key)."},
        ],
        "paths": {
            "/v1/chat/completions": _completion_op(
                "Chat completion", "ChatCompletionRequest", "ChatCompletion", "chat.completion.chunk", "openai"
            ),
            "/v1/completions": _completion_op(
                "Legacy prompt completion", "CompletionRequest", "Completion", "text_completion", "openai"
            ),
            "/v1/messages": _completion_op(
                "Anthropic Messages", "MessagesRequest", "Message", "Messages stream event", "anthropic"
            ),
            "/v1/models": {
                "get": {
                    "summary": "Every routable model, provider/model target and route",
                    "tags": ["openai"],
                    "responses": {"200": _json(_ref("ModelList"), "The models."), "401": _ERRORS["401"]},
                }
            },
            "/v1/models/{model}": {
                "get": {
                    "summary": "One model",
                    "tags": ["openai"],
                    "parameters": [{"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}],
                    "responses": {"200": _json({"type": "object"}, "The model."), "404": _ERRORS["404"]},
                }
            },
            "/health": {
                "get": {
                    "summary": "Liveness",
                    "tags": ["health"],
                    "security": [],
                    "responses": {"200": _json({"type": "object"}, "Serving."), "503": _ERRORS["503"]},
                }
            },
            "/health/providers": {
                "get": {
                    "summary": "Each provider's health, breaker state and uptime",
                    "tags": ["health"],
                    "responses": {"200": _json({"type": "object"}, "The providers."), "401": _ERRORS["401"]},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics (needs swarmgate-prometheus)",
                    "tags": ["health"],
                    "responses": {
                        "200": {
                            "description": "Prometheus text format.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        "404": _ERRORS["404"],
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "tags": ["health"],
                    "security": [],
                    "responses": {"200": _json({"type": "object"}, "The OpenAPI document.")},
                }
            },
            "/admin/status": _admin("get", "Version, uptime, in-flight requests, plugins"),
            "/admin/providers": {
                **_admin("get", "Every configured provider (keys masked)"),
                **_admin(
                    "post",
                    "Add a provider",
                    body={
                        "type": "object",
                        "required": ["name", "config"],
                        "properties": {"name": {"type": "string"}, "config": {"type": "object"}},
                    },
                ),
            },
            "/admin/providers/{name}": {
                "parameters": [_NAME],
                **_admin("get", "One provider"),
                **_admin("patch", "Change a provider's config (partial, camelCase)", body={"type": "object"}),
                **_admin("delete", "Remove a provider"),
            },
            "/admin/providers/{name}/keys": {
                "parameters": [_NAME],
                **_admin("get", "A provider's API keys (fingerprints and state)"),
            },
            "/admin/providers/{name}/keys/rotate": {
                "parameters": [_NAME],
                **_admin(
                    "post",
                    "Rotate a provider's API keys (re-read its sources, or the keys given)",
                    body={"type": "object", "properties": {"keys": {"type": "array", "items": {"type": "string"}}}},
                ),
            },
            "/admin/health/check": _admin(
                "post", "Probe providers now", params=[_query("provider", "Only this provider.")]
            ),
            "/admin/analytics": _admin("get", "Analytics", params=[_query("window", "1m, 1h, 1d, 7d, ...")]),
            "/admin/metrics": _admin("get", "Raw analytics counters"),
            "/admin/export": _admin(
                "get", "Metrics as an exporter renders them", params=[_query("format", "json, csv, prometheus")]
            ),
            "/admin/recommendations": _admin(
                "get",
                "Optimization recommendations",
                params=[_query("window", "The advisor's span: 6h, 1d, 7d, ... (default: the analytics')")],
            ),
            "/admin/analyze/bottlenecks": _admin(
                "get",
                "Where the recorded traffic loses time or fails",
                params=[_query("window", "6h, 1d, 7d, ... (default: monitoring.advisor.lookback)")],
            ),
            "/admin/optimize/routing": _admin(
                "get",
                "The recorded traffic replayed under the other strategies and weights",
                params=[
                    _query("target", "cost, performance or reliability"),
                    _query("window", "6h, 1d, 7d, ... (default: monitoring.advisor.lookback)"),
                ],
            ),
            "/admin/cache/stats": _admin("get", "Response cache statistics"),
            "/admin/cache/invalidate": _admin(
                "post",
                "Invalidate cached responses",
                body={
                    "type": "object",
                    "properties": {
                        "key": {"type": "string"},
                        "provider": {"type": "string"},
                        "model": {"type": "string"},
                        "tag": {"type": "string"},
                        "olderThan": {"type": "number"},
                        "all": {"type": "boolean"},
                    },
                },
            ),
            "/admin/config": _admin("get", "The active config (secrets masked)"),
            "/admin/config/reload": _admin("post", "Re-read the config file and apply provider and server changes"),
            "/admin/usage": _admin(
                "get",
                "Recent usage records",
                params=[
                    _query("since", "Unix seconds.", "number"),
                    _query("until", "Unix seconds.", "number"),
                    _query("limit", "At most this many.", "integer"),
                ],
            ),
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            },
            "schemas": _schemas(),
            "responses": _responses(),
        },
    }
