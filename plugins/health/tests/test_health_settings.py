"""The configuration: activation, defaults, the guide's two shapes,
per-provider overrides and errors named by path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from swarmgate import ConfigError, load_config
from swarmgate_health import Check, load_settings
from swarmgate_health.settings import DEFAULT_PASSIVE_KINDS


def settings_of(routing: dict[str, Any] | None = None, **providers: dict[str, Any]) -> Any:
    config = {
        "providers": providers or {"a": {"type": "scripted", "models": {"m": {}}}},
        "routing": routing or {},
    }
    return load_settings(load_config(config))


def problems(routing: dict[str, Any] | None = None, **providers: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        settings_of(routing, **providers)
    return dict(caught.value.problems)


def test_inert_without_a_health_section() -> None:
    settings = settings_of()
    assert not settings.active
    assert not settings.plans["a"].monitored


def test_the_guides_routing_shape() -> None:
    settings = settings_of(
        {
            "healthCheck": {
                "enabled": True,
                "interval": 30000,
                "timeout": 5000,
                "failureThreshold": 3,
                "successThreshold": 2,
            }
        }
    )
    plan = settings.plans["a"]
    assert settings.active
    assert plan.monitored
    assert plan.checks == (Check("ping", 30.0, 5.0),)
    assert (plan.failure_threshold, plan.success_threshold) == (3, 2)


def test_health_check_interval_alone_activates_with_defaults() -> None:
    settings = settings_of({"healthCheckInterval": 10000})
    plan = settings.plans["a"]
    assert plan.monitored
    assert plan.checks == (Check("ping", 10.0, 5.0),)
    assert (plan.failure_threshold, plan.success_threshold) == (3, 2)
    assert settings.passive.kinds == DEFAULT_PASSIVE_KINDS
    assert settings.passive.failure_threshold == 5


def test_enabled_false_wins_over_presence() -> None:
    assert not settings_of({"healthCheck": {"enabled": False, "interval": 1000}, "healthCheckInterval": 5}).active


def test_the_guides_monitoring_shape() -> None:
    settings = settings_of(
        {
            "healthCheckInterval": 45000,
            "healthCheck": {
                "enabled": True,
                "checks": [
                    {"type": "ping", "interval": 30000, "timeout": 5000},
                    {"type": "request", "interval": 60000, "testPrompt": "Hello", "expectedResponseLength": 1},
                    {"type": "ping"},
                ],
                "alerts": {"failureThreshold": 4, "recoveryThreshold": 1, "notifications": ["email", "webhook"]},
            },
        }
    )
    plan = settings.plans["a"]
    assert plan.checks == (
        Check("ping", 30.0, 5.0),
        Check("request", 60.0, 5.0, "Hello", 1, 16, None),
        Check("ping", 45.0, 5.0),  # inherits routing.healthCheckInterval
    )
    assert (plan.failure_threshold, plan.success_threshold) == (4, 1)
    assert settings.notifications == ("email", "webhook")


def test_per_provider_overrides_and_foreign_keys() -> None:
    settings = settings_of(
        {"healthCheck": {"interval": 30000, "timeout": 2000, "failureThreshold": 3}},
        a={
            "type": "scripted",
            "healthCheck": {"interval": 5000, "failureThreshold": 1, "method": "HEAD", "path": "/x"},
        },
        b={"type": "scripted", "healthCheck": {"enabled": False}},
        c={
            "type": "scripted",
            "healthCheck": {"checks": [{"type": "request", "maxTokens": 4, "model": "m2"}], "timeout": 900},
        },
        d={"type": "scripted", "enabled": False, "healthCheck": {"interval": -1}},
    )
    a, b, c = settings.plans["a"], settings.plans["b"], settings.plans["c"]
    assert a.checks == (Check("ping", 5.0, 2.0),)
    assert a.failure_threshold == 1
    assert a.success_threshold == 2
    assert not b.monitored
    assert c.checks == (Check("request", 30.0, 0.9, "Hello", 1, 4, "m2"),)
    assert "d" not in settings.plans  # disabled providers are not built, nor checked


def test_a_provider_may_enable_monitoring_alone() -> None:
    settings = settings_of(
        None,
        a={"type": "scripted", "healthCheck": {"enabled": True}},
        b={"type": "scripted"},
    )
    assert settings.active
    assert settings.plans["a"].monitored
    assert not settings.plans["b"].monitored


def test_diagnosis_monitors_everything_with_thresholds_of_one() -> None:
    settings = settings_of(
        {"healthCheck": {"failureThreshold": 5}},
        a={"type": "scripted", "healthCheck": {"enabled": False}},
    ).diagnosis()
    plan = settings.plans["a"]
    assert plan.monitored
    assert (plan.failure_threshold, plan.success_threshold) == (1, 1)


@pytest.mark.parametrize(
    ("routing", "path", "message"),
    [
        ({"healthCheck": {"interval": 0}}, "routing.healthCheck.interval", "positive"),
        ({"healthCheck": {"timeout": "5s"}}, "routing.healthCheck.timeout", "expected a number"),
        ({"healthCheck": {"failureThreshold": 0}}, "routing.healthCheck.failureThreshold", "at least 1"),
        ({"healthCheck": {"jitter": 1.5}}, "routing.healthCheck.jitter", "[0, 1)"),
        ({"healthCheck": {"intervall": 5}}, "routing.healthCheck.intervall", "unknown key"),
        ({"healthCheck": {"checks": []}}, "routing.healthCheck.checks", "at least one check"),
        ({"healthCheck": {"checks": [{"type": "tcp"}]}}, "routing.healthCheck.checks[0].type", "unknown check type"),
        (
            {"healthCheck": {"checks": [{"type": "ping", "testPrompt": "hi"}]}},
            "routing.healthCheck.checks[0].testPrompt",
            "'request' checks only",
        ),
        (
            {"healthCheck": {"checks": [{"type": "request", "expectedResponseLength": -1}]}},
            "routing.healthCheck.checks[0].expectedResponseLength",
            "negative",
        ),
        (
            {"healthCheck": {"failureThreshold": 3, "alerts": {"failureThreshold": 4}}},
            "routing.healthCheck.failureThreshold",
            "disagrees with alerts.failureThreshold",
        ),
        (
            {"healthCheck": {"alerts": {"recoveryThreshold": 0}}},
            "routing.healthCheck.alerts.recoveryThreshold",
            "at least 1",
        ),
        (
            {"healthCheck": {"passive": {"kinds": ["timeout", "meltdown"]}}},
            "routing.healthCheck.passive.kinds",
            "unknown error kind 'meltdown'",
        ),
        ({"healthCheckInterval": -5}, "routing.healthCheckInterval", "positive"),
    ],
)
def test_bad_values_are_named_by_path(routing: dict[str, Any], path: str, message: str) -> None:
    found = problems(routing)
    assert path in found, found
    assert message in found[path]


def test_bad_provider_overrides_are_named_by_path() -> None:
    found = problems(
        {"healthCheckInterval": 1000},
        a={"type": "scripted", "healthCheck": {"interval": 0, "path": "/ignored"}},
        b={"type": "scripted", "healthCheck": {"checks": [{"type": "request", "maxTokens": 0}]}},
    )
    assert "positive" in found["providers.a.healthCheck.interval"]
    assert "at least 1" in found["providers.b.healthCheck.checks[0].maxTokens"]


def test_the_readme_example_is_valid() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    block = readme.split("```json\n", 1)[1].split("```", 1)[0]
    config = load_config(json.loads(block), env={"QWEN_API_KEY": "q-key", "OPENAI_API_KEY": "o-key"})
    settings = load_settings(config)
    assert settings.active
    assert settings.notifications == ("email", "webhook")
    assert [c.type for c in settings.plans["qwen"].checks] == ["ping", "request"]
    assert settings.plans["openai"].failure_threshold == 2
    assert settings.plans["openai"].checks[0].interval == 10.0
    assert settings.plans["edge"].monitored  # its probe-request keys are the http type's, ignored here
