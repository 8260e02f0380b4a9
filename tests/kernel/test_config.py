"""Config loading: the guide's format, ${ENV}, YAML, and errors that name paths."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from swarmgate import ConfigError, PluginError, ProviderManager
from swarmgate.config import load_config, to_dict
from swarmgate.testing.scripted import ScriptedProvider

GUIDE_CONFIG: dict[str, Any] = {
    "providers": {
        "qwen": {
            "type": "qwen",
            "apiKey": "${QWEN_API_KEY}",
            "endpoint": "https://dashscope.aliyuncs.com/api/v1",
            "models": {
                "qwen-turbo": {"maxTokens": 4000, "temperature": 0.7, "costPerToken": 0.0001},
                "qwen-max": {"maxTokens": 8000, "temperature": 0.5, "costPerToken": 0.0002},
            },
            "priority": 1,
            "enabled": True,
        },
        "openai": {
            "type": "openai",
            "apiKey": "${OPENAI_API_KEY}",
            "endpoint": "https://api.openai.com/v1",
            "models": {"gpt-4": {"maxTokens": 8000, "temperature": 0.5, "costPerToken": 0.01}},
            "priority": 2,
            "enabled": True,
        },
    },
    "routing": {
        "strategy": "intelligent",
        "parameters": {"costWeight": 0.4, "performanceWeight": 0.3, "reliabilityWeight": 0.3},
        "fallbackChains": [["qwen", "openai"], ["openai", "qwen"]],
        "loadBalancing": {"algorithm": "weighted-round-robin", "weights": {"qwen": 0.5, "openai": 0.5}},
        "healthCheck": {"enabled": True, "interval": 30000, "timeout": 5000},
        "fallbackEnabled": True,
        "healthCheckInterval": 30000,
        "budgetLimits": {"daily": 10.0, "monthly": 300.0},
    },
    "optimization": {
        "caching": {"enabled": True, "ttl": 3600000, "maxSize": 1000, "strategy": "lru"},
        "rateLimiting": {"enabled": True, "requestsPerMinute": 100, "burstCapacity": 20},
        "retry": {"maxAttempts": 3, "backoffMultiplier": 2, "initialDelay": 1000},
    },
    "security": {"encryption": {"enabled": True, "algorithm": "AES-256-GCM"}, "audit": {"enabled": True}},
}
ENV = {"QWEN_API_KEY": "sk-qwen-test-key-123456", "OPENAI_API_KEY": "sk-openai-test-key-123456"}


def test_the_guides_config_loads() -> None:
    config = load_config(GUIDE_CONFIG, env=ENV)
    qwen = config.providers["qwen"]
    assert qwen.api_key == ENV["QWEN_API_KEY"]
    assert qwen.models["qwen-max"].max_tokens == 8000
    assert qwen.resolve_default_model() == "qwen-turbo"
    assert config.routing.load_balancing.weights == {"qwen": 0.5, "openai": 0.5}
    assert config.routing.fallback_chains == (("qwen", "openai"), ("openai", "qwen"))
    assert config.section("optimization.caching")["maxSize"] == 1000
    assert config.section("routing.budgetLimits") == {"daily": 10.0, "monthly": 300.0}
    assert "sk-qwen" not in repr(config)
    assert to_dict(config)["providers"]["qwen"]["apiKey"] == "***"


def test_yaml_and_json_files(tmp_path: Path) -> None:
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text(
        "providers:\n  local:\n    type: openai\n    endpoint: http://127.0.0.1:1/v1\n    models:\n      m: {}\n"
    )
    assert load_config(yaml_file).providers["local"].endpoint == "http://127.0.0.1:1/v1"
    json_file = tmp_path / "c.json"
    json_file.write_text(json.dumps(GUIDE_CONFIG))
    assert load_config(json_file, env=ENV).source == str(json_file)


def test_parse_errors_name_file_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "providers": {,}\n}')
    with pytest.raises(ConfigError, match=r"(?s)bad.json.*invalid JSON at line 2, column 17"):
        load_config(bad)
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("providers:\n  a: [1, 2\n")
    with pytest.raises(ConfigError, match=r"invalid YAML at line"):
        load_config(bad_yaml)
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.json")


def test_unset_environment_variable_names_the_path_and_variable() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(GUIDE_CONFIG, env={"QWEN_API_KEY": "x"})
    assert info.value.problems == (("providers.openai.apiKey", "environment variable ${OPENAI_API_KEY} is not set"),)


def test_unset_variable_in_a_disabled_provider_is_fine_and_defaults_work() -> None:
    data = json.loads(json.dumps(GUIDE_CONFIG))
    data["providers"]["openai"]["enabled"] = False
    data["providers"]["qwen"]["endpoint"] = "${QWEN_URL:-http://127.0.0.1:9/v1}"
    config = load_config(data, env={"QWEN_API_KEY": "x"})
    assert config.providers["qwen"].endpoint == "http://127.0.0.1:9/v1"


def test_every_bad_value_is_named_by_path() -> None:
    data = {
        "providers": {
            "a": {"type": "openai", "priority": "high", "models": {"m": {"maxTokens": 1.5, "costPerTokn": 1}}},
            "b": 3,
            "c": {"models": {}},
        },
        "routing": {"fallbackEnabled": "yes"},
        "extra": 1,
    }
    with pytest.raises(ConfigError) as info:
        load_config(data)
    problems = dict(info.value.problems)
    assert problems["providers.a.priority"] == 'expected an integer, got "high"'
    assert problems["providers.a.models.m.maxTokens"] == "expected an integer, got 1.5"
    assert problems["providers.a.models.m.costPerTokn"].startswith("unknown key (expected one of: contextWindow")
    assert problems["providers.b"] == "expected an object, got 3"
    assert problems["providers.c.type"] == "required key missing"
    assert problems["routing.fallbackEnabled"] == 'expected true or false, got "yes"'
    assert problems["extra"].startswith("unknown key")
    assert str(info.value).startswith("invalid swarmgate config (7 problems):")


def test_cross_field_validation() -> None:
    data = {
        "providers": {"a": {"type": "x", "models": {"m": {"costPerToken": -1}}, "defaultModel": "n", "timeout": 0}},
        "routing": {"fallbackChains": [["a", "ghost"]], "loadBalancing": {"weights": {"ghost": 1}}},
        "routes": {"r": ["a/m", "a/zz", "ghost/m", "nonsense"], "empty": []},
    }
    with pytest.raises(ConfigError) as info:
        load_config(data)
    problems = dict(info.value.problems)
    assert "is not one of its models" in problems["providers.a.defaultModel"]
    assert problems["providers.a.timeout"] == "must be a positive number of milliseconds"
    assert problems["providers.a.models.m.costPerToken"] == "must not be negative"
    assert "unknown provider 'ghost'" in problems["routing.fallbackChains[0][1]"]
    assert "unknown provider 'ghost'" in problems["routing.loadBalancing.weights.ghost"]
    assert "has no model 'zz'" in problems["routes.r.targets[1]"]
    assert "unknown provider 'ghost'" in problems["routes.r.targets[2]"]
    assert "expected 'provider/model'" in problems["routes.r.targets[3]"]
    assert "needs at least one" in problems["routes.empty.targets"]


def test_top_level_must_be_an_object() -> None:
    with pytest.raises(ConfigError, match="the top level must be an object"):
        load_config([])  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_unknown_provider_type_names_the_path_and_distribution() -> None:
    manager = ProviderManager({"providers": {"mine": {"type": "nosuchtype", "models": {"m": {}}}}})
    with pytest.raises(PluginError) as info:
        await manager.initialize()
    message = str(info.value)
    assert message.startswith("providers.mine.type: unknown provider type 'nosuchtype'")
    assert "install the distribution 'swarmgate-nosuchtype'" in message


@pytest.mark.anyio
async def test_missing_strategy_plugin_names_its_distribution() -> None:
    manager = ProviderManager(
        {"providers": {"a": {"type": "scripted", "models": {"m": {}}}}, "routing": {"strategy": "cheapest-first"}},
        drivers={"swarmgate.providers": {"scripted": ScriptedProvider}},
    )
    with pytest.raises(
        PluginError, match=r"routing.strategy: unknown routing strategy 'cheapest-first'.*'swarmgate-cheapest-first'"
    ):
        await manager.initialize()


@pytest.mark.anyio
async def test_provider_type_settings_are_validated_by_path() -> None:
    drivers = {"swarmgate.providers": {"scripted": ScriptedProvider}}
    manager = ProviderManager({"providers": {"a": {"type": "scripted", "fail": "exploded"}}}, drivers=drivers)
    with pytest.raises(ConfigError) as info:
        await manager.initialize()
    assert "unknown error kind 'exploded'" in dict(info.value.problems)["providers.a.fail"]
    manager = ProviderManager({"providers": {"a": {"type": "scripted", "colour": 1}}}, drivers=drivers)
    with pytest.raises(ConfigError) as info:
        await manager.initialize()
    assert dict(info.value.problems)["providers.a.colour"].startswith("unknown key (expected one of: content, fail")


@pytest.mark.anyio
async def test_no_config_and_no_default_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWARMGATE_PLUGINS", "core")
    with pytest.raises(ConfigError, match="no config given and no installed plugin offers a default"):
        await ProviderManager().initialize()


def test_a_string_is_not_a_list() -> None:
    with pytest.raises(ConfigError) as info:
        load_config({"routing": {"fallbackChains": ["ab"]}, "routes": {"r": {"targets": "a/m"}}})
    assert dict(info.value.problems) == {
        "routing.fallbackChains[0]": 'expected a list, got "ab"',
        "routes.r.targets": 'expected a list, got "a/m"',
    }


@pytest.mark.anyio
async def test_unknown_type_under_an_allow_list_still_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWARMGATE_PLUGINS", "core")
    manager = ProviderManager({"providers": {"mine": {"type": "nosuchtype"}}})
    with pytest.raises(PluginError, match="install the distribution 'swarmgate-nosuchtype'"):
        await manager.initialize()
