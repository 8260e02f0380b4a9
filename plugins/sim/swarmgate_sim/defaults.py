"""The embedded default: the configuration used when none is given.

Four simulated providers, named ``sim-*`` so that nobody mistakes them for
real ones, with models and per-token prices modelled on the real ones
(list prices in USD per token) and four different profiles:

* ``sim-qwen`` -- cheap but flaky: 15% failures (mostly rate limits), a few
  broken streams, and an outage window 8-18 s after start, every 90 s;
* ``sim-openai`` -- fast and pricey;
* ``sim-claude`` -- slow but reliable;
* ``sim-local`` -- a free local model: quick to start, slow to write.

Routing is the kernel's own: ``priority`` (``sim-qwen`` first, then
``sim-openai`` and ``sim-claude`` sharing the load ``round-robin``, then
``sim-local``) with fallback chains, plus two ordered routes, ``fast`` and
``smart``. Every duration is simulated time at ``timeScale`` 1 (real time);
the ``demo`` command runs it faster.
"""

from __future__ import annotations

from typing import Any

PER_MILLION = 1e-6


def _model(
    input_per_m: float, output_per_m: float, max_tokens: int, context: int, temperature: float
) -> dict[str, Any]:
    return {
        "maxTokens": max_tokens,
        "temperature": temperature,
        "inputCostPerToken": input_per_m * PER_MILLION,
        "outputCostPerToken": output_per_m * PER_MILLION,
        "contextWindow": context,
    }


def embedded_default() -> dict[str, Any]:
    """The embedded default config in the feature guide's format (camelCase).

    A new mapping on every call: callers may change it freely.
    """
    return {
        "providers": {
            "sim-qwen": {
                "type": "sim",
                "models": {
                    "qwen-turbo": _model(0.05, 0.2, 4000, 131_072, 0.7),
                    "qwen-max": _model(1.6, 6.4, 8000, 32_768, 0.5),
                },
                "defaultModel": "qwen-turbo",
                "priority": 1,
                "enabled": True,
                "timeout": 8000,
                "ttftMs": 350,
                "ttftJitter": 0.45,
                "tokensPerSecond": 70,
                "outputTokens": [30, 220],
                "failureRate": 0.15,
                "failureKinds": {"rate_limited": 0.5, "overloaded": 0.3, "server_error": 0.2},
                "midStreamFailureRate": 0.05,
                "retryAfterS": 2,
                "outages": [{"startS": 8, "durationS": 10, "everyS": 90, "kind": "connection_error"}],
            },
            "sim-openai": {
                "type": "sim",
                "models": {
                    "gpt-4o-mini": _model(0.15, 0.6, 4000, 128_000, 0.7),
                    "gpt-4o": _model(2.5, 10.0, 8000, 128_000, 0.5),
                },
                "defaultModel": "gpt-4o-mini",
                "priority": 2,
                "enabled": True,
                "timeout": 15000,
                "ttftMs": 220,
                "ttftJitter": 0.3,
                "tokensPerSecond": 120,
                "outputTokens": [40, 260],
                "failureRate": 0.02,
                "failureKinds": {"rate_limited": 0.6, "server_error": 0.4},
                "midStreamFailureRate": 0.01,
            },
            "sim-claude": {
                "type": "sim",
                "models": {
                    "claude-3-5-haiku": _model(0.8, 4.0, 4000, 200_000, 0.7),
                    "claude-3-5-sonnet": _model(3.0, 15.0, 8000, 200_000, 0.5),
                },
                "defaultModel": "claude-3-5-haiku",
                "priority": 2,
                "enabled": True,
                "timeout": 30000,
                "ttftMs": 650,
                "ttftJitter": 0.25,
                "tokensPerSecond": 55,
                "outputTokens": [60, 320],
                "failureRate": 0.005,
                "failureKinds": {"overloaded": 1.0},
            },
            "sim-local": {
                "type": "sim",
                "models": {
                    "llama-3.1-8b": _model(0.0, 0.0, 2000, 8192, 0.8),
                },
                "defaultModel": "llama-3.1-8b",
                "priority": 3,
                "enabled": True,
                "timeout": 20000,
                "ttftMs": 120,
                "ttftJitter": 0.2,
                "tokensPerSecond": 30,
                "outputTokens": [20, 160],
                "failureRate": 0.01,
                "failureKinds": {"connection_error": 1.0},
            },
        },
        "routing": {
            "strategy": "priority",
            "loadBalancing": "round-robin",
            "fallbackEnabled": True,
            "fallbackChains": [
                ["sim-qwen", "sim-openai", "sim-claude", "sim-local"],
                ["sim-openai", "sim-claude", "sim-local"],
                ["sim-claude", "sim-openai", "sim-local"],
            ],
            "healthCheckInterval": 30000,
        },
        "routes": {
            "fast": {
                "targets": ["sim-openai/gpt-4o-mini", "sim-qwen/qwen-turbo", "sim-local/llama-3.1-8b"],
                "ordered": True,
            },
            "smart": {
                "targets": ["sim-claude/claude-3-5-sonnet", "sim-openai/gpt-4o", "sim-qwen/qwen-max"],
                "ordered": True,
            },
        },
    }
