"""Webhook delivery against a real HTTP receiver on a loopback socket that
checks every signature itself: signing, retries on 5xx / dropped
connections / timeouts, giving up on 4xx, Retry-After, filters, several
receivers, and the alerts of the manager's last moments."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
from typing import Any

import anyio
import pytest

from swarmgate import Alert, ProviderManager
from swarmgate.alerts import BREAKER_OPENED, PROVIDER_DOWN, PROVIDER_RECOVERED
from swarmgate.testing import ScriptedProvider
from swarmgate_webhook import WebhookPlugin
from swarmgate_webhook.testing import ReceiverReply, WebhookReceiver

pytestmark = pytest.mark.anyio

SECRET = "whsec-test-0123"
DRIVERS = {"swarmgate.providers": {"scripted": ScriptedProvider}}


def config(webhook: Any, **alerts: Any) -> dict[str, Any]:
    return {
        "providers": {"a": {"type": "scripted", "models": {"m": {}}}},
        "monitoring": {"alerts": {"webhook": webhook, **alerts}},
    }


def hook(receiver: WebhookReceiver, **settings: Any) -> dict[str, Any]:
    """A receiver's settings: signed, quick retries."""
    return {"url": receiver.url, "secret": SECRET, "backoff": 5, "maxBackoff": 50, **settings}


def alert(kind: str = BREAKER_OPENED, severity: str = "warning", **data: Any) -> Alert:
    return Alert(kind, f"{kind} on a/m", severity, "a", "m", data)


async def drain(manager: ProviderManager) -> None:
    """Wait until the alerts emitted so far have been delivered."""
    hub = manager.alerts
    assert hub is not None
    with anyio.fail_after(10):
        await hub.drain()


def signature_ok(request: Any) -> bool:
    """The receiver's check, written out independently of the plugin's code."""
    timestamp = request.headers["x-swarmgate-timestamp"]
    expected = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + request.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(request.headers["x-swarmgate-signature"], f"sha256={expected}")


async def test_an_alert_is_posted_as_signed_json() -> None:
    async with WebhookReceiver(secret=SECRET) as receiver:
        cfg = config(hook(receiver, headers={"Authorization": "Bearer ops-token"}))
        async with ProviderManager(cfg, drivers=DRIVERS, plugins=(WebhookPlugin(),)) as manager:
            sent = alert(reason="3 consecutive failures")
            manager.emit_alert(sent)
            await drain(manager)
            [request] = receiver.requests
            assert request.method == "POST"
            assert request.status == 200
            assert request.verified is True
            assert signature_ok(request)
            assert request.json == sent.to_dict()
            headers = request.headers
            assert headers["content-type"] == "application/json"
            assert headers["authorization"] == "Bearer ops-token"
            assert headers["x-swarmgate-event"] == BREAKER_OPENED
            assert len(headers["x-swarmgate-delivery"]) == 32
            assert headers["user-agent"].startswith("swarmgate-webhook/")
            assert manager.extensions["webhook"].counters() == {
                f"127.0.0.1:{receiver.port}": {
                    "delivered": 1,
                    "failed": 0,
                    "retried": 0,
                    "skipped": 0,
                    "last_error": None,
                }
            }


async def test_5xx_dropped_connections_and_timeouts_are_retried() -> None:
    async with WebhookReceiver(secret=SECRET) as receiver:
        receiver.enqueue(503, ReceiverReply(reset=True), ReceiverReply(200, delay=2.0))
        cfg = config(hook(receiver, retries=3, timeout=150))
        async with ProviderManager(cfg, drivers=DRIVERS, plugins=(WebhookPlugin(),)) as manager:
            manager.emit_alert(alert())
            await drain(manager)
            assert [r.status for r in receiver.requests] == [503, None, 200, 200]
            assert all(r.verified for r in receiver.requests)  # each attempt signed afresh
            assert len({r.headers["x-swarmgate-delivery"] for r in receiver.requests}) == 1
            [counters] = manager.extensions["webhook"].counters().values()
            assert counters == {"delivered": 1, "failed": 0, "retried": 3, "skipped": 0, "last_error": None}


async def test_a_4xx_is_not_retried_and_the_next_alert_still_goes() -> None:
    async with WebhookReceiver(secret=SECRET) as receiver:
        receiver.enqueue(422)
        async with ProviderManager(config(hook(receiver)), drivers=DRIVERS, plugins=(WebhookPlugin(),)) as manager:
            manager.emit_alert(alert(PROVIDER_DOWN, "critical"))
            manager.emit_alert(alert(PROVIDER_RECOVERED, "info"))
            await drain(manager)
            assert [(r.json["type"], r.status) for r in receiver.requests] == [
                (PROVIDER_DOWN, 422),
                (PROVIDER_RECOVERED, 200),
            ]
            [counters] = manager.extensions["webhook"].counters().values()
            assert counters["failed"] == 1
            assert counters["delivered"] == 1
            assert counters["last_error"] == "refused: HTTP 422"


async def test_a_wrong_secret_is_refused_by_the_receiver() -> None:
    async with WebhookReceiver(secret=SECRET) as receiver:
        cfg = config(hook(receiver, secret="not-the-secret"))
        async with ProviderManager(cfg, drivers=DRIVERS, plugins=(WebhookPlugin(),)) as manager:
            manager.emit_alert(alert())
            await drain(manager)
            assert [(r.verified, r.status) for r in receiver.requests] == [(False, 401)]


async def test_the_retries_run_out() -> None:
    async with WebhookReceiver(secret=SECRET, default=ReceiverReply(500)) as receiver:
        cfg = config(hook(receiver, retries=2))
        async with ProviderManager(cfg, drivers=DRIVERS, plugins=(WebhookPlugin(),)) as manager:
            manager.emit_alert(alert())
            await drain(manager)
            assert [r.status for r in receiver.requests] == [500, 500, 500]
            [counters] = manager.extensions["webhook"].counters().values()
            assert counters["failed"] == 1
            assert counters["retried"] == 2
            assert counters["last_error"] == "gave up after 3 attempt(s): HTTP 500"


async def test_backoff_grows_and_retry_after_is_honoured() -> None:
    async with WebhookReceiver(secret=SECRET) as receiver:
        receiver.enqueue(502, 502, ReceiverReply(429, headers={"Retry-After": "0.3"}))
        cfg = config(hook(receiver, retries=3, backoff=40, maxBackoff=1000))
        plugin = WebhookPlugin(jitter=lambda: 0.0)  # half of each backoff: 20 ms, 40 ms, then Retry-After
        async with ProviderManager(cfg, drivers=DRIVERS, plugins=(plugin,)) as manager:
            manager.emit_alert(alert())
            await drain(manager)
        times = [r.received_at for r in receiver.requests]
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        assert len(gaps) == 3
        assert 0.02 <= gaps[0] < gaps[1]
        assert gaps[1] >= 0.04
        assert gaps[2] >= 0.29


async def test_several_receivers_with_filters() -> None:
    async with WebhookReceiver(secret=SECRET) as breakers, WebhookReceiver(secret=SECRET) as pager:
        cfg = config(
            [
                hook(breakers, name="breakers", types=[BREAKER_OPENED]),
                hook(pager, name="pager", minSeverity="critical"),
            ]
        )
        async with ProviderManager(cfg, drivers=DRIVERS, plugins=(WebhookPlugin(),)) as manager:
            manager.emit_alert(alert(BREAKER_OPENED, "warning"))
            manager.emit_alert(alert(PROVIDER_DOWN, "critical"))
            manager.emit_alert(alert(PROVIDER_RECOVERED, "info"))
            await drain(manager)
            counters = manager.extensions["webhook"].counters()
        assert [r.json["type"] for r in breakers.requests] == [BREAKER_OPENED]
        assert [r.json["type"] for r in pager.requests] == [PROVIDER_DOWN]
        assert {name: (c["delivered"], c["skipped"]) for name, c in counters.items()} == {
            "breakers": (1, 2),
            "pager": (1, 2),
        }


async def test_one_dead_receiver_does_not_delay_the_other() -> None:
    async with (
        WebhookReceiver(secret=SECRET, default=ReceiverReply(503)) as dead,
        WebhookReceiver(secret=SECRET) as alive,
    ):
        cfg = config([hook(dead, name="dead", retries=2, backoff=200), hook(alive, name="alive")])
        async with ProviderManager(cfg, drivers=DRIVERS, plugins=(WebhookPlugin(),)) as manager:
            manager.emit_alert(alert())
            [accepted] = await alive.wait_for(1)
            assert accepted.json["type"] == BREAKER_OPENED
            assert len(dead.requests) == 1  # still retrying
            await drain(manager)
        assert len(dead.requests) == 3


async def test_the_alerts_of_the_last_moments_are_delivered() -> None:
    async with WebhookReceiver(secret=SECRET) as receiver:
        plugin = WebhookPlugin()
        async with ProviderManager(config(hook(receiver)), drivers=DRIVERS, plugins=(plugin,)) as manager:
            manager.emit_alert(alert(PROVIDER_DOWN, "critical"))
            # Leaving the block right away: plugin_shutdown runs before the hub's last drain.
        assert [r.json["type"] for r in receiver.requests] == [PROVIDER_DOWN]
        assert all(r.verified for r in receiver.requests)


async def test_an_unsigned_webhook_sends_no_signature() -> None:
    async with WebhookReceiver() as receiver:
        cfg = config({"url": receiver.url})
        async with ProviderManager(cfg, drivers=DRIVERS, plugins=(WebhookPlugin(),)) as manager:
            manager.emit_alert(alert())
            await drain(manager)
        [request] = receiver.requests
        assert "x-swarmgate-signature" not in request.headers
        assert int(request.headers["x-swarmgate-timestamp"]) > 0
        assert json.loads(request.body)["type"] == BREAKER_OPENED
