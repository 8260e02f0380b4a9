"""Ollama's native chat format: swarmgate requests to ``/api/chat`` bodies,
and Ollama's answers back to OpenAI-style values. Pure functions, no I/O.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from swarmgate.errors import InvalidRequestError
from swarmgate.models import CompletionRequest, Message, TokenUsage
from swarmgate.provider import ProviderCall

#: Ollama's ``done_reason`` for a normal end (also when the model called tools).
_STOP = "stop"


def _request_error(text: str, call: ProviderCall, provider: str) -> InvalidRequestError:
    return InvalidRequestError(text, provider=provider, model=call.model)


def _image(part: Mapping[str, Any]) -> str | None:
    """The base64 payload of an OpenAI ``image_url`` part given as a
    ``data:`` URL; ``None`` for any other URL."""
    value = part.get("image_url")
    url = value.get("url") if isinstance(value, Mapping) else value
    if not isinstance(url, str) or not url.startswith("data:"):
        return None
    header, sep, payload = url.partition(",")
    if not sep or ";base64" not in header or not payload:
        return None
    return payload


def _content(message: Message, call: ProviderCall, provider: str) -> tuple[str, list[str]]:
    """A message's text and its images (base64), from a string or from
    OpenAI content parts (``text`` and ``image_url`` with a data URL)."""
    content = message.content
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    texts: list[str] = []
    images: list[str] = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            texts.append(str(part.get("text", "")))
        elif kind == "image_url":
            image = _image(part)
            if image is None:
                raise _request_error(
                    "Ollama takes images inline only: pass each image as a base64 'data:' URL, not a link",
                    call,
                    provider,
                )
            images.append(image)
        else:
            raise _request_error(
                f"Ollama cannot take {kind!r} content parts (only 'text' and 'image_url')", call, provider
            )
    return "".join(texts), images


def _tool_call_out(tool_call: Mapping[str, Any], call: ProviderCall, provider: str) -> dict[str, Any]:
    """An OpenAI tool call of an assistant message in Ollama's form: the
    arguments as a JSON object (the id kept; servers that do not know it
    ignore it)."""
    function = tool_call.get("function") or {}
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            arguments = None
    elif arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise _request_error(
            f"the arguments of tool call {tool_call.get('id')!r} must be a JSON object for Ollama", call, provider
        )
    out: dict[str, Any] = {"function": {"name": function.get("name"), "arguments": arguments}}
    if tool_call.get("id"):
        out["id"] = tool_call["id"]
    return out


def messages_out(messages: Iterable[Message], call: ProviderCall, provider: str) -> list[dict[str, Any]]:
    """The request's messages in Ollama's form.

    ``developer`` becomes ``system``; content parts become ``content`` text
    plus ``images``; assistant ``tool_calls`` get object arguments; a
    ``tool`` message gets ``tool_name`` (the function its ``tool_call_id``
    answers, else its ``name``) and keeps ``tool_call_id``. ``name`` of
    other messages has no Ollama field and is dropped.
    """
    out: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    for message in messages:
        text, images = _content(message, call, provider)
        item: dict[str, Any] = {"role": "system" if message.role == "developer" else message.role, "content": text}
        if images:
            item["images"] = images
        if message.tool_calls:
            item["tool_calls"] = [_tool_call_out(t, call, provider) for t in message.tool_calls]
            for tool_call in message.tool_calls:
                name = (tool_call.get("function") or {}).get("name")
                if tool_call.get("id") and name:
                    names[str(tool_call["id"])] = str(name)
        if message.role == "tool":
            tool_name = names.get(message.tool_call_id or "") or message.name
            if tool_name:
                item["tool_name"] = tool_name
            if message.tool_call_id:
                item["tool_call_id"] = message.tool_call_id
        out.append(item)
    return out


def _format(response_format: Mapping[str, Any], call: ProviderCall, provider: str) -> Any:
    """OpenAI ``response_format`` as Ollama's ``format``: ``"json"`` for
    ``json_object``, the schema for ``json_schema``, nothing for ``text``."""
    kind = response_format.get("type")
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        if not isinstance(schema, Mapping):
            raise _request_error("response_format json_schema needs a 'json_schema.schema' object", call, provider)
        return dict(schema)
    if kind == "text":
        return None
    raise _request_error(
        f"response_format type {kind!r} has no Ollama equivalent (json_object, json_schema, text)", call, provider
    )


def request_body(
    call: ProviderCall,
    *,
    stream: bool,
    provider: str,
    options: Mapping[str, Any],
    keep_alive: Any,
) -> dict[str, Any]:
    """The ``/api/chat`` body for ``call``.

    ``options`` (the provider's defaults) are overlaid with the request's
    ``temperature``, ``num_predict`` (max tokens), ``top_p`` and ``stop``.
    ``tools`` pass through (the OpenAI tool format is Ollama's), unless
    ``tool_choice`` is ``"none"``; Ollama cannot force a tool, so other
    choices only send the tools. ``response_format`` becomes ``format``.
    Then ``request.extra`` is merged in: its ``options`` into the options,
    everything else at the top level; a ``None`` value removes a field.

    Raises :class:`~swarmgate.errors.InvalidRequestError` for input Ollama
    cannot take (image links, odd content parts, non-object tool arguments).
    """
    request: CompletionRequest = call.request
    merged: dict[str, Any] = dict(options)
    if call.temperature is not None:
        merged["temperature"] = call.temperature
    if call.max_tokens is not None:
        merged["num_predict"] = call.max_tokens
    if request.top_p is not None:
        merged["top_p"] = request.top_p
    if request.stop:
        merged["stop"] = list(request.stop)
    body: dict[str, Any] = {
        "model": call.upstream_model,
        "messages": messages_out(request.messages, call, provider),
        "stream": stream,
    }
    if request.tools and request.tool_choice != "none":
        body["tools"] = list(request.tools)
    if request.response_format is not None:
        fmt = _format(request.response_format, call, provider)
        if fmt is not None:
            body["format"] = fmt
    if keep_alive is not None:
        body["keep_alive"] = keep_alive
    for key, value in request.extra.items():
        if key == "options" and isinstance(value, Mapping):
            for name, option in value.items():
                if option is None:
                    merged.pop(name, None)
                else:
                    merged[name] = option
        elif value is None:
            body.pop(key, None)
        else:
            body[key] = value
    if merged:
        body["options"] = merged
    return body


# ---------------------------------------------------------------------------
# Answers


def new_call_id() -> str:
    """An OpenAI-style tool-call id for a call Ollama sent without one."""
    return f"call_{uuid.uuid4().hex[:24]}"


def tool_call_in(tool_call: Any) -> dict[str, Any]:
    """One of Ollama's ``message.tool_calls`` in OpenAI format: ``id`` (the
    upstream's, else a new one), ``type: function``, and ``function`` with
    the ``arguments`` as a JSON string. Raises ``TypeError``/``ValueError``
    for another shape."""
    if not isinstance(tool_call, Mapping):
        raise TypeError(f"a tool call must be an object, got {type(tool_call).__name__}")
    function = tool_call.get("function")
    if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
        raise ValueError("a tool call needs a 'function' with a 'name'")
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        text = arguments
    else:
        text = json.dumps({} if arguments is None else arguments, ensure_ascii=False)
    call_id = tool_call.get("id")
    return {
        "id": str(call_id) if call_id else new_call_id(),
        "type": "function",
        "function": {"name": function["name"], "arguments": text},
    }


def usage(data: Mapping[str, Any]) -> TokenUsage | None:
    """``prompt_eval_count``/``eval_count`` as usage; ``None`` when the
    answer reports neither. Ollama leaves zero counts out (a prompt served
    entirely from its cache has no ``prompt_eval_count``), so one missing
    count is 0."""
    prompt = data.get("prompt_eval_count")
    output = data.get("eval_count")
    if not isinstance(prompt, int) and not isinstance(output, int):
        return None
    return TokenUsage.of(
        prompt if isinstance(prompt, int) and not isinstance(prompt, bool) else 0,
        output if isinstance(output, int) and not isinstance(output, bool) else 0,
    )


def finish_reason(done_reason: Any, called_tools: bool) -> str:
    """Ollama's ``done_reason`` as a finish reason: ``tool_calls`` when the
    model called tools (Ollama says ``stop``), ``stop`` when absent."""
    reason = str(done_reason) if done_reason else _STOP
    if called_tools and reason == _STOP:
        return "tool_calls"
    return reason
