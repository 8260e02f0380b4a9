"""The fake Anthropic upstream itself (``swarmgate.testing.anthropic_wire``):
its answers, streams, errors and listings follow Anthropic's Messages API
reference, and ScriptedReply's OpenAI terms are translated."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from swarmgate.testing import FakeUpstream, RecordedRequest, ScriptedReply
from swarmgate.testing.anthropic_wire import ANTHROPIC_STOP_REASONS, ARGUMENT_PIECE, AnthropicWire, sse_event

MESSAGES = {
    "model": "claude-haiku-4-5",
    "max_tokens": 256,
    "system": "Be brief.",
    "messages": [{"role": "user", "content": "Say hello to the test suite"}],
}
CALLS: tuple[dict[str, Any], ...] = (
    {
        "id": "toolu_01",
        "type": "function",
        "function": {"name": "lookup", "arguments": '{"query": "a long query text"}'},
    },
)


def events(text: str) -> list[tuple[str, dict[str, Any]]]:
    """``(event name, data)`` of each SSE event; the name must match the data's type."""
    out: list[tuple[str, dict[str, Any]]] = []
    for raw in text.split("\n\n"):
        if not raw.strip():
            continue
        name_line, data_line = raw.split("\n")
        assert name_line.startswith("event: "), raw
        assert data_line.startswith("data: "), raw
        name, data = name_line[len("event: ") :], json.loads(data_line[len("data: ") :])
        assert data["type"] == name
        out.append((name, data))
    return out


def serve() -> FakeUpstream:
    return FakeUpstream(AnthropicWire())


@pytest.mark.anyio
async def test_message_shape() -> None:
    async with serve() as server, httpx.AsyncClient(base_url=server.url) as client:
        server.enqueue(ScriptedReply(content="Hi there", usage=(7, 2)))
        answer = await client.post("/messages", json=MESSAGES)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert body["id"].startswith("msg_")
    assert body["type"] == "message"
    assert body["role"] == "assistant"
    assert body["model"] == "claude-haiku-4-5"
    assert body["content"] == [{"type": "text", "text": "Hi there"}]
    assert body["stop_reason"] == "end_turn"
    assert body["stop_sequence"] is None
    assert body["usage"] == {
        "input_tokens": 7,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 2,
    }


@pytest.mark.anyio
async def test_tool_use_message_and_stop_sequence() -> None:
    async with serve() as server, httpx.AsyncClient(base_url=server.url) as client:
        server.enqueue(ScriptedReply(content="", tool_calls=CALLS, finish_reason="tool_calls"))
        server.enqueue(ScriptedReply(content="up to", finish_reason="stop_sequence", model="claude-x"))
        tools = (await client.post("/messages", json=MESSAGES)).json()
        stopped = (await client.post("/messages", json={**MESSAGES, "stop_sequences": ["END", "FIN"]})).json()
    assert tools["content"] == [
        {"type": "tool_use", "id": "toolu_01", "name": "lookup", "input": {"query": "a long query text"}}
    ]
    assert tools["stop_reason"] == "tool_use"
    assert tools["usage"]["output_tokens"] == 5, "the words of the tool arguments count as output"
    assert (stopped["stop_reason"], stopped["stop_sequence"], stopped["model"]) == ("stop_sequence", "END", "claude-x")


def test_stop_reason_translation() -> None:
    assert ANTHROPIC_STOP_REASONS == {
        "stop": "end_turn",
        "length": "max_tokens",
        "tool_calls": "tool_use",
        "content_filter": "refusal",
    }


@pytest.mark.anyio
async def test_stream_shape() -> None:
    async with serve() as server, httpx.AsyncClient(base_url=server.url) as client:
        server.enqueue(ScriptedReply(content="one two three", usage=(4, 3), finish_reason="length"))
        answer = await client.post("/messages", json={**MESSAGES, "stream": True})
    assert answer.headers["content-type"].startswith("text/event-stream")
    assert answer.headers["transfer-encoding"] == "chunked"
    got = events(answer.text)
    assert [name for name, _ in got] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = got[0][1]["message"]
    assert start["content"] == []
    assert start["stop_reason"] is None
    assert start["usage"]["input_tokens"] == 4
    assert got[1][1] == {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    deltas = [data["delta"] for name, data in got if name == "content_block_delta"]
    assert all(d["type"] == "text_delta" for d in deltas)
    assert "".join(d["text"] for d in deltas) == "one two three"
    assert got[-2][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "max_tokens", "stop_sequence": None},
        "usage": {"output_tokens": 3},
    }


@pytest.mark.anyio
async def test_stream_tool_use_shape() -> None:
    async with serve() as server, httpx.AsyncClient(base_url=server.url) as client:
        server.enqueue(
            ScriptedReply(content="Looking.", chunks=("Look", "ing."), tool_calls=CALLS, finish_reason="tool_calls")
        )
        answer = await client.post("/messages", json={**MESSAGES, "stream": True})
    got = events(answer.text)
    names = [name for name, _ in got]
    assert names[:4] == ["message_start", "content_block_start", "ping", "content_block_delta"]
    assert names[-2:] == ["message_delta", "message_stop"]
    tool_start = next(d for n, d in got if n == "content_block_start" and d["index"] == 1)
    assert tool_start["content_block"] == {"type": "tool_use", "id": "toolu_01", "name": "lookup", "input": {}}
    fragments = [d["delta"]["partial_json"] for n, d in got if n == "content_block_delta" and d["index"] == 1]
    assert len(fragments) > 1
    assert all(len(f) <= ARGUMENT_PIECE for f in fragments)
    assert json.loads("".join(fragments)) == {"query": "a long query text"}
    stops = [d["index"] for n, d in got if n == "content_block_stop"]
    assert stops == [0, 1]
    assert got[-2][1]["delta"]["stop_reason"] == "tool_use"


@pytest.mark.anyio
async def test_stream_of_an_empty_answer_has_no_text_block() -> None:
    async with serve() as server, httpx.AsyncClient(base_url=server.url) as client:
        server.enqueue(ScriptedReply(content=""))
        answer = await client.post("/messages", json={**MESSAGES, "stream": True})
    assert [name for name, _ in events(answer.text)] == ["message_start", "ping", "message_delta", "message_stop"]


@pytest.mark.anyio
async def test_error_shapes() -> None:
    async with serve() as server, httpx.AsyncClient(base_url=server.url) as client:
        server.enqueue(
            ScriptedReply.error(529),
            ScriptedReply.error(429, headers={"retry-after": "3"}),
            ScriptedReply.error(400, "prompt is too long: 250000 tokens > 200000 maximum"),
            ScriptedReply.error(503, "upstream down"),
            ScriptedReply.error(402, "Your credit balance is too low", type="billing_error", code="ignored"),
        )
        answers = [await client.post("/messages", json=MESSAGES) for _ in range(5)]
    bodies = [a.json() for a in answers]
    assert [a.status_code for a in answers] == [529, 429, 400, 503, 402]
    assert answers[1].headers["retry-after"] == "3"
    assert all(b["type"] == "error" and b["request_id"].startswith("req_") for b in bodies)
    assert [b["error"] for b in bodies] == [
        {"type": "overloaded_error", "message": "Overloaded"},
        {
            "type": "rate_limit_error",
            "message": "This request would exceed your account's rate limit. Please try again later.",
        },
        {"type": "invalid_request_error", "message": "prompt is too long: 250000 tokens > 200000 maximum"},
        {"type": "api_error", "message": "upstream down"},
        {"type": "billing_error", "message": "Your credit balance is too low"},
    ]


@pytest.mark.anyio
async def test_routes_and_models_listing() -> None:
    wire = AnthropicWire(models=("claude-a", "claude-b"))
    async with FakeUpstream(wire) as server, httpx.AsyncClient(base_url=server.url) as client:
        listing = await client.get("/models")
        missing = await client.post("/chat/completions", json=MESSAGES)
        server.models_reply = ScriptedReply.error(401)
        refused = await client.get("/models")
    assert listing.json() == {
        "data": [
            {"type": "model", "id": "claude-a", "display_name": "Claude A", "created_at": "2025-01-01T00:00:00Z"},
            {"type": "model", "id": "claude-b", "display_name": "Claude B", "created_at": "2025-01-01T00:00:00Z"},
        ],
        "has_more": False,
        "first_id": "claude-a",
        "last_id": "claude-b",
    }
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "not_found_error"
    assert "unknown path" in missing.json()["error"]["message"]
    assert refused.status_code == 401
    assert refused.json()["error"]["type"] == "authentication_error"
    assert server.completions == []


@pytest.mark.anyio
async def test_requests_are_summarised() -> None:
    body = {
        **MESSAGES,
        "system": [{"type": "text", "text": "One."}, {"type": "text", "text": "Two."}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "image", "source": {}}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "42"}]},
        ],
        "temperature": 0.3,
        "top_p": 0.9,
        "stop_sequences": ["END"],
    }
    async with serve() as server, httpx.AsyncClient(base_url=server.url) as client:
        await client.post("/messages", json=body, headers={"x-api-key": "k"})
        recorded = server.requests[0]
        summary = server.last_completion()
    assert isinstance(recorded, RecordedRequest)
    assert recorded.headers["x-api-key"] == "k"
    assert summary.model == "claude-haiku-4-5"
    assert summary.messages == (
        ("system", "One."),
        ("system", "Two."),
        ("user", "Hi "),
        ("assistant", ""),
        ("user", "42"),
    )
    assert (summary.temperature, summary.top_p, summary.max_tokens) == (0.3, 0.9, 256)
    assert summary.stop == ("END",)
    assert summary.stream is False


@pytest.mark.anyio
async def test_malformed_frame() -> None:
    async with serve() as server, httpx.AsyncClient(base_url=server.url) as client:
        server.enqueue(ScriptedReply(content="one two", malformed_at=1))
        answer = await client.post("/messages", json={**MESSAGES, "stream": True})
    raw = [e for e in answer.text.split("\n\n") if e]
    bad = raw[4]  # message_start, block start, ping, "one", then the malformed frame
    assert bad.startswith("event: content_block_delta\ndata: ")
    with pytest.raises(json.JSONDecodeError):
        json.loads(bad.split("data: ", 1)[1])
    assert raw[-1].startswith("event: message_stop")


def test_sse_event_helper() -> None:
    assert sse_event({"type": "ping"}) == b'event: ping\ndata: {"type":"ping"}\n\n'
