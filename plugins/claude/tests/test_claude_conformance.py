"""The claude provider type against the kernel's provider conformance suite."""

from __future__ import annotations

from typing import Any

from swarmgate.testing import ProviderConformance, Wire
from swarmgate.testing.anthropic_wire import AnthropicWire
from swarmgate_claude import ClaudeProvider


class TestClaudeConformance(ProviderConformance):
    provider_type = "claude"
    provider_class = ClaudeProvider
    model = "claude-haiku-4-5"
    api_key = "sk-ant-api03-conformance-0123456789abcdefSECRET"

    def wire(self) -> Wire:
        return AnthropicWire()

    def provider_config(self, url: str) -> dict[str, Any]:
        return {"endpoint": url, "anthropicVersion": "2023-06-01"}
