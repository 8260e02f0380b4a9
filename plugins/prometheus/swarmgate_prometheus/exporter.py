"""The ``prometheus`` exporter: the analytics metrics in the Prometheus text
exposition format, through ``prometheus_client``.

Each render builds an :class:`AnalyticsCollector` over one snapshot of the
raw counters (``metrics()`` of the analytics service, or of a recorded usage
log), registers it in a private ``CollectorRegistry`` (never the global
one, so two managers in a process do not collide) and returns
``generate_latest``. Nothing is kept between renders: the counters live in
the analytics plugin.

Families (attempt figures per ``provider``/``model``; gateway figures per
request):

=========================================== ========= ==========================================
name                                        type      labels
=========================================== ========= ==========================================
``swarmgate_requests_total``                counter   provider, model, outcome (success, failure,
                                                      refused, cancelled)
``swarmgate_errors_total``                  counter   provider, model, kind
``swarmgate_refusals_total``                counter   provider, model, kind
``swarmgate_request_duration_seconds``      histogram provider, model (successful attempts)
``swarmgate_time_to_first_token_seconds``   histogram provider, model
``swarmgate_cost_total``                    counter   provider, model (currency units of the prices)
``swarmgate_tokens_total``                  counter   provider, model, direction (input, output)
``swarmgate_gateway_requests_total``        counter   outcome (success, failure, cancelled)
``swarmgate_gateway_rejected_requests_total`` counter (failed without reaching a provider)
``swarmgate_gateway_request_duration_seconds`` histogram (answered requests, end to end)
``swarmgate_inflight_requests``             gauge     provider
``swarmgate_provider_up``                   gauge     provider (1 healthy, 0 not)
``swarmgate_provider_uptime_ratio``         gauge     provider
``swarmgate_circuit_state``                 gauge     provider, model, state (1 for the current)
``swarmgate_cache_hits_total``              counter
``swarmgate_cache_misses_total``            counter
``swarmgate_cache_cost_saved_total``        counter
=========================================== ========= ==========================================

The histogram buckets (``le``) are the analytics bins at 1, 2.5 and 5 of
every decade from 1 ms to 100 s
(:data:`swarmgate_analytics.histogram.EXPORT_BOUNDS`), so their cumulative
counts are exact. Live-only families (in flight, up, uptime, circuit) are
absent when rendering a usage log.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from swarmgate_analytics import MetricsSource, analytics_source, histogram

if TYPE_CHECKING:
    from swarmgate import ProviderManager

#: The circuit states a ``swarmgate_circuit_state`` series exists for.
CIRCUIT_STATES: Final = ("closed", "half_open", "open")
TARGET_LABELS: Final = ("provider", "model")


def _le(seconds: float) -> str:
    """A bucket bound as Prometheus writes it (``0.0025``, ``1.0``, ``+Inf``)."""
    return "+Inf" if seconds == math.inf else repr(seconds)


def _buckets(data: Mapping[str, Any]) -> tuple[list[tuple[str, float]], float]:
    """Cumulative ``(le, count)`` pairs in seconds and the sum in seconds of
    one sparse histogram of the metrics document."""
    hist = histogram.from_sparse(data.get("buckets", ()))
    pairs = [
        (_le(bound / 1000.0), float(count)) for bound, count in histogram.cumulative(hist, histogram.EXPORT_BOUNDS)
    ]
    return pairs, float(data.get("sum", 0.0)) / 1000.0


class AnalyticsCollector(Collector):
    """A custom collector over one metrics document (see the module docstring)."""

    def __init__(self, metrics: Mapping[str, Any]) -> None:
        self._metrics = metrics

    def describe(self) -> Iterable[Metric]:
        """Nothing up front: the families depend on the snapshot."""
        return ()

    def collect(self) -> Iterator[Metric]:
        """Every family of the snapshot."""
        yield from self._targets(self._metrics.get("targets", ()))
        yield from self._gateway(self._metrics.get("requests", {}))
        yield from self._providers(self._metrics.get("providers", ()))
        yield from self._circuits(self._metrics.get("targets", ()))
        yield from self._cache(self._metrics.get("cache") or {})

    @staticmethod
    def _targets(targets: Iterable[Mapping[str, Any]]) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "swarmgate_requests", "Attempts at a provider/model by outcome.", labels=(*TARGET_LABELS, "outcome")
        )
        errors = CounterMetricFamily(
            "swarmgate_errors", "Failed attempts at a provider/model by error kind.", labels=(*TARGET_LABELS, "kind")
        )
        refusals = CounterMetricFamily(
            "swarmgate_refusals",
            "Attempts refused locally (budget, rate limit) before reaching the provider, by kind.",
            labels=(*TARGET_LABELS, "kind"),
        )
        duration = HistogramMetricFamily(
            "swarmgate_request_duration_seconds",
            "Latency of successful attempts at a provider/model.",
            labels=TARGET_LABELS,
        )
        ttft = HistogramMetricFamily(
            "swarmgate_time_to_first_token_seconds",
            "Time to first token of successful attempts at a provider/model.",
            labels=TARGET_LABELS,
        )
        cost = CounterMetricFamily(
            "swarmgate_cost", "Upstream cost, in the currency of the configured prices.", labels=TARGET_LABELS
        )
        tokens = CounterMetricFamily(
            "swarmgate_tokens", "Tokens consumed upstream.", labels=(*TARGET_LABELS, "direction")
        )
        for target in targets:
            key = (str(target["provider"]), str(target["model"]))
            for outcome, field in (
                ("success", "successes"),
                ("failure", "failures"),
                ("refused", "refused"),
                ("cancelled", "cancelled"),
            ):
                requests.add_metric((*key, outcome), float(target.get(field, 0)))
            for kind, count in target.get("errorsByKind", {}).items():
                errors.add_metric((*key, kind), float(count))
            for kind, count in target.get("refusedByKind", {}).items():
                refusals.add_metric((*key, kind), float(count))
            buckets, total = _buckets(target.get("latency", {}))
            duration.add_metric(key, buckets, total)
            buckets, total = _buckets(target.get("ttft", {}))
            ttft.add_metric(key, buckets, total)
            cost.add_metric(key, float(target.get("cost", 0.0)))
            tokens.add_metric((*key, "input"), float(target.get("inputTokens", 0)))
            tokens.add_metric((*key, "output"), float(target.get("outputTokens", 0)))
        yield from (requests, errors, refusals, duration, ttft, cost, tokens)

    @staticmethod
    def _gateway(requests: Mapping[str, Any]) -> Iterator[Metric]:
        outcomes = CounterMetricFamily(
            "swarmgate_gateway_requests", "Requests to the gateway by outcome.", labels=("outcome",)
        )
        outcomes.add_metric(("success",), float(requests.get("successes", 0)))
        outcomes.add_metric(("failure",), float(requests.get("failures", 0)))
        outcomes.add_metric(("cancelled",), float(requests.get("cancelled", 0)))
        yield outcomes
        yield CounterMetricFamily(
            "swarmgate_gateway_rejected_requests",
            "Failed requests that never reached a provider (refused, or nothing to try).",
            value=float(requests.get("rejected", 0)),
        )
        duration = HistogramMetricFamily(
            "swarmgate_gateway_request_duration_seconds", "End-to-end latency of answered requests."
        )
        buckets, total = _buckets(requests.get("latency", {}))
        duration.add_metric((), buckets, total)
        yield duration

    @staticmethod
    def _providers(providers: Iterable[Mapping[str, Any]]) -> Iterator[Metric]:
        inflight = GaugeMetricFamily("swarmgate_inflight_requests", "Attempts under way.", labels=("provider",))
        up = GaugeMetricFamily(
            "swarmgate_provider_up", "Whether the provider is healthy (1) or not (0).", labels=("provider",)
        )
        uptime = GaugeMetricFamily(
            "swarmgate_provider_uptime_ratio",
            "Fraction of the time observed the provider was healthy.",
            labels=("provider",),
        )
        for provider in providers:
            name = (str(provider["name"]),)
            if provider.get("inflight") is not None:
                inflight.add_metric(name, float(provider["inflight"]))
            if provider.get("healthy") is not None:
                up.add_metric(name, 1.0 if provider["healthy"] else 0.0)
            if provider.get("uptime") is not None:
                uptime.add_metric(name, float(provider["uptime"]))
        yield from (family for family in (inflight, up, uptime) if family.samples)

    @staticmethod
    def _circuits(targets: Iterable[Mapping[str, Any]]) -> Iterator[Metric]:
        circuit = GaugeMetricFamily(
            "swarmgate_circuit_state",
            "Circuit breaker state of a provider/model (1 for the current state).",
            labels=(*TARGET_LABELS, "state"),
        )
        for target in targets:
            state = target.get("breaker")
            if state is None:
                continue
            for candidate in CIRCUIT_STATES:
                circuit.add_metric(
                    (str(target["provider"]), str(target["model"]), candidate), 1.0 if state == candidate else 0.0
                )
        if circuit.samples:
            yield circuit

    @staticmethod
    def _cache(cache: Mapping[str, Any]) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "swarmgate_cache_hits", "Requests answered from the cache.", value=float(cache.get("hits", 0))
        )
        yield CounterMetricFamily(
            "swarmgate_cache_misses", "Requests not answered from the cache.", value=float(cache.get("misses", 0))
        )
        yield CounterMetricFamily(
            "swarmgate_cache_cost_saved",
            "What the cached answers cost originally, in the currency of the prices.",
            value=float(cache.get("costSaved", 0.0)),
        )


def render_metrics(metrics: Mapping[str, Any]) -> str:
    """The exposition text of one metrics document."""
    registry = CollectorRegistry()
    registry.register(AnalyticsCollector(metrics))
    return generate_latest(registry).decode("utf-8")


class PrometheusExporter:
    """``format="prometheus"`` (entry point in ``swarmgate.exporters``)."""

    content_type = CONTENT_TYPE_LATEST

    async def render(self, manager: ProviderManager) -> str:
        """The live analytics metrics of ``manager`` (needs ``swarmgate-analytics`` active)."""
        return await self.render_source(analytics_source(manager))

    async def render_source(self, source: MetricsSource) -> str:
        """The metrics of any analytics source (a recorded usage log's too)."""
        return render_metrics(await source.metrics())
