"""Testing tools for swarmgate and its plugins.

* :class:`FakeUpstream`: a real HTTP/1.1 server on a loopback socket that
  speaks a provider's wire format (:class:`OpenAIWire`, or any :class:`Wire`),
  scripted reply by reply with :class:`ScriptedReply`, including failures
  (error statuses, delays, stalls, cut or malformed streams).
* :class:`ScriptedProvider`: an in-process provider type scripted call by
  call with :class:`Outcome` (for pipeline and routing-plugin tests).
* Wires for the fake upstream: :class:`OpenAIWire`, :class:`AnthropicWire`,
  :class:`DashScopeWire`, :class:`OllamaWire` (NDJSON), :class:`GenericWire`
  (a made-up REST API, SSE or NDJSON).
* :class:`HTTPProxy` and :class:`SOCKS5Proxy`: real loopback proxies that
  record what went through them.
* :class:`FakeWebSocketUpstream` with :class:`WebSocketWire` and
  :class:`RealtimeWire`: the same scripting over WebSockets (needs the
  ``websockets`` package; imported on first use).
* :func:`assert_no_secrets` (module :mod:`swarmgate.testing.leaks`): fail
  when any slice of a secret shows up in what a run wrote.
* :class:`ProviderConformance`: the pytest base class every provider
  plugin's tests subclass. It needs pytest, so it is imported on first use:
  importing this package does not import pytest.

The public API is exactly ``__all__``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from swarmgate.testing.anthropic_wire import AnthropicWire
from swarmgate.testing.dashscope_wire import DashScopeWire
from swarmgate.testing.failures import attempt_error, expect_failure
from swarmgate.testing.generic_wire import GenericWire
from swarmgate.testing.leaks import assert_no_secrets
from swarmgate.testing.ollama_wire import OllamaWire
from swarmgate.testing.openai_wire import OpenAIWire
from swarmgate.testing.proxy_servers import HTTPProxy, ProxyRecord, SOCKS5Proxy
from swarmgate.testing.scripted import Outcome, ScriptedProvider, ScriptedSettings
from swarmgate.testing.upstream import (
    DEFAULT_CONTENT,
    Endpoint,
    FakeUpstream,
    RecordedRequest,
    ScriptedReply,
    SSEPlan,
    Wire,
    WireRequest,
    count_words,
    split_words,
    unreachable_url,
)

if TYPE_CHECKING:
    from swarmgate.testing.conformance import ProviderConformance
    from swarmgate.testing.websocket_upstream import (
        FakeWebSocketUpstream,
        RealtimeWire,
        ScriptedClose,
        WebSocketWire,
    )

__all__ = [
    "DEFAULT_CONTENT",
    "AnthropicWire",
    "DashScopeWire",
    "Endpoint",
    "FakeUpstream",
    "FakeWebSocketUpstream",
    "GenericWire",
    "HTTPProxy",
    "OllamaWire",
    "OpenAIWire",
    "Outcome",
    "ProviderConformance",
    "ProxyRecord",
    "RealtimeWire",
    "RecordedRequest",
    "SOCKS5Proxy",
    "SSEPlan",
    "ScriptedClose",
    "ScriptedProvider",
    "ScriptedReply",
    "ScriptedSettings",
    "WebSocketWire",
    "Wire",
    "WireRequest",
    "assert_no_secrets",
    "attempt_error",
    "count_words",
    "expect_failure",
    "split_words",
    "unreachable_url",
]

_NEEDS_PYTEST = frozenset({"ProviderConformance"})
_NEEDS_WEBSOCKETS = frozenset({"FakeWebSocketUpstream", "RealtimeWire", "ScriptedClose", "WebSocketWire"})


def __getattr__(name: str) -> Any:
    if name in _NEEDS_PYTEST:
        from swarmgate.testing import conformance

        return getattr(conformance, name)
    if name in _NEEDS_WEBSOCKETS:
        from swarmgate.testing import websocket_upstream

        return getattr(websocket_upstream, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
