"""The ``http`` provider type: any JSON REST API, described by its config.

For upstream APIs that have no plugin of their own. The config says where
requests go (``url``, ``method``), what they carry (``headers`` with an
``{apiKey}`` placeholder, a JSON ``body`` template with request
placeholders), and where the answer's parts are (``response``: JMESPath
expressions for the text, finish reason, token counts, tool calls and the
error message and code); ``stream`` says how streamed answers (SSE or
NDJSON) are read and what ends them; ``errors`` maps upstream errors to
swarmgate's taxonomy on top of the default status mapping;
``healthCheck`` names the probe request. Example (the guide's format)::

    "acme": {
      "type": "http",
      "endpoint": "https://api.acme.example/v2",
      "apiKey": "${ACME_API_KEY}",
      "headers": {"Authorization": "Bearer {apiKey}"},
      "url": "/generate",
      "body": {"model": "{model}", "messages": "{messages}",
               "parameters": {"temperature": "{temperature}", "max_new_tokens": "{maxTokens}"},
               "stream": "{stream}"},
      "response": {"text": "result.text", "finishReason": "stop",
                   "inputTokens": "meta.tokens.in", "outputTokens": "meta.tokens.out"},
      "stream": {"format": "sse", "done": {"data": "[DONE]"}},
      "errors": [{"code": "context_too_long", "kind": "context_length_exceeded"}],
      "healthCheck": {"method": "GET", "path": "/models", "expectedStatus": 200},
      "models": {"acme-large": {"costPerToken": 0.000002}}
    }

Everything is checked and compiled when the provider is built: a bad
expression, placeholder or error kind is a :class:`~swarmgate.ConfigError`
naming its path (``providers.acme.response.text: invalid JMESPath
expression ...``). See the README for every key.
"""

from __future__ import annotations

from swarmgate_http._provider import HttpProvider
from swarmgate_http._settings import (
    BODY_VARIABLES,
    DoneMarker,
    ErrorRule,
    HealthCheckRequest,
    HttpSettings,
    ResponsePaths,
    StreamSettings,
)

__all__ = [
    "BODY_VARIABLES",
    "DoneMarker",
    "ErrorRule",
    "HealthCheckRequest",
    "HttpProvider",
    "HttpSettings",
    "ResponsePaths",
    "StreamSettings",
]
