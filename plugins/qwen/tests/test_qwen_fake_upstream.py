"""The fake DashScope upstream itself (``swarmgate.testing.dashscope_wire``):
its answers, streams and errors have DashScope's documented shapes, and its
scripting works."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from swarmgate.testing import FakeUpstream, RecordedRequest, ScriptedReply, WireRequest
from swarmgate.testing.dashscope_wire import MULTIMODAL_GENERATION, TEXT_GENERATION, DashScopeWire, default_error

MODEL = "qwen-plus"
BODY: dict[str, Any] = {
    "model": MODEL,
    "input": {"messages": [{"role": "user", "content": "Say hello to the test suite"}]},
    "parameters": {"result_format": "message"},
}
SSE = {"X-DashScope-SSE": "enable"}


def serve() -> FakeUpstream:
    return FakeUpstream(DashScopeWire())


def parse_frames(text: str) -> list[tuple[dict[str, str], Any]]:
    """Each SSE frame as (its fields, including the ``:HTTP_STATUS`` comment, and its parsed data)."""
    out: list[tuple[dict[str, str], Any]] = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            assert ": " not in line[: line.find(":") + 2], f"DashScope writes no space after the colon: {line!r}"
            name, _, value = line.partition(":")
            if not name and value.startswith("HTTP_STATUS/"):
                fields["status"] = value[len("HTTP_STATUS/") :]
            else:
                fields[name] = value
        out.append((fields, json.loads(fields["data"])))
    return out


def message_of(frame: Any) -> dict[str, Any]:
    message = frame["output"]["choices"][0]["message"]
    assert isinstance(message, dict)
    return message


@pytest.mark.anyio
async def test_completion_shape() -> None:
    async with serve() as server, httpx.AsyncClient(base_url=server.url) as client:
        server.enqueue(ScriptedReply(content="Hi there", usage=(7, 2)))
        answer = await client.post(TEXT_GENERATION, json=BODY)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert body["output"] == {
        "choices": [{"finish_reason": "stop", "message": {"role": "assistant", "content": "Hi there"}}]
    }
    assert body["usage"] == {"input_tokens": 7, "output_tokens": 2, "total_tokens": 9}
    assert isinstance(body["request_id"], str)
    assert len(body["request_id"]) == 36


@pytest.mark.anyio
async def test_legacy_text_format_without_result_format() -> None:
    body = {**BODY, "parameters": {}}
    async with serve() as server, httpx.AsyncClient(base_url=server.url) as client:
        answer = (await client.post(TEXT_GENERATION, json=body)).json()
    assert answer["output"] == {"text": server.default.content, "finish_reason": "stop"}


@pytest.mark.anyio
async def test_multimodal_answer_has_content_parts() -> None:
    async with serve() as server, httpx.AsyncClient(base_url=server.url) as client:
        answer = (await client.post(MULTIMODAL_GENERATION, json={**BODY, "parameters": {}})).json()
    assert message_of(answer)["content"] == [{"text": server.default.content}]


@pytest.mark.anyio
async def test_tool_calls_are_numbered() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    async with serve() as server, httpx.AsyncClient(base_url=server.url) as client:
        server.enqueue(ScriptedReply(content="", tool_calls=[call], finish_reason="tool_calls"))
        answer = (await client.post(TEXT_GENERATION, json=BODY)).json()
    assert message_of(answer)["tool_calls"] == [{**call, "index": 0}]
    assert answer["output"]["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.anyio
@pytest.mark.parametrize("headers", [SSE, {"Accept": "text/event-stream"}], ids=["x-dashscope-sse", "accept"])
async def test_incremental_stream_frames(headers: dict[str, str]) -> None:
    body = {**BODY, "parameters": {"result_format": "message", "incremental_output": True}}
    async with serve() as server, httpx.AsyncClient(base_url=server.url) as client:
        server.enqueue(ScriptedReply(content="one two three", usage=(5, 3)))
        answer = await client.post(TEXT_GENERATION, json=body, headers=headers)
    assert answer.headers["content-type"].startswith("text/event-stream")
    found = parse_frames(answer.text)
    assert [fields["id"] for fields, _ in found] == ["1", "2", "3", "4"]
    assert {fields["event"] for fields, _ in found} == {"result"}
    assert {fields["status"] for fields, _ in found} == {"200"}
    assert [message_of(data)["content"] for _, data in found] == ["one", " two", " three", ""]
    assert [data["output"]["choices"][0]["finish_reason"] for _, data in found] == ["null", "null", "null", "stop"]
    assert [data["usage"]["output_tokens"] for _, data in found] == [1, 2, 3, 3]
    assert found[-1][1]["usage"] == {"input_tokens": 5, "output_tokens": 3, "total_tokens": 8}
    assert len({data["request_id"] for _, data in found}) == 1


@pytest.mark.anyio
async def test_non_incremental_stream_repeats_the_whole_text() -> None:
    async with serve() as server, httpx.AsyncClient(base_url=server.url) as client:
        server.enqueue(ScriptedReply(content="one two"))
        answer = await client.post(TEXT_GENERATION, json=BODY, headers=SSE)
    assert [message_of(data)["content"] for _, data in parse_frames(answer.text)] == ["one", "one two", "one two"]


@pytest.mark.anyio
async def test_streamed_tool_call_fragments() -> None:
    call: dict[str, Any] = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "lookup", "arguments": '{"query": "a long query"}'},
    }
    body = {**BODY, "parameters": {"result_format": "message", "incremental_output": True}}
    async with serve() as server, httpx.AsyncClient(base_url=server.url) as client:
        server.enqueue(ScriptedReply(content="", tool_calls=[call], finish_reason="tool_calls"))
        answer = await client.post(TEXT_GENERATION, json=body, headers=SSE)
    fragments = [f for _, data in parse_frames(answer.text) for f in message_of(data).get("tool_calls", [])]
    assert fragments[0] == {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "lookup", "arguments": ""},
    }
    assert all(f["id"] == "" and "name" not in f["function"] for f in fragments[1:])
    assert "".join(f["function"]["arguments"] for f in fragments) == call["function"]["arguments"]


@pytest.mark.anyio
async def test_in_stream_error_frame() -> None:
    reply = ScriptedReply(content="partial answer", error_code="DataInspectionFailed", error_message="Output data bad.")
    async with serve() as server, httpx.AsyncClient(base_url=server.url) as client:
        server.enqueue(reply)
        answer = await client.post(TEXT_GENERATION, json=BODY, headers=SSE)
        plain = (await client.post(TEXT_GENERATION, json=BODY)).json()
    assert answer.status_code == 200
    *results, (fields, error) = parse_frames(answer.text)
    assert len(results) == 2
    assert (fields["event"], fields["status"]) == ("error", "400")
    assert error["code"] == "DataInspectionFailed"
    assert error["message"] == "Output data bad."
    assert isinstance(error["request_id"], str)
    assert message_of(plain)["content"] == server.default.content, "non-streamed answers ignore error_code"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "InvalidParameter"),
        (401, "InvalidApiKey"),
        (403, "AccessDenied"),
        (404, "ModelNotFound"),
        (429, "Throttling.RateQuota"),
        (500, "InternalError"),
        (502, "InternalError"),
        (503, "ModelServingError"),
    ],
)
async def test_error_bodies(status: int, code: str) -> None:
    async with serve() as server, httpx.AsyncClient(base_url=server.url) as client:
        server.enqueue(ScriptedReply.error(status), ScriptedReply.error(status, "mine", code="Mine", type="Kind"))
        default = await client.post(TEXT_GENERATION, json=BODY)
        scripted = await client.post(TEXT_GENERATION, json=BODY, headers=SSE)
    assert default.status_code == scripted.status_code == status
    assert default.json()["code"] == code
    assert default.json()["message"] == default_error(status)[1]
    assert set(default.json()) == {"request_id", "code", "message"}
    assert {k: v for k, v in scripted.json().items() if k != "request_id"} == {
        "code": "Mine",
        "message": "mine",
        "type": "Kind",
    }


@pytest.mark.anyio
async def test_models_listing_and_unknown_paths() -> None:
    async with serve() as server, httpx.AsyncClient(base_url=server.base_url) as client:
        listing = await client.get("/compatible-mode/v1/models")
        native = await client.get("/api/v1/models")
        wrong = await client.post("/api/v1/chat/completions", json=BODY)
    assert [m["id"] for m in listing.json()["data"]] == ["qwen-plus", "qwen-turbo", "qwen-max"]
    assert native.status_code == wrong.status_code == 404
    assert wrong.json()["code"] == "ModelNotFound"
    assert "unknown path" in wrong.json()["message"]


@pytest.mark.anyio
async def test_malformed_frame() -> None:
    async with serve() as server, httpx.AsyncClient(base_url=server.url) as client:
        server.enqueue(ScriptedReply(content="one two", malformed_at=1))
        answer = await client.post(TEXT_GENERATION, json=BODY, headers=SSE)
    blocks = [b for b in answer.text.split("\n\n") if b]
    assert len(blocks) == 3
    assert "oops, not json" in blocks[1]


def test_summarize() -> None:
    body = {
        "model": MODEL,
        "input": {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"image": "https://x/y.png"}, {"text": "What is it?"}]},
            ]
        },
        "parameters": {"temperature": 0.5, "max_tokens": 9, "top_p": 0.9, "stop": "END"},
    }
    request = RecordedRequest("POST", "/api/v1" + MULTIMODAL_GENERATION, {"accept": "text/event-stream"}, body, b"")
    assert DashScopeWire().summarize(request) == WireRequest(
        model=MODEL,
        messages=(("system", "Be brief."), ("user", "What is it?")),
        temperature=0.5,
        max_tokens=9,
        top_p=0.9,
        stop=("END",),
        stream=True,
    )
    legacy = RecordedRequest("POST", "/api/v1" + TEXT_GENERATION, {}, {"model": MODEL, "input": {"prompt": "Hi"}}, b"")
    assert DashScopeWire().summarize(legacy).messages == (("user", "Hi"),)
