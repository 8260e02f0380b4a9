"""LiteLLM proxy configs (written from LiteLLM's documented config.yaml
format) converted into swarmgate configs: every section's mapping, the
notes on what has no equivalent, and errors naming their path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from swarmgate.cli import check_config
from swarmgate_migrate import Migration, MigrationError, convert_litellm, migrate, read_source

CONFIGS = Path(__file__).parent / "configs"


def converted(name: str) -> Migration:
    return convert_litellm(yaml.safe_load((CONFIGS / name).read_text()))


def notes(migration: Migration) -> dict[str, str]:
    return {note.path: note.message for note in migration.notes}


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_every_converted_config_passes_the_kernel_loader(name: str) -> None:
    migration = migrate(CONFIGS / name)  # raises if the kernel's loader refuses the result
    problems, _ = check_config(migration.config, plugins=False, strict_env=False)
    assert problems == []
    assert migration.deployments >= 3


def test_a_model_group_of_azure_regions_becomes_one_route_with_weighted_targets_and_fallbacks() -> None:
    migration = converted("azure_load_balancing.yaml")
    config = migration.config
    east, canada = config["providers"]["azure-contoso-eastus"], config["providers"]["azure-contoso-canada"]
    assert east == {
        "type": "openai",
        "endpoint": "https://contoso-eastus.openai.azure.com/openai/v1",
        "apiKey": "${AZURE_API_KEY_EU}",
        "timeout": 30000,
        "rateLimit": {"requestsPerMinute": 600, "tokensPerMinute": 90000},
        "weight": 600,  # simple-shuffle weighs by rpm when no weight is given
        "models": {"gpt-4o-eastus": {"inputCostPerToken": 2.5e-6, "outputCostPerToken": 1e-5, "contextWindow": 128000}},
    }
    assert canada["weight"] == 300
    assert canada["apiKey"] == "${AZURE_API_KEY_CA}"
    assert config["providers"]["openai"]["models"] == {
        "gpt-4o-mini": {"inputCostPerToken": 1.5e-7, "outputCostPerToken": 6e-7, "maxTokens": 4096}
    }
    assert config["providers"]["anthropic"]["type"] == "claude"
    assert config["providers"]["anthropic"]["timeout"] == 120000  # the deployment's own timeout wins
    assert config["routes"]["gpt-4o"] == {
        "targets": ["azure-contoso-eastus/gpt-4o-eastus", "azure-contoso-canada/gpt-4o-canada"],
        "fallbacks": ["anthropic/claude-3-5-sonnet-20241022"],
    }
    assert config["routes"]["gpt-4o-mini"] == {
        "targets": ["openai/gpt-4o-mini"],
        "fallbacks": ["azure-contoso-eastus/gpt-4o-eastus", "azure-contoso-canada/gpt-4o-canada"],
    }
    assert config["routes"]["claude-sonnet"] == {"targets": ["anthropic/claude-3-5-sonnet-20241022"]}
    assert config["routing"] == {
        "loadBalancing": "weighted-round-robin",
        "circuitBreaker": {"enabled": True, "failureThreshold": 3, "timeout": 30000},
    }
    assert config["optimization"] == {
        "retry": {"maxAttempts": 3},
        "caching": {"enabled": True, "cacheNonDeterministic": True, "ttl": 600000, "namespace": "litellm.prod"},
    }
    assert config["state"] == {
        "backend": "redis",
        "options": {"url": "redis://:${REDIS_PASSWORD}@${REDIS_HOST}:6379/0"},
    }
    assert config["server"] == {
        "adminKey": "${LITELLM_MASTER_KEY}",
        "apiKeys": [{"key": "${LITELLM_MASTER_KEY}", "name": "master"}],
    }
    said = notes(migration)
    assert "api_version is not needed" in said["model_list[0].litellm_params.api_version"]
    assert "consecutive failures" in said["router_settings.allowed_fails"]
    assert "litellm_settings.drop_params" not in said  # harmless settings pass without a note
    assert (migration.deployments, migration.groups) == (4, 3)


def test_usage_based_routing_weighs_by_tpm_and_aliases_and_context_fallbacks_become_routes() -> None:
    migration = converted("usage_based.yaml")
    config = migration.config
    providers = config["providers"]
    assert sorted(providers) == ["groq", "openai", "openai-2"]
    # Two deployments on one key share a provider; the second key is a provider of its own.
    assert providers["openai"]["models"] == {"gpt-4o-mini": {}, "gpt-4o": {"contextWindow": 128000}}
    assert providers["openai"]["apiKey"] == "${OPENAI_KEY_PRIMARY}"
    assert providers["openai-2"]["apiKey"] == "${OPENAI_KEY_SECONDARY}"
    assert (providers["openai"]["weight"], providers["openai-2"]["weight"]) == (2000000, 1000000)
    assert providers["groq"] == {
        "type": "openai",
        "endpoint": "https://api.groq.com/openai/v1",
        "apiKey": "${GROQ_API_KEY}",  # LiteLLM's default variable for groq
        "rateLimit": {"requestsPerMinute": 30},
        "weight": 30,
        "models": {
            "llama-3.3-70b-versatile": {
                "inputCostPerToken": 5.9e-7,
                "outputCostPerToken": 7.9e-7,
                "contextWindow": 8192,
            }
        },
    }
    routes = config["routes"]
    assert routes["gpt-4o-mini"] == {"targets": ["openai/gpt-4o-mini", "openai-2/gpt-4o-mini"]}
    assert "gpt-4o" not in routes  # one deployment named after its model: the model name serves it
    assert routes["llama-3.3-70b"] == {"targets": ["groq/llama-3.3-70b-versatile"], "fallbacks": ["openai/gpt-4o"]}
    assert routes["gpt-4"] == {"targets": ["openai/gpt-4o"]}
    assert routes["fast"] == routes["llama-3.3-70b"]
    assert config["routing"] == {"loadBalancing": "weighted-round-robin"}
    assert config["optimization"]["retry"] == {
        "errorClassification": {"nonRetryable": ["temporary_error"]},
        "maxAttempts": 4,
    }
    assert config["state"]["options"]["url"] == "redis://:${REDIS_PASSWORD}@${REDIS_HOST}:6380/0"
    said = notes(migration)
    assert "lowest usage this minute" in said["router_settings.routing_strategy"]
    assert "any error that fails over" in said["router_settings.context_window_fallbacks"]
    assert "not hidden" in said["router_settings.model_group_alias.fast.hidden"]
    assert "no price for 'gpt-4o'" in said["model_list[2].model_info"]
    assert "router_settings.enable_pre_call_checks" not in said


def test_what_swarmgate_cannot_carry_is_left_out_with_a_note() -> None:
    migration = converted("local_mixed.yaml")
    config = migration.config
    providers = config["providers"]
    assert sorted(providers) == ["deepseek", "ollama", "openai", "vllm"]
    assert providers["ollama"] == {
        "type": "local",
        "endpoint": "http://localhost:11434",
        "timeout": 600000,  # litellm_settings.request_timeout
        "priority": 1,
        "models": {"llama3.1:8b": {}},
    }
    assert providers["vllm"]["api"] == "openai"
    assert providers["vllm"]["priority"] == 2
    assert providers["vllm"]["models"] == {"meta-llama/Llama-3.1-8B-Instruct": {}}
    assert providers["openai"]["models"] == {}  # the wildcard deployment: a pass-through
    assert providers["deepseek"]["apiKey"] == "sk-deepseek-literal-key-0000"
    assert config["routes"] == {
        "llama3": {
            "targets": ["ollama/llama3.1:8b", "vllm/meta-llama/Llama-3.1-8B-Instruct"],
            "fallbacks": ["deepseek/deepseek-chat"],
        }
    }
    assert config["routing"] == {"loadBalancing": "least-outstanding", "budgetLimits": {"monthly": 250}}
    assert config["optimization"] == {"retry": {"maxAttempts": 2}}
    digest = "sha256:88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b"  # sha256("sk-1234")
    assert config["server"] == {"adminKey": digest, "apiKeys": [{"key": digest, "name": "master"}]}
    said = notes(migration)
    assert "'bedrock'" in said["model_list[2].litellm_params.model"]
    assert "embedding deployment" in said["model_list[3]"]
    assert "pass-through" in said["model_list[4].litellm_params.model"]
    assert "literal API key" in said["model_list[5].litellm_params.api_key"]
    assert "no swarmgate equivalent" in said["model_list[5].litellm_params.max_parallel_requests"]
    assert "'claude' was left out" in said["router_settings.fallbacks[0].llama3[1]"]
    assert "usage log" in said["litellm_settings.success_callback"]
    assert "no swarmgate equivalent" in said["general_settings.database_url"]
    assert "LANGFUSE_SECRET_KEY" in said["environment_variables"]
    assert "sk-lf-xxxx" not in " ".join(said.values())  # the values of the variables are never repeated
    assert not any(path.startswith("model_list[0].model_info") for path in said)  # local models are free


def test_latency_routing_default_fallbacks_and_a_local_cache() -> None:
    migration = converted("latency_qwen.yaml")
    config = migration.config
    assert config["routing"] == {"strategy": "performance-optimized"}  # cooldowns disabled: no breaker
    qwen = config["providers"]["qwen"]
    assert qwen["type"] == "qwen"
    assert qwen["mode"] == "openai-compatible"
    assert qwen["endpoint"] == "https://dashscope-intl.aliyuncs.com/compatible-mode/v1"
    assert sorted(qwen["models"]) == ["qwen-plus", "qwen-turbo"]
    assert "weight" not in qwen  # weights decide under simple-shuffle only
    assert config["routes"] == {
        "chat": {"targets": ["qwen/qwen-turbo", "openai/gpt-4o-mini"], "fallbacks": ["qwen/qwen-plus"]}
    }
    assert config["optimization"] == {"caching": {"enabled": True, "cacheNonDeterministic": True, "ttl": 300000}}
    assert "state" not in config  # a local cache lives in the default memory backend
    said = notes(migration)
    assert "simple-shuffle only" in said["model_list[1].litellm_params.weight"]
    assert "not converted" in said["router_settings.disable_cooldowns"]
    assert "routing.parameters" in said["router_settings.routing_strategy_args"]


def test_names_never_collide_with_route_names() -> None:
    doc: dict[str, Any] = {
        "model_list": [
            {"model_name": "openai", "litellm_params": {"model": "openai/gpt-4o", "api_key": "os.environ/K"}},
            {"model_name": "azure.gpt", "litellm_params": {"model": "azure/gpt", "api_base": "os.environ/AZURE_BASE"}},
        ],
        "router_settings": {"fallbacks": [{"azure.gpt": ["openai"]}]},
    }
    config = convert_litellm(doc).config
    assert sorted(config["providers"]) == ["azure", "openai-2"]
    assert config["providers"]["azure"]["endpoint"] == "${AZURE_BASE}/openai/v1"
    assert config["providers"]["azure"]["apiKey"] == "${AZURE_API_KEY}"
    assert config["routes"]["openai"] == {"targets": ["openai-2/gpt-4o"]}
    assert config["routes"]["azure.gpt"] == {"targets": ["azure/gpt"], "fallbacks": ["openai-2/gpt-4o"]}
    problems, _ = check_config(config, plugins=False, strict_env=False)
    assert problems == []


def test_the_same_model_with_other_settings_gets_a_provider_of_its_own() -> None:
    base = {"model": "gpt-4o-mini", "api_key": "os.environ/OPENAI_API_KEY"}
    doc = {
        "model_list": [
            {"model_name": "short", "litellm_params": {**base, "max_tokens": 256}},
            {"model_name": "long", "litellm_params": {**base, "max_tokens": 4096}},
            {"model_name": "again", "litellm_params": {**base, "max_tokens": 256}},
        ]
    }
    config = convert_litellm(doc).config
    assert config["providers"]["openai"]["models"] == {"gpt-4o-mini": {"maxTokens": 256}}
    assert config["providers"]["openai-2"]["models"] == {"gpt-4o-mini": {"maxTokens": 4096}}
    assert config["routes"] == {
        "short": {"targets": ["openai/gpt-4o-mini"]},
        "long": {"targets": ["openai-2/gpt-4o-mini"]},
        "again": {"targets": ["openai/gpt-4o-mini"]},
    }


def test_budgets_retries_and_unknown_strategies() -> None:
    doc = {
        "model_list": [
            {"model_name": "claude-3-haiku", "litellm_params": {"model": "claude-3-haiku-20240307"}},
            {
                "model_name": "claude-3-haiku",
                "litellm_params": {"model": "openai/claude-proxy", "api_base": "http://127.0.0.1:9/v1"},
            },
        ],
        "router_settings": {
            "routing_strategy": "provider-budget-routing",
            "provider_budget_config": {"anthropic": {"budget_limit": 5, "time_period": "1d"}},
            "retry_after": 2,
            "num_retries": 0,
            "allowed_fails": 0,
        },
        "litellm_settings": {"max_budget": 100, "budget_duration": "7d", "cache": False, "cache_params": {"ttl": 5}},
    }
    migration = convert_litellm(doc)
    config = migration.config
    assert config["providers"]["anthropic"]["budget"] == {"daily": 5}
    assert config["providers"]["anthropic"]["apiKey"] == "${ANTHROPIC_API_KEY}"
    assert "apiKey" not in config["providers"]["openai"]  # a local OpenAI-compatible server needs none
    assert config["routing"]["circuitBreaker"] == {"enabled": True, "failureThreshold": 1}
    assert "budgetLimits" not in config["routing"]
    assert config["optimization"] == {"retry": {"maxAttempts": 1, "initialDelay": 2000}}
    said = notes(migration)
    assert "'provider-budget-routing' has no swarmgate equivalent" in said["router_settings.routing_strategy"]
    assert "'7d' has no equivalent" in said["litellm_settings.budget_duration"]
    assert "cache is false" in said["litellm_settings.cache_params"]


@pytest.mark.parametrize(
    ("doc", "path", "message"),
    [
        (["not", "a", "mapping"], "", "a LiteLLM config is a mapping"),
        ({"router_settings": {}}, "model_list", "missing"),
        ({"model_list": {"a": 1}}, "model_list", "expected a list"),
        ({"model_list": [{"litellm_params": {"model": "gpt-4o"}}]}, "model_list[0].model_name", "required"),
        ({"model_list": [{"model_name": "x", "litellm_params": {}}]}, "model_list[0].litellm_params.model", "required"),
        ({"model_list": [], "router_settings": [1]}, "router_settings", "expected a mapping"),
        (
            {"model_list": [], "router_settings": {"fallbacks": ["gpt-4o"]}},
            "router_settings.fallbacks[0]",
            "expected {model_group",
        ),
    ],
)
def test_an_unreadable_file_names_the_path(doc: Any, path: str, message: str) -> None:
    with pytest.raises(MigrationError) as caught:
        convert_litellm(doc)
    (where, what), *_ = caught.value.problems
    assert where == path
    assert message in what


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "config.yaml"
    bad.write_text("model_list:\n  - model_name: x\n   litellm_params: [\n")
    with pytest.raises(MigrationError, match=r"config\.yaml: invalid YAML: line \d+, column \d+"):
        read_source(bad)
    with pytest.raises(MigrationError, match="no such file"):
        read_source(tmp_path / "missing.yaml")
