"""The local provider type against the kernel's provider conformance suite:
once on Ollama's native API, once on an OpenAI-compatible server."""

from __future__ import annotations

from typing import Any

from swarmgate.testing import OpenAIWire, ProviderConformance, Wire
from swarmgate.testing.ollama_wire import OllamaWire
from swarmgate_local import LocalProvider


class TestOllamaConformance(ProviderConformance):
    provider_type = "local"
    provider_class = LocalProvider
    model = "llama3.2"

    def wire(self) -> Wire:
        return OllamaWire()

    def provider_config(self, url: str) -> dict[str, Any]:
        return {"endpoint": url, "keepAlive": "5m"}


class TestOpenAICompatibleConformance(ProviderConformance):
    provider_type = "local"
    provider_class = LocalProvider
    model = "meta-llama/Llama-3.1-8B-Instruct"

    def wire(self) -> Wire:
        return OpenAIWire(models=("meta-llama/Llama-3.1-8B-Instruct",))

    def provider_config(self, url: str) -> dict[str, Any]:
        return {"endpoint": url, "api": "openai"}
