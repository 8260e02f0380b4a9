"""The ``qwen`` provider type's own config keys (camelCase at the top level of the provider)."""

from __future__ import annotations

import attrs

from swarmgate.config import InvalidValue

NATIVE = "native"
"""Mode: DashScope's native text/multimodal generation API (``/api/v1``)."""

OPENAI_COMPATIBLE = "openai-compatible"
"""Mode: DashScope's OpenAI-compatible API (``/compatible-mode/v1``), spoken by ``swarmgate-openai``."""

MODES: tuple[str, ...] = (NATIVE, OPENAI_COMPATIBLE)

DEFAULT_MULTIMODAL_MODELS: tuple[str, ...] = (
    "qwen-vl-*",
    "qwen2-vl-*",
    "qwen2.5-vl-*",
    "qwen3-vl-*",
    "qvq-*",
    "qwen-audio-*",
    "qwen2-audio-*",
)
"""Upstream model names (shell-style patterns) served by the multimodal-generation endpoint."""


def _check_mode(_instance: object, _attribute: object, value: str) -> None:
    if value not in MODES:
        raise InvalidValue("mode", f"must be one of {', '.join(repr(m) for m in MODES)}, got {value!r}")


def _check_patterns(_instance: object, _attribute: object, value: tuple[str, ...]) -> None:
    for index, pattern in enumerate(value):
        if not pattern.strip():
            raise InvalidValue(f"multimodalModels[{index}]", "must be a non-empty model name or pattern")


def _check_health_url(_instance: object, _attribute: object, value: str | None) -> None:
    if value is not None and not value.startswith(("http://", "https://")):
        raise InvalidValue("healthUrl", f"must be an http:// or https:// URL, got {value!r}")


@attrs.frozen
class QwenSettings:
    """The ``qwen`` type's config keys.

    * ``mode`` (``"native"``, default, or ``"openai-compatible"``): which
      DashScope API to speak. The compatible mode is delegated to the
      ``openai`` driver (``swarmgate_openai.OpenAIProvider``); DashScope's
      error codes are still mapped to the taxonomy.
    * ``workspace``: a Model Studio workspace id, sent as the
      ``X-DashScope-WorkSpace`` header (both modes).
    * ``multimodal_models`` (``multimodalModels``): native mode only; shell
      patterns of upstream model names that must use the
      multimodal-generation endpoint (Qwen-VL, QVQ, Qwen-Audio) even for a
      text-only prompt. A request with image, audio or video parts always
      does.
    * ``health_url`` (``healthUrl``): what the health probe GETs. Default:
      the compatible mode's models listing on the endpoint's host (native
      mode), or ``{endpoint}/models`` (compatible mode).
    * ``stream_usage`` (``streamUsage``): compatible mode only; ask for
      usage in streams (``stream_options.include_usage``, default true).
      Native streams always carry usage.
    """

    mode: str = attrs.field(default=NATIVE, validator=_check_mode)
    workspace: str | None = None
    multimodal_models: tuple[str, ...] = attrs.field(default=DEFAULT_MULTIMODAL_MODELS, validator=_check_patterns)
    health_url: str | None = attrs.field(default=None, validator=_check_health_url)
    stream_usage: bool = True
