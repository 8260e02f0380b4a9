"""The openai provider type against the kernel's provider conformance suite."""

from __future__ import annotations

from typing import Any

from swarmgate.testing import OpenAIWire, ProviderConformance, Wire
from swarmgate_openai import OpenAIProvider


class TestOpenAIConformance(ProviderConformance):
    provider_type = "openai"
    provider_class = OpenAIProvider
    model = "gpt-4o-mini"

    def wire(self) -> Wire:
        return OpenAIWire()

    def provider_config(self, url: str) -> dict[str, Any]:
        return {"endpoint": url, "organization": "org-conformance"}
