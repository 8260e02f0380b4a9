"""The qwen provider type against the kernel's provider conformance suite, in
both modes: DashScope's native API (against the fake DashScope upstream) and
the OpenAI-compatible mode (against the fake OpenAI upstream at DashScope's
``/compatible-mode/v1`` path)."""

from __future__ import annotations

from typing import Any

from swarmgate.testing import OpenAIWire, ProviderConformance, Wire
from swarmgate.testing.dashscope_wire import DashScopeWire
from swarmgate_qwen import QwenProvider


class TestQwenNativeConformance(ProviderConformance):
    provider_type = "qwen"
    provider_class = QwenProvider
    model = "qwen-plus"

    def wire(self) -> Wire:
        return DashScopeWire()

    def provider_config(self, url: str) -> dict[str, Any]:
        return {"endpoint": url, "workspace": "ws-conformance"}


class TestQwenCompatibleConformance(ProviderConformance):
    provider_type = "qwen"
    provider_class = QwenProvider
    model = "qwen-plus"

    def wire(self) -> Wire:
        return OpenAIWire(("qwen-plus", "qwen-max"), base_path="/compatible-mode/v1")

    def provider_config(self, url: str) -> dict[str, Any]:
        return {"endpoint": url, "mode": "openai-compatible"}
