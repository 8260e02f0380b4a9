"""The gateway process's serving tweaks: the write-coalescing transport
under uvicorn's protocol, and the garbage-collector tuning."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from swarmgate_server.protocol import CoalescingHttpToolsProtocol, CoalescingTransport
from swarmgate_server.serving import fastest_http


class _Recorder:
    """A transport that records its writes."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name in ("peername", "sockname") else default


def _transport() -> tuple[CoalescingTransport, _Recorder]:
    inner = _Recorder()
    return CoalescingTransport(inner, asyncio.get_running_loop()), inner  # type: ignore[arg-type]


async def _turn() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_writes_of_one_turn_leave_together_in_order() -> None:
    transport, inner = _transport()
    transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    transport.write(b"{}")
    transport.writelines([b"a", bytearray(b"b"), memoryview(b"c")])
    assert inner.writes == []
    await _turn()
    assert inner.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}abc"]
    transport.write(b"")
    await _turn()
    assert len(inner.writes) == 1


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_a_stream_s_headers_leave_with_its_first_event_at_once() -> None:
    transport, inner = _transport()
    transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
    transport.write(b"5\r\ndata:\r\n")
    assert len(inner.writes) == 1
    transport.write(b"6\r\ndata:2\r\n")
    transport.write(b"0\r\n\r\n")
    assert len(inner.writes) == 1
    await _turn()
    assert inner.writes[1] == b"6\r\ndata:2\r\n0\r\n\r\n"


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_close_sends_what_is_held_and_abort_drops_it() -> None:
    transport, inner = _transport()
    transport.write(b"held")
    transport.close()
    assert inner.writes == [b"held"]
    assert inner.closed
    transport, inner = _transport()
    transport.write(b"held")
    transport.abort()
    await _turn()
    assert inner.writes == []
    assert transport.get_extra_info("peername") == ("127.0.0.1", 1)


def test_the_gateway_serves_with_the_coalescing_protocol() -> None:
    assert fastest_http() is CoalescingHttpToolsProtocol


def test_the_collector_is_tuned_once_the_gateway_started() -> None:
    import gc
    import subprocess
    import sys

    code = (
        "import gc\n"
        "from swarmgate_server.gctune import YOUNG_THRESHOLD, tune_gc\n"
        "tune_gc()\n"
        "assert gc.get_threshold()[0] == YOUNG_THRESHOLD, gc.get_threshold()\n"
        "assert gc.get_freeze_count() > 0\n"
    )
    # In a process of its own: the tuning is process-wide, and the test process keeps CPython's defaults.
    subprocess.run([sys.executable, "-c", code], check=True)
    assert gc.get_freeze_count() == 0
