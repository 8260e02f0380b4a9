"""Start-up checks of the ``http`` provider type: every mistake in its config
is a ConfigError naming the path of the bad value."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from swarmgate import ConfigError, ProviderConfig, ProviderManager
from swarmgate.config import parse_section
from swarmgate.testing.generic_wire import FINISH_REASONS
from swarmgate_http import HttpProvider, HttpSettings

CONFIGS: dict[str, dict[str, Any]] = json.loads((Path(__file__).parent / "providers.json").read_text())
ENDPOINT = "http://127.0.0.1:9/v2"


def config_with(**changes: Any) -> dict[str, Any]:
    """The generic-sse preset with ``changes`` (``None`` removes a key)."""
    config: dict[str, Any] = {
        "type": "http",
        "endpoint": ENDPOINT,
        "apiKey": "sk-config-test-0123456789",
        "models": {"m": {}},
        **copy.deepcopy(CONFIGS["generic-sse"]),
    }
    config.update(changes)
    return {k: v for k, v in config.items() if v is not None}


async def problems(**changes: Any) -> dict[str, str]:
    """Start a manager with the changed config; the ConfigError's problems by path."""
    with pytest.raises(ConfigError) as info:
        async with ProviderManager({"providers": {"x": config_with(**changes)}}):
            pass
    return dict(info.value.problems)


def response(**changes: Any) -> dict[str, Any]:
    return {**CONFIGS["generic-sse"]["response"], **changes}


def stream(**changes: Any) -> dict[str, Any]:
    return {**CONFIGS["generic-sse"]["stream"], **changes}


def test_presets_parse() -> None:
    for name, preset in CONFIGS.items():
        settings = parse_section(
            HttpSettings, {k: v for k, v in preset.items() if k not in ("headers", "healthCheck")}, name
        )
        assert settings.response.text


def test_generic_presets_invert_the_wire_finish_reasons() -> None:
    inverted = {upstream: ours for ours, upstream in FINISH_REASONS.items()}
    assert CONFIGS["generic-sse"]["response"]["finishReasons"] == inverted
    assert CONFIGS["generic-ndjson"]["response"]["finishReasons"] == inverted


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("changes", "path", "words"),
    [
        ({"response": response(text="result.")}, "providers.x.response.text", "invalid JMESPath expression"),
        ({"response": response(inputTokens="meta.tokens[")}, "providers.x.response.inputTokens", "Incomplete"),
        ({"response": response(text="upper(result.text)")}, "providers.x.response.text", "unknown function upper()"),
        ({"response": response(text="join(result)")}, "providers.x.response.text", "join() takes 2 arguments"),
        ({"response": response(text="")}, "providers.x.response.text", "empty expression"),
        ({"response": {"finishReason": "stop"}}, "providers.x.response.text", "required key missing"),
        ({"response": None}, "providers.x.response", "required key missing"),
        ({"stream": stream(format="websocket")}, "providers.x.stream.format", '"sse" or "ndjson"'),
        ({"stream": stream(text="delta[")}, "providers.x.stream.text", "invalid JMESPath expression"),
        ({"stream": stream(done={})}, "providers.x.stream.done", '"data"'),
        ({"stream": stream(done={"data": "[DONE]", "equals": 1})}, "providers.x.stream.done.equals", '"path"'),
        ({"stream": stream(done={"path": "done =="})}, "providers.x.stream.done.path", "invalid JMESPath"),
        ({"stream": stream(body={"x": "{bogus}"})}, "providers.x.stream.body.x", "unknown placeholder {bogus}"),
        ({"stream": stream(url="/gen/{apiKey}")}, "providers.x.stream.url", "unknown placeholder {apiKey}"),
        ({"errors": [{"code": "x", "kind": "teapot"}]}, "providers.x.errors[0].kind", "unknown error kind 'teapot'"),
        ({"errors": [{"kind": "rate_limited"}]}, "providers.x.errors[0]", "at least one of"),
        ({"errors": [{"status": 42, "kind": "rate_limited"}]}, "providers.x.errors[0].status", "HTTP status"),
        ({"errors": [{"status": "429", "kind": "rate_limited"}]}, "providers.x.errors[0].status", "an integer"),
        ({"errors": [{"code": 1301, "kind": "content_filtered"}]}, "providers.x.errors[0].code", "a string"),
        ({"method": "DELETE"}, "providers.x.method", "GET, POST, PUT, PATCH"),
        ({"url": "ftp://files.example/gen"}, "providers.x.url", "http:// or https://"),
        ({"url": "/v2/{apiKey}/generate"}, "providers.x.url", "unknown placeholder {apiKey}"),
        ({"url": "/generate?x={"}, "providers.x.url", "stray '{'"),
        ({"body": {"p": {"t": "{temprature}"}}}, "providers.x.body.p.t", "unknown placeholder {temprature}"),
        ({"body": {"p": ["ok", "{model} }"]}}, "providers.x.body.p[1]", "stray '}'"),
        ({"body": {"m": {"$jmespath": "messages", "x": 1}}}, "providers.x.body.m", "exactly one key"),
        ({"body": {"m": {"$jmespath": "messages[?"}}}, "providers.x.body.m", "invalid JMESPath expression"),
        ({"temperature": 0.5}, "providers.x.temperature", "unknown key"),
        ({"headers": {"Authorization": "Bearer {api_key}"}}, "providers.x.headers.Authorization", "{api_key}"),
        ({"headers": {"X-Key": "{apiKey"}}, "providers.x.headers.X-Key", "stray '{'"),
        ({"apiKey": None}, "providers.x.headers.Authorization", "no apiKey"),
        ({"apiKey": "sk-with-newline\n"}, "providers.x.apiKey", "line break"),
        ({"endpoint": None}, "providers.x.endpoint", "needs an endpoint"),
        (
            {"healthCheck": {"path": "/models", "expectedStatus": "200"}},
            "providers.x.healthCheck.expectedStatus",
            "an integer",
        ),
        ({"healthCheck": {"method": "HEAD"}}, "providers.x.healthCheck.method", "GET, POST"),
    ],
)
async def test_bad_values_are_named(changes: dict[str, Any], path: str, words: str) -> None:
    found = await problems(**changes)
    assert path in found, f"expected a problem at {path}, got {found}"
    assert words in found[path]


@pytest.mark.anyio
async def test_problems_in_several_sections_are_reported_at_once() -> None:
    found = await problems(
        response=response(text="a["), stream=stream(format="ws"), errors=[{"code": "x", "kind": "nope"}]
    )
    assert set(found) == {"providers.x.response.text", "providers.x.stream.format", "providers.x.errors[0].kind"}


@pytest.mark.anyio
async def test_relative_paths_without_endpoint() -> None:
    found = await problems(endpoint=None, url="https://api.acme.example/v2/generate", stream=stream(url="/stream"))
    assert "needs an endpoint" in found["providers.x.stream.url"]
    found = await problems(endpoint=None, url="https://api.acme.example/v2/generate")
    assert "needs an endpoint" in found["providers.x.healthCheck.path"]


@pytest.mark.anyio
async def test_the_key_is_not_in_config_errors() -> None:
    key = "sk-secret-with-newline-0123456789\n"
    with pytest.raises(ConfigError) as info:
        async with ProviderManager({"providers": {"x": config_with(apiKey=key)}}):
            pass
    assert key.strip() not in str(info.value)


@pytest.mark.anyio
async def test_health_plugin_keys_are_left_alone() -> None:
    health = {"method": "get", "path": "/models", "interval": 30000, "failureThreshold": 3}
    async with ProviderManager({"providers": {"x": config_with(healthCheck=health)}}) as manager:
        assert manager.provider("x") is not None


def test_built_directly_from_a_provider_config() -> None:
    """Without settings, the driver structures ``config.settings`` itself (same errors)."""
    config = ProviderConfig(type="http", endpoint=ENDPOINT, settings={"response": {"text": "out"}, "method": "patch"})
    provider = HttpProvider("direct", config)
    assert provider.options.method == "PATCH"
    with pytest.raises(ConfigError, match=r"providers\.direct\.response"):
        HttpProvider("direct", ProviderConfig(type="http", endpoint=ENDPOINT))


@pytest.mark.anyio
async def test_readme_examples_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's config examples are valid (the second is a provider entry)."""
    monkeypatch.setenv("ACME_API_KEY", "sk-acme-readme-0123456789")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-readme-0123456789")
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    full, entry = re.findall(r"```json\n(.*?)```", readme, re.DOTALL)
    for config in (json.loads(full), {"providers": json.loads("{" + entry + "}")}):
        async with ProviderManager(config) as manager:
            for name in config["providers"]:
                assert isinstance(manager.provider(name), HttpProvider)
