"""``WebhookPlugin``: alerts POSTed as signed JSON to HTTP receivers (entry
point ``webhook`` in the ``swarmgate`` group), configured by
``monitoring.alerts.webhook``.

It implements the kernel's ``deliver_alert`` hook, which the manager's
background alert task calls in order of emission, never on the request
path. Each alert is encoded once and sent to every receiver that wants it
(``types``, ``minSeverity``) at the same time; each receiver gets its own
retries. The next alert waits until this one is delivered or given up on
everywhere, so a receiver sees alerts in order; a dead receiver holds the
queue for at most ``(retries + 1) * timeout`` plus the backoff.

One pooled ``httpx.AsyncClient`` serves every receiver. The manager drains
the alert queue after ``plugin_shutdown``: the pool is closed once no
delivery is in flight, and a delivery after that uses a short-lived client,
so the alerts of the last moments still go out.
"""

from __future__ import annotations

import importlib.metadata
import json
import random
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import attrs
import httpx

from swarmgate import Alert, ConfigError, ProviderManager, hookimpl
from swarmgate.http import parse_retry_after
from swarmgate.logs import get_logger
from swarmgate_webhook.settings import SEVERITIES, WebhookSettings, parse_webhooks
from swarmgate_webhook.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

log = get_logger("swarmgate.webhook")

#: The header naming one delivery (the same on every retry of it): a
#: receiver can drop duplicates with it.
DELIVERY_HEADER = "X-Swarmgate-Delivery"
#: The header carrying the alert type.
EVENT_HEADER = "X-Swarmgate-Event"
#: Statuses after which an attempt is retried (besides every 5xx).
RETRY_STATUSES = frozenset({408, 429})

try:
    _VERSION = importlib.metadata.version("swarmgate-webhook")
except importlib.metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    _VERSION = "0"
USER_AGENT = f"swarmgate-webhook/{_VERSION}"


def encode(alert: Alert) -> bytes:
    """The request body: the alert's JSON (``Alert.to_dict``), compact,
    UTF-8; values JSON cannot express are sent as strings."""
    return json.dumps(alert.to_dict(), separators=(",", ":"), ensure_ascii=False, default=str).encode()


def severity_rank(severity: str) -> int:
    """``info`` 0, ``warning`` 1, ``critical`` 2; an unknown severity counts as ``warning``."""
    try:
        return SEVERITIES.index(severity)
    except ValueError:
        return 1


@attrs.define
class WebhookCounters:
    """Per-process counts for one receiver."""

    delivered: int = 0  # alerts it accepted (2xx)
    failed: int = 0  # alerts given up on (refused, or every attempt failed)
    retried: int = 0  # attempts repeated after a retryable failure
    skipped: int = 0  # alerts its filters left out


@attrs.define
class _Receiver:
    settings: WebhookSettings
    types: frozenset[str] | None
    min_rank: int
    counters: WebhookCounters = attrs.field(factory=WebhookCounters)
    last_error: str | None = None

    def wants(self, alert: Alert) -> bool:
        return (self.types is None or alert.type in self.types) and severity_rank(alert.severity) >= self.min_rank


class WebhookService:
    """What the plugin publishes as ``manager.extensions["webhook"]``."""

    def __init__(self, plugin: WebhookPlugin) -> None:
        self._plugin = plugin

    def counters(self) -> dict[str, dict[str, Any]]:
        """Per receiver (by its label): ``delivered``, ``failed``,
        ``retried``, ``skipped`` and ``last_error``."""
        return {
            r.settings.label: {**attrs.asdict(r.counters), "last_error": r.last_error} for r in self._plugin.receivers
        }


class WebhookPlugin:
    """See the module docstring. ``jitter`` returns a number in [0, 1)
    (``random.random``); tests may pin it."""

    #: The delivery channel this plugin serves (the alerts plugin checks
    #: that a configured channel has a plugin).
    alert_channel = "webhook"

    def __init__(self, *, jitter: Callable[[], float] | None = None) -> None:
        self._jitter = jitter if jitter is not None else random.random
        self.receivers: list[_Receiver] = []
        self._client: httpx.AsyncClient | None = None
        self._inflight = 0
        self._closing = False

    @hookimpl
    async def plugin_setup(self, manager: ProviderManager) -> None:
        """Read ``monitoring.alerts.webhook``; publish ``extensions["webhook"]``.
        Unregisters itself when the section is absent. A section that is
        present but turned off (``enabled: false`` here or on
        ``monitoring.alerts``) leaves it registered and idle, so that the
        alerts plugin sees the channel served whatever order the plugins
        are set up in (``deliver_alert`` is off the request path: idle costs
        nothing there). Raises ConfigError naming bad values."""
        section = manager.config.section("monitoring.alerts")
        if not isinstance(section, Mapping) or section.get("webhook") is None:
            manager.plugins.discard(self)
            return
        enabled = section.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigError([("monitoring.alerts.enabled", f"expected true or false, got {enabled!r}")])
        hooks = [hook for hook in parse_webhooks(section.get("webhook")) if hook.enabled]
        if not enabled or not hooks:
            return  # idle: deliver_alert finds no receiver
        self.receivers = [
            _Receiver(
                hook, frozenset(hook.types) if hook.types is not None else None, SEVERITIES.index(hook.min_severity)
            )
            for hook in hooks
        ]
        self._client = self._new_client()
        manager.extensions["webhook"] = WebhookService(self)

    def _new_client(self) -> httpx.AsyncClient:
        limit = max(len(self.receivers), 1) * 2
        return httpx.AsyncClient(
            headers={"User-Agent": USER_AGENT},
            follow_redirects=False,
            limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit),
        )

    @hookimpl
    async def plugin_shutdown(self) -> None:
        """Close the pool now, or when the delivery in flight ends."""
        self._closing = True
        if self._inflight == 0:
            await self._close_client()

    async def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with anyio.CancelScope(shield=True):
                await client.aclose()

    @hookimpl
    async def deliver_alert(self, alert: Alert) -> None:
        """POST ``alert`` to every receiver that wants it, at the same time;
        return when each has accepted it or been given up on. Never raises
        for a receiver's failure (logged and counted)."""
        wanted = []
        for receiver in self.receivers:
            if receiver.wants(alert):
                wanted.append(receiver)
            else:
                receiver.counters.skipped += 1
        if not wanted:
            return
        body = encode(alert)
        delivery = uuid.uuid4().hex
        self._inflight += 1
        try:
            client = self._client
            if client is None:  # after shutdown: the manager's last drain
                async with self._new_client() as temporary:
                    await self._send_all(temporary, wanted, alert, body, delivery)
            else:
                await self._send_all(client, wanted, alert, body, delivery)
        finally:
            self._inflight -= 1
            if self._closing and self._inflight == 0:
                await self._close_client()

    async def _send_all(
        self, client: httpx.AsyncClient, wanted: list[_Receiver], alert: Alert, body: bytes, delivery: str
    ) -> None:
        if len(wanted) == 1:
            await self._send(client, wanted[0], alert, body, delivery)
            return
        async with anyio.create_task_group() as group:
            for receiver in wanted:
                group.start_soon(self._send, client, receiver, alert, body, delivery)

    def _delay(self, attempt: int, settings: WebhookSettings, retry_after: float | None) -> float:
        """Seconds before retry number ``attempt + 1``: ``backoff * 2^attempt``
        capped at ``maxBackoff``, half of it fixed and half random (so
        gateways that failed together do not retry together), or the
        receiver's ``Retry-After`` when longer (still capped)."""
        cap = settings.max_backoff / 1000.0
        base = min(cap, settings.backoff / 1000.0 * float(2**attempt))
        delay = base / 2 + base / 2 * self._jitter()
        if retry_after is not None:
            delay = max(delay, min(retry_after, cap))
        return delay

    async def _send(
        self, client: httpx.AsyncClient, receiver: _Receiver, alert: Alert, body: bytes, delivery: str
    ) -> None:
        settings = receiver.settings
        attempts = settings.retries + 1
        timeout = settings.timeout / 1000.0
        problem = ""
        for attempt in range(attempts):
            timestamp = str(int(time.time()))
            headers = {
                **settings.headers,
                "Content-Type": "application/json",
                TIMESTAMP_HEADER: timestamp,
                DELIVERY_HEADER: delivery,
                EVENT_HEADER: alert.type,
            }
            if settings.secret is not None:
                headers[SIGNATURE_HEADER] = sign(settings.secret, timestamp, body)
            retry_after: float | None = None
            try:
                response = await client.post(settings.url, content=body, headers=headers, timeout=timeout)
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                status = response.status_code
                if 200 <= status < 300:
                    receiver.counters.delivered += 1
                    log.info("webhook_delivered", webhook=settings.label, type=alert.type, attempts=attempt + 1)
                    return
                problem = f"HTTP {status}"
                if status < 500 and status not in RETRY_STATUSES:
                    receiver.counters.failed += 1
                    receiver.last_error = f"refused: {problem}"
                    log.error(
                        "webhook_refused",
                        webhook=settings.label,
                        type=alert.type,
                        status=status,
                        answer=response.text[:200],
                    )
                    return
                retry_after = parse_retry_after(response.headers)
            if attempt + 1 < attempts:
                delay = self._delay(attempt, settings, retry_after)
                receiver.counters.retried += 1
                log.warning(
                    "webhook_retry",
                    webhook=settings.label,
                    type=alert.type,
                    problem=problem,
                    attempt=attempt + 1,
                    delay=round(delay, 3),
                )
                await anyio.sleep(delay)
        receiver.counters.failed += 1
        receiver.last_error = f"gave up after {attempts} attempt(s): {problem}"
        log.error("webhook_gave_up", webhook=settings.label, type=alert.type, attempts=attempts, problem=problem)
