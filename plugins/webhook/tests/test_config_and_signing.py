"""``monitoring.alerts.webhook`` validation with named paths, ``${ENV}``
secrets, an inactive plugin, and the signature scheme."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest

from swarmgate import Alert, ConfigError, ProviderManager
from swarmgate.testing import ScriptedProvider
from swarmgate_webhook import WebhookPlugin, sign, verify

pytestmark = pytest.mark.anyio

DRIVERS = {"swarmgate.providers": {"scripted": ScriptedProvider}}
URL = "https://ops.example.com/hooks/swarmgate?token=abc"


def config(webhook: Any, **alerts: Any) -> dict[str, Any]:
    return {
        "providers": {"a": {"type": "scripted", "models": {"m": {}}}},
        "monitoring": {"alerts": {"webhook": webhook, **alerts}},
    }


async def problems(cfg: dict[str, Any], env: dict[str, str] | None = None) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as caught:
        async with ProviderManager(cfg, drivers=DRIVERS, plugins=(WebhookPlugin(),), env=env or {}):
            pass
    return list(caught.value.problems)


@pytest.mark.parametrize(
    ("webhook", "path", "reason"),
    [
        ({"url": "ftp://x/y"}, "monitoring.alerts.webhook.url", "must be an http:// or https:// URL"),
        ({}, "monitoring.alerts.webhook.url", "required key missing"),
        ({"url": URL, "secret": ""}, "monitoring.alerts.webhook.secret", "must not be empty"),
        ({"url": URL, "retries": -1}, "monitoring.alerts.webhook.retries", "must be 0 or more"),
        ({"url": URL, "timeout": 0}, "monitoring.alerts.webhook.timeout", "positive number of milliseconds"),
        (
            {"url": URL, "headers": {"X-Swarmgate-Signature": "forged"}},
            "monitoring.alerts.webhook.headers.X-Swarmgate-Signature",
            "is set by the webhook plugin",
        ),
        ({"url": URL, "types": []}, "monitoring.alerts.webhook.types", "must list at least one alert type"),
        ({"url": URL, "minSeverity": "loud"}, "monitoring.alerts.webhook.minSeverity", "must be one of info"),
        ({"url": URL, "retry": 3}, "monitoring.alerts.webhook.retry", "unknown key"),
        ([{"url": URL}, {"url": "http://x"}, {"url": 5}], "monitoring.alerts.webhook[2].url", "expected a string"),
        (
            [{"url": URL}, {"url": "https://ops.example.com/other"}],
            "monitoring.alerts.webhook[1].name",
            "two webhooks are called 'ops.example.com'",
        ),
        ("http://x", "monitoring.alerts.webhook", "expected an object or a list of objects"),
    ],
)
async def test_bad_values_are_named(webhook: Any, path: str, reason: str) -> None:
    [(where, message)] = await problems(config(webhook))
    assert where == path
    assert reason in message


async def test_the_secret_comes_from_the_environment() -> None:
    cfg = config({"url": URL, "secret": "${HOOK_SECRET}"})
    [(where, message)] = await problems(cfg)
    assert where == "monitoring.alerts.webhook.secret"
    assert message == "environment variable ${HOOK_SECRET} is not set"
    plugin = WebhookPlugin()
    async with ProviderManager(cfg, drivers=DRIVERS, plugins=(plugin,), env={"HOOK_SECRET": "from-env"}):
        [receiver] = plugin.receivers
        assert receiver.settings.secret == "from-env"
        assert receiver.settings.label == "ops.example.com"  # never the path or query (a token)


@pytest.mark.parametrize(
    "cfg",
    [{"providers": {"a": {"type": "scripted", "models": {"m": {}}}}}, config(None)],
    ids=["no-section", "no-webhook"],
)
async def test_unregistered_without_a_webhook_section(cfg: dict[str, Any]) -> None:
    plugin = WebhookPlugin()
    async with ProviderManager(cfg, drivers=DRIVERS, plugins=(plugin,)) as manager:
        assert plugin not in manager.plugins.pm.get_plugins()
        assert "webhook" not in manager.extensions


@pytest.mark.parametrize(
    "cfg",
    [config({"url": URL}, enabled=False), config({"url": URL, "enabled": False})],
    ids=["alerts-disabled", "webhook-disabled"],
)
async def test_idle_when_turned_off(cfg: dict[str, Any]) -> None:
    """Registered (a configured channel is served) but sending nothing."""
    plugin = WebhookPlugin()
    async with ProviderManager(cfg, drivers=DRIVERS, plugins=(plugin,)) as manager:
        assert plugin in manager.plugins.pm.get_plugins()
        assert "webhook" not in manager.extensions
        assert plugin.receivers == []
        await plugin.deliver_alert(Alert("custom", "nobody hears this"))


def test_sign_and_verify() -> None:
    body = b'{"type":"breaker_opened"}'
    signature = sign("k", "1700000000", body)
    assert signature == "sha256=" + hmac.new(b"k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert verify("k", body, signature, "1700000000", now=1_700_000_100)
    assert not verify("k", body + b" ", signature, "1700000000", now=1_700_000_100)  # tampered body
    assert not verify("other", body, signature, "1700000000", now=1_700_000_100)  # wrong secret
    assert not verify("k", body, signature, "1700000001", now=1_700_000_100)  # timestamp not the signed one
    assert not verify("k", body, signature, "1700000000", now=1_700_000_301)  # too old: a replay
    assert not verify("k", body, None, "1700000000")
    assert not verify("k", body, signature, "yesterday")
