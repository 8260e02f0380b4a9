"""The generic fake API itself (``swarmgate.testing.generic_wire``): what it
routes, reads back and renders, over a real loopback socket."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from swarmgate.testing import FakeUpstream, RecordedRequest, ScriptedReply
from swarmgate.testing.generic_wire import CONTENT_BLOCKED, FINISH_REASONS, GenericWire, StreamFormat

BODY: dict[str, Any] = {
    "model": "acme-large",
    "input": {
        "system": "Be brief.",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Say "}, {"type": "text", "text": "hello"}]},
        ],
    },
    "parameters": {"temperature": 0.2, "max_new_tokens": 64, "top_p": 0.9, "stop_sequences": "END"},
}
CALL: dict[str, Any] = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}


def recorded(body: Any) -> RecordedRequest:
    raw = json.dumps(body).encode()
    return RecordedRequest("POST", "/v2/generate", {}, body, raw, "completion")


def test_routes() -> None:
    wire = GenericWire(base_path="/api/v2/")
    assert wire.route("POST", "/api/v2/generate") == "completion"
    assert wire.route("GET", "/api/v2/models") == "models"
    assert wire.route("GET", "/api/v2/generate") is None
    assert wire.route("POST", "/v1/chat/completions") is None
    with pytest.raises(ValueError, match="stream_format"):
        GenericWire("websocket")  # type: ignore[arg-type]


def test_summarize() -> None:
    wire = GenericWire()
    sent = wire.summarize(recorded({**BODY, "stream": True}))
    assert sent.model == "acme-large"
    assert sent.messages == (("system", "Be brief."), ("user", "Say hello"))
    assert (sent.temperature, sent.max_tokens, sent.top_p) == (0.2, 64, 0.9)
    assert sent.stop == ("END",)
    assert sent.stream is True
    assert wire.wants_stream(recorded({**BODY, "stream": True}))
    assert not wire.wants_stream(recorded(BODY))
    empty = wire.summarize(recorded({"input": "not an object"}))
    assert (empty.model, empty.messages, empty.stop) == (None, (), None)


def test_completion_body() -> None:
    wire = GenericWire()
    reply = ScriptedReply(content="", tool_calls=(CALL,), finish_reason="tool_calls", usage=(7, 3), model="acme-x")
    body = json.loads(wire.render_completion(reply, recorded(BODY)))
    assert body["result"] == {
        "text": "",
        "tool_calls": [{"id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}}],
    }
    assert body["stop"] == "tool_use"
    assert body["meta"] == {"tokens": {"in": 7, "out": 3}}
    assert body["model"] == "acme-x"
    assert body["id"].startswith("gen_")
    plain = json.loads(wire.render_completion(ScriptedReply(content="two words"), recorded(BODY)))
    assert "tool_calls" not in plain["result"]
    assert plain["stop"] == FINISH_REASONS["stop"]
    assert plain["meta"]["tokens"] == {"in": 4, "out": 2}, "words of the system prompt and messages"
    assert plain["model"] == "acme-large"


def test_error_bodies() -> None:
    wire = GenericWire()
    assert json.loads(wire.render_error(ScriptedReply.error(429), None)) == {
        "error": {"code": "rate_limited", "message": "Too many requests; slow down.", "status": 429}
    }
    custom = json.loads(wire.render_error(ScriptedReply.error(400, "Blocked.", code=CONTENT_BLOCKED), None))
    assert custom["error"] == {"code": CONTENT_BLOCKED, "message": "Blocked.", "status": 400}
    assert json.loads(wire.render_error(ScriptedReply.error(599), None))["error"]["code"] == "internal"
    assert json.loads(wire.render_error(ScriptedReply.error(418), None))["error"]["code"] == "invalid_argument"


def test_models_listing() -> None:
    listing = json.loads(GenericWire(models=("a", "b")).render_models())
    assert [m["name"] for m in listing["models"]] == ["a", "b"]


def _sse_data(text: str) -> list[Any]:
    out: list[Any] = []
    for event in text.split("\n\n"):
        if not event.strip():
            continue
        lines = event.split("\n")
        data = next(line[len("data: ") :] for line in lines if line.startswith("data: "))
        named = [line[len("event: ") :] for line in lines if line.startswith("event: ")]
        parsed: Any = data if data == "[DONE]" else json.loads(data)
        if named:
            assert parsed["event"] == named[0], "the SSE event name is the object's kind"
        out.append(parsed)
    return out


@pytest.mark.anyio
@pytest.mark.parametrize("stream_format", ["sse", "ndjson"])
async def test_streamed_answer(stream_format: StreamFormat) -> None:
    wire = GenericWire(stream_format)
    reply = ScriptedReply(content="Hello there", tool_calls=(CALL,), usage=(5, 2), finish_reason="tool_calls")
    async with FakeUpstream(wire) as server, httpx.AsyncClient(base_url=server.url) as client:
        server.enqueue(reply)
        response = await client.post("/generate", json={**BODY, "stream": True})
    assert response.headers["content-type"].startswith(wire.stream_media_type.split(";")[0])
    if stream_format == "sse":
        frames = _sse_data(response.text)
        assert frames[-1] == "[DONE]"
        frames = frames[:-1]
    else:
        frames = [json.loads(line) for line in response.text.splitlines()]
        assert frames[-1]["done"] is True
    assert frames[0]["event"] == "start"
    assert "".join(f["result"]["text"] for f in frames if f["event"] == "delta") == "Hello there"
    calls = [f["tool_call"] for f in frames if f["event"] == "tool_call"]
    assert calls[0] == {"index": 0, "id": "call_1", "name": "get_weather", "arguments": ""}
    assert "".join(c["arguments"] for c in calls) == CALL["function"]["arguments"]
    end = frames[-1]
    assert (end["event"], end["stop"], end["meta"]) == ("end", "tool_use", {"tokens": {"in": 5, "out": 2}})


@pytest.mark.parametrize("stream_format", ["sse", "ndjson"])
def test_malformed_frame_is_not_json(stream_format: StreamFormat) -> None:
    frame = GenericWire(stream_format).render_malformed()
    data = frame.decode().strip().split("data: ")[-1]
    with pytest.raises(json.JSONDecodeError):
        json.loads(data)
    assert frame.endswith(b"\n\n" if stream_format == "sse" else b"\n")


@pytest.mark.anyio
async def test_errors_and_unknown_paths_over_the_socket() -> None:
    async with FakeUpstream(GenericWire()) as server, httpx.AsyncClient(base_url=server.url) as client:
        server.enqueue(ScriptedReply.error(503, headers={"Retry-After": "4"}))
        overloaded = await client.post("/generate", json=BODY)
        missing = await client.get("/nowhere")
        listing = await client.get("/models")
    assert overloaded.status_code == 503
    assert overloaded.headers["retry-after"] == "4"
    assert overloaded.json()["error"]["code"] == "overloaded"
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert listing.json()["models"][0]["name"] == "acme-small"
