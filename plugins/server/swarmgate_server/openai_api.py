"""The OpenAI dialect: ``/v1/chat/completions`` and ``/v1/completions``
requests into :class:`~swarmgate.CompletionRequest` fields, and answers and
stream events back into OpenAI's JSON and SSE chunks.

Requests: ``messages`` (roles system, developer, user, assistant, tool;
content as text or content parts, passed through), ``model`` (a model, a
``provider/model`` target, a route, or ``auto``; default ``auto``),
``temperature``, ``top_p``, ``max_completion_tokens`` or ``max_tokens``,
``stop``, ``tools``, ``tool_choice``, ``response_format``, ``user``,
``stream`` and ``stream_options.include_usage``. Type errors are 400
naming the field (``param``). What the gateway cannot do is 422: ``n`` > 1,
``logprobs``, audio output, the deprecated ``functions``. OpenAI fields with
no provider-neutral meaning (``seed``, ``presence_penalty``, ...) are
dropped unless ``server.forwardFields`` lists them; unknown fields are
ignored.

Streams: a first chunk with ``delta.role``, one chunk per text piece or
tool-call fragment as it arrives, a chunk with ``finish_reason``, a usage
chunk with empty ``choices`` when ``stream_options.include_usage`` is set,
then ``data: [DONE]``. Each chunk's constant parts are encoded once per
stream; a text piece costs one ``orjson.dumps`` of the text. The last JSON
chunk carries a ``swarmgate`` object (provider, model, cost, latency_ms,
attempts, cache, request_id): what the headers could not say before the
first token (clients ignore unknown fields).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Final

import orjson

from swarmgate import CompletionResponse, Message, StreamStart, TokenUsage, ToolCallDelta
from swarmgate_server.errors import GatewayError

_ROLES: Final = frozenset({"system", "user", "assistant", "tool", "developer"})
_TOOL_CHOICES: Final = frozenset({"none", "auto", "required"})
_FORMATS: Final = frozenset({"text", "json_object", "json_schema"})
#: OpenAI's finish reasons; another value from a provider is reported as ``stop``.
FINISH_REASONS: Final = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call"})
DONE: Final = b"data: [DONE]\n\n"


def bad(message: str, param: str | None, *, code: str = "invalid_request") -> GatewayError:
    """A 400 naming ``param``."""
    return GatewayError(400, message, code=code, param=param)


def unsupported(message: str, param: str) -> GatewayError:
    """A 422: understood, but not something the gateway does."""
    return GatewayError(422, message, code="unsupported_parameter", param=param)


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def number(data: Mapping[str, Any], key: str, low: float, high: float) -> float | None:
    """``data[key]``: a number in ``[low, high]``, or ``None`` when absent/null."""
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad(f"'{key}' must be a number, got {_type_name(value)}", key, code="invalid_type")
    if not low <= value <= high:
        raise bad(f"'{key}' must be between {low:g} and {high:g}, got {value}", key, code="invalid_value")
    return float(value)


def positive_int(data: Mapping[str, Any], key: str) -> int | None:
    """``data[key]``: a positive integer, or ``None`` when absent/null."""
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(f"'{key}' must be an integer, got {_type_name(value)}", key, code="invalid_type")
    if value < 1:
        raise bad(f"'{key}' must be at least 1, got {value}", key, code="invalid_value")
    return value


def string(data: Mapping[str, Any], key: str) -> str | None:
    """``data[key]``: a string, or ``None`` when absent/null."""
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise bad(f"'{key}' must be a string, got {_type_name(value)}", key, code="invalid_type")
    return value


def stop_sequences(value: Any, key: str) -> tuple[str, ...] | None:
    """A stop string or a list of them."""
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return tuple(value) or None
    raise bad(f"'{key}' must be a string or a list of strings", key, code="invalid_type")


def model_name(data: Mapping[str, Any]) -> str:
    """``model``: a non-empty string (``auto`` when absent)."""
    model = data.get("model")
    if model is None:
        return "auto"
    if not isinstance(model, str) or not model:
        raise bad(f"'model' must be a non-empty string, got {model!r}", "model", code="invalid_type")
    return model


def _content(value: Any, where: str) -> str | list[dict[str, Any]] | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list):
        for j, part in enumerate(value):
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise bad(f"{where}[{j}] must be a content part object with a 'type'", f"{where}[{j}]")
            if part["type"] == "text" and not isinstance(part.get("text"), str):
                raise bad(f"{where}[{j}].text must be a string", f"{where}[{j}].text", code="invalid_type")
        return value
    raise bad(
        f"{where} must be a string or a list of content parts, got {_type_name(value)}", where, code="invalid_type"
    )


def messages(raw: Any) -> tuple[Message, ...]:
    """OpenAI chat messages as :class:`~swarmgate.Message` values (400 naming the bad one)."""
    if not isinstance(raw, list) or not raw:
        raise bad("'messages' must be a non-empty list", "messages", code="invalid_type" if raw else "invalid_value")
    out = []
    for i, message in enumerate(raw):
        if not isinstance(message, dict):
            raise bad(f"messages[{i}] must be an object, got {_type_name(message)}", f"messages[{i}]")
        role = message.get("role")
        if role not in _ROLES:
            if role == "function":
                raise unsupported(
                    "the 'function' role is deprecated and not supported: use tools", f"messages[{i}].role"
                )
            raise bad(f"messages[{i}].role must be one of {sorted(_ROLES)}, got {role!r}", f"messages[{i}].role")
        content = _content(message.get("content"), f"messages[{i}].content")
        name = message.get("name")
        if name is not None and not isinstance(name, str):
            raise bad(f"messages[{i}].name must be a string", f"messages[{i}].name", code="invalid_type")
        calls = message.get("tool_calls")
        if calls is not None and (not isinstance(calls, list) or not all(isinstance(c, dict) for c in calls)):
            raise bad(f"messages[{i}].tool_calls must be a list of objects", f"messages[{i}].tool_calls")
        call_id = message.get("tool_call_id")
        if call_id is not None and not isinstance(call_id, str):
            raise bad(f"messages[{i}].tool_call_id must be a string", f"messages[{i}].tool_call_id")
        out.append(Message(role, content, name, tuple(calls) if calls else None, call_id))
    return tuple(out)


def tools(value: Any) -> tuple[dict[str, Any], ...] | None:
    """``tools``: a list of ``{"type": "function", "function": {"name", ...}}``."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise bad("'tools' must be a list", "tools", code="invalid_type")
    for i, tool in enumerate(value):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise bad(f"tools[{i}] must be {{'type': 'function', 'function': {{'name': ...}}}}", f"tools[{i}]")
    return tuple(value) or None


def tool_choice(value: Any) -> str | dict[str, Any] | None:
    """``tool_choice``: ``none``, ``auto``, ``required`` or a named function."""
    if value is None:
        return None
    if isinstance(value, str):
        if value not in _TOOL_CHOICES:
            raise bad(
                f"'tool_choice' must be one of {sorted(_TOOL_CHOICES)} or an object, got {value!r}", "tool_choice"
            )
        return value
    if isinstance(value, dict):
        return value
    raise bad("'tool_choice' must be a string or an object", "tool_choice", code="invalid_type")


def response_format(value: Any) -> dict[str, Any] | None:
    """``response_format``: ``{"type": "text" | "json_object" | "json_schema", ...}``."""
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("type") not in _FORMATS:
        raise bad(f"'response_format' must be an object whose 'type' is one of {sorted(_FORMATS)}", "response_format")
    return value


def _unsupported_fields(data: Mapping[str, Any]) -> None:
    n = data.get("n")
    if n is not None and n != 1:
        raise unsupported("only n=1 is supported (one choice per request)", "n")
    if data.get("logprobs"):
        raise unsupported("logprobs are not supported", "logprobs")
    if data.get("top_logprobs") is not None:
        raise unsupported("top_logprobs are not supported", "top_logprobs")
    if data.get("audio") is not None:
        raise unsupported("audio output is not supported", "audio")
    modalities = data.get("modalities")
    if modalities is not None and modalities != ["text"]:
        raise unsupported("only the 'text' output modality is supported", "modalities")
    if data.get("functions") is not None or data.get("function_call") is not None:
        raise unsupported("'functions' and 'function_call' are deprecated: use 'tools' and 'tool_choice'", "functions")


def stream_flags(data: Mapping[str, Any]) -> tuple[bool, bool]:
    """``(stream, include_usage)``."""
    stream = data.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise bad(f"'stream' must be true or false, got {stream!r}", "stream", code="invalid_type")
    options = data.get("stream_options")
    include_usage = False
    if options is not None:
        if not isinstance(options, dict):
            raise bad("'stream_options' must be an object", "stream_options", code="invalid_type")
        flag = options.get("include_usage", False)
        if not isinstance(flag, bool):
            raise bad("'stream_options.include_usage' must be true or false", "stream_options.include_usage")
        include_usage = flag
    return stream, include_usage


def _forwarded(data: Mapping[str, Any], forward: frozenset[str]) -> dict[str, Any] | None:
    if not forward:
        return None
    extra = {key: data[key] for key in forward if key in data}
    return extra or None


def chat_fields(data: Mapping[str, Any], forward: frozenset[str]) -> tuple[dict[str, Any], bool, bool]:
    """A chat completion body as request fields, ``stream`` and ``include_usage``."""
    _unsupported_fields(data)
    stream, include_usage = stream_flags(data)
    fields: dict[str, Any] = {"messages": messages(data.get("messages")), "model": model_name(data)}
    max_tokens = positive_int(data, "max_completion_tokens")
    if max_tokens is None:
        max_tokens = positive_int(data, "max_tokens")
    if max_tokens is not None:
        fields["max_tokens"] = max_tokens
    temperature = number(data, "temperature", 0.0, 2.0)
    if temperature is not None:
        fields["temperature"] = temperature
    top_p = number(data, "top_p", 0.0, 1.0)
    if top_p is not None:
        fields["top_p"] = top_p
    stop = stop_sequences(data.get("stop"), "stop")
    if stop is not None:
        fields["stop"] = stop
    found_tools = tools(data.get("tools"))
    if found_tools is not None:
        fields["tools"] = found_tools
    choice = tool_choice(data.get("tool_choice"))
    if choice is not None:
        fields["tool_choice"] = choice
    fmt = response_format(data.get("response_format"))
    if fmt is not None:
        fields["response_format"] = fmt
    user = string(data, "user")
    if user is not None:
        fields["user"] = user
    extra = _forwarded(data, forward)
    if extra:
        fields["extra"] = extra
    return fields, stream, include_usage


def completion_fields(data: Mapping[str, Any], forward: frozenset[str]) -> tuple[dict[str, Any], bool, bool]:
    """A legacy completion body (``prompt``) as request fields, ``stream`` and ``include_usage``."""
    _unsupported_fields(data)
    if data.get("echo"):
        raise unsupported("echo is not supported", "echo")
    if data.get("suffix") is not None:
        raise unsupported("suffix (insertion) is not supported", "suffix")
    if data.get("best_of") not in (None, 1):
        raise unsupported("only best_of=1 is supported", "best_of")
    prompt = data.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if isinstance(prompt, list):
        raise unsupported("one prompt string per request (no batches or token arrays)", "prompt")
    if not isinstance(prompt, str):
        raise bad(f"'prompt' must be a string, got {_type_name(prompt)}", "prompt", code="invalid_type")
    stream, include_usage = stream_flags(data)
    fields: dict[str, Any] = {"messages": (Message("user", prompt),), "model": model_name(data)}
    max_tokens = positive_int(data, "max_tokens")
    if max_tokens is not None:
        fields["max_tokens"] = max_tokens
    temperature = number(data, "temperature", 0.0, 2.0)
    if temperature is not None:
        fields["temperature"] = temperature
    top_p = number(data, "top_p", 0.0, 1.0)
    if top_p is not None:
        fields["top_p"] = top_p
    stop = stop_sequences(data.get("stop"), "stop")
    if stop is not None:
        fields["stop"] = stop
    user = string(data, "user")
    if user is not None:
        fields["user"] = user
    extra = _forwarded(data, forward)
    if extra:
        fields["extra"] = extra
    return fields, stream, include_usage


# ---------------------------------------------------------------------------
# Answers


def usage(tokens: TokenUsage) -> dict[str, int]:
    """OpenAI's usage object."""
    return {"prompt_tokens": tokens.input, "completion_tokens": tokens.output, "total_tokens": tokens.total}


def finish_reason(reason: str) -> str:
    """A provider's finish reason as one of OpenAI's."""
    return reason if reason in FINISH_REASONS else "stop"


def new_call_id() -> str:
    """A tool call id for a provider that sent none."""
    return "call_" + os.urandom(12).hex()


def tool_calls(calls: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    """Tool calls in OpenAI's shape, ids and argument strings filled in."""
    out = []
    for call in calls:
        function = call.get("function") or {}
        arguments = function.get("arguments")
        if not isinstance(arguments, str):
            arguments = orjson.dumps(arguments if arguments is not None else {}).decode()
        out.append(
            {
                "id": call.get("id") or new_call_id(),
                "type": "function",
                "function": {"name": function.get("name") or "", "arguments": arguments},
            }
        )
    return out


def trailer(response: CompletionResponse) -> dict[str, Any]:
    """The ``swarmgate`` object of a stream's last chunk."""
    return {
        "provider": response.provider,
        "model": response.model,
        "cost": response.cost,
        "latency_ms": round(response.latency, 3),
        "attempts": len(response.attempts),
        "cache": "hit" if response.cached else "miss",
        "request_id": response.id,
    }


def chat_completion(response: CompletionResponse, created: int) -> bytes:
    """A ``chat.completion`` object."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": response.content if response.content or not response.tool_calls else None,
        "refusal": None,
    }
    if response.tool_calls:
        message["tool_calls"] = tool_calls(response.tool_calls)
    return orjson.dumps(
        {
            "id": "chatcmpl-" + response.id,
            "object": "chat.completion",
            "created": created,
            "model": response.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": finish_reason(response.finish_reason),
                }
            ],
            "usage": usage(response.tokens),
            "system_fingerprint": None,
        }
    )


def text_completion(response: CompletionResponse, created: int) -> bytes:
    """A legacy ``text_completion`` object."""
    return orjson.dumps(
        {
            "id": "cmpl-" + response.id,
            "object": "text_completion",
            "created": created,
            "model": response.model,
            "choices": [
                {
                    "text": response.content,
                    "index": 0,
                    "logprobs": None,
                    "finish_reason": finish_reason(response.finish_reason),
                }
            ],
            "usage": usage(response.tokens),
            "system_fingerprint": None,
        }
    )


def error_chunk(error: GatewayError) -> bytes:
    """A stream's error: ``data: {"error": {...}}`` (the SDKs raise it)."""
    return b"data: " + error.openai_body() + b"\n\n"


class ChatStream:
    """Encodes one chat stream's chunks (see the module docstring)."""

    __slots__ = ("_head", "_include_usage", "_prefix", "_seen", "_suffix")

    def __init__(self, start: StreamStart, created: int, include_usage: bool) -> None:
        self._include_usage = include_usage
        self._head = (
            b'{"id":'
            + orjson.dumps("chatcmpl-" + start.id)
            + b',"object":"chat.completion.chunk","created":'
            + str(created).encode()
            + b',"model":'
            + orjson.dumps(start.model)
            + b',"system_fingerprint":null'
        )
        self._prefix = b"data: " + self._head + b',"choices":[{"index":0,"delta":'
        self._suffix = (
            b',"logprobs":null,"finish_reason":null}]' + (b',"usage":null' if include_usage else b"") + b"}\n\n"
        )
        self._seen: set[int] = set()

    def start(self) -> bytes:
        """The first chunk: the assistant role."""
        return self._prefix + b'{"role":"assistant","content":"","refusal":null}' + self._suffix

    def text(self, text: str) -> bytes:
        """One text piece."""
        return self._prefix + b'{"content":' + orjson.dumps(text) + b"}" + self._suffix

    def tool(self, delta: ToolCallDelta) -> bytes:
        """One tool-call fragment (id, type and name on a call's first fragment)."""
        call: dict[str, Any]
        if delta.index in self._seen:
            call = {"index": delta.index, "function": {"arguments": delta.arguments}}
            if delta.name:
                call["function"]["name"] = delta.name
        else:
            self._seen.add(delta.index)
            call = {
                "index": delta.index,
                "id": delta.id or new_call_id(),
                "type": "function",
                "function": {"name": delta.name or "", "arguments": delta.arguments},
            }
        return self._prefix + b'{"tool_calls":[' + orjson.dumps(call) + b"]}" + self._suffix

    def finish(self, response: CompletionResponse) -> bytes:
        """The finish chunk, the usage chunk (if asked for) and ``[DONE]``."""
        reason = finish_reason(response.finish_reason)
        extra = b',"swarmgate":' + orjson.dumps(trailer(response))
        chunk = (
            self._prefix
            + b'{},"logprobs":null,"finish_reason":'
            + orjson.dumps(reason)
            + b"}]"
            + (b',"usage":null' if self._include_usage else extra)
            + b"}\n\n"
        )
        if self._include_usage:
            chunk += (
                b"data: "
                + self._head
                + b',"choices":[],"usage":'
                + orjson.dumps(usage(response.tokens))
                + extra
                + b"}\n\n"
            )
        return chunk + DONE

    def error(self, error: GatewayError) -> bytes:
        """The error that ends the stream."""
        return error_chunk(error)


class CompletionStream:
    """Encodes one legacy completion stream's chunks."""

    __slots__ = ("_head", "_include_usage", "_prefix", "_suffix")

    def __init__(self, start: StreamStart, created: int, include_usage: bool) -> None:
        self._include_usage = include_usage
        self._head = (
            b'{"id":'
            + orjson.dumps("cmpl-" + start.id)
            + b',"object":"text_completion","created":'
            + str(created).encode()
            + b',"model":'
            + orjson.dumps(start.model)
            + b',"system_fingerprint":null'
        )
        self._prefix = b"data: " + self._head + b',"choices":[{"text":'
        self._suffix = (
            b',"index":0,"logprobs":null,"finish_reason":null}]'
            + (b',"usage":null' if include_usage else b"")
            + b"}\n\n"
        )

    def start(self) -> bytes:
        """Nothing: legacy streams have no role chunk."""
        return b""

    def text(self, text: str) -> bytes:
        """One text piece."""
        return self._prefix + orjson.dumps(text) + self._suffix

    def tool(self, delta: ToolCallDelta) -> bytes:
        """Nothing: the legacy API has no tools."""
        return b""

    def finish(self, response: CompletionResponse) -> bytes:
        """The finish chunk, the usage chunk (if asked for) and ``[DONE]``."""
        extra = b',"swarmgate":' + orjson.dumps(trailer(response))
        chunk = (
            self._prefix
            + b'"","index":0,"logprobs":null,"finish_reason":'
            + orjson.dumps(finish_reason(response.finish_reason))
            + b"}]"
            + (b',"usage":null' if self._include_usage else extra)
            + b"}\n\n"
        )
        if self._include_usage:
            chunk += (
                b"data: "
                + self._head
                + b',"choices":[],"usage":'
                + orjson.dumps(usage(response.tokens))
                + extra
                + b"}\n\n"
            )
        return chunk + DONE

    def error(self, error: GatewayError) -> bytes:
        """The error that ends the stream."""
        return error_chunk(error)
