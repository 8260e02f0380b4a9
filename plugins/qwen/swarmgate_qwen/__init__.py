"""The ``qwen`` provider type: Alibaba Cloud DashScope (Model Studio), the Qwen models.

Speaks DashScope's native API by default and its OpenAI-compatible mode on
request (delegated to ``swarmgate-openai``). Config (the guide's format)::

    "qwen": {
      "type": "qwen",
      "apiKey": "${DASHSCOPE_API_KEY}",
      "endpoint": "https://dashscope.aliyuncs.com/api/v1",     # optional (native default)
      "mode": "native",                                         # or "openai-compatible"
      "workspace": "ws-...",                                    # optional: X-DashScope-WorkSpace
      "models": {"qwen-plus": {"inputCostPerToken": 8e-7, "outputCostPerToken": 2e-6}}
    }

See :class:`QwenProvider` for what goes over the wire, :class:`QwenSettings`
for every key and :mod:`swarmgate_qwen.errors` for how DashScope's error
codes map to the error taxonomy.
"""

from __future__ import annotations

from swarmgate_qwen.errors import DashScopeError, classify, error_class, refine
from swarmgate_qwen.provider import (
    DEFAULT_COMPATIBLE_ENDPOINT,
    DEFAULT_ENDPOINT,
    WORKSPACE_HEADER,
    CompatibleDelegate,
    QwenProvider,
    default_health_url,
)
from swarmgate_qwen.settings import DEFAULT_MULTIMODAL_MODELS, MODES, NATIVE, OPENAI_COMPATIBLE, QwenSettings

__all__ = [
    "DEFAULT_COMPATIBLE_ENDPOINT",
    "DEFAULT_ENDPOINT",
    "DEFAULT_MULTIMODAL_MODELS",
    "MODES",
    "NATIVE",
    "OPENAI_COMPATIBLE",
    "WORKSPACE_HEADER",
    "CompatibleDelegate",
    "DashScopeError",
    "QwenProvider",
    "QwenSettings",
    "classify",
    "default_health_url",
    "error_class",
    "refine",
]
