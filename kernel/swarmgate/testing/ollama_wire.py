"""Ollama's native chat API, as the fake upstream speaks it.

Follows Ollama's API reference (``docs/api.md`` of ollama/ollama):

* ``POST /api/chat`` takes ``{"model", "messages", "stream", "options",
  "tools", "format", "keep_alive"}``; ``stream`` defaults to **true** when
  absent. A non-streamed answer is one chat response object: ``model``,
  ``created_at``, ``message`` (``role``, ``content``, ``tool_calls``),
  ``done_reason``, ``done: true`` and the metrics (``total_duration``,
  ``load_duration``, ``prompt_eval_count``, ``prompt_eval_duration``,
  ``eval_count``, ``eval_duration``; durations in nanoseconds). Like Ollama's
  Go structs (``omitempty``), a metric that is zero is left out.
* A streamed answer is ``application/x-ndjson``: one JSON object per line,
  ``done: false`` chunks carrying a piece of ``message.content`` (or one whole
  entry of ``message.tool_calls``), then a final ``done: true`` object with an
  empty message, ``done_reason`` and the metrics.
* Tool calls are ``{"function": {"index", "name", "arguments": {...}}}`` with
  the arguments as a JSON *object* and no id; Ollama reports
  ``done_reason: "stop"`` when the model calls tools.
* Errors are ``{"error": "<text>"}`` with the HTTP status (e.g. 404
  ``model "x" not found, try pulling it first``; 503 ``server busy, please
  try again.  maximum pending requests exceeded``). Ollama has no error
  type or code: a :class:`~swarmgate.testing.upstream.ScriptedReply`'s
  ``error_type``/``error_code`` are ignored.
* ``GET /api/tags`` lists the local models (``{"models": [...]}``).

Scripted replies are written in OpenAI terms (``tool_calls`` with JSON-string
arguments, ``finish_reason``); this wire translates them.
"""

from __future__ import annotations

import datetime
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

#: Ollama's own error texts for each status (when the reply names none);
#: ``{model}`` is the requested model.
_ERROR_DEFAULTS: dict[int, str] = {
    400: "invalid request: messages must be an array of message objects",
    401: "unauthorized",
    403: "forbidden",
    404: 'model "{model}" not found, try pulling it first',
    429: "too many requests, please try again later",
    500: "llama runner process has terminated: exit status 2",
    502: "bad gateway",
    503: "server busy, please try again.  maximum pending requests exceeded",
}

#: Finish reasons Ollama reports differently from OpenAI.
_DONE_REASONS = {"tool_calls": "stop"}

#: Fake timings, in nanoseconds.
_LOAD_NS = 12_000_000
_PROMPT_TOKEN_NS = 2_000_000
_OUTPUT_TOKEN_NS = 20_000_000


def _dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def _line(data: Any) -> bytes:
    """One NDJSON frame: a JSON object and its newline."""
    return _dumps(data) + b"\n"


def _text_of(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return str(content)


def _now() -> str:
    """``created_at`` as Ollama writes it (RFC 3339, UTC, ``Z``)."""
    return datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")


def ollama_tool_call(index: int, call: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI-format tool call as Ollama sends it: the arguments parsed
    into an object, the position in ``function.index``, no id.

    Raises ``ValueError`` when the arguments are not a JSON object.
    """
    function = call.get("function") or {}
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        arguments = json.loads(arguments) if arguments.strip() else {}
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise ValueError(f"Ollama tool-call arguments must be a JSON object, got {arguments!r}")
    return {"function": {"index": index, "name": function.get("name"), "arguments": arguments}}


class OllamaWire:
    """Ollama's native chat API (see the module docstring).

    ``models`` are the names ``GET /api/tags`` lists (Ollama's ``name:tag``
    form). The API hangs off the server root, so ``base_path`` is empty and
    :attr:`FakeUpstream.url <swarmgate.testing.upstream.FakeUpstream.url>`
    is what a provider's ``endpoint`` should be.
    """

    name = "ollama"
    base_path = ""

    def __init__(self, models: Sequence[str] = ("llama3.2:latest", "qwen2.5:7b")) -> None:
        self.models = tuple(models)

    # -- requests ----------------------------------------------------------------

    def route(self, method: str, path: str) -> Endpoint | None:
        """``POST /api/chat`` and ``GET /api/tags``."""
        if method == "POST" and path == "/api/chat":
            return "completion"
        if method == "GET" and path == "/api/tags":
            return "models"
        return None

    def wants_stream(self, request: RecordedRequest) -> bool:
        """Ollama streams unless the body says ``"stream": false``."""
        return not (isinstance(request.json, dict) and request.json.get("stream") is False)

    def summarize(self, request: RecordedRequest) -> WireRequest:
        """The body's model and messages, the sampling settings from
        ``options`` (``num_predict`` counts as ``max_tokens``) and whether
        it streams (true unless ``"stream": false``)."""
        body: dict[str, Any] = request.json if isinstance(request.json, dict) else {}
        options = body.get("options")
        if not isinstance(options, dict):
            options = {}
        messages = tuple(
            (str(m.get("role")), _text_of(m.get("content"))) for m in body.get("messages") or () if isinstance(m, dict)
        )
        stop = options.get("stop")
        return WireRequest(
            model=body.get("model"),
            messages=messages,
            temperature=options.get("temperature"),
            max_tokens=options.get("num_predict"),
            top_p=options.get("top_p"),
            stop=(stop,) if isinstance(stop, str) else (tuple(stop) if stop is not None else None),
            stream=self.wants_stream(request),
        )

    def _prompt(self, request: RecordedRequest) -> str:
        return "\n".join(text for _, text in self.summarize(request).messages)

    def _model(self, reply: ScriptedReply, request: RecordedRequest | None) -> str:
        if reply.model is not None:
            return reply.model
        model = request.json.get("model") if request is not None and isinstance(request.json, dict) else None
        return str(model) if model is not None else "unknown"

    def _metrics(self, reply: ScriptedReply, request: RecordedRequest) -> dict[str, int]:
        """The final object's metrics; zero values left out (Go's ``omitempty``)."""
        prompt, completion = reply.token_usage(self._prompt(request))
        prompt_ns = prompt * _PROMPT_TOKEN_NS
        eval_ns = completion * _OUTPUT_TOKEN_NS
        metrics = {
            "total_duration": _LOAD_NS + prompt_ns + eval_ns,
            "load_duration": _LOAD_NS,
            "prompt_eval_count": prompt,
            "prompt_eval_duration": prompt_ns,
            "eval_count": completion,
            "eval_duration": eval_ns,
        }
        return {key: value for key, value in metrics.items() if value}

    @staticmethod
    def _done_reason(reply: ScriptedReply) -> str:
        return _DONE_REASONS.get(reply.finish_reason, reply.finish_reason)

    # -- answers -----------------------------------------------------------------

    def render_completion(self, reply: ScriptedReply, request: RecordedRequest) -> bytes:
        """One chat response object with ``done: true``."""
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        if reply.tool_calls:
            message["tool_calls"] = [ollama_tool_call(i, call) for i, call in enumerate(reply.tool_calls)]
        return _dumps(
            {
                "model": self._model(reply, request),
                "created_at": _now(),
                "message": message,
                "done_reason": self._done_reason(reply),
                "done": True,
                **self._metrics(reply, request),
            }
        )

    @property
    def stream_media_type(self) -> str:
        return "application/x-ndjson"

    def render_stream(self, reply: ScriptedReply, request: RecordedRequest) -> SSEPlan:
        """NDJSON lines: one ``done: false`` chunk per content piece, then one
        per tool call (the body); the final ``done: true`` object (the tail)."""
        model = self._model(reply, request)

        def chunk(message: dict[str, Any]) -> bytes:
            return _line({"model": model, "created_at": _now(), "message": message, "done": False})

        body = [chunk({"role": "assistant", "content": piece}) for piece in reply.stream_chunks()]
        for index, call in enumerate(reply.tool_calls or ()):
            body.append(chunk({"role": "assistant", "content": "", "tool_calls": [ollama_tool_call(index, call)]}))
        final = {
            "model": model,
            "created_at": _now(),
            "message": {"role": "assistant", "content": ""},
            "done_reason": self._done_reason(reply),
            "done": True,
            **self._metrics(reply, request),
        }
        return SSEPlan((), tuple(body), (_line(final),))

    def render_malformed(self) -> bytes:
        """A line that is not JSON."""
        return b'{"model":"fake","message":{"role":"assistant","content": oops, not json\n'

    def render_error(self, reply: ScriptedReply, request: RecordedRequest | None) -> bytes:
        """``{"error": "<text>"}``: the reply's message, else Ollama's own
        text for the status."""
        message = reply.error_message
        if message is None:
            template = _ERROR_DEFAULTS.get(reply.status) or (
                "internal server error" if reply.status >= 500 else "invalid request"
            )
            message = template.replace("{model}", self._model(reply, request))
        return _dumps({"error": message})

    def render_models(self) -> bytes:
        """``{"models": [{"name", "model", "modified_at", "size", "digest", "details"}]}``."""
        modified = _now()
        models = []
        for index, name in enumerate(self.models):
            family = name.split(":", 1)[0].rstrip("0123456789.") or name
            models.append(
                {
                    "name": name,
                    "model": name,
                    "modified_at": modified,
                    "size": 2_019_393_189 + index,
                    "digest": f"{index + 1:064x}",
                    "details": {
                        "parent_model": "",
                        "format": "gguf",
                        "family": family,
                        "families": [family],
                        "parameter_size": "3.2B",
                        "quantization_level": "Q4_K_M",
                    },
                }
            )
        return _dumps({"models": models})
