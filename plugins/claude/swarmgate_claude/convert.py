"""OpenAI-style requests to the Anthropic Messages format, and answers back.

Pure functions, no I/O. Everything that cannot be expressed in the Messages
format raises :class:`~swarmgate.errors.InvalidRequestError` naming the
offending field (``messages[2].content[1]``, ``tools[0]``, ...); the driver
adds the provider and model.

Requests:

* ``system`` and ``developer`` messages, wherever they are, become the
  top-level ``system`` field, in order: a string when there is a single
  plain text, else a list of ``text`` blocks (a text part's extra keys, such
  as ``cache_control``, are kept).
* ``user`` content: a string stays a string; parts are mapped one by one
  (``text`` as is, ``image_url`` to an ``image`` block, Anthropic's own
  block types passed through).
* ``assistant`` messages: text plus one ``tool_use`` block per OpenAI tool
  call (``arguments``, a JSON object in a string, becomes ``input``).
* ``tool`` messages become ``tool_result`` blocks in a ``user`` message;
  consecutive ones share one message, as Anthropic expects for parallel
  tool calls.
* Tools: OpenAI ``{"type": "function", "function": {...}}`` becomes
  ``{"name", "description", "input_schema"}``; a tool already in Anthropic's
  format (a custom tool with ``input_schema``, a server tool) is passed
  through. ``tool_choice``: ``auto``/``none`` keep their name, ``required``
  is ``any``, a named function is ``{"type": "tool", "name": ...}``.

Answers: ``text`` blocks joined as the content, ``tool_use`` blocks as
OpenAI tool calls, the stop reason as an OpenAI finish reason, and the usage
(cache reads and writes counted as input).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from swarmgate.errors import InvalidRequestError
from swarmgate.models import Message, TokenUsage

__all__ = [
    "FINISH_REASONS",
    "convert_messages",
    "convert_tool_choice",
    "convert_tools",
    "finish_reason",
    "image_block",
    "parse_content",
    "parse_usage",
    "tool_arguments",
    "tool_call",
]

#: Block types of Anthropic's own that a caller may put in message content;
#: they are sent unchanged.
NATIVE_BLOCKS = frozenset(
    {
        "text",
        "image",
        "document",
        "search_result",
        "tool_use",
        "tool_result",
        "thinking",
        "redacted_thinking",
        "server_tool_use",
        "web_search_tool_result",
        "container_upload",
    }
)

#: OpenAI finish reason for each Anthropic ``stop_reason``; ``refusal`` is
#: not here (the driver raises ContentFilteredError), and any other value
#: (``pause_turn``, a future one) is reported as is.
FINISH_REASONS: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
}

_TOOL_CHOICES: dict[str, dict[str, Any]] = {
    "auto": {"type": "auto"},
    "none": {"type": "none"},
    "required": {"type": "any"},
    "any": {"type": "any"},
}
_NATIVE_CHOICES = frozenset({"auto", "any", "tool", "none"})
_EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}


def _invalid(where: str, problem: str) -> InvalidRequestError:
    return InvalidRequestError(f"{where}: {problem} (Anthropic Messages API)")


# ---------------------------------------------------------------------------
# Content


def image_block(part: Mapping[str, Any], where: str) -> dict[str, Any]:
    """An OpenAI ``image_url`` part as an Anthropic ``image`` block: a
    ``data:<media type>;base64,<data>`` URL becomes a ``base64`` source, an
    ``http(s)://`` URL a ``url`` source; anything else is refused."""
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, Mapping) else image
    if not isinstance(url, str) or not url:
        raise _invalid(where, "an image_url part needs an 'image_url.url' string")
    if url.startswith("data:"):
        header, comma, data = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if not comma or encoding.lower() != "base64" or not media_type or not data:
            raise _invalid(where, "a data: image URL must be 'data:<media type>;base64,<data>'")
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    scheme = url.split(":", 1)[0] if ":" in url else url[:20]
    raise _invalid(where, f"image URLs must be data: or http(s) URLs, got {scheme!r}")


def _part(part: Any, where: str) -> dict[str, Any]:
    """One content part (OpenAI or Anthropic style) as an Anthropic block."""
    if not isinstance(part, Mapping):
        raise _invalid(where, f"a content part must be an object, got {type(part).__name__}")
    kind = part.get("type")
    if kind == "image_url":
        return image_block(part, where)
    if kind == "text":
        if not isinstance(part.get("text"), str):
            raise _invalid(where, "a text part needs a 'text' string")
        return dict(part)
    if kind in NATIVE_BLOCKS:
        return dict(part)
    raise _invalid(where, f"content part type {kind!r} is not supported")


def _blocks(content: Sequence[Any], where: str) -> list[dict[str, Any]]:
    return [_part(part, f"{where}[{i}]") for i, part in enumerate(content)]


def _content(content: Any, where: str) -> str | list[dict[str, Any]]:
    """Message content: a string as is, a list of parts as blocks."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return _blocks(content, where)


def tool_arguments(arguments: Any, where: str) -> dict[str, Any]:
    """OpenAI tool-call ``arguments`` (a JSON object in a string; an empty
    string is ``{}``) as a ``tool_use`` ``input`` object."""
    if isinstance(arguments, Mapping):
        return dict(arguments)
    if arguments is None or arguments == "":
        return {}
    if not isinstance(arguments, str):
        raise _invalid(where, f"tool-call arguments must be a JSON string, got {type(arguments).__name__}")
    try:
        parsed = json.loads(arguments)
    except ValueError as exc:
        raise _invalid(where, f"tool-call arguments are not valid JSON ({exc})") from None
    if not isinstance(parsed, dict):
        raise _invalid(where, "tool-call arguments must be a JSON object")
    return parsed


def _tool_use(call: Any, where: str) -> dict[str, Any]:
    if not isinstance(call, Mapping):
        raise _invalid(where, "a tool call must be an object")
    function = call.get("function")
    call_id = call.get("id")
    if call.get("type", "function") != "function" or not isinstance(function, Mapping):
        raise _invalid(where, "only 'function' tool calls can be sent")
    if not isinstance(call_id, str) or not call_id:
        raise _invalid(where, "a tool call needs an 'id'")
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise _invalid(where, "a tool call needs a 'function.name'")
    arguments = tool_arguments(function.get("arguments"), f"{where}.function.arguments")
    return {"type": "tool_use", "id": call_id, "name": name, "input": arguments}


def _assistant(message: Message, where: str) -> str | list[dict[str, Any]]:
    if not message.tool_calls:
        return _content(message.content, f"{where}.content")
    blocks: list[dict[str, Any]] = []
    if isinstance(message.content, str):
        if message.content:
            blocks.append({"type": "text", "text": message.content})
    elif message.content is not None:
        blocks.extend(_blocks(message.content, f"{where}.content"))
    blocks.extend(_tool_use(call, f"{where}.tool_calls[{i}]") for i, call in enumerate(message.tool_calls))
    return blocks


def _tool_result(message: Message, where: str) -> dict[str, Any]:
    if not message.tool_call_id:
        raise _invalid(where, "a tool message needs a 'tool_call_id'")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.tool_call_id}
    if message.content is not None and message.content != "":
        block["content"] = _content(message.content, f"{where}.content")
    return block


def _system(message: Message, where: str) -> list[dict[str, Any]]:
    content = message.content
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = _blocks(content, f"{where}.content")
    for i, block in enumerate(blocks):
        if block.get("type") != "text":
            raise _invalid(f"{where}.content[{i}]", "a system prompt may only hold text")
    return blocks


def convert_messages(
    messages: Iterable[Message],
) -> tuple[str | list[dict[str, Any]] | None, list[dict[str, Any]]]:
    """``(system, messages)`` for the Messages API (see the module docstring).

    ``system`` is ``None`` without system prompts, a string for one plain
    text, else a list of ``text`` blocks.
    """
    system: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []
    results: list[dict[str, Any]] | None = None  # the tool_result blocks of the current user message
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if message.role in ("system", "developer"):
            system.extend(_system(message, where))
            continue
        if message.role == "tool":
            block = _tool_result(message, where)
            if results is None:
                results = [block]
                out.append({"role": "user", "content": results})
            else:
                results.append(block)
            continue
        results = None
        if message.role == "assistant":
            out.append({"role": "assistant", "content": _assistant(message, where)})
        else:
            out.append({"role": "user", "content": _content(message.content, f"{where}.content")})
    if not system:
        return None, out
    if len(system) == 1 and set(system[0]) == {"type", "text"}:
        return str(system[0]["text"]), out
    return system, out


# ---------------------------------------------------------------------------
# Tools


def _tool(tool: Any, where: str) -> dict[str, Any]:
    if not isinstance(tool, Mapping):
        raise _invalid(where, "a tool must be an object")
    if tool.get("type") != "function":
        if "name" not in tool:
            raise _invalid(where, "a tool needs a 'name' (or the OpenAI 'function' form)")
        return dict(tool)  # already Anthropic's format: a custom tool or a server tool
    function = tool.get("function")
    if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
        raise _invalid(where, "a function tool needs 'function.name'")
    out: dict[str, Any] = {"name": function["name"]}
    if function.get("description"):
        out["description"] = function["description"]
    parameters = function.get("parameters")
    out["input_schema"] = dict(parameters) if isinstance(parameters, Mapping) else dict(_EMPTY_SCHEMA)
    return out


def convert_tools(tools: Iterable[Any]) -> list[dict[str, Any]]:
    """OpenAI-format tools as Anthropic tools (see the module docstring)."""
    return [_tool(tool, f"tools[{i}]") for i, tool in enumerate(tools)]


def convert_tool_choice(choice: str | Mapping[str, Any]) -> dict[str, Any]:
    """OpenAI ``tool_choice`` as Anthropic's: ``auto``, ``none``,
    ``required`` (``any``), ``{"type": "function", "function": {"name"}}``
    (``{"type": "tool", "name"}``); Anthropic's own objects pass through."""
    if isinstance(choice, str):
        if choice in _TOOL_CHOICES:
            return dict(_TOOL_CHOICES[choice])
        raise _invalid("tool_choice", f"expected 'auto', 'none', 'required' or a function, got {choice!r}")
    kind = choice.get("type")
    if kind == "function":
        function = choice.get("function")
        name = function.get("name") if isinstance(function, Mapping) else None
        if not isinstance(name, str) or not name:
            raise _invalid("tool_choice", "a function choice needs 'function.name'")
        return {"type": "tool", "name": name}
    if kind in _NATIVE_CHOICES:
        return dict(choice)
    raise _invalid("tool_choice", f"unknown tool_choice type {kind!r}")


# ---------------------------------------------------------------------------
# Answers


def tool_call(block: Mapping[str, Any]) -> dict[str, Any]:
    """A ``tool_use`` block as an OpenAI tool call (``input`` serialised
    compactly as ``arguments``)."""
    arguments = json.dumps(block.get("input") or {}, separators=(",", ":"), ensure_ascii=False)
    return {
        "id": str(block.get("id") or ""),
        "type": "function",
        "function": {"name": str(block.get("name") or ""), "arguments": arguments},
    }


def parse_content(blocks: Any) -> tuple[str, tuple[dict[str, Any], ...] | None]:
    """``(text, tool_calls)`` of a message's ``content``: the ``text`` blocks
    joined, the ``tool_use`` blocks as OpenAI tool calls (``None`` when
    there are none); other block types (thinking, server tools) are skipped.
    Raises ``TypeError`` when ``blocks`` is not a list of objects."""
    if not isinstance(blocks, list):
        raise TypeError(f"content is {type(blocks).__name__}, not a list")
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in blocks:
        if not isinstance(block, Mapping):
            raise TypeError(f"a content block is {type(block).__name__}, not an object")
        kind = block.get("type")
        if kind == "text":
            texts.append(str(block.get("text") or ""))
        elif kind == "tool_use":
            calls.append(tool_call(block))
    return "".join(texts), (tuple(calls) if calls else None)


def finish_reason(stop_reason: Any) -> str:
    """The OpenAI finish reason for an Anthropic ``stop_reason`` (``None``
    is ``stop``; an unknown value is passed through)."""
    if stop_reason is None:
        return "stop"
    return FINISH_REASONS.get(str(stop_reason), str(stop_reason))


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def parse_usage(usage: Any) -> TokenUsage | None:
    """Anthropic ``usage`` as :class:`TokenUsage`: input is ``input_tokens``
    plus ``cache_creation_input_tokens`` and ``cache_read_input_tokens``
    (all billed input), output is ``output_tokens``. ``None`` when there is
    no usable ``input_tokens``/``output_tokens``."""
    if not isinstance(usage, Mapping):
        return None
    if not isinstance(usage.get("input_tokens"), int) or not isinstance(usage.get("output_tokens"), int):
        return None
    prompt = (
        _count(usage.get("input_tokens"))
        + _count(usage.get("cache_creation_input_tokens"))
        + _count(usage.get("cache_read_input_tokens"))
    )
    return TokenUsage.of(prompt, _count(usage.get("output_tokens")))
