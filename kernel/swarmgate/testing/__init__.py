"""Testing tools for swarmgate and its plugins.

* :class:`FakeUpstream`: a real HTTP/1.1 server on a loopback socket that
  speaks a provider's wire format (:class:`OpenAIWire`, or any :class:`Wire`),
  scripted reply by reply with :class:`ScriptedReply`, including failures
  (error statuses, delays, stalls, cut or malformed streams).
* :class:`ScriptedProvider`: an in-process provider type scripted call by
  call with :class:`Outcome` (for pipeline and routing-plugin tests).
* :class:`ProviderConformance`: the pytest base class every provider
  plugin's tests subclass. It needs pytest, so it is imported on first use:
  importing this package does not import pytest.

The public API is exactly ``__all__``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from swarmgate.testing.openai_wire import OpenAIWire
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
    from swarmgate.testing.conformance import ProviderConformance, attempt_error

__all__ = [
    "DEFAULT_CONTENT",
    "Endpoint",
    "FakeUpstream",
    "OpenAIWire",
    "Outcome",
    "ProviderConformance",
    "RecordedRequest",
    "SSEPlan",
    "ScriptedProvider",
    "ScriptedReply",
    "ScriptedSettings",
    "Wire",
    "WireRequest",
    "attempt_error",
    "count_words",
    "split_words",
    "unreachable_url",
]

_NEEDS_PYTEST = frozenset({"ProviderConformance", "attempt_error"})


def __getattr__(name: str) -> Any:
    if name in _NEEDS_PYTEST:
        from swarmgate.testing import conformance

        return getattr(conformance, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
