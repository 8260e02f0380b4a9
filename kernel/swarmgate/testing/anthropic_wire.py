"""The Anthropic Messages wire format, as the fake upstream speaks it.

Follows Anthropic's API reference (``anthropic-version: 2023-06-01``):

* ``POST {base}/messages`` answers a ``message`` object: ``content`` is a
  list of blocks (``text``, ``tool_use``), ``stop_reason`` one of
  ``end_turn``, ``max_tokens``, ``stop_sequence``, ``tool_use``,
  ``pause_turn``, ``refusal``; ``usage`` has ``input_tokens`` and
  ``output_tokens`` (plus ``cache_creation_input_tokens`` and
  ``cache_read_input_tokens``).
* With ``"stream": true`` it answers ``text/event-stream`` with named events:
  ``message_start`` (the message with empty content and the input usage),
  ``content_block_start``, ``ping``, ``content_block_delta``
  (``text_delta`` or, for tool input, ``input_json_delta``),
  ``content_block_stop``, ``message_delta`` (``stop_reason`` and the
  cumulative ``output_tokens``), ``message_stop``.
* Errors are ``{"type": "error", "error": {"type", "message"}, "request_id"}``
  with Anthropic's error types (``invalid_request_error`` 400,
  ``authentication_error`` 401, ``permission_error`` 403,
  ``not_found_error`` 404, ``request_too_large`` 413, ``rate_limit_error``
  429, ``api_error`` 500, ``overloaded_error`` 529).
* ``GET {base}/models`` lists models (``data``, ``has_more``, ``first_id``,
  ``last_id``).

A :class:`~swarmgate.testing.upstream.ScriptedReply` is written in OpenAI
terms and translated here: ``finish_reason`` ``stop`` is sent as
``end_turn``, ``length`` as ``max_tokens``, ``tool_calls`` as ``tool_use``
and ``content_filter`` as ``refusal`` (any other value, e.g.
``stop_sequence`` or ``pause_turn``, is sent as is); OpenAI-format
``tool_calls`` become ``tool_use`` blocks whose ``input`` is the parsed
``arguments``; ``error_type`` is the error's ``type`` (``error_code`` has no
place in Anthropic's error body and is ignored). For errors Anthropic sends
in the middle of a stream, build the body with :func:`sse_event` and script
it as ``ScriptedReply(body=..., headers={"content-type": "text/event-stream"})``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from typing import Any

from swarmgate.testing.upstream import (
    Endpoint,
    RecordedRequest,
    ScriptedReply,
    SSEPlan,
    WireRequest,
)

__all__ = ["ANTHROPIC_STOP_REASONS", "ARGUMENT_PIECE", "AnthropicWire", "sse_event"]

#: The ``stop_reason`` sent for each OpenAI-style ``ScriptedReply.finish_reason``.
ANTHROPIC_STOP_REASONS: dict[str, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}

#: Characters of tool input JSON per streamed ``input_json_delta``.
ARGUMENT_PIECE = 16

#: Error ``type`` and message Anthropic uses for each status (when the reply names none).
_ERROR_DEFAULTS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "Not found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "This request would exceed your account's rate limit. Please try again later."),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}


def _dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def sse_event(data: dict[str, Any]) -> bytes:
    """One Anthropic SSE event: ``event: <data["type"]>`` and the JSON
    ``data`` line, blank line included (for hand-built stream bodies)."""
    return b"event: " + str(data["type"]).encode() + b"\ndata: " + _dumps(data) + b"\n\n"


def _block_text(block: Any) -> str:
    """The text of one content block: a ``text`` block's text, the text
    inside a ``tool_result`` block; ``""`` for anything else."""
    if not isinstance(block, dict):
        return ""
    if block.get("type") == "text":
        return str(block.get("text", ""))
    if block.get("type") == "tool_result":
        return _content_text(block.get("content"))
    return ""


def _content_text(content: Any) -> str:
    """``content`` (a string or a list of blocks) as text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(_block_text(block) for block in content)
    return str(content)


def _tool_input(arguments: Any) -> dict[str, Any]:
    """OpenAI ``arguments`` (a JSON string) as a ``tool_use`` ``input`` object."""
    if isinstance(arguments, dict):
        return arguments
    try:
        parsed = json.loads(arguments) if arguments else {}
    except (TypeError, ValueError):
        return {"arguments": str(arguments)}
    return parsed if isinstance(parsed, dict) else {"value": parsed}


class AnthropicWire:
    """The Anthropic Messages format (see the module docstring).

    ``models`` are the ids the models listing returns; ``base_path`` the
    API prefix (``/v1``).
    """

    name = "anthropic"

    def __init__(
        self,
        models: Sequence[str] = ("claude-sonnet-4-5", "claude-haiku-4-5"),
        *,
        base_path: str = "/v1",
    ) -> None:
        self.models = tuple(models)
        self.base_path = base_path.rstrip("/")
        self._ids = itertools.count(1)

    # -- requests ----------------------------------------------------------------

    def route(self, method: str, path: str) -> Endpoint | None:
        """``POST {base}/messages`` and ``GET {base}/models``."""
        if method == "POST" and path == f"{self.base_path}/messages":
            return "completion"
        if method == "GET" and path == f"{self.base_path}/models":
            return "models"
        return None

    def wants_stream(self, request: RecordedRequest) -> bool:
        """``"stream": true`` in the body."""
        return isinstance(request.json, dict) and request.json.get("stream") is True

    def summarize(self, request: RecordedRequest) -> WireRequest:
        """The body's model, messages and sampling fields. The top-level
        ``system`` comes first: one ``("system", text)`` for a string, one per
        text block for a list. A message's text joins its ``text`` blocks and
        the text inside its ``tool_result`` blocks. ``stop_sequences`` is
        read as ``stop``."""
        body: dict[str, Any] = request.json if isinstance(request.json, dict) else {}
        messages: list[tuple[str, str]] = []
        system = body.get("system")
        if isinstance(system, str):
            messages.append(("system", system))
        elif isinstance(system, list):
            messages.extend(("system", _block_text(block)) for block in system)
        for message in body.get("messages") or ():
            if isinstance(message, dict):
                messages.append((str(message.get("role")), _content_text(message.get("content"))))
        stop = body.get("stop_sequences")
        return WireRequest(
            model=body.get("model"),
            messages=tuple(messages),
            temperature=body.get("temperature"),
            max_tokens=body.get("max_tokens"),
            top_p=body.get("top_p"),
            stop=tuple(stop) if isinstance(stop, list) else None,
            stream=body.get("stream") is True,
        )

    def _prompt(self, request: RecordedRequest) -> str:
        return "\n".join(text for _, text in self.summarize(request).messages)

    def _model(self, reply: ScriptedReply, request: RecordedRequest) -> str:
        if reply.model is not None:
            return reply.model
        model = request.json.get("model") if isinstance(request.json, dict) else None
        return str(model) if model is not None else "unknown"

    @staticmethod
    def _stop_reason(reply: ScriptedReply) -> str:
        return ANTHROPIC_STOP_REASONS.get(reply.finish_reason, reply.finish_reason)

    @staticmethod
    def _stop_sequence(reply: ScriptedReply, request: RecordedRequest) -> str | None:
        """For ``stop_sequence``: the first stop sequence the request sent."""
        if reply.finish_reason != "stop_sequence" or not isinstance(request.json, dict):
            return None
        stops = request.json.get("stop_sequences")
        return str(stops[0]) if isinstance(stops, list) and stops else None

    def _message_id(self) -> str:
        return f"msg_fake{next(self._ids):016d}"

    # -- answers -----------------------------------------------------------------

    def render_completion(self, reply: ScriptedReply, request: RecordedRequest) -> bytes:
        """A ``message`` object: a ``text`` block (left out when the content
        is empty), one ``tool_use`` block per tool call, the stop reason and
        the usage."""
        content: list[dict[str, Any]] = []
        if reply.content:
            content.append({"type": "text", "text": reply.content})
        for call in reply.tool_calls or ():
            function = call.get("function", {})
            content.append(
                {
                    "type": "tool_use",
                    "id": call.get("id"),
                    "name": function.get("name"),
                    "input": _tool_input(function.get("arguments")),
                }
            )
        input_tokens, output_tokens = reply.token_usage(self._prompt(request))
        return _dumps(
            {
                "id": self._message_id(),
                "type": "message",
                "role": "assistant",
                "model": self._model(reply, request),
                "content": content,
                "stop_reason": self._stop_reason(reply),
                "stop_sequence": self._stop_sequence(reply, request),
                "usage": {
                    "input_tokens": input_tokens,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                    "output_tokens": output_tokens,
                },
            }
        )

    @property
    def stream_media_type(self) -> str:
        return "text/event-stream; charset=utf-8"

    def render_stream(self, reply: ScriptedReply, request: RecordedRequest) -> SSEPlan:
        """Head: ``message_start``, the text block's ``content_block_start``
        (when there is text), ``ping``. Body: one ``text_delta`` per chunk;
        then, per tool call, its ``content_block_start``, ``input_json_delta``
        fragments and ``content_block_stop`` (the text block's stop comes
        first). Tail: the text block's stop (without tool calls),
        ``message_delta`` with the stop reason and output usage,
        ``message_stop``."""
        input_tokens, output_tokens = reply.token_usage(self._prompt(request))
        start = {
            "type": "message_start",
            "message": {
                "id": self._message_id(),
                "type": "message",
                "role": "assistant",
                "model": self._model(reply, request),
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": input_tokens,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                    "output_tokens": 1,
                },
            },
        }
        pieces = reply.stream_chunks()
        head = [sse_event(start)]
        body: list[bytes] = []
        tail: list[bytes] = []
        index = 0
        if pieces:
            head.append(
                sse_event({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
            )
            body.extend(
                sse_event({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}})
                for piece in pieces
            )
            stop_text = sse_event({"type": "content_block_stop", "index": 0})
            (body if reply.tool_calls else tail).append(stop_text)
            index = 1
        head.append(sse_event({"type": "ping"}))
        for call in reply.tool_calls or ():
            function = call.get("function", {})
            block = {"type": "tool_use", "id": call.get("id"), "name": function.get("name"), "input": {}}
            body.append(sse_event({"type": "content_block_start", "index": index, "content_block": block}))
            arguments = json.dumps(_tool_input(function.get("arguments")), ensure_ascii=False)
            for offset in range(0, len(arguments), ARGUMENT_PIECE):
                delta = {"type": "input_json_delta", "partial_json": arguments[offset : offset + ARGUMENT_PIECE]}
                body.append(sse_event({"type": "content_block_delta", "index": index, "delta": delta}))
            body.append(sse_event({"type": "content_block_stop", "index": index}))
            index += 1
        stop = {"stop_reason": self._stop_reason(reply), "stop_sequence": self._stop_sequence(reply, request)}
        tail.append(sse_event({"type": "message_delta", "delta": stop, "usage": {"output_tokens": output_tokens}}))
        tail.append(sse_event({"type": "message_stop"}))
        return SSEPlan(tuple(head), tuple(body), tuple(tail))

    def render_malformed(self) -> bytes:
        """A ``content_block_delta`` event whose data is not JSON."""
        return b'event: content_block_delta\ndata: {"type": "content_block_delta", "index": 0, "delta": {oops\n\n'

    def render_error(self, reply: ScriptedReply, request: RecordedRequest | None) -> bytes:
        """``{"type": "error", "error": {"type", "message"}, "request_id"}``;
        other 5xx statuses default to ``api_error``, other 4xx to
        ``invalid_request_error``."""
        fallback = _ERROR_DEFAULTS.get(reply.status) or (
            ("api_error", "Internal server error")
            if reply.status >= 500
            else ("invalid_request_error", "Invalid request.")
        )
        error_type, message = fallback
        return _dumps(
            {
                "type": "error",
                "error": {
                    "type": reply.error_type if reply.error_type is not None else error_type,
                    "message": reply.error_message if reply.error_message is not None else message,
                },
                "request_id": f"req_fake{next(self._ids):016d}",
            }
        )

    def render_models(self) -> bytes:
        """``{"data": [{"type": "model", "id", "display_name", "created_at"}],
        "has_more", "first_id", "last_id"}``."""
        data = [
            {
                "type": "model",
                "id": model,
                "display_name": model.replace("-", " ").title(),
                "created_at": "2025-01-01T00:00:00Z",
            }
            for model in self.models
        ]
        return _dumps(
            {
                "data": data,
                "has_more": False,
                "first_id": self.models[0] if self.models else None,
                "last_id": self.models[-1] if self.models else None,
            }
        )
