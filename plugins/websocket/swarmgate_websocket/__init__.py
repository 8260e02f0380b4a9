"""The ``websocket`` provider type: LLM APIs that stream over a WebSocket.

Each request opens a WebSocket (``ws://`` or ``wss://``; the API key goes
into the handshake through a ``{{apiKey}}`` placeholder), sends one request
message rendered from a JSON template, and reads messages until a done
marker, picking text deltas, tool calls, the finish reason, token usage and
errors out of each with JMESPath expressions. The defaults speak the OpenAI
Chat Completions format over the socket; other protocols are a matter of
configuration (see the README).

It runs on asyncio and trio alike: the ``websockets`` library's Sans-I/O
protocol layer is driven over anyio byte streams
(:mod:`swarmgate_websocket.connection`).

Config (the guide's format)::

    "realtime": {
      "type": "websocket",
      "url": "wss://api.example.com/v1/stream",
      "apiKey": "${EXAMPLE_API_KEY}",
      "connectHeaders": {"Authorization": "Bearer {{apiKey}}"},
      "models": {"example-1": {"costPerToken": 0.000002}}
    }
"""

from __future__ import annotations

from swarmgate_websocket.provider import WebSocketProvider
from swarmgate_websocket.settings import (
    DEFAULT_ERROR_CODES,
    DEFAULT_FINISH_REASONS,
    DEFAULT_MESSAGE,
    DoneMarker,
    MessagePaths,
    WebSocketSettings,
)

__all__ = [
    "DEFAULT_ERROR_CODES",
    "DEFAULT_FINISH_REASONS",
    "DEFAULT_MESSAGE",
    "DoneMarker",
    "MessagePaths",
    "WebSocketProvider",
    "WebSocketSettings",
]
