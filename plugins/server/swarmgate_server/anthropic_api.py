"""The Anthropic dialect: ``/v1/messages`` requests into provider-neutral
request fields (OpenAI-style messages, which every driver speaks), and
answers and stream events back into Anthropic's Messages format, so that
the ``anthropic`` SDK works whichever provider answers.

Requests: ``model`` and ``max_tokens`` (both required, as Anthropic
requires them), ``messages`` (``user``/``assistant``; text, ``image``
blocks (base64 or URL), ``tool_use`` and ``tool_result`` blocks;
``thinking`` blocks in earlier turns are dropped), ``system`` (text or text
blocks), ``stop_sequences``, ``temperature``, ``top_p``, ``tools``
(``name``, ``description``, ``input_schema``), ``tool_choice``
(``auto``/``any``/``tool``/``none``), ``metadata.user_id``, ``stream``.
``top_k`` and ``thinking`` have no provider-neutral meaning and are
ignored; document blocks and Anthropic's server tools are 422.

Answers: ``text`` and ``tool_use`` content blocks, ``stop_reason``
(``end_turn``, ``max_tokens``, ``tool_use``, ``refusal``), ``usage``.
Streams: ``message_start``, ``ping``, then per block ``content_block_start``,
``content_block_delta`` (``text_delta`` / ``input_json_delta``) and
``content_block_stop`` as pieces arrive, ``message_delta`` (stop reason,
usage, and a ``swarmgate`` object with provider, cost, ...), ``message_stop``;
a failure after the start is an ``error`` event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import orjson

from swarmgate import CompletionResponse, Message, StreamStart, ToolCallDelta
from swarmgate_server.errors import GatewayError
from swarmgate_server.openai_api import bad, new_call_id, number, positive_int, stream_flags, trailer, unsupported

_TOOL_CHOICE: Final = {"auto": "auto", "any": "required", "none": "none"}
#: Anthropic's ``stop_reason`` for each provider-neutral finish reason.
STOP_REASONS: Final = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}
_SKIPPED_BLOCKS: Final = frozenset({"thinking", "redacted_thinking"})


def _image(block: Mapping[str, Any], where: str) -> dict[str, Any]:
    source = block.get("source")
    if isinstance(source, dict):
        if source.get("type") == "base64" and isinstance(source.get("data"), str):
            media = source.get("media_type") or "image/png"
            return {"type": "image_url", "image_url": {"url": f"data:{media};base64,{source['data']}"}}
        if source.get("type") == "url" and isinstance(source.get("url"), str):
            return {"type": "image_url", "image_url": {"url": source["url"]}}
    raise bad(f"{where}.source must be a base64 or url image source", f"{where}.source")


def _result_text(content: Any, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for j, block in enumerate(content):
            if not isinstance(block, dict):
                raise bad(f"{where}[{j}] must be a content block", f"{where}[{j}]")
            if block.get("type") == "text":
                parts.append(str(block.get("text", "")))
            else:
                raise unsupported(f"{where}[{j}]: only text is supported in tool results", f"{where}[{j}]")
        return "".join(parts)
    raise bad(f"{where} must be a string or a list of blocks", where)


def _user(content: list[Any], where: str, out: list[Message]) -> None:
    parts: list[dict[str, Any]] = []
    only_text = True
    for j, block in enumerate(content):
        at = f"{where}[{j}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            if not isinstance(block.get("text"), str):
                raise bad(f"{at}.text must be a string", f"{at}.text")
            parts.append({"type": "text", "text": block["text"]})
        elif kind == "image":
            parts.append(_image(block, at))
            only_text = False
        elif kind == "tool_result":
            call_id = block.get("tool_use_id")
            if not isinstance(call_id, str):
                raise bad(f"{at}.tool_use_id must be a string", f"{at}.tool_use_id")
            text = _result_text(block.get("content"), f"{at}.content")
            if block.get("is_error"):
                text = f"[error] {text}"
            out.append(Message("tool", text, tool_call_id=call_id))
        elif kind in _SKIPPED_BLOCKS:
            continue
        elif kind is None:
            raise bad(f"{at} must be a content block with a 'type'", at)
        else:
            raise unsupported(f"{at}: content block type {kind!r} is not supported", at)
    if parts:
        if only_text:
            out.append(Message("user", "".join(p["text"] for p in parts)))
        else:
            out.append(Message("user", parts))


def _assistant(content: list[Any], where: str, out: list[Message]) -> None:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        at = f"{where}[{j}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(str(block.get("text", "")))
        elif kind == "tool_use":
            name = block.get("name")
            if not isinstance(name, str):
                raise bad(f"{at}.name must be a string", f"{at}.name")
            arguments = orjson.dumps(block.get("input") or {}).decode()
            calls.append(
                {
                    "id": block.get("id") or new_call_id(),
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }
            )
        elif kind in _SKIPPED_BLOCKS:
            continue
        elif kind is None:
            raise bad(f"{at} must be a content block with a 'type'", at)
        else:
            raise unsupported(f"{at}: content block type {kind!r} is not supported", at)
    out.append(Message("assistant", "".join(texts) or None, tool_calls=tuple(calls) or None))


def _messages(raw: Any, system: Any) -> tuple[Message, ...]:
    out: list[Message] = []
    if system is not None:
        if isinstance(system, str):
            if system:
                out.append(Message("system", system))
        elif isinstance(system, list) and all(isinstance(b, dict) and b.get("type") == "text" for b in system):
            text = "\n".join(str(b.get("text", "")) for b in system)
            if text:
                out.append(Message("system", text))
        else:
            raise bad("'system' must be a string or a list of text blocks", "system")
    if not isinstance(raw, list) or not raw:
        raise bad("'messages' must be a non-empty list", "messages")
    for i, message in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise bad(f"{where} must be an object", where)
        role = message.get("role")
        if role not in ("user", "assistant"):
            raise bad(f"{where}.role must be 'user' or 'assistant', got {role!r}", f"{where}.role")
        content = message.get("content")
        if isinstance(content, str):
            out.append(Message(role, content))
        elif isinstance(content, list):
            (_user if role == "user" else _assistant)(content, f"{where}.content", out)
        else:
            raise bad(f"{where}.content must be a string or a list of content blocks", f"{where}.content")
    return tuple(out)


def _tools(raw: Any) -> tuple[dict[str, Any], ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise bad("'tools' must be a list", "tools")
    out = []
    for i, tool in enumerate(raw):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise bad(f"tools[{i}] must be an object with a 'name'", f"tools[{i}]")
        if tool.get("type") not in (None, "custom"):
            raise unsupported(f"tools[{i}]: server tool {tool['type']!r} is not supported", f"tools[{i}]")
        function: dict[str, Any] = {"name": tool["name"], "parameters": tool.get("input_schema") or {"type": "object"}}
        if tool.get("description") is not None:
            function["description"] = tool["description"]
        out.append({"type": "function", "function": function})
    return tuple(out) or None


def _tool_choice(raw: Any) -> str | dict[str, Any] | None:
    if raw is None:
        return None
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind in _TOOL_CHOICE:
        return _TOOL_CHOICE[kind]
    if kind == "tool" and isinstance(raw.get("name"), str):
        return {"type": "function", "function": {"name": raw["name"]}}
    raise bad("'tool_choice' must be {'type': 'auto' | 'any' | 'none'} or {'type': 'tool', 'name': ...}", "tool_choice")


def message_fields(data: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """A Messages API body as request fields and ``stream``."""
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise bad("model: Field required (a non-empty string)", "model")
    max_tokens = positive_int(data, "max_tokens")
    if max_tokens is None:
        raise bad("max_tokens: Field required", "max_tokens")
    stream, _ = stream_flags(data)
    fields: dict[str, Any] = {
        "messages": _messages(data.get("messages"), data.get("system")),
        "model": model,
        "max_tokens": max_tokens,
    }
    temperature = number(data, "temperature", 0.0, 1.0)
    if temperature is not None:
        fields["temperature"] = temperature
    top_p = number(data, "top_p", 0.0, 1.0)
    if top_p is not None:
        fields["top_p"] = top_p
    stop = data.get("stop_sequences")
    if stop is not None:
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise bad("'stop_sequences' must be a list of strings", "stop_sequences")
        if stop:
            fields["stop"] = tuple(stop)
    tools = _tools(data.get("tools"))
    if tools is not None:
        fields["tools"] = tools
    choice = _tool_choice(data.get("tool_choice"))
    if choice is not None:
        fields["tool_choice"] = choice
    metadata = data.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        fields["user"] = metadata["user_id"]
    return fields, stream


# ---------------------------------------------------------------------------
# Answers


def stop_reason(finish: str) -> str:
    """Anthropic's stop reason for a provider-neutral finish reason."""
    return STOP_REASONS.get(finish, "end_turn")


def tool_input(arguments: Any) -> dict[str, Any]:
    """A tool call's JSON arguments as the ``input`` object."""
    if isinstance(arguments, dict):
        return arguments
    if not arguments:
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return {"_raw_arguments": arguments}
    return value if isinstance(value, dict) else {"_value": value}


def message(response: CompletionResponse, created: int = 0) -> bytes:
    """A ``message`` object (``created`` is unused: Anthropic's has no timestamp)."""
    content: list[dict[str, Any]] = []
    if response.content or not response.tool_calls:
        content.append({"type": "text", "text": response.content})
    for call in response.tool_calls or ():
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or new_call_id(),
                "name": function.get("name") or "",
                "input": tool_input(function.get("arguments")),
            }
        )
    return orjson.dumps(
        {
            "id": "msg_" + response.id,
            "type": "message",
            "role": "assistant",
            "model": response.model,
            "content": content,
            "stop_reason": stop_reason(response.finish_reason),
            "stop_sequence": None,
            "usage": {"input_tokens": response.tokens.input, "output_tokens": response.tokens.output},
        }
    )


def event(name: bytes, data: bytes) -> bytes:
    """One SSE event."""
    return b"event: " + name + b"\ndata: " + data + b"\n\n"


PING: Final = event(b"ping", b'{"type":"ping"}')
STOP: Final = event(b"message_stop", b'{"type":"message_stop"}')


def error_event(error: GatewayError) -> bytes:
    """The ``error`` event that ends a stream."""
    return event(b"error", error.anthropic_body())


class MessagesStream:
    """Encodes one Messages stream: opens, feeds and closes content blocks
    as text pieces and tool-call fragments arrive."""

    __slots__ = ("_block", "_index", "_start")

    def __init__(self, start: StreamStart, created: int, include_usage: bool) -> None:
        self._start = start
        self._index = -1  # index of the open block
        self._block: tuple[str, int] | None = None  # ("text", 0) or ("tool", call index)

    def start(self) -> bytes:
        """``message_start`` and a ``ping``."""
        body = {
            "type": "message_start",
            "message": {
                "id": "msg_" + self._start.id,
                "type": "message",
                "role": "assistant",
                "model": self._start.model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            },
        }
        return event(b"message_start", orjson.dumps(body)) + PING

    def _close(self) -> bytes:
        if self._block is None:
            return b""
        self._block = None
        return event(b"content_block_stop", b'{"type":"content_block_stop","index":' + str(self._index).encode() + b"}")

    def _open(self, key: tuple[str, int], block: dict[str, Any]) -> bytes:
        out = self._close()
        self._index += 1
        self._block = key
        data = {"type": "content_block_start", "index": self._index, "content_block": block}
        return out + event(b"content_block_start", orjson.dumps(data))

    def _delta(self, delta: bytes) -> bytes:
        return event(
            b"content_block_delta",
            b'{"type":"content_block_delta","index":' + str(self._index).encode() + b',"delta":' + delta + b"}",
        )

    def text(self, text: str) -> bytes:
        """A ``text_delta`` (opening a text block first if needed)."""
        out = b""
        if self._block is None or self._block[0] != "text":
            out = self._open(("text", 0), {"type": "text", "text": ""})
        return out + self._delta(b'{"type":"text_delta","text":' + orjson.dumps(text) + b"}")

    def tool(self, delta: ToolCallDelta) -> bytes:
        """An ``input_json_delta`` (opening the call's ``tool_use`` block first if needed)."""
        out = b""
        if self._block != ("tool", delta.index):
            block = {"type": "tool_use", "id": delta.id or new_call_id(), "name": delta.name or "", "input": {}}
            out = self._open(("tool", delta.index), block)
        if delta.arguments:
            out += self._delta(b'{"type":"input_json_delta","partial_json":' + orjson.dumps(delta.arguments) + b"}")
        return out

    def finish(self, response: CompletionResponse) -> bytes:
        """Close the open block; ``message_delta`` (stop reason, usage) and ``message_stop``."""
        body = {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason(response.finish_reason), "stop_sequence": None},
            "usage": {"input_tokens": response.tokens.input, "output_tokens": response.tokens.output},
            "swarmgate": trailer(response),
        }
        return self._close() + event(b"message_delta", orjson.dumps(body)) + STOP

    def error(self, error: GatewayError) -> bytes:
        """The ``error`` event that ends the stream."""
        return error_event(error)
