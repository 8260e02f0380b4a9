"""A generic REST text-generation API, as the fake upstream speaks it.

Made up, but shaped like the many small JSON APIs the ``http`` provider
type is for (model servers, in-house gateways, vendor APIs without an SDK).
It deliberately differs from OpenAI's format in every place a generic
client must be told about: paths, field names, finish-reason values, token
fields, tool-call shape, error codes and the end of a stream.

``POST {base}/generate`` (``base`` is ``/v2``) takes::

    {"model": "acme-large",
     "input": {"system": "Be brief.", "messages": [{"role": "user", "content": "Hi"}]},
     "parameters": {"temperature": 0.2, "max_new_tokens": 64, "top_p": 0.9, "stop_sequences": ["END"]},
     "tools": [...OpenAI-style function tools...],
     "stream": false}

and answers::

    {"id": "gen_00000001", "model": "acme-large", "created": 1700000000,
     "result": {"text": "Hello!", "tool_calls": [{"id": "...", "name": "...", "arguments": {...}}]},
     "stop": "end_of_text",
     "meta": {"tokens": {"in": 12, "out": 3}}}

``stop`` is ``end_of_text``, ``max_tokens``, ``tool_use`` or ``blocked``
(swarmgate's ``stop``, ``length``, ``tool_calls`` and ``content_filter``);
``result.tool_calls`` is present only when there are calls, with
``arguments`` as a JSON object.

With ``"stream": true`` the answer is a stream of the same kind of objects,
as server-sent events (``event: <kind>`` plus ``data: {...}``, ended by
``data: [DONE]``) or as NDJSON lines (the last one carries
``"done": true``), per the wire's ``stream_format``::

    {"event": "start", "id": "gen_...", "model": "acme-large"}
    {"event": "delta", "result": {"text": "Hel"}}
    {"event": "tool_call", "tool_call": {"index": 0, "id": "call_1", "name": "get_weather", "arguments": ""}}
    {"event": "tool_call", "tool_call": {"index": 0, "arguments": "{\\"city\\": "}}
    {"event": "end", "stop": "end_of_text", "meta": {"tokens": {"in": 12, "out": 3}}}

Errors are ``{"error": {"code": "rate_limited", "message": "...", "status": 429}}``
with a code per status (``invalid_argument``, ``unauthenticated``,
``permission_denied``, ``not_found``, ``rate_limited``, ``internal``,
``overloaded``, ...); the API reports a too-long prompt as 400
``context_too_long`` and a refused prompt as 400 ``content_blocked``
(:data:`CONTEXT_TOO_LONG`, :data:`CONTENT_BLOCKED`). ``GET {base}/models``
lists ``{"models": [{"name", "context_window"}]}``.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Sequence
from typing import Any, Final, Literal

from swarmgate.testing.upstream import (
    Endpoint,
    RecordedRequest,
    ScriptedReply,
    SSEPlan,
    WireRequest,
)

__all__ = [
    "CONTENT_BLOCKED",
    "CONTEXT_TOO_LONG",
    "FINISH_REASONS",
    "GenericWire",
    "StreamFormat",
]

StreamFormat = Literal["sse", "ndjson"]

#: The error code of a prompt longer than the model's context window (HTTP 400).
CONTEXT_TOO_LONG: Final = "context_too_long"
#: The error code of a prompt the API's safety filter refused (HTTP 400).
CONTENT_BLOCKED: Final = "content_blocked"

#: swarmgate's finish reasons (as scripted in ``ScriptedReply``) -> this API's ``stop`` values.
FINISH_REASONS: Final[dict[str, str]] = {
    "stop": "end_of_text",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "blocked",
}

#: The error code and default message per status (when the reply names none).
_ERRORS: Final[dict[int, tuple[str, str]]] = {
    400: ("invalid_argument", "The request is invalid."),
    401: ("unauthenticated", "Missing or invalid API key."),
    403: ("permission_denied", "This key may not use this model."),
    404: ("not_found", "No such model."),
    408: ("timeout", "The request took too long."),
    413: ("payload_too_large", "The request body is too large."),
    422: ("invalid_argument", "The request could not be processed."),
    429: ("rate_limited", "Too many requests; slow down."),
    500: ("internal", "An internal error occurred."),
    502: ("bad_gateway", "The model backend did not answer properly."),
    503: ("overloaded", "The service is overloaded; try again later."),
    504: ("deadline_exceeded", "The model backend timed out."),
}

#: Characters of tool-call arguments per streamed fragment.
ARGUMENT_PIECE: Final = 16


def _dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def _text_of(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return str(content)


def _parsed_arguments(arguments: Any) -> Any:
    """OpenAI's JSON-text arguments as the object this API sends."""
    if not isinstance(arguments, str):
        return arguments if arguments is not None else {}
    try:
        return json.loads(arguments) if arguments else {}
    except ValueError:
        return arguments


class GenericWire:
    """The generic REST API (see the module docstring).

    ``stream_format`` picks SSE or NDJSON for streamed answers; ``models``
    are the names the listing returns; ``base_path`` the API prefix.
    """

    name = "generic"

    def __init__(
        self,
        stream_format: StreamFormat = "sse",
        *,
        models: Sequence[str] = ("acme-small", "acme-large"),
        base_path: str = "/v2",
    ) -> None:
        if stream_format not in ("sse", "ndjson"):
            raise ValueError(f"stream_format must be 'sse' or 'ndjson', got {stream_format!r}")
        self.stream_format: StreamFormat = stream_format
        self.models = tuple(models)
        self.base_path = base_path.rstrip("/")
        self._ids = itertools.count(1)

    # -- requests ----------------------------------------------------------------

    def route(self, method: str, path: str) -> Endpoint | None:
        """``POST {base}/generate`` and ``GET {base}/models``."""
        if method == "POST" and path == f"{self.base_path}/generate":
            return "completion"
        if method == "GET" and path == f"{self.base_path}/models":
            return "models"
        return None

    def wants_stream(self, request: RecordedRequest) -> bool:
        """``"stream": true`` in the body."""
        return isinstance(request.json, dict) and request.json.get("stream") is True

    def summarize(self, request: RecordedRequest) -> WireRequest:
        """The model, ``input.system`` (first) and ``input.messages`` (text
        parts joined), the ``parameters`` and the stream flag."""
        body: dict[str, Any] = request.json if isinstance(request.json, dict) else {}
        given = body.get("input")
        data: dict[str, Any] = given if isinstance(given, dict) else {}
        messages: list[tuple[str, str]] = []
        if data.get("system") is not None:
            messages.append(("system", _text_of(data["system"])))
        messages.extend(
            (str(m.get("role")), _text_of(m.get("content"))) for m in data.get("messages") or () if isinstance(m, dict)
        )
        raw = body.get("parameters")
        params: dict[str, Any] = raw if isinstance(raw, dict) else {}
        stop = params.get("stop_sequences")
        return WireRequest(
            model=body.get("model"),
            messages=tuple(messages),
            temperature=params.get("temperature"),
            max_tokens=params.get("max_new_tokens"),
            top_p=params.get("top_p"),
            stop=(stop,) if isinstance(stop, str) else (tuple(stop) if stop is not None else None),
            stream=body.get("stream") is True,
        )

    def _prompt(self, request: RecordedRequest) -> str:
        return "\n".join(text for _, text in self.summarize(request).messages)

    def _model(self, reply: ScriptedReply, request: RecordedRequest) -> str:
        if reply.model is not None:
            return reply.model
        model = request.json.get("model") if isinstance(request.json, dict) else None
        return str(model) if model is not None else "unknown"

    def _meta(self, reply: ScriptedReply, request: RecordedRequest) -> dict[str, Any]:
        prompt, completion = reply.token_usage(self._prompt(request))
        return {"tokens": {"in": prompt, "out": completion}}

    @staticmethod
    def _stop(reply: ScriptedReply) -> str:
        return FINISH_REASONS.get(reply.finish_reason, reply.finish_reason)

    # -- answers -----------------------------------------------------------------

    def render_completion(self, reply: ScriptedReply, request: RecordedRequest) -> bytes:
        """The whole answer: ``result``, ``stop``, ``meta.tokens``."""
        result: dict[str, Any] = {"text": reply.content}
        if reply.tool_calls:
            result["tool_calls"] = [
                {
                    "id": call.get("id"),
                    "name": call.get("function", {}).get("name"),
                    "arguments": _parsed_arguments(call.get("function", {}).get("arguments")),
                }
                for call in reply.tool_calls
            ]
        return _dumps(
            {
                "id": f"gen_{next(self._ids):08d}",
                "model": self._model(reply, request),
                "created": int(time.time()),
                "result": result,
                "stop": self._stop(reply),
                "meta": self._meta(reply, request),
            }
        )

    @property
    def stream_media_type(self) -> str:
        return "text/event-stream; charset=utf-8" if self.stream_format == "sse" else "application/x-ndjson"

    def _frame(self, data: dict[str, Any]) -> bytes:
        if self.stream_format == "sse":
            return b"event: " + str(data["event"]).encode() + b"\ndata: " + _dumps(data) + b"\n\n"
        return _dumps(data) + b"\n"

    def render_stream(self, reply: ScriptedReply, request: RecordedRequest) -> SSEPlan:
        """``start``; ``delta`` and ``tool_call`` events (the body); ``end``
        with the stop reason and tokens (NDJSON: ``"done": true``); SSE:
        then ``data: [DONE]``."""
        head = (
            self._frame({"event": "start", "id": f"gen_{next(self._ids):08d}", "model": self._model(reply, request)}),
        )
        body = [self._frame({"event": "delta", "result": {"text": piece}}) for piece in reply.stream_chunks()]
        for index, call in enumerate(reply.tool_calls or ()):
            function = call.get("function", {})
            arguments = function.get("arguments", "")
            arguments = arguments if isinstance(arguments, str) else json.dumps(arguments)
            first = {"index": index, "id": call.get("id"), "name": function.get("name"), "arguments": ""}
            body.append(self._frame({"event": "tool_call", "tool_call": first}))
            for start in range(0, len(arguments), ARGUMENT_PIECE):
                piece = {"index": index, "arguments": arguments[start : start + ARGUMENT_PIECE]}
                body.append(self._frame({"event": "tool_call", "tool_call": piece}))
        end: dict[str, Any] = {"event": "end", "stop": self._stop(reply), "meta": self._meta(reply, request)}
        if self.stream_format == "ndjson":
            end["done"] = True
        tail = [self._frame(end)]
        if self.stream_format == "sse":
            tail.append(b"data: [DONE]\n\n")
        return SSEPlan(head, tuple(body), tuple(tail))

    def render_malformed(self) -> bytes:
        """A frame (SSE event or NDJSON line) whose data is not JSON."""
        if self.stream_format == "sse":
            return b'event: delta\ndata: {"event": "delta", "result": {oops, not json\n\n'
        return b'{"event": "delta", "result": {oops, not json\n'

    def render_error(self, reply: ScriptedReply, request: RecordedRequest | None) -> bytes:
        """``{"error": {"code", "message", "status"}}``."""
        code, message = _ERRORS.get(reply.status) or (
            ("internal", "An internal error occurred.")
            if reply.status >= 500
            else ("invalid_argument", "The request is invalid.")
        )
        return _dumps(
            {
                "error": {
                    "code": reply.error_code if reply.error_code is not None else code,
                    "message": reply.error_message if reply.error_message is not None else message,
                    "status": reply.status,
                }
            }
        )

    def render_models(self) -> bytes:
        """``{"models": [{"name", "context_window"}]}``."""
        return _dumps({"models": [{"name": m, "context_window": 32768} for m in self.models]})
