"""The hook specifications: every place a plugin may act.

Each spec's docstring is its contract. How the kernel dispatches them
(docs/architecture.md has the full story):

* Implementations may be ``async def`` or plain ``def``; the kernel awaits
  the former. An implementation may accept any subset of the spec's
  arguments, by name.
* Order is pluggy's: ``tryfirst`` implementations first, ``trylast`` last,
  otherwise the most recently registered first. The kernel's own defaults
  (plugin ``core``) are registered first and marked ``trylast``.
* "First result" hooks call one implementation at a time and stop at the
  first that returns something other than ``None``; later implementations
  are never called (no coroutine is created for them).
* ``wrapper=True`` / ``hookwrapper=True`` implementations are not supported
  for the async request hooks (they would have to span an ``await``);
  registering one is an error.
* Cancellation (a caller that gives up, a timeout) propagates through the
  awaiting implementation like through any other ``await``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from swarmgate.alerts import Alert
    from swarmgate.config import ProviderConfig
    from swarmgate.errors import SwarmgateError
    from swarmgate.manager import FailureDecision, ProviderManager, RequestContext
    from swarmgate.models import CompletionRequest, CompletionResponse, HealthStatus, Target
    from swarmgate.provider import Provider

PROJECT = "swarmgate"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

# ---------------------------------------------------------------------------
# Lifecycle


@hookspec
def plugin_setup(manager: ProviderManager) -> None:
    """Called once by ``ProviderManager.initialize()``, after the providers
    are built and before the first request, for every plugin in call order.

    A plugin reads its config section here (``manager.config.section(...)``,
    structured with :func:`swarmgate.config.parse_section`), opens what it
    needs, and stays inert if the config does not activate it.
    Raising aborts ``initialize()``: raise
    :class:`~swarmgate.errors.ConfigError` for a bad section.
    """


@hookspec
def plugin_shutdown(manager: ProviderManager) -> None:
    """Called once by ``ProviderManager.aclose()``, after in-flight requests
    finished and before providers close. Flush and release here. Exceptions
    are logged and do not stop other plugins from shutting down."""


@hookspec(firstresult=True)
def default_config() -> Mapping[str, Any] | None:
    """Synchronous. The configuration used when ``ProviderManager`` gets none
    (the embedded default). The first non-``None`` mapping wins."""


@hookspec
def register_commands(cli: click.Group) -> None:
    """Synchronous. Called once when the CLI starts: add commands or groups
    to ``cli`` (``cli.add_command(...)``). Raising aborts the CLI."""


@hookspec
def gateway_routes(manager: ProviderManager) -> Sequence[Any] | None:
    """Synchronous. Called once when the HTTP gateway (``swarmgate-server``)
    builds its ASGI app: return Starlette routes or mounts to add to it (the
    dashboard's page and assets, a plugin's own admin endpoints), or
    ``None``. Paths must not collide with the gateway's own (``/v1/...``,
    ``/health...``, ``/metrics``, ``/openapi.json`` and the admin API's
    routes); a route under ``/admin/`` is served behind the admin key.
    Raising aborts start-up."""


@hookspec
def provider_changed(
    manager: ProviderManager, name: str, old: ProviderConfig | None, new: ProviderConfig | None
) -> None:
    """Called after ``add_provider`` (``old`` is ``None``), ``update_provider``,
    or ``remove_provider`` (``new`` is ``None``) took effect. Caches drop the
    provider's entries here. Exceptions are logged and ignored."""


# ---------------------------------------------------------------------------
# The request pipeline


@hookspec
def before_request(
    request: CompletionRequest, context: RequestContext
) -> CompletionRequest | CompletionResponse | None:
    """Called once per request, before any target is chosen, in call order.

    Return ``None`` to let the request pass unchanged; a new
    :class:`~swarmgate.models.CompletionRequest` to replace it (later
    implementations and the rest of the pipeline see the replacement);
    or a :class:`~swarmgate.models.CompletionResponse` to answer without
    calling any provider (a cache hit): no further ``before_request``
    implementation, no provider and no ``after_response`` runs.
    Raise a :class:`~swarmgate.errors.SwarmgateError` (rate limited, budget
    exceeded, ...) to refuse the request; the caller gets that error.
    Any other exception also aborts the request and propagates.
    """


@hookspec
def filter_targets(
    request: CompletionRequest, candidates: Sequence[Target], context: RequestContext
) -> Iterable[tuple[Target, str]] | None:
    """Called once per request, before ``select_provider``, in call order,
    with the candidates that passed the kernel's own filters.

    Return the targets this plugin rules out, each with a short reason
    (``(target, "circuit open")``), or ``None``. Every implementation runs;
    the union is dropped. A request whose every candidate is ruled out fails
    with :class:`~swarmgate.errors.NoProviderAvailableError` listing the
    reasons. Circuit breakers and budget guards act here. Raising aborts
    the request.
    """


@hookspec(firstresult=True)
def select_provider(
    request: CompletionRequest, candidates: Sequence[Target], context: RequestContext
) -> Sequence[Target] | None:
    """Order the candidate targets, best first. Called once per request with
    the candidates that passed the filters (preferences, exclusions,
    constraints, enabled; unhealthy ones last).

    The first non-``None`` answer wins: the kernel tries those targets in
    that order (a target left out is not tried). The kernel's ``trylast``
    default applies the configured strategy and load balancer. Return
    ``None`` to leave the decision to others. Raising aborts the request.
    """


@hookspec
def before_attempt(request: CompletionRequest, target: Target, context: RequestContext) -> None:
    """Called before every attempt at a target (first tries, retries,
    switches, hedged backups, stream continuations), in call order, just
    before the provider is called. Budget reservations (priced at this
    target) and per-provider rate limits act here.

    Raise a :class:`~swarmgate.errors.SwarmgateError` to refuse this target:
    the provider is not called, the kernel records a *refused* attempt
    (``Attempt.refused``, latency 0), ``on_failure`` is **not** called (the
    upstream did nothing wrong), and the request moves to the next target if
    ``error.failover`` is true or fails with ``error`` otherwise. Any other
    exception also aborts the request.
    """


@hookspec
def after_response(request: CompletionRequest, response: CompletionResponse, context: RequestContext) -> None:
    """Called once for every answered request (for a stream: after its last
    event), in call order, with the final response (cost, tokens, attempts
    filled in). This includes answers a ``before_request`` hook produced
    (a cache hit: ``response.cached`` is true, ``response.attempts`` empty).
    Cache stores, usage logs, budget settlement, analytics and audit act
    here. Return values are ignored. Exceptions are logged and ignored: the
    answer has already been produced."""


@hookspec
def request_failed(request: CompletionRequest, error: SwarmgateError, context: RequestContext) -> None:
    """Called once for every request that ends without an answer, in call
    order: refused by a ``before_request`` hook, every target failed or
    refused, aborted by an ``on_failure`` decision, a stream broken after
    output started, or cancelled by the caller (a client that went away, a
    stream closed early: ``error`` is a
    :class:`~swarmgate.errors.RequestCancelledError` and the partial
    attempt, with the usage it had consumed, is in ``context.attempts``).
    Exactly one of ``after_response`` and ``request_failed`` runs per
    request. It runs shielded from cancellation. Usage logs and budget
    settlement act here. Exceptions are logged and ignored."""


@hookspec(firstresult=True)
def on_failure(
    request: CompletionRequest, target: Target, error: SwarmgateError, context: RequestContext
) -> FailureDecision | None:
    """Called after every failed attempt (``context.attempts[-1]`` is it).

    Return a :class:`~swarmgate.manager.FailureDecision` to choose what
    happens next: ``retry`` the same target (after ``delay`` seconds),
    ``failover`` to the next target, or ``abort`` (raise ``error`` now). The
    first non-``None`` answer wins; with none, the kernel fails over when
    ``error.failover`` is true and aborts otherwise. Breakers and health
    state are updated here (returning ``None``). Exceptions are logged and
    treated as ``None``.
    """


@hookspec
def deliver_alert(alert: Alert, manager: ProviderManager) -> None:
    """Deliver one alert (webhook, email, ...). Called by the manager's
    background alert task, in order of emission, after the ``on_alert``
    callbacks; never on the request path. Exceptions are logged and
    ignored (a delivery plugin retries on its own if it wants to)."""


@hookspec(firstresult=True)
def health_probe(manager: ProviderManager, name: str, provider: Provider) -> HealthStatus | None:
    """Check whether provider ``name`` is alive. The first non-``None``
    :class:`~swarmgate.models.HealthStatus` wins; the kernel's ``trylast``
    default calls ``provider.health_check()``. Raising counts as unhealthy
    with the exception as the detail."""
