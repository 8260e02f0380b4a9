"""The ``claude`` provider type: Anthropic's Messages API.

Requests are written OpenAI-style (messages, tools, ``image_url`` parts)
and sent as Anthropic Messages requests; answers, stream events, usage and
errors come back in swarmgate's terms.

Config (the guide's format)::

    "claude": {
      "type": "claude",
      "apiKey": "${CLAUDE_API_KEY}",                  # sent as x-api-key
      "endpoint": "https://api.anthropic.com/v1",     # optional (the default)
      "anthropicVersion": "2023-06-01",               # optional (the default)
      "anthropicBeta": "token-efficient-tools-2025-02-19",  # optional
      "defaultMaxTokens": 4096,                       # optional (the default)
      "models": {"claude-haiku-4-5": {"inputCostPerToken": 1e-6, "outputCostPerToken": 5e-6}}
    }

One pooled ``httpx.AsyncClient`` per provider instance, opened in
:meth:`ClaudeProvider.start` and closed in :meth:`ClaudeProvider.aclose`.
The public API is exactly ``__all__``.
"""

from swarmgate_claude.provider import (
    DEFAULT_ENDPOINT,
    DEFAULT_MAX_TOKENS,
    DEFAULT_VERSION,
    ClaudeProvider,
    ClaudeSettings,
)

__all__ = ["DEFAULT_ENDPOINT", "DEFAULT_MAX_TOKENS", "DEFAULT_VERSION", "ClaudeProvider", "ClaudeSettings"]
