"""The pure request/answer mapping of ``swarmgate_claude.convert`` (no network)."""

from __future__ import annotations

from typing import Any

import pytest

from swarmgate import InvalidRequestError, Message, TokenUsage
from swarmgate_claude.convert import (
    convert_messages,
    convert_tool_choice,
    convert_tools,
    finish_reason,
    image_block,
    parse_content,
    parse_usage,
    tool_arguments,
)


def test_single_plain_system_prompt_is_a_string() -> None:
    system, messages = convert_messages([Message("system", "Be kind."), Message("user", "Hi")])
    assert system == "Be kind."
    assert messages == [{"role": "user", "content": "Hi"}]


def test_no_system_prompt_and_empty_ones() -> None:
    assert convert_messages([Message("user", "Hi")])[0] is None
    assert convert_messages([Message("system", ""), Message("system", None), Message("user", "Hi")])[0] is None


def test_system_prompt_may_only_hold_text() -> None:
    content = [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]
    with pytest.raises(InvalidRequestError, match=r"messages\[0\]\.content\[0\]: a system prompt may only hold text"):
        convert_messages([Message("system", content), Message("user", "Hi")])


def test_tool_results_merge_only_when_consecutive() -> None:
    _, messages = convert_messages(
        [
            Message("tool", "a", tool_call_id="t1"),
            Message("tool", "b", tool_call_id="t2"),
            Message("assistant", "ok"),
            Message("tool", "c", tool_call_id="t3"),
        ]
    )
    assert [len(m["content"]) if isinstance(m["content"], list) else m["content"] for m in messages] == [2, "ok", 1]


def test_assistant_parts_with_tool_calls() -> None:
    call = {"id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": ""}}
    thinking = {"type": "thinking", "thinking": "...", "signature": "sig"}
    _, messages = convert_messages([Message("assistant", [thinking], tool_calls=(call,))])
    assert messages == [
        {"role": "assistant", "content": [thinking, {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]}
    ]


@pytest.mark.parametrize(
    ("call", "problem"),
    [
        ({"id": "t", "type": "custom", "function": {"name": "f"}}, "only 'function' tool calls"),
        ({"type": "function", "function": {"name": "f"}}, "needs an 'id'"),
        ({"id": "t", "type": "function", "function": {"arguments": "{}"}}, "needs a 'function.name'"),
        ({"id": "t", "type": "function", "function": {"name": "f", "arguments": "[1, 2]"}}, "must be a JSON object"),
        ({"id": "t", "type": "function", "function": {"name": "f", "arguments": 3}}, "must be a JSON string"),
    ],
)
def test_bad_tool_calls(call: dict[str, Any], problem: str) -> None:
    with pytest.raises(InvalidRequestError, match=problem):
        convert_messages([Message("assistant", None, tool_calls=(call,))])


def test_tool_arguments_accept_objects_and_empty() -> None:
    assert tool_arguments({"a": 1}, "x") == {"a": 1}
    assert tool_arguments(None, "x") == {}
    assert tool_arguments('{"a": [1]}', "x") == {"a": [1]}


def test_image_blocks() -> None:
    assert image_block({"type": "image_url", "image_url": "data:image/jpeg;base64,AAAA"}, "p") == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/jpeg", "data": "AAAA"},
    }
    assert image_block({"type": "image_url", "image_url": {"url": "http://example.com/x.gif"}}, "p") == {
        "type": "image",
        "source": {"type": "url", "url": "http://example.com/x.gif"},
    }
    with pytest.raises(InvalidRequestError, match=r"needs an 'image_url\.url'"):
        image_block({"type": "image_url"}, "p")
    with pytest.raises(InvalidRequestError, match="'file'"):
        image_block({"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}, "p")


def test_tools() -> None:
    bare = {"type": "function", "function": {"name": "ping"}}
    native = {"name": "calc", "description": "Adds", "input_schema": {"type": "object"}}
    assert convert_tools([bare, native]) == [
        {"name": "ping", "input_schema": {"type": "object", "properties": {}}},
        native,
    ]
    with pytest.raises(InvalidRequestError, match=r"tools\[0\]"):
        convert_tools([{"type": "function", "function": {}}])
    with pytest.raises(InvalidRequestError, match=r"tools\[0\]: a tool needs a 'name'"):
        convert_tools([{"description": "nameless"}])


@pytest.mark.parametrize(
    "choice",
    ["sometimes", {"type": "function", "function": {}}, {"type": "weird"}],
)
def test_bad_tool_choices(choice: Any) -> None:
    with pytest.raises(InvalidRequestError, match="tool_choice"):
        convert_tool_choice(choice)


def test_parse_content() -> None:
    blocks = [
        {"type": "thinking", "thinking": "hmm", "signature": "s"},
        {"type": "text", "text": "Hello "},
        {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"x": "é"}},
        {"type": "text", "text": "world"},
    ]
    text, calls = parse_content(blocks)
    assert text == "Hello world"
    assert calls == ({"id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": '{"x":"é"}'}},)
    assert parse_content([]) == ("", None)
    with pytest.raises(TypeError):
        parse_content("text")
    with pytest.raises(TypeError):
        parse_content(["text"])


def test_finish_reasons() -> None:
    assert finish_reason(None) == "stop"
    assert finish_reason("end_turn") == "stop"
    assert finish_reason("stop_sequence") == "stop"
    assert finish_reason("max_tokens") == "length"
    assert finish_reason("model_context_window_exceeded") == "length"
    assert finish_reason("tool_use") == "tool_calls"
    assert finish_reason("pause_turn") == "pause_turn"


def test_parse_usage() -> None:
    assert parse_usage({"input_tokens": 3, "output_tokens": 4}) == TokenUsage(3, 4, 7)
    assert parse_usage(
        {"input_tokens": 3, "output_tokens": 4, "cache_creation_input_tokens": 10, "cache_read_input_tokens": None}
    ) == TokenUsage(13, 4, 17)
    assert parse_usage({"output_tokens": 4}) is None
    assert parse_usage(None) is None
    assert parse_usage({"input_tokens": "3", "output_tokens": 4}) is None
