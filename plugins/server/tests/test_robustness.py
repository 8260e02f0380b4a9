"""Bad input never crashes or hangs the gateway: oversized and slow bodies,
clients that go away mid-stream (the upstream call is cancelled and the
partial usage recorded), and a shutdown that drains in-flight streams."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest
from server_testkit import Recorder, Upstreams, gateway_config, wait_for

from swarmgate import RequestCancelledError
from swarmgate.testing import ScriptedReply
from swarmgate_server import run_gateway

MESSAGES: Any = [{"role": "user", "content": "hello"}]


def raw_exchange(port: int, head: bytes, body: bytes = b"", *, read_timeout: float = 5.0) -> bytes:
    """Send ``head`` and ``body`` on a fresh connection; return what comes back
    before the server closes or ``read_timeout`` passes."""
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as sock:
        sock.sendall(head + body)
        data = b""
        try:
            while b"\r\n\r\n" not in data or len(data) < data.find(b"\r\n\r\n") + 50:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except TimeoutError:
            pass
        return data


def test_declared_oversize_body_is_refused_before_it_is_sent(gateway: Any) -> None:
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"content-length: 500000000\r\n\r\n"
    )
    started = time.monotonic()
    answer = raw_exchange(gateway.port, head, b'{"model": "gpt-4o-mini"')
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert time.monotonic() - started < 2.0  # not waiting for 500 MB that never come
    assert b"request_too_large" in answer


def test_chunked_oversize_body(gateway: Any) -> None:
    def pieces() -> Iterator[bytes]:
        yield b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "'
        for _ in range(100):
            yield b"x" * 1024

    response = httpx.post(gateway.url + "/v1/chat/completions", content=pieces())
    assert response.status_code == 413


def test_slow_body_times_out_with_408(gateway: Any) -> None:
    head = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n"
    answer = raw_exchange(gateway.port, head, b'{"model": ')  # then nothing: bodyTimeout is 500 ms
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"request_timeout" in answer


def test_garbage_does_not_break_the_gateway(gateway: Any) -> None:
    url = gateway.url + "/v1/chat/completions"
    for body in (
        b"\xff\xfe\x00",
        b"{" * 10_000,
        b"null",
        orjson.dumps({"messages": "hi"}),
        orjson.dumps({"messages": [None]}),
    ):
        assert httpx.post(url, content=body).status_code == 400
    assert httpx.post(gateway.url + "/v1/messages", content=b'{"model": 1}').status_code == 400
    assert httpx.post(gateway.url + "/v1/completions", json={"model": "gpt-4o-mini", "prompt": 3}).status_code == 400
    assert httpx.get(gateway.url + "/health").status_code == 200


def test_client_disconnect_mid_stream_cancels_the_upstream(
    gateway: Any, upstreams: Upstreams, recorder: Recorder
) -> None:
    # Two words, then the upstream waits until its client goes away.
    upstreams.primary.enqueue(ScriptedReply(content="alpha beta gamma delta epsilon", stall_after=2))
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    with (
        httpx.Client(timeout=10) as http,
        http.stream("POST", gateway.url + "/v1/chat/completions", json=body) as response,
    ):
        assert response.status_code == 200
        texts: list[str] = []
        for line in response.iter_lines():
            if line.startswith("data: ") and '"content"' in line:
                delta = orjson.loads(line[6:])["choices"][0]["delta"]
                if delta.get("content"):
                    texts.append(delta["content"])
            if len(texts) == 2:
                break  # leaving the block closes the connection mid-stream
    assert "".join(texts) == "alpha beta"
    wait_for(lambda: upstreams.primary.disconnects >= 1, what="the upstream to see the disconnect")
    ((request, error, attempts),) = wait_for(lambda: recorder.failed, what="request_failed")
    assert request.stream
    assert isinstance(error, RequestCancelledError)
    (attempt,) = attempts
    assert attempt.error_kind == "cancelled"
    assert attempt.provider == "primary"
    assert attempt.tokens.output > 0  # the partial usage, priced
    assert attempt.cost > 0
    assert len(upstreams.backup.completions) == 0


def test_client_gone_before_the_first_token(gateway: Any, upstreams: Upstreams, recorder: Recorder) -> None:
    upstreams.primary.enqueue(ScriptedReply(content="never sent", stall_after=0))
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(gateway.url + "/v1/chat/completions", json=body, timeout=0.5)
    wait_for(lambda: upstreams.primary.disconnects >= 1, what="the upstream to see the disconnect")
    ((_, error, attempts),) = wait_for(lambda: recorder.failed, what="request_failed")
    assert isinstance(error, RequestCancelledError)
    assert attempts[-1].error_kind == "cancelled"


def test_shutdown_drains_in_flight_streams(upstreams: Upstreams) -> None:
    upstreams.primary.default = ScriptedReply(content="one two three four five six seven eight", chunk_delay=0.05)
    try:
        chunks: list[str] = []
        first = threading.Event()
        failures: list[BaseException] = []
        with run_gateway(gateway_config(upstreams)) as gateway:
            client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0)

            def consume() -> None:
                try:
                    for chunk in client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):
                        if chunk.choices and chunk.choices[0].delta.content:
                            chunks.append(chunk.choices[0].delta.content)
                            first.set()
                except BaseException as exc:  # noqa: BLE001 - handed to the test thread
                    failures.append(exc)
                    first.set()

            reader = threading.Thread(target=consume)
            reader.start()
            assert first.wait(5)
            gateway.server.should_exit = True  # what SIGTERM does: stop accepting, drain, then stop
            reader.join(10)
            assert not failures, failures
            assert "".join(chunks) == "one two three four five six seven eight"
            wait_for(lambda: not gateway.app.ready, what="the gateway to stop")
    finally:
        upstreams.primary.default = ScriptedReply()
