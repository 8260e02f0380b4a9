"""DashScope's native wire format: request bodies, answer parsing, error bodies.

Pure functions, no I/O: :mod:`swarmgate_qwen.provider` does the HTTP.

Requests are ``{"model", "input": {"messages": [...]}, "parameters":
{"result_format": "message", ...}}``. Messages are OpenAI-style (DashScope
accepts the OpenAI ``tools``/``tool_calls``/``tool_call_id`` shapes), with
two differences: the text-generation endpoint wants ``content`` as a string,
and the multimodal-generation endpoint wants a list of DashScope parts
(``{"text"}``, ``{"image"}``, ``{"audio"}``, ``{"video"}``) instead of
OpenAI's ``{"type": ...}`` parts.

Answers are ``{"output": {"choices": [{"finish_reason", "message": {...}}]},
"usage": {"input_tokens", "output_tokens", "total_tokens"}, "request_id"}``;
a stream sends one such object per SSE frame (with ``incremental_output``,
only the new text), ``finish_reason`` being the string ``"null"`` until the
end, and the usage so far in every frame.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from swarmgate.errors import InvalidRequestError
from swarmgate.http import dumps as http_dumps
from swarmgate.http import loads as http_loads
from swarmgate.models import Message, TokenUsage, ToolCallDelta
from swarmgate.provider import ProviderCall
from swarmgate_qwen.errors import DashScopeError

__all__ = [
    "MULTIMODAL_GENERATION",
    "TEXT_GENERATION",
    "Answer",
    "ShapeError",
    "dumps",
    "error_info",
    "frame_error",
    "has_media",
    "loads",
    "parse_answer",
    "request_body",
    "tool_call_deltas",
    "tool_calls",
]

TEXT_GENERATION = "/services/aigc/text-generation/generation"
"""The text-generation path under the native endpoint."""

MULTIMODAL_GENERATION = "/services/aigc/multimodal-generation/generation"
"""The multimodal-generation path (Qwen-VL, QVQ, Qwen-Audio) under the native endpoint."""

#: How much of a non-JSON body goes into an error message.
SNIPPET = 300
#: DashScope's own part keys (a part already in DashScope form passes through).
_NATIVE_PARTS = ("text", "image", "audio", "video")


# The shared codec (orjson when installed), re-exported for this module's callers.
loads, dumps = http_loads, http_dumps


# ---------------------------------------------------------------------------
# Requests


def has_media(messages: Iterable[Message]) -> bool:
    """Does any message carry a part other than text (image, audio, video)?"""
    for message in messages:
        if isinstance(message.content, list):
            for part in message.content:
                kind = part.get("type")
                if kind is None and any(key in part for key in ("image", "audio", "video")):
                    return True
                if kind is not None and kind != "text":
                    return True
    return False


def _url(value: Any, field: str) -> str:
    """The URL of an OpenAI ``image_url``/``video_url`` value (``{"url"}`` or a string)."""
    if isinstance(value, Mapping):
        value = value.get("url")
    if not isinstance(value, str) or not value:
        raise InvalidRequestError(f"content part '{field}' needs a URL")
    return value


def _native_part(part: Mapping[str, Any]) -> dict[str, Any]:
    """One OpenAI content part as a DashScope multimodal part."""
    kind = part.get("type")
    if kind is None:
        if any(key in part for key in _NATIVE_PARTS):
            return dict(part)  # already DashScope's form
        raise InvalidRequestError(f"content part has no 'type': {sorted(part)}")
    if kind == "text":
        return {"text": str(part.get("text", ""))}
    if kind == "image_url":
        return {"image": _url(part.get("image_url"), "image_url")}
    if kind == "video_url":
        return {"video": _url(part.get("video_url"), "video_url")}
    if kind == "video" and isinstance(part.get("video"), list):
        return {"video": [str(frame) for frame in part["video"]]}  # a video as a list of frame images
    if kind == "input_audio":
        audio = part.get("input_audio")
        data = audio.get("data") if isinstance(audio, Mapping) else None
        if not isinstance(data, str) or not data:
            raise InvalidRequestError("content part 'input_audio' needs 'data'")
        if not data.startswith(("data:", "http://", "https://", "oss://", "file://")):
            audio_format = audio.get("format", "wav") if isinstance(audio, Mapping) else "wav"
            data = f"data:audio/{audio_format};base64,{data}"
        return {"audio": data}
    raise InvalidRequestError(f"content part type {kind!r} is not supported by DashScope")


def _text_content(content: Any) -> str:
    """Message content for the text-generation endpoint, which takes strings only."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(str(part.get("text", "")) for part in content if part.get("type", "text") == "text")


def _message(message: Message, *, multimodal: bool) -> dict[str, Any]:
    """One message in DashScope's format. ``developer`` becomes ``system``
    (DashScope has no developer role); missing content is ``""``/``[]``."""
    out: dict[str, Any] = {"role": "system" if message.role == "developer" else message.role}
    content = message.content
    if multimodal:
        if content is None:
            out["content"] = []
        elif isinstance(content, str):
            out["content"] = [{"text": content}]
        else:
            out["content"] = [_native_part(part) for part in content]
    else:
        out["content"] = _text_content(content)
    if message.name is not None:
        out["name"] = message.name
    if message.tool_calls is not None:
        out["tool_calls"] = list(message.tool_calls)
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    return out


def request_body(call: ProviderCall, *, stream: bool, multimodal: bool) -> dict[str, Any]:
    """The JSON body for ``call``: ``model`` (the upstream name),
    ``input.messages`` and ``parameters``: ``result_format: "message"``, the
    sampling fields that are set (``temperature``, ``top_p``, ``max_tokens``,
    ``stop``), ``tools``/``tool_choice`` (OpenAI format, which DashScope
    takes as is), ``response_format``, ``incremental_output: true`` when
    streaming, then ``request.extra`` merged into ``parameters`` (a value of
    ``None`` removes a field). Raises :class:`InvalidRequestError` for a
    content part DashScope cannot take."""
    request = call.request
    parameters: dict[str, Any] = {"result_format": "message"}
    if call.temperature is not None:
        parameters["temperature"] = call.temperature
    if request.top_p is not None:
        parameters["top_p"] = request.top_p
    if call.max_tokens is not None:
        parameters["max_tokens"] = call.max_tokens
    if request.stop:
        parameters["stop"] = list(request.stop)
    if request.tools:
        parameters["tools"] = list(request.tools)
    if request.tool_choice is not None:
        parameters["tool_choice"] = request.tool_choice
    if request.response_format is not None:
        parameters["response_format"] = request.response_format
    if stream:
        parameters["incremental_output"] = True
    for key, value in request.extra.items():
        if value is None:
            parameters.pop(key, None)
        else:
            parameters[key] = value
    return {
        "model": call.upstream_model,
        "input": {"messages": [_message(m, multimodal=multimodal) for m in request.messages]},
        "parameters": parameters,
    }


# ---------------------------------------------------------------------------
# Answers


class ShapeError(ValueError):
    """An answer or frame that is JSON but not DashScope's shape."""


@attrs.frozen
class Answer:
    """One answer object (a whole answer, or one stream frame).

    ``text`` is the message text (parts joined), ``tool_calls`` the raw
    ``message.tool_calls`` entries, ``finish_reason`` ``None`` while
    generating (DashScope's ``"null"``), ``usage`` ``None`` when absent,
    ``reasoning`` a thinking model's ``reasoning_content``, ``has_output``
    whether the object had choices or a legacy ``output.text`` at all.
    """

    text: str
    tool_calls: tuple[Mapping[str, Any], ...] = ()
    finish_reason: str | None = None
    usage: TokenUsage | None = None
    request_id: str | None = None
    reasoning: str = ""
    has_output: bool = True


def _content_text(content: Any) -> str:
    """Answer content as text: a string, or the ``text`` of each part."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p["text"]) for p in content if isinstance(p, Mapping) and isinstance(p.get("text"), str))
    raise ShapeError(f"message content is {type(content).__name__}, not a string or a list of parts")


def _finish(value: Any) -> str | None:
    if value is None or value in ("", "null"):
        return None
    return str(value)


def _usage(data: Any) -> TokenUsage | None:
    if not isinstance(data, Mapping):
        return None
    prompt = data.get("input_tokens")
    completion = data.get("output_tokens")
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    total = data.get("total_tokens")
    return TokenUsage(prompt, completion, total if isinstance(total, int) else prompt + completion)


def parse_answer(data: Any) -> Answer:
    """An answer object as :class:`Answer`; raises :class:`ShapeError` for
    anything that is not DashScope's shape (``output`` missing or odd)."""
    if not isinstance(data, Mapping):
        raise ShapeError(f"expected a JSON object, got {type(data).__name__}")
    output = data.get("output")
    if not isinstance(output, Mapping):
        raise ShapeError("the answer has no 'output' object")
    request_id = data.get("request_id")
    common: dict[str, Any] = {
        "usage": _usage(data.get("usage")),
        "request_id": str(request_id) if request_id else None,
    }
    choices = output.get("choices")
    if isinstance(choices, list) and choices:
        choice = choices[0]
        if not isinstance(choice, Mapping):
            raise ShapeError("output.choices[0] is not an object")
        message = choice.get("message") or {}
        if not isinstance(message, Mapping):
            raise ShapeError("output.choices[0].message is not an object")
        calls = message.get("tool_calls") or ()
        if not isinstance(calls, list | tuple) or not all(isinstance(c, Mapping) for c in calls):
            raise ShapeError("message.tool_calls is not a list of objects")
        reasoning = message.get("reasoning_content")
        return Answer(
            _content_text(message.get("content")),
            tuple(calls),
            _finish(choice.get("finish_reason")),
            reasoning=reasoning if isinstance(reasoning, str) else "",
            **common,
        )
    if "text" in output:  # the legacy result_format "text"
        return Answer(_content_text(output.get("text")), (), _finish(output.get("finish_reason")), **common)
    return Answer("", (), _finish(output.get("finish_reason")), has_output=False, **common)


def _arguments(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else dumps(value).decode()


def tool_calls(entries: Sequence[Mapping[str, Any]]) -> tuple[dict[str, Any], ...]:
    """A whole answer's ``tool_calls`` in OpenAI's format (``id``, ``type``,
    ``function: {name, arguments}``; DashScope's ``index`` dropped,
    arguments given as an object serialised)."""
    out: list[dict[str, Any]] = []
    for entry in entries:
        function = entry.get("function")
        function = function if isinstance(function, Mapping) else {}
        out.append(
            {
                "id": str(entry.get("id") or ""),
                "type": str(entry.get("type") or "function"),
                "function": {
                    "name": str(function.get("name") or ""),
                    "arguments": _arguments(function.get("arguments")),
                },
            }
        )
    return tuple(out)


def tool_call_deltas(entries: Sequence[Mapping[str, Any]]) -> list[ToolCallDelta]:
    """Streamed ``tool_calls`` fragments as :class:`ToolCallDelta` (``index``
    from the fragment, else its position; an empty ``id``/``name``, which
    DashScope sends on continuation fragments, is ``None``)."""
    deltas: list[ToolCallDelta] = []
    for position, entry in enumerate(entries):
        function = entry.get("function")
        function = function if isinstance(function, Mapping) else {}
        index = entry.get("index", position)
        deltas.append(
            ToolCallDelta(
                int(index) if isinstance(index, int | str) and str(index).isdigit() else position,
                str(entry["id"]) if entry.get("id") else None,
                str(function["name"]) if function.get("name") else None,
                _arguments(function.get("arguments")),
            )
        )
    return deltas


# ---------------------------------------------------------------------------
# Errors


def _error_object(data: Any) -> DashScopeError | None:
    if not isinstance(data, Mapping):
        return None
    nested = data.get("error")
    if isinstance(nested, Mapping):  # the compatible mode's {"error": {...}} shape
        data = {**nested, "request_id": data.get("request_id") or nested.get("request_id")}
    message = data.get("message") or data.get("error_message") or data.get("msg")
    code = data.get("code") or data.get("error_code") or data.get("type")
    request_id = data.get("request_id")
    if not message and not code:
        return None
    return DashScopeError(
        str(message) if message else "(no error message)",
        str(code) if code else None,
        str(request_id) if request_id else None,
    )


def error_info(body: bytes | str) -> DashScopeError:
    """What an error body says: DashScope's JSON ``{"code", "message",
    "request_id"}`` (or ``{"error": {...}}``), an SSE error body (its last
    ``data:`` line), or the text itself (trimmed)."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    stripped = text.strip()
    if not stripped:
        return DashScopeError("(empty body)")
    try:
        found = _error_object(loads(stripped))
    except ValueError:
        found = None
        datas = [line[5:].strip() for line in stripped.splitlines() if line.startswith("data:")]
        for data in reversed(datas):
            try:
                found = _error_object(loads(data))
            except ValueError:
                continue
            if found is not None:
                break
    if found is not None:
        return found
    return DashScopeError(" ".join(stripped.split())[:SNIPPET])


def frame_error(data: Any) -> DashScopeError | None:
    """The error in an ``event:result`` frame that carries a ``code`` and no
    ``output`` (DashScope's error object), else ``None``."""
    if isinstance(data, Mapping) and data.get("code") and "output" not in data:
        return _error_object(data)
    return None
