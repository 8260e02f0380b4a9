"""Small load-side helpers for the gateway benchmarks (``compare.py``,
``soak.py``): a raw-socket client that times the first byte and the first
SSE event of a streamed answer, a swarm of concurrently held streams, and
``/proc`` readings (RSS, CPU time, open file descriptors) of a process.

Raw sockets on purpose: the client must cost as little as possible and add
nothing of its own between the bytes and the clock (no HTTP library
buffering, no event loop for the sequential timings).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def rss_kb(pid: int) -> int:
    """Resident memory of ``pid`` and its descendants, in KiB (0 if gone)."""
    total = 0
    for one in (pid, *descendants(pid)):
        try:
            with open(f"/proc/{one}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total


def descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (children, their children, ...)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            with open(f"/proc/{parent}/task/{parent}/children") as children:
                kids = [int(k) for k in children.read().split()]
        except OSError:
            continue
        found += kids
        todo += kids
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and its descendants, in seconds."""
    total = 0
    for one in (pid, *descendants(pid)):
        try:
            with open(f"/proc/{one}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / CLOCK_TICKS


def open_fds(pid: int) -> int:
    """How many file descriptors ``pid`` has open."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def fd_kinds(pid: int) -> dict[str, int]:
    """``pid``'s open file descriptors by kind: ``socket``, ``file``, ``other``
    (pipes, eventfds, epoll, ...)."""
    kinds = {"socket": 0, "file": 0, "other": 0}
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return kinds
    for name in names:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        kind = "socket" if link.startswith("socket:") else "file" if link.startswith("/") else "other"
        kinds[kind] += 1
    return kinds


def http_request(host: str, port: int, path: str, body: bytes, headers: Mapping[str, str]) -> bytes:
    """One HTTP/1.1 POST (keep-alive) as bytes."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class _Reader:
    """Reads one HTTP/1.1 response at a time from a blocking socket, noting
    when its first byte and its first ``data:`` arrived."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.first_byte: float | None = None
        self.first_event: float | None = None

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        now = time.perf_counter()
        if self.first_byte is None:
            self.first_byte = now
        if self.first_event is None and b"data:" in data:
            self.first_event = now
        self.buffer += data

    def _take_line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            self._fill()
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def _take(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def response(self) -> tuple[int, bytes]:
        """The status and the body of the next response."""
        self.first_byte = self.first_event = None
        if self.buffer:
            self.first_byte = time.perf_counter()
            if b"data:" in self.buffer:
                self.first_event = self.first_byte
        status = int(self._take_line().split()[1])
        length: int | None = None
        chunked = False
        while line := self._take_line():
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if not chunked:
            return status, self._take(length or 0)
        body: list[bytes] = []
        while True:
            size = int(self._take_line().split(b";")[0], 16)
            if size == 0:
                while self._take_line():  # trailers, then the empty line
                    pass
                return status, b"".join(body)
            body.append(self._take(size))
            self._take(2)


@dataclass
class Timings:
    """Per-request milliseconds: whole response, first byte, first SSE event."""

    total: list[float]
    first_byte: list[float]
    first_event: list[float]


def sequential_timings(
    host: str, port: int, path: str, bodies: list[bytes], headers: Mapping[str, str], *, warmup: int = 20
) -> Timings:
    """Send ``bodies`` one after the other on one keep-alive connection
    (concurrency 1) and time each: the first ``warmup`` are not counted.
    Raises ``RuntimeError`` for a non-200 answer."""
    timings = Timings([], [], [])
    with socket.create_connection((host, port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = _Reader(sock)
        for i, body in enumerate(bodies):
            request = http_request(host, port, path, body, headers)
            started = time.perf_counter()
            sock.sendall(request)
            status, answer = reader.response()
            done = time.perf_counter()
            if status != 200:
                raise RuntimeError(f"{host}:{port}{path}: HTTP {status}: {answer[:200]!r}")
            if i < warmup:
                continue
            timings.total.append((done - started) * 1000.0)
            timings.first_byte.append(((reader.first_byte or done) - started) * 1000.0)
            timings.first_event.append(((reader.first_event or done) - started) * 1000.0)
    return timings


async def hold_streams(
    host: str, port: int, path: str, body: bytes, headers: Mapping[str, str], count: int, *, within: float
) -> tuple[list[asyncio.StreamWriter], int]:
    """Open ``count`` connections at once, each asking for a stream, and
    wait (at most ``within`` seconds) until each has received its first
    SSE event. Returns the open connections (close them to end the
    streams) and how many streams got their first event."""
    writers: list[asyncio.StreamWriter] = []
    request = http_request(host, port, path, body, headers)

    async def one() -> bool:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
        writers.append(writer)
        writer.write(request)
        await writer.drain()
        seen = b""
        while b"data:" not in seen:
            data = await reader.read(65536)
            if not data:
                return False
            seen = seen[-8:] + data
        return True

    tasks = [asyncio.ensure_future(one()) for _ in range(count)]
    done, pending = await asyncio.wait(tasks, timeout=within)
    for task in pending:
        task.cancel()
    opened = sum(1 for task in done if not task.cancelled() and task.exception() is None and task.result())
    return writers, opened


async def close_all(writers: list[asyncio.StreamWriter]) -> None:
    """Close every connection (the gateways then cancel their upstream calls)."""
    for writer in writers:
        writer.close()
    for writer in writers:
        try:
            await writer.wait_closed()
        except (ConnectionError, OSError):
            pass


class AsyncConnection:
    """One keep-alive HTTP/1.1 connection for paced load (``soak.py``):
    :meth:`request` sends a POST and reads the whole answer (content-length
    or chunked), returning its status."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, path: str, body: bytes, headers: Mapping[str, str]) -> int:
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(http_request(self.host, self.port, path, body, headers))
        reader = self.reader
        status = int((await reader.readuntil(b"\r\n")).split()[1])
        length: int | None = None
        chunked = False
        while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if not chunked:
            await reader.readexactly(length or 0)
            return status
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass
                return status
            await reader.readexactly(size + 2)

    async def aclose(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except (ConnectionError, OSError):
                pass
