"""swarmgate-webhook: alerts POSTed as signed JSON to HTTP receivers.

* :class:`WebhookPlugin` -- the hook plugin (entry point ``webhook`` in the
  ``swarmgate`` group), configured by ``monitoring.alerts.webhook`` (one
  receiver or a list): implements ``deliver_alert`` with one pooled httpx
  client, HMAC-SHA256 signatures, retries with exponential backoff and
  jitter; publishes ``manager.extensions["webhook"]`` (:class:`WebhookService`);
* :func:`sign`, :func:`verify` and the header names -- the signature
  scheme, for receivers written in Python;
* :class:`WebhookSettings` -- one receiver's configuration.

:mod:`swarmgate_webhook.testing` has a real loopback receiver for tests.
The public API is exactly ``__all__``.
"""

from swarmgate_webhook.plugin import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    WebhookCounters,
    WebhookPlugin,
    WebhookService,
    encode,
)
from swarmgate_webhook.settings import WebhookSettings, parse_webhooks
from swarmgate_webhook.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, verify

__all__ = [
    "DELIVERY_HEADER",
    "EVENT_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WebhookCounters",
    "WebhookPlugin",
    "WebhookService",
    "WebhookSettings",
    "encode",
    "parse_webhooks",
    "sign",
    "verify",
]
