"""``qwen-swarm-enhanced demo``: a short burst of traffic through the gateway.

Runs the embedded default (or ``--config``) through a real
:class:`~swarmgate.ProviderManager`: mixed prompts sent as model ``auto``,
through a route, by model name (with its fallback chain) and to a forced
provider, some concurrently. Prints a progress bar, one line per request
(who answered, latency, cost, and every failed attempt before the answer),
then a per-provider table and totals.

``--time-scale`` multiplies every simulated provider's own ``timeScale``,
so all simulated waits (latencies, outage windows, retry-after hints) shrink
together and stay in proportion; non-simulated providers are untouched.
``--seed`` fixes the traffic mix and seeds every simulated provider (with
``--concurrency 1`` a run is then repeatable up to outage timing).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from pathlib import Path

import anyio
import attrs
import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from swarmgate import (
    Attempt,
    CompletionRequest,
    CompletionResponse,
    FinishEvent,
    ProviderManager,
    SwarmgateConfig,
    SwarmgateError,
    load_config,
)
from swarmgate_sim.defaults import embedded_default

PROMPTS = (
    "Explain swarm intelligence in two paragraphs.",
    "Generate code examples for an exponential backoff retry loop.",
    "Analyze this data and name the trend: 3, 5, 8, 13, 21.",
    "Summarise the benefits of load balancing across LLM providers.",
    "Write a haiku about failover.",
    "What is a circuit breaker, and when should it open?",
    "Compare cost-optimized and performance-optimized routing.",
    "Draft a status update: the primary provider is degraded.",
    "List three ways to cut token spend without losing quality.",
    "Translate 'the gateway is healthy' into French and German.",
    "Explain time to first token to a product manager.",
    "Suggest a name for a self-healing LLM gateway.",
)

#: Max tokens of the "short" requests, small enough to be cut (finish "length").
SHORT_MAX_TOKENS = 24


@attrs.frozen
class Spec:
    """One request of the burst: a label for the output and what to send."""

    label: str
    prompt: str
    model: str = "auto"
    provider: str | None = None
    max_tokens: int | None = None


@attrs.frozen
class Outcome:
    """What happened to one request: the response or the error, every
    attempt made, and the wall-clock milliseconds it took."""

    index: int
    spec: Spec
    attempts: tuple[Attempt, ...]
    latency: float
    response: CompletionResponse | None = None
    error: SwarmgateError | None = None


@attrs.frozen
class ProviderSummary:
    """Per-provider figures over every attempt of the burst (latencies in ms)."""

    provider: str
    served: int
    attempts: int
    failed: int
    avg_latency: float | None
    p95_latency: float | None
    cost: float

    @property
    def success_rate(self) -> float | None:
        """Successful attempts over all attempts (``None`` without attempts)."""
        return (self.attempts - self.failed) / self.attempts if self.attempts else None


def prepare_config(path: Path | None, time_scale: float, seed: int) -> SwarmgateConfig:
    """Load ``path`` (or the embedded default) and, on every ``sim``
    provider, multiply ``timeScale`` by ``time_scale`` and set ``seed``.

    Raises :class:`~swarmgate.ConfigError` for a bad config (values the
    demo cannot adjust are left for the provider to report).
    """
    config = load_config(path if path is not None else embedded_default())
    providers = {}
    for name, provider in config.providers.items():
        if provider.type == "sim":
            settings = dict(provider.settings)
            own = settings.get("timeScale", 1.0)
            if isinstance(own, int | float) and not isinstance(own, bool):
                settings["timeScale"] = float(own) * time_scale
            settings["seed"] = seed
            provider = attrs.evolve(provider, settings=settings)
        providers[name] = provider
    return attrs.evolve(config, providers=providers)


def traffic(manager: ProviderManager, count: int, rng: random.Random) -> list[Spec]:
    """``count`` requests mixing model ``auto`` (some with a small
    ``max_tokens``), every configured route, the top provider's default
    model by name (so its fallback chain shows), and the last provider by
    priority forced."""
    live = sorted(manager.providers(), key=manager.priority_of)
    routes = list(manager.config.routes)
    top_model = manager.config.providers[live[0]].resolve_default_model() if live else None
    forced = live[-1] if len(live) > 1 else None
    pattern: list[str] = ["auto", "auto", "auto", "auto", "short", "model", "forced", "route", "route", "auto"]
    specs: list[Spec] = []
    route_turn = 0
    for i in range(count):
        prompt = rng.choice(PROMPTS)
        kind = pattern[i % len(pattern)]
        if kind == "route" and routes:
            route = routes[route_turn % len(routes)]
            route_turn += 1
            specs.append(Spec(f"route {route}", prompt, model=route))
        elif kind == "model" and top_model is not None:
            specs.append(Spec(f"model {top_model}", prompt, model=top_model))
        elif kind == "forced" and forced is not None:
            specs.append(Spec(f"forced {forced}", prompt, provider=forced))
        elif kind == "short":
            specs.append(Spec(f"auto, max {SHORT_MAX_TOKENS} tok", prompt, max_tokens=SHORT_MAX_TOKENS))
        else:
            specs.append(Spec("auto", prompt))
    rng.shuffle(specs)
    return specs


async def send(manager: ProviderManager, index: int, spec: Spec, *, stream: bool) -> Outcome:
    """Send one request (streamed or not) and record what happened."""
    request = CompletionRequest.create(
        spec.prompt, model=spec.model, provider=spec.provider, max_tokens=spec.max_tokens, tags=("demo",)
    )
    started = time.perf_counter()
    try:
        response: CompletionResponse | None = None
        if stream:
            async for event in manager.stream(request):
                if isinstance(event, FinishEvent):
                    response = event.response
        else:
            response = await manager.complete(request)
    except SwarmgateError as error:
        latency = (time.perf_counter() - started) * 1000.0
        return Outcome(index, spec, error.attempts, latency, error=error)
    latency = (time.perf_counter() - started) * 1000.0
    assert response is not None
    return Outcome(index, spec, response.attempts, latency, response=response)


def _p95(values: Sequence[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def summarize(outcomes: Sequence[Outcome], providers: Sequence[str]) -> list[ProviderSummary]:
    """One :class:`ProviderSummary` per provider (in ``providers`` order,
    then any other provider seen), over every attempt of ``outcomes``."""
    names = list(providers)
    for outcome in outcomes:
        for attempt in outcome.attempts:
            if attempt.provider not in names:
                names.append(attempt.provider)
    out = []
    for name in names:
        attempts = [a for o in outcomes for a in o.attempts if a.provider == name]
        ok = [a.latency for a in attempts if a.ok]
        served = sum(1 for o in outcomes if o.response is not None and o.response.provider == name)
        out.append(
            ProviderSummary(
                provider=name,
                served=served,
                attempts=len(attempts),
                failed=len(attempts) - len(ok),
                avg_latency=sum(ok) / len(ok) if ok else None,
                p95_latency=_p95(ok),
                cost=sum(a.cost for a in attempts),
            )
        )
    return out


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} ms"


def describe(outcome: Outcome) -> str:
    """One line (rich markup) for one request: what was asked, who answered,
    latency, cost, and the failed attempts before the answer."""
    head = f"[dim]#{outcome.index + 1:02d}[/] {escape(outcome.spec.label):<20}"
    failed = [a for a in outcome.attempts if not a.ok]
    tried = ", ".join(f"{escape(a.provider)}/{escape(a.model)}: [red]{a.error_kind}[/]" for a in failed)
    response = outcome.response
    if response is None:
        error = outcome.error
        kind = error.kind.value if error is not None else "error"
        detail = f" after {tried}" if tried else f": {escape(str(error))}"
        return f"{head} [bold red]{'failed':<28}[/] {_ms(outcome.latency):>8}  [red]{kind}[/]{detail}"
    target = f"{response.provider}/{response.model}"
    line = f"{head} [green]{escape(target):<28}[/] {_ms(response.latency):>8}  ${response.total_cost:.6f}"
    if response.ttft is not None:
        line += f"  [dim]ttft {_ms(response.ttft)}[/]"
    if response.finish_reason == "length":
        line += "  [dim]cut at max_tokens[/]"
    if failed:
        line += f"  [yellow]failover[/] after {tried}"
    return line


def _profile(settings: dict[str, object]) -> str:
    parts = []
    if "ttftMs" in settings:
        parts.append(f"ttft {settings['ttftMs']} ms")
    if "tokensPerSecond" in settings:
        parts.append(f"{settings['tokensPerSecond']} tok/s")
    rate = settings.get("failureRate")
    if isinstance(rate, int | float) and rate:
        parts.append(f"{rate * 100:g}% fail")
    outages = settings.get("outages")
    if isinstance(outages, list) and outages:
        parts.append("outages")
    return ", ".join(parts)


def _providers_table(manager: ProviderManager) -> Table:
    table = Table(title="providers", title_justify="left", show_edge=False, pad_edge=False)
    for column in ("provider", "type", "priority", "models", "profile"):
        table.add_column(column)
    for name in sorted(manager.providers(), key=manager.priority_of):
        config = manager.config.providers[name]
        profile = _profile(config.settings) if config.type == "sim" else ""
        table.add_row(name, config.type, str(config.priority), ", ".join(config.models) or "(any)", profile)
    return table


def _summary_table(summaries: Sequence[ProviderSummary], outcomes: Sequence[Outcome], wall: float) -> Table:
    table = Table(title="per provider", title_justify="left", show_footer=True, show_edge=False, pad_edge=False)
    ok = [o for o in outcomes if o.response is not None]
    failovers = sum(1 for o in ok if any(not a.ok for a in o.attempts))
    attempts = sum(s.attempts for s in summaries)
    failed = sum(s.failed for s in summaries)
    latencies = [o.latency for o in ok]
    columns = (
        ("provider", "total"),
        ("served", str(len(ok))),
        ("failed attempts", str(failed)),
        ("success rate", f"{(attempts - failed) / attempts:.0%}" if attempts else "-"),
        ("avg latency", _ms(sum(latencies) / len(latencies) if latencies else None)),
        ("p95 latency", _ms(_p95(latencies))),
        ("cost", f"${sum(s.cost for s in summaries):.6f}"),
    )
    for i, (name, footer) in enumerate(columns):
        table.add_column(name, footer=footer, justify="left" if i == 0 else "right")
    for s in summaries:
        rate = s.success_rate
        table.add_row(
            s.provider,
            str(s.served),
            str(s.failed),
            "-" if rate is None else f"{rate:.0%}",
            _ms(s.avg_latency),
            _ms(s.p95_latency),
            f"${s.cost:.6f}",
        )
    table.caption = (
        f"{len(outcomes)} requests in {wall:.1f}s: {len(ok)} answered ({failovers} after failover), "
        f"{len(outcomes) - len(ok)} failed. Provider rows: per attempt; total: per request, end to end. "
        "Latencies are wall-clock at the chosen time scale."
    )
    table.caption_justify = "left"
    return table


@attrs.frozen
class DemoOptions:
    """The ``demo`` command's options."""

    requests: int = 40
    concurrency: int = 4
    config: Path | None = None
    seed: int | None = None
    stream: bool = False
    time_scale: float = 0.1


async def run_demo(options: DemoOptions, console: Console) -> list[Outcome]:
    """Run the burst and print it; returns every request's outcome.

    Raises :class:`~swarmgate.ConfigError` / :class:`~swarmgate.PluginError`
    for a bad config (before any request is sent).
    """
    seed = options.seed if options.seed is not None else random.randrange(1, 100_000)
    config = prepare_config(options.config, options.time_scale, seed)
    async with ProviderManager(config) as manager:
        rng = random.Random(seed)
        specs = traffic(manager, options.requests, rng)
        if options.time_scale == 0:
            speed = "no waiting"
        else:
            factor = 1 / options.time_scale
            speed = (
                f"{factor:.3g}x faster than real time" if factor >= 1 else f"{1 / factor:.3g}x slower than real time"
            )
        source = (
            escape(config.source) if config.source else "embedded default: simulated providers, no API keys, no network"
        )
        console.print(
            f"[bold]swarmgate demo[/]: {options.requests} requests, {options.concurrency} at a time, "
            f"{'streamed' if options.stream else 'not streamed'}; time scale {options.time_scale:g} ({speed}); "
            f"seed {seed}\nconfig: {source}"
        )
        console.print(_providers_table(manager))
        outcomes: list[Outcome] = []
        limiter = anyio.CapacityLimiter(options.concurrency)
        started = time.perf_counter()
        columns = (TextColumn("requests"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task("requests", total=len(specs))

            async def run_one(index: int, spec: Spec) -> None:
                async with limiter:
                    outcome = await send(manager, index, spec, stream=options.stream)
                outcomes.append(outcome)
                progress.console.print(describe(outcome), highlight=False, soft_wrap=True)
                progress.advance(task)

            async with anyio.create_task_group() as tg:
                for index, spec in enumerate(specs):
                    tg.start_soon(run_one, index, spec)
        wall = time.perf_counter() - started
        outcomes.sort(key=lambda o: o.index)
        console.print(_summary_table(summarize(outcomes, manager.providers()), outcomes, wall))
    return outcomes


@click.command("demo")
@click.option("--requests", "-n", type=click.IntRange(min=1), default=40, show_default=True, help="Requests to send.")
@click.option(
    "--concurrency", "-c", type=click.IntRange(min=1), default=4, show_default=True, help="Requests in flight at once."
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A config file (JSON/YAML) instead of the embedded default.",
)
@click.option("--seed", type=int, default=None, help="Seed for the traffic mix and the simulated providers.")
@click.option("--stream/--no-stream", default=False, show_default=True, help="Stream the answers.")
@click.option(
    "--time-scale",
    type=click.FloatRange(min=0.0),
    default=0.1,
    show_default=True,
    help="Multiplies every simulated wait (0.1 = ten times faster, 0 = no waiting).",
)
def demo(
    requests: int, concurrency: int, config_path: Path | None, seed: int | None, stream: bool, time_scale: float
) -> None:
    """Send a short burst of traffic through the gateway and show who answered.

    Uses the embedded default (simulated providers: no API keys, no network)
    unless --config is given.
    """
    options = DemoOptions(requests, concurrency, config_path, seed, stream, time_scale)
    anyio.run(run_demo, options, Console(highlight=False))
