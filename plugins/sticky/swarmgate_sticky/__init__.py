"""swarmgate-sticky: the ``sticky`` load balancer.

Requests with the same *sticky key* go to the same target of a tier, so a
provider's prompt cache (OpenAI's automatic prefix caching, Anthropic's
cache breakpoints, a local server's KV cache) keeps being hit, and a
caller sees one model's behaviour consistently.

The key is the first of the configured sources (``stickyKey``) that a
request has; by default, in this precedence:

1. ``user`` -- ``request.user`` (the OpenAI ``user`` field);
2. ``metadata.user`` -- ``request.metadata["user"]``;
3. ``metadata.session`` -- ``request.metadata["session"]``;
4. ``metadata.caller`` -- ``request.metadata["caller"]`` (the calling
   application or API key id, as the embedding code or server sets it);
5. ``prefix`` -- the first ``prefixLength`` characters of the first system
   message followed by the first user message: every turn of a
   conversation shares them, and so do requests that share a long system
   prompt.

The identity sources (1-4) share one key space: ``user="alice"`` and
``metadata={"user": "alice"}`` stick to the same target. Empty values are
skipped. A request with no key at all is balanced round robin.

The target is chosen by weighted rendezvous (highest-random-weight)
hashing: every target of the tier gets a pseudo-random score from a stable
64-bit hash of (key, target), scaled by the provider's weight
(``routing.loadBalancing.weights``, else its ``weight``) with the
logarithmic method (``weight / -ln(u)``), and targets are tried by score,
highest first. Consequences:

* adding or removing a target moves only the keys that the target gains or
  loses; every other key keeps its target;
* a sticky target missing from a tier (excluded, filtered by a breaker,
  removed) is replaced by that key's next-best target, the same one every
  time, and the key returns when it is back;
* failover from the sticky target follows the key's own score order;
* the hash is stable across processes and machines (BLAKE2b, not Python's
  salted ``hash``), so every gateway instance makes the same choice with no
  shared state at all.

The public API is exactly ``__all__``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import attrs

from swarmgate import CompletionRequest, ConfigError, SwarmgateConfig, Target, parse_section
from swarmgate.config import InvalidValue

if TYPE_CHECKING:
    from swarmgate import ProviderManager, RequestContext

__all__ = ["DEFAULT_STICKY_KEY", "MAX_TIERS", "SECTION", "StickyBalancer", "StickySettings", "load_settings"]

#: The sticky key sources, in precedence order, when ``stickyKey`` is not set.
DEFAULT_STICKY_KEY: Final = ("user", "metadata.user", "metadata.session", "metadata.caller", "prefix")

#: Where the settings live until ``routing.loadBalancing`` accepts them.
SECTION: Final = "plugins.sticky"

#: The most distinct tiers whose hash seeds are cached; past it the cache is
#: dropped and rebuilt on demand (a bound on memory).
MAX_TIERS = 4096

_MASK64: Final = (1 << 64) - 1
_TWO_POW_MINUS_53: Final = 2.0**-53
_ID_TAG: Final = b"id\x00"
_PREFIX_TAG: Final = b"prefix\x00"
_USER, _METADATA, _PREFIX = 0, 1, 2


def _check_sources(_instance: object, _attribute: object, sources: tuple[str, ...]) -> None:
    if not sources:
        raise InvalidValue("stickyKey", "needs at least one source")
    for i, source in enumerate(sources):
        if source in ("user", "prefix"):
            continue
        if source.startswith("metadata.") and len(source) > len("metadata."):
            continue
        raise InvalidValue(
            f"stickyKey[{i}]", f"unknown source {source!r} (expected 'user', 'prefix' or 'metadata.<field>')"
        )


def _check_prefix_length(_instance: object, _attribute: object, value: int) -> None:
    if value <= 0:
        raise InvalidValue("prefixLength", f"must be a positive number of characters, got {value}")


@attrs.frozen
class StickySettings:
    """The balancer's settings (camelCase in JSON).

    ``sticky_key``: key sources in precedence order, each ``"user"``,
    ``"prefix"`` or ``"metadata.<field>"``. ``prefix_length``: characters of
    system + first user message that make the ``prefix`` key.
    """

    sticky_key: tuple[str, ...] = attrs.field(default=DEFAULT_STICKY_KEY, validator=_check_sources)
    prefix_length: int = attrs.field(default=1024, validator=_check_prefix_length)


def load_settings(config: SwarmgateConfig) -> StickySettings:
    """The settings from ``plugins.sticky``, or from the extra keys of
    ``routing.loadBalancing`` once the kernel keeps them there
    (``LoadBalancingConfig.settings``). Raises :class:`ConfigError` naming
    the path of every bad value, or when both places are used."""
    inline: Mapping[str, Any] | None = getattr(config.routing.load_balancing, "settings", None)
    section = config.section(SECTION)
    if inline:
        if section is not None:
            raise ConfigError(
                [(SECTION, "the sticky settings are already given in routing.loadBalancing; keep them in one place")],
                source=config.source,
            )
        return parse_section(StickySettings, inline, "routing.loadBalancing", source=config.source)
    return parse_section(StickySettings, section, SECTION, source=config.source)


def _compile(source: str) -> tuple[int, str]:
    """A validated ``stickyKey`` entry as (kind, metadata field)."""
    if source == "user":
        return _USER, ""
    if source == "prefix":
        return _PREFIX, ""
    return _METADATA, source.removeprefix("metadata.")


def _hash64(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def _provider_weight(config: SwarmgateConfig, provider: str) -> float:
    weight = config.routing.load_balancing.weights.get(provider)
    if weight is not None:
        return weight
    provider_config = config.providers.get(provider)
    return provider_config.weight if provider_config is not None else 1.0


class _Tier:
    """Per-tier constants (each target's hash seed and weight) and the
    round-robin counter for requests without a key."""

    __slots__ = ("seeds", "turn", "uniform", "weights")

    def __init__(self, seeds: tuple[int, ...], weights: tuple[float, ...]) -> None:
        self.seeds = seeds
        self.weights = weights if any(w > 0 for w in weights) else (1.0,) * len(weights)
        #: Equal weights: ranking by the raw hash is the same as by score, without the logarithms.
        self.uniform = len(set(self.weights)) == 1
        self.turn = 0


class StickyBalancer:
    """Balancer ``sticky`` (entry point in ``swarmgate.balancers``).

    Built once per manager as ``cls(manager)``; reads its settings then
    (see :func:`load_settings`), so a bad value fails ``initialize()``.
    :meth:`order` is synchronous, does no I/O and, for a request with a key,
    is a pure function of the key, the tier and the weights.
    """

    settings_class = StickySettings

    def __init__(self, manager: ProviderManager) -> None:
        self._manager = manager
        self.settings = load_settings(manager.config)
        self._sources = tuple(_compile(source) for source in self.settings.sticky_key)
        self._prefix_length = self.settings.prefix_length
        self._config: SwarmgateConfig | None = None
        self._tiers: dict[tuple[Target, ...], _Tier] = {}

    def key(self, request: CompletionRequest) -> bytes | None:
        """The request's sticky key (tagged bytes), or ``None`` when none of
        the configured sources is present."""
        for kind, field in self._sources:
            if kind == _USER:
                value: Any = request.user
            elif kind == _METADATA:
                value = request.metadata.get(field)
            else:
                return self._prefix(request)
            if value is not None and value != "":
                return _ID_TAG + str(value).encode("utf-8", "surrogatepass")
        return None

    def _prefix(self, request: CompletionRequest) -> bytes | None:
        system: str | None = None
        user = ""
        for message in request.messages:
            if message.role == "user":
                user = message.text()
                break
            if system is None and message.role in ("system", "developer"):
                system = message.text()
        limit = self._prefix_length
        head = (system or "")[:limit]
        tail = user[: limit - len(head)]
        if not head and not tail:
            return None
        return _PREFIX_TAG + f"{head}\x00{tail}".encode("utf-8", "surrogatepass")

    def order(self, request: CompletionRequest, tier: list[Target], context: RequestContext) -> list[Target]:
        """Every target of ``tier`` once, by the request key's rendezvous
        score, highest first; without a key, rotated round robin. Tiers of
        fewer than two targets are returned as they are."""
        n = len(tier)
        if n < 2:
            return tier
        config = self._manager.config
        if config is not self._config:
            self._tiers.clear()
            self._config = config
        key = tuple(tier)
        state = self._tiers.get(key)
        if state is None:
            if len(self._tiers) >= MAX_TIERS:
                self._tiers.clear()
            state = self._tiers[key] = _Tier(
                tuple(_hash64(f"{t.provider}/{t.model}".encode("utf-8", "surrogatepass")) for t in key),
                tuple(_provider_weight(config, t.provider) for t in key),
            )
        sticky = self.key(request)
        if sticky is None:
            start = state.turn
            state.turn = (start + 1) % n
            return tier[start:] + tier[:start]
        key_hash = _hash64(sticky)
        log = math.log
        weights = None if state.uniform else state.weights
        ranked: list[tuple[float, int]] = []
        for i, seed in enumerate(state.seeds):
            # splitmix64's finalizer: a strong 64-bit mix of (key, target), so
            # scores of different targets are independent.
            z = key_hash ^ seed
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
            z ^= z >> 31
            if weights is None:
                ranked.append((-z, i))  # highest hash first
            else:
                uniform = ((z >> 11) + 0.5) * _TWO_POW_MINUS_53  # in (0, 1)
                ranked.append((weights[i] / log(uniform), i))  # -score: ascending sort puts the best first
        ranked.sort()
        return [tier[i] for _, i in ranked]
