"""The http provider type against the kernel's provider conformance suite,
configured three ways (``providers.json``): the generic fake API streaming
SSE, the same API streaming NDJSON, and OpenAI's Chat Completions -- one
driver, three configs."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, ClassVar

from swarmgate.testing import OpenAIWire, ProviderConformance, Wire
from swarmgate.testing.generic_wire import GenericWire
from swarmgate_http import HttpProvider

CONFIGS: dict[str, dict[str, Any]] = json.loads((Path(__file__).parent / "providers.json").read_text())


class _HttpConformance(ProviderConformance):
    provider_type = "http"
    provider_class = HttpProvider
    timeout_ms = 300.0
    #: The entry of providers.json this class runs with.
    config_name: ClassVar[str]

    def provider_config(self, url: str) -> dict[str, Any]:
        return {"endpoint": url, **copy.deepcopy(CONFIGS[self.config_name])}


class TestHttpGenericSSEConformance(_HttpConformance):
    model = "acme-large"
    config_name = "generic-sse"

    def wire(self) -> Wire:
        return GenericWire("sse")


class TestHttpGenericNDJSONConformance(_HttpConformance):
    model = "acme-small"
    config_name = "generic-ndjson"

    def wire(self) -> Wire:
        return GenericWire("ndjson")


class TestHttpOpenAIConformance(_HttpConformance):
    model = "gpt-4o-mini"
    config_name = "openai"

    def wire(self) -> Wire:
        return OpenAIWire()
