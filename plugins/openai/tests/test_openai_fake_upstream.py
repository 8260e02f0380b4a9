"""The fake OpenAI upstream itself (``swarmgate.testing``): the wire format is
exactly what the driver and the SDKs expect, and its scripting works."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from swarmgate.testing import (
    FakeUpstream,
    OpenAIWire,
    RecordedRequest,
    ScriptedReply,
    split_words,
    unreachable_url,
)

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello to the test suite"}]}


def frames(text: str) -> list[Any]:
    """The data of each SSE event: parsed JSON, or the raw string ([DONE])."""
    out: list[Any] = []
    for event in text.split("\n\n"):
        if not event.strip():
            continue
        assert event.startswith("data: "), event
        data = event[len("data: ") :]
        out.append(data if data == "[DONE]" else json.loads(data))
    return out


def test_split_words_joins_back() -> None:
    for text in ["Hello from the fake upstream", "  leading and trailing  ", "one", "", "a\nb\tc"]:
        assert "".join(split_words(text)) == text
    assert split_words("Hello from here") == ("Hello", " from", " here")


def test_default_usage_counts_words() -> None:
    assert ScriptedReply(content="one two three").token_usage("a b") == (2, 3)
    assert ScriptedReply(content="").token_usage("") == (1, 0)
    assert ScriptedReply(usage=[4, 5]).token_usage("ignored") == (4, 5)
    with pytest.raises(ValueError, match="usage"):
        ScriptedReply(usage=(1, 2, 3))


def test_in_thread_with_a_sync_client() -> None:
    with FakeUpstream.in_thread() as server, httpx.Client(base_url=server.url) as client:
        server.enqueue(ScriptedReply(content="from a thread", usage=(3, 3)))
        first = client.post("/chat/completions", json=CHAT).json()
        second = client.post("/chat/completions", json=CHAT).json()
        url = server.url
        assert server.connections == 1
    assert first["choices"][0]["message"]["content"] == "from a thread"
    assert second["choices"][0]["message"]["content"] == server.default.content
    with pytest.raises(httpx.ConnectError):
        httpx.post(url + "/chat/completions", json=CHAT, timeout=1.0)


def test_in_thread_on_trio() -> None:
    with FakeUpstream.in_thread(backend="trio") as server:
        answer = httpx.post(server.url + "/chat/completions", json=CHAT, timeout=5.0)
    assert answer.status_code == 200
    assert len(server.requests) == 1


@pytest.mark.anyio
async def test_completion_shape() -> None:
    async with FakeUpstream() as server, httpx.AsyncClient(base_url=server.url) as client:
        server.enqueue(ScriptedReply(content="Hi there", usage=(7, 2)))
        answer = await client.post("/chat/completions", json=CHAT)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert isinstance(body["created"], int)
    assert body["model"] == "gpt-4o-mini"
    (choice,) = body["choices"]
    assert choice["index"] == 0
    assert choice["message"] == {"role": "assistant", "content": "Hi there", "refusal": None}
    assert choice["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}


@pytest.mark.anyio
async def test_stream_shape_with_usage() -> None:
    request = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    async with FakeUpstream() as server, httpx.AsyncClient(base_url=server.url) as client:
        server.enqueue(ScriptedReply(content="one two three", usage=(4, 3), finish_reason="length"))
        answer = await client.post("/chat/completions", json=request)
    assert answer.headers["content-type"].startswith("text/event-stream")
    assert answer.headers["transfer-encoding"] == "chunked"
    *chunks, usage, done = frames(answer.text)
    assert done == "[DONE]"
    assert all(c["object"] == "chat.completion.chunk" for c in [*chunks, usage])
    assert len({c["id"] for c in [*chunks, usage]}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(c["usage"] is None for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "one two three"
    assert [c["choices"][0]["finish_reason"] for c in chunks][-1] == "length"
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    assert usage["choices"] == []
    assert usage["usage"] == {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}


@pytest.mark.anyio
async def test_stream_without_usage_and_custom_chunks() -> None:
    async with FakeUpstream() as server, httpx.AsyncClient(base_url=server.url) as client:
        server.enqueue(ScriptedReply(content="abcdef", chunks=("abc", "def")))
        answer = await client.post("/chat/completions", json={**CHAT, "stream": True})
    *chunks, done = frames(answer.text)
    assert done == "[DONE]"
    assert all("usage" not in c for c in chunks)
    assert [c["choices"][0]["delta"].get("content") for c in chunks] == ["", "abc", "def", None]


@pytest.mark.anyio
async def test_stream_tool_calls_shape() -> None:
    calls: list[dict[str, Any]] = [
        {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"query": "a long query"}'}}
    ]
    async with FakeUpstream() as server, httpx.AsyncClient(base_url=server.url) as client:
        server.enqueue(ScriptedReply(content="", tool_calls=calls, finish_reason="tool_calls"))
        answer = await client.post("/chat/completions", json={**CHAT, "stream": True})
    *chunks, _ = frames(answer.text)
    fragments = [tc for c in chunks for tc in c["choices"][0]["delta"].get("tool_calls") or ()]
    assert fragments[0] == {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "lookup", "arguments": ""},
    }
    assert all(f["index"] == 0 and set(f) == {"index", "function"} for f in fragments[1:])
    assert "".join(f["function"]["arguments"] for f in fragments) == calls[0]["function"]["arguments"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.anyio
async def test_error_shape_and_headers() -> None:
    async with FakeUpstream() as server, httpx.AsyncClient(base_url=server.url) as client:
        server.enqueue(ScriptedReply.error(429, "Too many", headers={"Retry-After": "3"}))
        server.enqueue(ScriptedReply.error(400, "bad", type="invalid_request_error", code="some_code"))
        limited = await client.post("/chat/completions", json=CHAT)
        invalid = await client.post("/chat/completions", json=CHAT)
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "3"
    assert limited.json() == {
        "error": {"message": "Too many", "type": "requests", "param": None, "code": "rate_limit_exceeded"}
    }
    assert invalid.json()["error"] == {
        "message": "bad",
        "type": "invalid_request_error",
        "param": None,
        "code": "some_code",
    }


@pytest.mark.anyio
async def test_unknown_path_and_bad_json_leave_the_queue_alone() -> None:
    async with FakeUpstream() as server, httpx.AsyncClient(base_url=server.url) as client:
        server.enqueue(ScriptedReply(content="kept"))
        missing = await client.post("/completions", json=CHAT)
        bad = await client.post("/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
        assert server.pending == 1
        good = await client.post("/chat/completions", json=CHAT)
    assert missing.status_code == 404
    assert "unknown path" in missing.json()["error"]["message"]
    assert bad.status_code == 400
    assert good.json()["choices"][0]["message"]["content"] == "kept"
    assert [r.endpoint for r in server.requests] == [None, "completion", "completion"]


@pytest.mark.anyio
async def test_models_listing() -> None:
    async with FakeUpstream(OpenAIWire(models=("m1", "m2", "m3"))) as server, httpx.AsyncClient() as client:
        listing = await client.get(server.url + "/models")
        server.models_reply = ScriptedReply.error(503)
        failing = await client.get(server.url + "/models")
    assert listing.json()["object"] == "list"
    assert [m["id"] for m in listing.json()["data"]] == ["m1", "m2", "m3"]
    assert failing.status_code == 503
    assert server.completions == []


@pytest.mark.anyio
async def test_requests_are_recorded() -> None:
    async with FakeUpstream() as server, httpx.AsyncClient() as client:
        await client.post(server.url + "/chat/completions?api-version=1", json=CHAT, headers={"X-Custom": "Yes"})
        recorded = server.requests[0]
        summary = server.last_completion()
    assert isinstance(recorded, RecordedRequest)
    assert recorded.method == "POST"
    assert recorded.path == "/v1/chat/completions?api-version=1"
    assert recorded.headers["x-custom"] == "Yes"
    assert recorded.json == CHAT
    assert json.loads(recorded.body) == CHAT
    assert summary.model == "gpt-4o-mini"
    assert summary.messages == (("user", "Say hello to the test suite"),)


async def _read_lines(client: httpx.AsyncClient, request: dict[str, Any], into: list[str]) -> None:
    async with client.stream("POST", "/chat/completions", json=request) as answer:
        async for line in answer.aiter_lines():
            into.append(line)


@pytest.mark.anyio
async def test_cut_stream_has_no_terminator() -> None:
    received: list[str] = []
    async with FakeUpstream() as server, httpx.AsyncClient(base_url=server.url) as client:
        server.enqueue(ScriptedReply(content="one two three", cut_after=1))
        with pytest.raises(httpx.RemoteProtocolError):
            await _read_lines(client, {**CHAT, "stream": True}, received)
    data = [frames(line + "\n\n")[0] for line in received if line]
    assert [d["choices"][0]["delta"].get("content") for d in data] == ["", "one"]


@pytest.mark.anyio
async def test_malformed_frame() -> None:
    async with FakeUpstream() as server, httpx.AsyncClient(base_url=server.url) as client:
        server.enqueue(ScriptedReply(content="one two", malformed_at=1))
        answer = await client.post("/chat/completions", json={**CHAT, "stream": True})
    events = [e for e in answer.text.split("\n\n") if e]
    with pytest.raises(json.JSONDecodeError):
        json.loads(events[2][len("data: ") :])
    assert events[-1] == "data: [DONE]"


class _BrokenWire(OpenAIWire):
    def render_completion(self, reply: ScriptedReply, request: RecordedRequest) -> bytes:
        raise ValueError("a bug in the wire")


async def _serve_one_broken_request() -> None:
    async with FakeUpstream(_BrokenWire()) as server, httpx.AsyncClient(base_url=server.url) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post("/chat/completions", json=CHAT)


@pytest.mark.anyio
async def test_a_broken_fake_does_not_pass_silently() -> None:
    with pytest.raises(RuntimeError, match="a bug in the wire"):
        await _serve_one_broken_request()


def test_unreachable_url_refuses() -> None:
    with pytest.raises(httpx.ConnectError):
        httpx.get(unreachable_url() + "/models", timeout=1.0)
