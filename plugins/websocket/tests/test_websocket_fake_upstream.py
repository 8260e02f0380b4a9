"""The fake WebSocket upstream itself (``swarmgate.testing.websocket_upstream``),
driven by an independent client (``websockets``' own threaded client, and
httpx for its plain HTTP side): the messages are the documented formats
and the scripting and recording work."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from swarmgate.testing import RecordedRequest, ScriptedReply, Wire
from swarmgate.testing.websocket_upstream import (
    MESSAGE_METHOD,
    Disconnect,
    FakeWebSocketUpstream,
    RealtimeWire,
    ScriptedClose,
    SocketWire,
    WebSocketWire,
)

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello to the test suite"}]}


def answer(ws: ClientConnection, done: str = "[DONE]") -> list[Any]:
    """Every message up to ``done`` (parsed JSON; the marker as a string)."""
    out: list[Any] = []
    while True:
        message = ws.recv(timeout=2)
        if message == done:
            return [*out, message]
        out.append(json.loads(message))


def test_wires_implement_the_protocols() -> None:
    wires: list[SocketWire] = [WebSocketWire(), RealtimeWire()]
    plain: list[Wire] = list(wires)
    assert [w.name for w in plain] == ["openai-websocket", "openai-realtime"]
    assert [w.socket_path for w in wires] == ["/v1/chat/completions", "/v1/realtime"]


def test_in_thread_streamed_and_whole_answers() -> None:
    with (
        FakeWebSocketUpstream.in_thread() as server,
        connect(server.url, additional_headers={"Authorization": "Bearer sk-x"}) as ws,
    ):
        server.enqueue(ScriptedReply(content="one two", usage=(3, 2)))
        ws.send(json.dumps({**CHAT, "stream": True, "stream_options": {"include_usage": True}}))
        streamed = answer(ws)
        ws.send(json.dumps(CHAT))
        whole = answer(ws)
        ws.ping().wait(2)
        requests = list(server.requests)
        handshakes = list(server.handshakes)
    assert [c["choices"][0]["delta"].get("content") for c in streamed[:-3]] == ["", "one", " two"]
    assert streamed[-3]["choices"][0]["finish_reason"] == "stop"
    assert streamed[-2]["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    assert whole[0]["object"] == "chat.completion"
    assert whole[0]["choices"][0]["message"]["content"] == server.default.content
    assert whole[1] == "[DONE]"
    assert [r.method for r in requests] == [MESSAGE_METHOD, MESSAGE_METHOD]
    assert requests[0].json["stream"] is True
    assert requests[0].headers["authorization"] == "Bearer sk-x"
    assert isinstance(handshakes[0], RecordedRequest)
    assert handshakes[0].path == "/v1/chat/completions"
    assert server.pings == 1
    assert server.disconnects == [Disconnect(1000, "", clean=True)]


def test_error_messages_carry_status_and_retry_after() -> None:
    with FakeWebSocketUpstream.in_thread() as server, connect(server.url) as ws:
        server.enqueue(ScriptedReply.error(429, "slow down", headers={"Retry-After": "7"}))
        ws.send(json.dumps(CHAT))
        error = json.loads(ws.recv(timeout=2))
        ws.send("not json")
        refusal = json.loads(ws.recv(timeout=2))
        ws.send(json.dumps(CHAT))
        after = answer(ws)
    assert error == {
        "error": {
            "message": "slow down",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
            "status": 429,
            "retry_after": 7.0,
        }
    }
    assert refusal["error"]["status"] == 400
    assert after[0]["choices"][0]["message"]["content"] == server.default.content


def test_handshake_rejection_and_unknown_paths() -> None:
    with FakeWebSocketUpstream.in_thread() as server:
        server.enqueue_handshake(ScriptedReply.error(429, "too many sockets", headers={"Retry-After": "3"}))
        with pytest.raises(InvalidStatus) as rejected:
            connect(server.url)
        with pytest.raises(InvalidStatus) as unknown:
            connect(server.base_url + "/v1/elsewhere")
        connections = server.connections
        handshakes = len(server.handshakes)
    response = rejected.value.response
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "3"
    assert json.loads(response.body)["error"]["message"] == "too many sockets"
    assert unknown.value.response.status_code == 404
    assert (connections, handshakes) == (2, 1), "an unknown path is no handshake"


def test_plain_http_models_listing() -> None:
    with FakeWebSocketUpstream.in_thread() as server:
        listing = httpx.get(server.base_url.replace("ws://", "http://") + "/v1/models", timeout=2)
        server.models_reply = ScriptedReply.error(500)
        failing = httpx.get(server.base_url.replace("ws://", "http://") + "/v1/models", timeout=2)
    assert listing.status_code == 200
    assert [m["id"] for m in listing.json()["data"]] == ["gpt-4o-mini", "gpt-4o"]
    assert failing.status_code == 500


@pytest.mark.parametrize("code", [1011, 1006])
def test_scripted_close(code: int) -> None:
    with FakeWebSocketUpstream.in_thread() as server, connect(server.url) as ws:
        server.enqueue(
            ScriptedClose(code, "broken" if code != 1006 else "", after=1, reply=ScriptedReply(content="a b"))
        )
        ws.send(json.dumps({**CHAT, "stream": True}))
        received = [json.loads(ws.recv(timeout=2)), json.loads(ws.recv(timeout=2))]
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=2)
    assert received[1]["choices"][0]["delta"]["content"] == "a"
    if code == 1006:
        assert closed.value.rcvd is None
        assert server.disconnects == [Disconnect(1006, "", clean=False)]
    else:
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == code
        assert server.disconnects == [Disconnect(code, "broken", clean=True)]


def test_realtime_wire_events() -> None:
    with FakeWebSocketUpstream.in_thread(RealtimeWire()) as server, connect(server.url + "?model=gpt-realtime") as ws:
        greeting = json.loads(ws.recv(timeout=2))
        server.enqueue(ScriptedReply(content="Hi there", usage=(4, 2), finish_reason="length"))
        request = {
            "type": "response.create",
            "response": {
                "instructions": "Be brief.",
                "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hello"}]}],
            },
        }
        ws.send(json.dumps(request))
        events: list[Any] = []
        while not events or events[-1]["type"] != "response.done":
            events.append(json.loads(ws.recv(timeout=2)))
    assert greeting["type"] == "session.created"
    assert [e["type"] for e in events[:3]] == [
        "response.created",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert [e["delta"] for e in events if e["type"] == "response.output_text.delta"] == ["Hi", " there"]
    done = events[-1]
    assert done["type"] == "response.done"
    assert done["response"]["status"] == "incomplete"
    assert done["response"]["status_details"] == {"type": "incomplete", "reason": "max_output_tokens"}
    assert done["response"]["usage"] == {"total_tokens": 6, "input_tokens": 4, "output_tokens": 2}
    summary = server.last_completion()
    assert summary.model == "gpt-realtime"
    assert summary.messages == (("system", "Be brief."), ("user", "Hello"))
