"""The DashScope (Alibaba Cloud Model Studio) native wire format, as the fake upstream speaks it.

Follows DashScope's API reference for the Qwen models:

* ``POST {base}/services/aigc/text-generation/generation`` (text models) and
  ``POST {base}/services/aigc/multimodal-generation/generation`` (Qwen-VL,
  Qwen-Audio, QVQ) take ``{"model", "input": {"messages": [...]},
  "parameters": {...}}`` and answer ``{"output": {"choices": [{"finish_reason",
  "message": {"role", "content", "tool_calls"?}}]}, "usage": {"input_tokens",
  "output_tokens", "total_tokens"}, "request_id"}``. The multimodal endpoint
  answers ``content`` as a list of parts (``[{"text": ...}]``). Without
  ``parameters.result_format: "message"`` a text model answers the legacy
  shape ``{"output": {"text", "finish_reason"}}``. Tool calls come back
  OpenAI-like, each with an ``index``.
* A request with ``X-DashScope-SSE: enable`` or ``Accept: text/event-stream``
  is streamed: SSE frames ``id:N`` / ``event:result`` / ``:HTTP_STATUS/200`` /
  ``data:{...}`` (no space after the colons), each a whole answer object with
  ``finish_reason`` ``"null"`` (a string) until the last frame and the usage
  so far. With ``parameters.incremental_output: true`` each frame carries
  only the new text (and tool-call fragments); otherwise the whole text so
  far, as DashScope does. There is no terminator: the body just ends.
* Errors are ``{"request_id", "code", "message"}`` with the HTTP status;
  the ``code`` defaults per status to DashScope's documented one
  (``InvalidParameter``, ``InvalidApiKey``, ``AccessDenied``,
  ``ModelNotFound``, ``Throttling.RateQuota``, ``InternalError``,
  ``ModelServingError``).
* ``GET /compatible-mode/v1/models`` (same host) lists models in the OpenAI
  format: DashScope's native API has no models listing, so health probes
  use the compatible mode's.

Scripting beyond :class:`~swarmgate.testing.upstream.ScriptedReply`'s
common fields: a **2xx** reply with ``error_code`` set fails *inside* the
stream, as DashScope does when e.g. output moderation stops an answer: the
body chunks are sent, then an ``event:error`` frame (``:HTTP_STATUS/`` of
that code, e.g. 400 for ``DataInspectionFailed``) instead of the last
frame. Non-streamed answers ignore ``error_code`` on a 2xx reply.
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
    count_words,
)

TEXT_GENERATION = "/services/aigc/text-generation/generation"
"""The text-generation path, under the API base (``/api/v1``)."""

MULTIMODAL_GENERATION = "/services/aigc/multimodal-generation/generation"
"""The multimodal-generation path (Qwen-VL, Qwen-Audio, QVQ), under the API base."""

#: DashScope's ``code`` and ``message`` for each status (when the reply names none),
#: from its error-code reference.
_ERROR_DEFAULTS: dict[int, tuple[str, str]] = {
    400: (
        "InvalidParameter",
        "The request is missing required parameters or in a wrong format, please check the parameters that you send.",
    ),
    401: ("InvalidApiKey", "Invalid API-key provided."),
    403: ("AccessDenied", "Access denied."),
    404: ("ModelNotFound", "Model can not be found."),
    429: ("Throttling.RateQuota", "Requests rate limit exceeded, please try again later."),
    500: ("InternalError", "An internal error has occured, please try again later or contact service support."),
    503: (
        "ModelServingError",
        "Too many requests. Your requests are being throttled due to system capacity limits. Please try again later.",
    ),
}

#: The HTTP status DashScope documents for a code (for in-stream ``:HTTP_STATUS/`` lines).
_CODE_STATUS: dict[str, int] = {
    "InvalidParameter": 400,
    "DataInspectionFailed": 400,
    "data_inspection_failed": 400,
    "Arrearage": 400,
    "InvalidApiKey": 401,
    "invalid_api_key": 401,
    "AccessDenied": 403,
    "ModelNotFound": 404,
    "model_not_found": 404,
    "Throttling": 429,
    "Throttling.RateQuota": 429,
    "Throttling.AllocationQuota": 429,
    "InternalError": 500,
    "ModelServingError": 503,
    "ModelUnavailable": 503,
}

#: Characters of tool-call arguments per streamed fragment.
ARGUMENT_PIECE = 16


def _dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def _frame(number: int, event: str, status: int, data: bytes) -> bytes:
    """One SSE frame the way DashScope writes it (no space after the colons)."""
    return b"id:%d\nevent:%s\n:HTTP_STATUS/%d\ndata:%s\n\n" % (number, event.encode(), status, data)


def _text_of(content: Any) -> str:
    """The text of message content: a string, DashScope parts (``{"text"}``)
    or OpenAI parts (``{"type": "text", "text"}``)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p["text"]) for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return str(content)


def default_error(status: int) -> tuple[str, str]:
    """DashScope's ``(code, message)`` for an error ``status``."""
    found = _ERROR_DEFAULTS.get(status)
    if found is not None:
        return found
    return _ERROR_DEFAULTS[500] if status >= 500 else _ERROR_DEFAULTS[400]


class DashScopeWire:
    """DashScope's native text/multimodal generation API (see the module docstring).

    ``models`` are the ids the (compatible-mode) models listing returns;
    ``base_path`` is the native API prefix (``/api/v1``) and
    ``compatible_path`` the compatible mode's (``/compatible-mode/v1``).
    """

    name = "dashscope"

    def __init__(
        self,
        models: Sequence[str] = ("qwen-plus", "qwen-turbo", "qwen-max"),
        *,
        base_path: str = "/api/v1",
        compatible_path: str = "/compatible-mode/v1",
    ) -> None:
        self.models = tuple(models)
        self.base_path = base_path.rstrip("/")
        self.compatible_path = compatible_path.rstrip("/")
        self._ids = itertools.count(1)

    # -- requests ----------------------------------------------------------------

    def route(self, method: str, path: str) -> Endpoint | None:
        """``POST`` to either generation path; ``GET {compatible}/models``."""
        if method == "POST" and path in (self.base_path + TEXT_GENERATION, self.base_path + MULTIMODAL_GENERATION):
            return "completion"
        if method == "GET" and path == f"{self.compatible_path}/models":
            return "models"
        return None

    def wants_stream(self, request: RecordedRequest) -> bool:
        """``X-DashScope-SSE: enable`` or ``Accept: text/event-stream`` (either enables SSE)."""
        if request.headers.get("x-dashscope-sse", "").strip().lower() == "enable":
            return True
        return "text/event-stream" in request.headers.get("accept", "").lower()

    def summarize(self, request: RecordedRequest) -> WireRequest:
        """The body's model, ``input.messages`` (text parts joined; a legacy
        ``input.prompt`` counts as one user message), the sampling fields in
        ``parameters`` and whether SSE was asked for."""
        body: dict[str, Any] = request.json if isinstance(request.json, dict) else {}
        raw_input = body.get("input")
        inputs: dict[str, Any] = raw_input if isinstance(raw_input, dict) else {}
        messages = tuple(
            (str(m.get("role")), _text_of(m.get("content")))
            for m in inputs.get("messages") or ()
            if isinstance(m, dict)
        )
        if not messages and isinstance(inputs.get("prompt"), str):
            messages = (("user", inputs["prompt"]),)
        parameters = self._parameters(request)
        stop = parameters.get("stop")
        return WireRequest(
            model=body.get("model"),
            messages=messages,
            temperature=parameters.get("temperature"),
            max_tokens=parameters.get("max_tokens"),
            top_p=parameters.get("top_p"),
            stop=(stop,) if isinstance(stop, str) else (tuple(stop) if stop is not None else None),
            stream=self.wants_stream(request),
        )

    @staticmethod
    def _parameters(request: RecordedRequest) -> dict[str, Any]:
        body = request.json if isinstance(request.json, dict) else {}
        parameters = body.get("parameters")
        return parameters if isinstance(parameters, dict) else {}

    def _prompt(self, request: RecordedRequest) -> str:
        return "\n".join(text for _, text in self.summarize(request).messages)

    @staticmethod
    def _multimodal(request: RecordedRequest) -> bool:
        return request.path.split("?", 1)[0].endswith(MULTIMODAL_GENERATION)

    def _request_id(self) -> str:
        return f"00000000-0000-4000-8000-{next(self._ids):012d}"

    @staticmethod
    def _usage(input_tokens: int, output_tokens: int) -> dict[str, int]:
        return {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
        }

    # -- answers -----------------------------------------------------------------

    def render_completion(self, reply: ScriptedReply, request: RecordedRequest) -> bytes:
        """One answer object: ``result_format: "message"`` (or the multimodal
        endpoint, or tool calls) gives ``output.choices``; otherwise the
        legacy ``output.text``."""
        prompt_tokens, output_tokens = reply.token_usage(self._prompt(request))
        multimodal = self._multimodal(request)
        if self._parameters(request).get("result_format") != "message" and not multimodal and not reply.tool_calls:
            output: dict[str, Any] = {"text": reply.content, "finish_reason": reply.finish_reason}
        else:
            message: dict[str, Any] = {
                "role": "assistant",
                "content": [{"text": reply.content}] if multimodal else reply.content,
            }
            if reply.tool_calls:
                message["tool_calls"] = [{**call, "index": i} for i, call in enumerate(reply.tool_calls)]
            output = {"choices": [{"finish_reason": reply.finish_reason, "message": message}]}
        return _dumps(
            {
                "output": output,
                "usage": self._usage(prompt_tokens, output_tokens),
                "request_id": self._request_id(),
            }
        )

    @property
    def stream_media_type(self) -> str:
        return "text/event-stream;charset=UTF-8"

    def render_stream(self, reply: ScriptedReply, request: RecordedRequest) -> SSEPlan:
        """``event:result`` frames: one per text piece and tool-call fragment
        (the body), then the frame with the finish reason and final usage
        (or, for a 2xx reply with ``error_code``, an ``event:error`` frame)."""
        incremental = self._parameters(request).get("incremental_output") is True
        multimodal = self._multimodal(request)
        prompt_tokens, output_tokens = reply.token_usage(self._prompt(request))
        request_id = self._request_id()
        numbers = itertools.count(1)
        text_so_far = ""
        calls_so_far: list[dict[str, Any]] = []

        def frame(piece: str, fragment: dict[str, Any] | None, finish: str | None) -> bytes:
            text = piece if incremental else text_so_far
            message: dict[str, Any] = {"content": [{"text": text}] if multimodal else text, "role": "assistant"}
            if fragment is not None:
                message["tool_calls"] = [fragment] if incremental else [dict(c) for c in calls_so_far]
            elif calls_so_far and not incremental:
                message["tool_calls"] = [dict(c) for c in calls_so_far]
            produced = output_tokens if finish is not None else min(count_words(text_so_far), output_tokens)
            data = {
                "output": {"choices": [{"message": message, "finish_reason": finish or "null"}]},
                "usage": self._usage(prompt_tokens, produced),
                "request_id": request_id,
            }
            return _frame(next(numbers), "result", 200, _dumps(data))

        body: list[bytes] = []
        for piece in reply.stream_chunks():
            text_so_far += piece
            body.append(frame(piece, None, None))
        for index, call in enumerate(reply.tool_calls or ()):
            function = call.get("function", {})
            arguments = str(function.get("arguments", ""))
            first = {
                "index": index,
                "id": call.get("id"),
                "type": call.get("type", "function"),
                "function": {"name": function.get("name"), "arguments": ""},
            }
            calls_so_far.append({**first, "function": dict(first["function"])})
            body.append(frame("", first, None))
            for start in range(0, len(arguments), ARGUMENT_PIECE):
                piece = arguments[start : start + ARGUMENT_PIECE]
                calls_so_far[index]["function"]["arguments"] += piece
                fragment = {"index": index, "id": "", "type": "function", "function": {"arguments": piece}}
                body.append(frame("", fragment, None))
        if reply.error_code is not None:
            code = reply.error_code
            error: dict[str, Any] = {
                "request_id": request_id,
                "code": code,
                "message": reply.error_message if reply.error_message is not None else f"{code} error.",
            }
            if reply.error_type is not None:
                error["type"] = reply.error_type
            tail = _frame(next(numbers), "error", _CODE_STATUS.get(code, 500), _dumps(error))
        else:
            tail = frame("", None, reply.finish_reason)
        return SSEPlan((), tuple(body), (tail,))

    def render_malformed(self) -> bytes:
        """A ``data:`` line that is not JSON."""
        return _frame(0, "result", 200, b'{"output": {"choices": [oops, not json')

    def render_error(self, reply: ScriptedReply, request: RecordedRequest | None) -> bytes:
        """``{"request_id", "code", "message"}`` (and ``type`` when the reply sets one)."""
        code, message = default_error(reply.status)
        error: dict[str, Any] = {
            "request_id": self._request_id(),
            "code": reply.error_code if reply.error_code is not None else code,
            "message": reply.error_message if reply.error_message is not None else message,
        }
        if reply.error_type is not None:
            error["type"] = reply.error_type
        return _dumps(error)

    def render_models(self) -> bytes:
        """The compatible mode's listing: ``{"object": "list", "data": [{"id", "object": "model", ...}]}``."""
        created = int(time.time())
        data = [{"id": m, "object": "model", "created": created, "owned_by": "system"} for m in self.models]
        return _dumps({"object": "list", "data": data})
