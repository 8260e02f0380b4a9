"""The OpenAI Chat Completions wire format, as the fake upstream speaks it.

Follows what ``api.openai.com`` sends: ``POST /v1/chat/completions``
answers a ``chat.completion`` object, or with ``"stream": true`` a
``text/event-stream`` of ``chat.completion.chunk`` objects (a first chunk
with ``delta.role``, content deltas, tool-call deltas, a chunk with the
``finish_reason``, a usage chunk with empty ``choices`` only when the
request set ``stream_options.include_usage``, then ``data: [DONE]``);
errors are ``{"error": {"message", "type", "param", "code"}}``;
``GET /v1/models`` lists models.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Sequence
from typing import Any

from swarmgate.testing.upstream import (
    Endpoint,
    RecordedRequest,
    ScriptedReply,
    SSEPlan,
    WireRequest,
)

#: Error ``type``/``code`` OpenAI uses for each status (when the reply names none).
_ERROR_DEFAULTS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("permission_error", None, "You are not allowed to access this resource."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist or you do not have access to it."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again later."),
    500: ("server_error", None, "The server had an error while processing your request."),
    502: ("server_error", None, "Bad gateway."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}

#: Characters of tool-call arguments per streamed fragment.
ARGUMENT_PIECE = 16


def _dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def _sse(data: Any) -> bytes:
    return b"data: " + _dumps(data) + b"\n\n"


def _text_of(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return str(content)


class OpenAIWire:
    """The OpenAI Chat Completions format (see the module docstring).

    ``models`` are the ids the models listing returns; ``base_path`` the
    API prefix (``/v1``; e.g. ``/compatible-mode/v1`` for an
    OpenAI-compatible path elsewhere).
    """

    name = "openai"

    def __init__(self, models: Sequence[str] = ("gpt-4o-mini", "gpt-4o"), *, base_path: str = "/v1") -> None:
        self.models = tuple(models)
        self.base_path = base_path.rstrip("/")
        self._ids = itertools.count(1)

    # -- requests ----------------------------------------------------------------

    def route(self, method: str, path: str) -> Endpoint | None:
        """``POST {base}/chat/completions`` and ``GET {base}/models``."""
        if method == "POST" and path == f"{self.base_path}/chat/completions":
            return "completion"
        if method == "GET" and path == f"{self.base_path}/models":
            return "models"
        return None

    def wants_stream(self, request: RecordedRequest) -> bool:
        """``"stream": true`` in the body."""
        return isinstance(request.json, dict) and request.json.get("stream") is True

    def summarize(self, request: RecordedRequest) -> WireRequest:
        """The body's model, messages (text parts joined), sampling fields
        (``max_completion_tokens`` counts as ``max_tokens``) and stream flag."""
        body: dict[str, Any] = request.json if isinstance(request.json, dict) else {}
        messages = tuple(
            (str(m.get("role")), _text_of(m.get("content"))) for m in body.get("messages") or () if isinstance(m, dict)
        )
        stop = body.get("stop")
        max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
        return WireRequest(
            model=body.get("model"),
            messages=messages,
            temperature=body.get("temperature"),
            max_tokens=max_tokens,
            top_p=body.get("top_p"),
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

    def _usage(self, reply: ScriptedReply, request: RecordedRequest) -> dict[str, int]:
        prompt, completion = reply.token_usage(self._prompt(request))
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    # -- answers -----------------------------------------------------------------

    def render_completion(self, reply: ScriptedReply, request: RecordedRequest) -> bytes:
        """A ``chat.completion`` object with one choice."""
        message: dict[str, Any] = {
            "role": "assistant",
            "content": reply.content if reply.content or not reply.tool_calls else None,
            "refusal": None,
        }
        if reply.tool_calls:
            message["tool_calls"] = list(reply.tool_calls)
        return _dumps(
            {
                "id": f"chatcmpl-fake{next(self._ids):08d}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": self._model(reply, request),
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": reply.finish_reason}],
                "usage": self._usage(reply, request),
                "system_fingerprint": "fp_fake",
            }
        )

    @property
    def stream_media_type(self) -> str:
        return "text/event-stream; charset=utf-8"

    def render_stream(self, reply: ScriptedReply, request: RecordedRequest) -> SSEPlan:
        """``chat.completion.chunk`` frames: role; content pieces and
        tool-call fragments (the body); finish; usage if asked; ``[DONE]``."""
        options = request.json.get("stream_options") if isinstance(request.json, dict) else None
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        base: dict[str, Any] = {
            "id": f"chatcmpl-fake{next(self._ids):08d}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": self._model(reply, request),
            "system_fingerprint": "fp_fake",
        }

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            data = {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}
            if include_usage:
                data["usage"] = None
            return _sse(data)

        head = (chunk({"role": "assistant", "content": "", "refusal": None}),)
        body = [chunk({"content": piece}) for piece in reply.stream_chunks()]
        for index, call in enumerate(reply.tool_calls or ()):
            function = call.get("function", {})
            arguments = str(function.get("arguments", ""))
            first = {
                "index": index,
                "id": call.get("id"),
                "type": call.get("type", "function"),
                "function": {"name": function.get("name"), "arguments": ""},
            }
            body.append(chunk({"tool_calls": [first]}))
            for start in range(0, len(arguments), ARGUMENT_PIECE):
                piece = arguments[start : start + ARGUMENT_PIECE]
                body.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}))
        tail = [chunk({}, reply.finish_reason)]
        if include_usage:
            tail.append(_sse({**base, "choices": [], "usage": self._usage(reply, request)}))
        tail.append(b"data: [DONE]\n\n")
        return SSEPlan(head, tuple(body), tuple(tail))

    def render_malformed(self) -> bytes:
        """A data line that is not JSON."""
        return b'data: {"id": "chatcmpl-fake", "choices": [oops, not json\n\n'

    def render_error(self, reply: ScriptedReply, request: RecordedRequest | None) -> bytes:
        """``{"error": {"message", "type", "param", "code"}}``."""
        fallback = _ERROR_DEFAULTS.get(reply.status) or (
            ("server_error", None, "The server had an error.")
            if reply.status >= 500
            else ("invalid_request_error", None, "Invalid request.")
        )
        error_type, code, message = fallback
        return _dumps(
            {
                "error": {
                    "message": reply.error_message if reply.error_message is not None else message,
                    "type": reply.error_type if reply.error_type is not None else error_type,
                    "param": None,
                    "code": reply.error_code if reply.error_code is not None else code,
                }
            }
        )

    def render_models(self) -> bytes:
        """``{"object": "list", "data": [{"id", "object": "model", ...}]}``."""
        created = int(time.time())
        data = [{"id": m, "object": "model", "created": created, "owned_by": "fake-upstream"} for m in self.models]
        return _dumps({"object": "list", "data": data})
