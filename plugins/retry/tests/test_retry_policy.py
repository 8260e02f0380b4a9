"""The retry plugin's settings: layering, the guide's names and shapes,
backoff bounds with full jitter, and bad values named by path."""

from __future__ import annotations

import random
from typing import Any

import pytest

from swarmgate import ConfigError, ProviderManager
from swarmgate.errors import ErrorKind
from swarmgate.testing import ScriptedProvider
from swarmgate_retry import Action, RetryPlugin
from swarmgate_retry.settings import RetryPolicySection, RetrySection, resolve

DRIVERS = {"swarmgate.providers": {"scripted": ScriptedProvider}}


def policy(**keys: Any) -> Any:
    return resolve([RetrySection(**keys)])


def test_backoff_full_jitter_stays_within_the_exponential_cap() -> None:
    p = policy(initial_delay=100.0, backoff_multiplier=2.0, max_delay=1000.0)
    caps = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]
    assert [p.cap(n) for n in range(7)] == pytest.approx(caps)
    for n, cap in enumerate(caps):
        rng = random.Random(n)
        draws = [p.backoff(n, rng) for _ in range(2000)]
        assert all(0.0 <= d <= cap for d in draws)
        # Full jitter spreads over the whole range, not just near the cap.
        assert min(draws) < 0.05 * cap
        assert max(draws) > 0.95 * cap
        assert 0.4 * cap < sum(draws) / len(draws) < 0.6 * cap


def test_backoff_is_reproducible_with_a_seed() -> None:
    p = policy(initial_delay=50.0)
    first = [p.backoff(n, rng) for rng in [random.Random(42)] for n in range(5)]
    second = [p.backoff(n, rng) for rng in [random.Random(42)] for n in range(5)]
    assert first == second


def test_equal_and_no_jitter() -> None:
    equal = policy(initial_delay=100.0, jitter="equal")
    none = policy(initial_delay=100.0, jitter="none")
    rng = random.Random(3)
    for n in range(5):
        cap = equal.cap(n)
        assert cap / 2 <= equal.backoff(n, rng) <= cap
        assert none.backoff(n, rng) == cap
    assert policy(initial_delay=0.0).backoff(3, rng) == 0.0
    # A long streak neither overflows nor exceeds maxDelay.
    assert policy(max_delay=5000.0).cap(10_000) == 5.0


def test_defaults_follow_the_kernel_and_the_guide() -> None:
    p = resolve([])
    assert (p.max_attempts, p.backoff_multiplier, p.initial_delay, p.max_delay, p.jitter) == (3, 2.0, 1.0, 10.0, "full")
    retried = {k for k, a in p.actions.items() if a is Action.RETRY}
    assert retried == {
        ErrorKind.TIMEOUT,
        ErrorKind.RATE_LIMITED,
        ErrorKind.OVERLOADED,
        ErrorKind.SERVER_ERROR,
        ErrorKind.CONNECTION_ERROR,
    }
    assert p.actions[ErrorKind.CONTENT_FILTERED] is Action.ABORT
    assert p.actions[ErrorKind.INVALID_REQUEST] is Action.ABORT
    assert p.actions[ErrorKind.CONTEXT_LENGTH_EXCEEDED] is Action.SWITCH_MODEL
    assert p.actions[ErrorKind.AUTHENTICATION] is Action.REFRESH_CREDENTIALS
    assert p.actions[ErrorKind.PERMISSION] is Action.SWITCH_PROVIDER
    assert p.actions[ErrorKind.NOT_FOUND] is Action.SWITCH_PROVIDER


def test_the_guides_error_recovery_shape() -> None:
    section = RetrySection(retry_policy=RetryPolicySection(max_attempts=5, backoff_multiplier=3.0, initial_delay=200.0))
    p = resolve([section])
    assert (p.max_attempts, p.backoff_multiplier, p.initial_delay) == (5, 3.0, 0.2)


@pytest.mark.anyio
async def test_layers_and_the_guides_names() -> None:
    config = {
        "providers": {
            "a": {"type": "scripted", "models": {"m": {}}, "retry": {"maxAttempts": 1, "recoveryActions": {}}},
            "b": {"type": "scripted", "models": {"m": {}}, "retry": {"enabled": False}},
            "c": {"type": "scripted", "models": {"m": {}}},
        },
        "optimization": {
            "retry": {
                "retryPolicy": {"maxAttempts": 3, "backoffMultiplier": 2, "initialDelay": 1000},
                "errorClassification": {
                    "retryable": ["timeout", "rate_limit", "temporary_error"],
                    "nonRetryable": ["authentication", "invalid_request", "forbidden"],
                },
                "recoveryActions": {
                    "rate_limit": "switch_provider",
                    "timeout": "increase_timeout",
                    "authentication": "refresh_credentials",
                },
            }
        },
        "routing": {"retry": {"maxDelay": 2500, "jitter": "equal"}},
    }
    async with ProviderManager(config, drivers=DRIVERS, plugins=(RetryPlugin(),)) as manager:
        service = manager.extensions["retry"]
        c = service.policy("c")
        assert (c.max_attempts, c.max_delay, c.jitter) == (3, 2.5, "equal")
        assert c.actions[ErrorKind.RATE_LIMITED] is Action.SWITCH_PROVIDER
        assert c.actions[ErrorKind.TIMEOUT] is Action.INCREASE_TIMEOUT
        assert c.actions[ErrorKind.SERVER_ERROR] is Action.RETRY
        assert c.actions[ErrorKind.AUTHENTICATION] is Action.REFRESH_CREDENTIALS
        a = service.policy("a")
        assert a.max_attempts == 1
        assert a.actions[ErrorKind.RATE_LIMITED] is Action.SWITCH_PROVIDER  # inherited key by key
        assert not service.policy("b").enabled
        assert service.counters()["retries"] == 0
        assert (await service.budget())["allowance"] == pytest.approx(10.0)  # 1/s over the 10 s window


@pytest.mark.anyio
async def test_inert_without_any_section() -> None:
    config = {"providers": {"a": {"type": "scripted", "models": {"m": {}}}}}
    plugin = RetryPlugin()
    async with ProviderManager(config, drivers=DRIVERS, plugins=(plugin,)) as manager:
        assert "retry" not in manager.extensions
        assert not plugin.active


BAD: list[tuple[dict[str, Any], str, str]] = [
    ({"maxAttempts": 0}, "optimization.retry.maxAttempts", "at least 1"),
    ({"maxAttempts": "3"}, "optimization.retry.maxAttempts", "expected an integer"),
    ({"backoffMultiplier": 0.5}, "optimization.retry.backoffMultiplier", "between 1 and 100"),
    ({"initialDelay": -1}, "optimization.retry.initialDelay", "non-negative"),
    ({"jitter": "half"}, "optimization.retry.jitter", "'full', 'equal', 'none'"),
    ({"retryPolicy": {"maxDelay": -5}}, "optimization.retry.retryPolicy.maxDelay", "non-negative"),
    ({"maxAttempts": 2, "retryPolicy": {"maxAttempts": 3}}, "optimization.retry.retryPolicy.maxAttempts", "also given"),
    (
        {"errorClassification": {"retryable": ["gremlins"]}},
        "optimization.retry.errorClassification.retryable[0]",
        "unknown error name",
    ),
    (
        {"errorClassification": {"retryable": ["timeout", "authentication"]}},
        "optimization.retry.errorClassification.retryable[1]",
        "refresh_credentials",
    ),
    (
        {"errorClassification": {"retryable": ["timeout"], "nonRetryable": ["timeout"]}},
        "optimization.retry.errorClassification.nonRetryable",
        "also listed as retryable",
    ),
    ({"recoveryActions": {"rate_limit": "explode"}}, "optimization.retry.recoveryActions.rate_limit", "unknown action"),
    (
        {"recoveryActions": {"content_filtered": "retry"}},
        "optimization.retry.recoveryActions.content_filtered",
        "allowed: abort",
    ),
    ({"recoveryActions": {"forbidden": "retry"}}, "optimization.retry.recoveryActions.forbidden", "does not apply"),
    ({"recoveryActions": {"typo": "retry"}}, "optimization.retry.recoveryActions.typo", "unknown error name"),
    (
        {"errorClassification": {"nonRetryable": ["timeout"]}, "recoveryActions": {"timeout": "retry"}},
        "optimization.retry.recoveryActions.timeout",
        "contradicts",
    ),
    ({"retryBudget": {"ratio": -1}}, "optimization.retry.retryBudget.ratio", "between 0 and 10"),
    ({"retryBudget": {"window": 0}}, "optimization.retry.retryBudget.window", "positive"),
    ({"retries": 3}, "optimization.retry.retries", "unknown key"),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("section", "path", "message"), BAD)
async def test_bad_values_are_named_by_path(section: dict[str, Any], path: str, message: str) -> None:
    config = {"providers": {"a": {"type": "scripted", "models": {"m": {}}}}, "optimization": {"retry": section}}
    with pytest.raises(ConfigError) as info:
        await ProviderManager(config, drivers=DRIVERS, plugins=(RetryPlugin(),)).initialize()
    assert [p for p, _ in info.value.problems] == [path]
    assert message in info.value.problems[0][1]


@pytest.mark.anyio
async def test_a_provider_section_may_not_hold_the_budget() -> None:
    config = {
        "providers": {
            "a": {"type": "scripted", "models": {"m": {}}, "retry": {"retryBudget": {"ratio": 0.5}}},
            "b": {"type": "scripted", "models": {"m": {}}, "retry": {"jitter": "some"}},
        },
        "routing": {"retry": {"maxAttempts": 2}},
    }
    with pytest.raises(ConfigError) as info:
        await ProviderManager(config, drivers=DRIVERS, plugins=(RetryPlugin(),)).initialize()
    assert [p for p, _ in info.value.problems] == ["providers.a.retry.retryBudget", "providers.b.retry.jitter"]
