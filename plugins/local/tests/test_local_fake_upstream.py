"""The fake Ollama upstream (``swarmgate.testing.ollama_wire``): it speaks
Ollama's documented wire format, NDJSON streaming included."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from swarmgate.testing import FakeUpstream, RecordedRequest, ScriptedReply, WireRequest
from swarmgate.testing.ollama_wire import OllamaWire, ollama_tool_call

MODEL = "llama3.2"
CHAT: dict[str, Any] = {
    "model": MODEL,
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hello to the test suite"},
    ],
    "stream": False,
}
CALLS = (
    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
    {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": ""}},
)


def recorded(body: Any, method: str = "POST", path: str = "/api/chat") -> RecordedRequest:
    raw = json.dumps(body).encode()
    return RecordedRequest(method, path, {}, body, raw, OllamaWire().route(method, path))


def lines(text: str) -> list[Any]:
    """The NDJSON objects of a body (every line must end with a newline)."""
    assert text.endswith("\n"), "the last line must end with a newline"
    return [json.loads(line) for line in text.splitlines()]


def test_routes() -> None:
    wire = OllamaWire()
    assert wire.route("POST", "/api/chat") == "completion"
    assert wire.route("GET", "/api/tags") == "models"
    assert wire.route("GET", "/api/chat") is None
    assert wire.route("POST", "/v1/chat/completions") is None
    assert wire.base_path == ""
    assert wire.stream_media_type == "application/x-ndjson"


def test_streams_unless_told_not_to() -> None:
    wire = OllamaWire()
    assert wire.wants_stream(recorded({"model": MODEL, "messages": []}))
    assert wire.wants_stream(recorded({"model": MODEL, "messages": [], "stream": True}))
    assert not wire.wants_stream(recorded({"model": MODEL, "messages": [], "stream": False}))


def test_summarize_reads_options() -> None:
    body = {**CHAT, "options": {"temperature": 0.2, "num_predict": 50, "top_p": 0.9, "stop": ["END"], "num_ctx": 8192}}
    assert OllamaWire().summarize(recorded(body)) == WireRequest(
        model=MODEL,
        messages=(("system", "Be brief."), ("user", "Say hello to the test suite")),
        temperature=0.2,
        max_tokens=50,
        top_p=0.9,
        stop=("END",),
        stream=False,
    )
    bare = OllamaWire().summarize(recorded({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}))
    assert (bare.temperature, bare.max_tokens, bare.stop, bare.stream) == (None, None, None, True)


def test_tool_calls_in_ollama_form() -> None:
    assert ollama_tool_call(0, CALLS[0]) == {
        "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}
    }
    assert ollama_tool_call(1, CALLS[1]) == {"function": {"index": 1, "name": "get_time", "arguments": {}}}
    with pytest.raises(ValueError, match="JSON object"):
        ollama_tool_call(0, {"function": {"name": "f", "arguments": "[1]"}})


@pytest.mark.anyio
async def test_completion_shape() -> None:
    async with FakeUpstream(OllamaWire()) as server, httpx.AsyncClient(base_url=server.url) as client:
        server.enqueue(ScriptedReply(content="Hi there", usage=(7, 2)))
        answer = await client.post("/api/chat", json=CHAT)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert body["model"] == MODEL
    assert body["created_at"].endswith("Z")
    assert body["message"] == {"role": "assistant", "content": "Hi there"}
    assert body["done"] is True
    assert body["done_reason"] == "stop"
    assert (body["prompt_eval_count"], body["eval_count"]) == (7, 2)
    for key in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
        assert isinstance(body[key], int)
        assert body[key] > 0
    assert body["total_duration"] == body["load_duration"] + body["prompt_eval_duration"] + body["eval_duration"]


@pytest.mark.anyio
async def test_zero_counts_are_left_out() -> None:
    async with FakeUpstream(OllamaWire()) as server, httpx.AsyncClient(base_url=server.url) as client:
        server.enqueue(ScriptedReply(content="", usage=(5, 0)))
        body = (await client.post("/api/chat", json=CHAT)).json()
    assert body["prompt_eval_count"] == 5
    assert "eval_count" not in body
    assert "eval_duration" not in body


@pytest.mark.anyio
async def test_tool_calls_completion() -> None:
    async with FakeUpstream(OllamaWire()) as server, httpx.AsyncClient(base_url=server.url) as client:
        server.enqueue(ScriptedReply(content="", tool_calls=CALLS, finish_reason="tool_calls"))
        body = (await client.post("/api/chat", json=CHAT)).json()
    assert body["done_reason"] == "stop", "Ollama reports 'stop' when the model calls tools"
    assert body["message"]["tool_calls"] == [ollama_tool_call(0, CALLS[0]), ollama_tool_call(1, CALLS[1])]


@pytest.mark.anyio
async def test_stream_is_ndjson() -> None:
    request = {k: v for k, v in CHAT.items() if k != "stream"}
    async with FakeUpstream(OllamaWire()) as server, httpx.AsyncClient(base_url=server.url) as client:
        server.enqueue(ScriptedReply(content="one two three", tool_calls=CALLS[:1], usage=(4, 6)))
        answer = await client.post("/api/chat", json=request)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/x-ndjson"
    assert answer.headers["transfer-encoding"] == "chunked"
    objects = lines(answer.text)
    *chunks, last = objects
    assert [c["message"]["content"] for c in chunks] == ["one", " two", " three", ""]
    assert all(c["done"] is False and c["model"] == MODEL for c in chunks)
    assert chunks[-1]["message"]["tool_calls"] == [ollama_tool_call(0, CALLS[0])]
    assert last["done"] is True
    assert last["done_reason"] == "stop"
    assert last["message"] == {"role": "assistant", "content": ""}
    assert (last["prompt_eval_count"], last["eval_count"]) == (4, 6)


@pytest.mark.anyio
async def test_malformed_line_replaces_a_chunk() -> None:
    request = {**CHAT, "stream": True}
    async with FakeUpstream(OllamaWire()) as server, httpx.AsyncClient(base_url=server.url) as client:
        server.enqueue(ScriptedReply(content="one two three", malformed_at=1))
        answer = await client.post("/api/chat", json=request)
    raw = answer.text.splitlines()
    assert json.loads(raw[0])["message"]["content"] == "one"
    with pytest.raises(json.JSONDecodeError, match="Expecting value"):
        json.loads(raw[1])
    assert json.loads(raw[-1])["done"] is True


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("reply", "status", "text"),
    [
        (ScriptedReply.error(404), 404, 'model "llama3.2" not found, try pulling it first'),
        (ScriptedReply.error(503), 503, "server busy, please try again.  maximum pending requests exceeded"),
        (ScriptedReply.error(400, "invalid option", type="ignored", code="ignored"), 400, "invalid option"),
        (ScriptedReply.error(507), 507, "internal server error"),
    ],
)
async def test_errors_are_ollama_bodies(reply: ScriptedReply, status: int, text: str) -> None:
    async with FakeUpstream(OllamaWire()) as server, httpx.AsyncClient(base_url=server.url) as client:
        server.enqueue(reply)
        answer = await client.post("/api/chat", json=CHAT)
    assert answer.status_code == status
    assert answer.json() == {"error": text}


@pytest.mark.anyio
async def test_models_listing() -> None:
    async with (
        FakeUpstream(OllamaWire(models=("llama3.2:latest", "qwen2.5:7b"))) as server,
        httpx.AsyncClient(base_url=server.url) as client,
    ):
        answer = await client.get("/api/tags")
        unknown = await client.get("/api/version")
    assert answer.status_code == 200
    models = answer.json()["models"]
    assert [m["name"] for m in models] == ["llama3.2:latest", "qwen2.5:7b"]
    assert models[0]["details"]["family"] == "llama"
    assert models[1]["details"]["family"] == "qwen"
    assert all(len(m["digest"]) == 64 and m["size"] > 0 for m in models)
    assert unknown.status_code == 404
    assert "error" in unknown.json()


def test_in_thread_on_trio() -> None:
    with FakeUpstream.in_thread(OllamaWire(), backend="trio") as server:
        answer = httpx.post(server.url + "/api/chat", json=CHAT, timeout=5.0)
        assert server.last_completion().stream is False
    assert answer.status_code == 200
    assert answer.json()["message"]["content"] == server.default.content
