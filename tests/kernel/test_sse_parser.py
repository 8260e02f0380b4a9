"""The byte-level SSE parser behind :func:`swarmgate.http.aiter_sse`."""

from __future__ import annotations

import pytest

from swarmgate.http import SSEEvent, SSEParser

STREAM = (
    b": keep-alive\n"
    b"event: delta\r\n"
    b"data: one\r\n"
    b"data: two\r\n"
    b"\r\n"
    b'data: {"x": 1}\n'
    b"\n"
    b":HTTP_STATUS/429\r"
    b"data:no space\r"
    b"\r"
    b"data: caf\xc3\xa9 \xff\n\n"
    b"data: [DONE]"
)
EXPECTED = [
    SSEEvent("delta", "one\ntwo", (" keep-alive",)),
    SSEEvent("message", '{"x": 1}'),
    SSEEvent("message", "no space", ("HTTP_STATUS/429",)),
    SSEEvent("message", "caf\u00e9 \ufffd"),
    SSEEvent("message", "[DONE]"),
]


def _parse(pieces: list[bytes]) -> list[SSEEvent]:
    parser = SSEParser()
    found = [event for piece in pieces for event in parser.feed(piece)]
    return found + parser.close()


def test_whole_stream() -> None:
    assert _parse([STREAM]) == EXPECTED


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
def test_any_split_gives_the_same_events(size: int) -> None:
    assert _parse([STREAM[i : i + size] for i in range(0, len(STREAM), size)]) == EXPECTED


def test_a_crlf_split_between_pieces_is_one_line_break() -> None:
    assert _parse([b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n"]) == [SSEEvent("message", "a"), SSEEvent("message", "b")]


def test_events_come_as_soon_as_their_blank_line_arrives() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\n") == []
    assert parser.feed(b"\n") == [SSEEvent("message", "a")]
    assert parser.feed(b"") == []
    assert parser.close() == []
