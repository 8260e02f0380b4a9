"""The request hooks of the compliance controls, each registered only while
its control is on (so a control that is off costs nothing per request).

* :class:`PersonalDataHooks` (``gdpr``/``hipaa``): ``before_request``,
  ``tryfirst`` so it runs before the cache's lookup: a request marked
  personal gets ``cache = CacheControl(bypass=True)`` (neither read from
  nor written to the cache).
* :class:`ResidencyHooks` (``dataResidency``): ``filter_targets`` rules out
  every target whose provider is outside the allowed regions, with the
  reason; ``before_attempt`` refuses such a target too, for a target that
  reached the attempt some other way (an ``on_failure`` switch), with
  :class:`DataResidencyError` (``failover``: the next target is tried).
  A request no provider inside the regions can serve fails with
  ``NoProviderAvailableError`` listing, for each target, "provider X is in
  us-west-2, outside the allowed regions [eu-west-1]": it never leaves them.
  Each provider's verdict is computed once, and again when it changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from swarmgate import (
    CacheControl,
    CompletionRequest,
    NoProviderAvailableError,
    ProviderConfig,
    ProviderManager,
    Target,
    hookimpl,
)
from swarmgate_compliance.settings import region_allowed

#: The request-hook plugins' registration names.
PERSONAL_HOOKS = "compliance-personal-data"
RESIDENCY_HOOKS = "compliance-data-residency"

_BYPASS = CacheControl(bypass=True)


class DataResidencyError(NoProviderAvailableError):
    """A target outside the allowed regions was refused before it was
    called (``before_attempt``). ``failover``: the next target is tried."""

    failover = True


def is_personal(request: CompletionRequest, tag: str) -> bool:
    """Whether ``request`` is marked personal: ``tag`` in its tags, or
    ``metadata["personal"]`` is true."""
    return tag in request.tags or request.metadata.get("personal") is True


class PersonalDataHooks:
    """Keeps requests marked personal out of the cache; see the module docstring."""

    def __init__(self, tag: str) -> None:
        self.tag = tag

    @hookimpl(tryfirst=True)
    def before_request(self, request: CompletionRequest) -> CompletionRequest | None:
        """The request with the cache bypassed when it is personal, else ``None``."""
        if self.tag in request.tags or request.metadata.get("personal") is True:
            cache = request.cache
            if cache is None or not cache.bypass:
                return attrs.evolve(request, cache=_BYPASS)
        return None


def residency_reason(
    name: str, config: ProviderConfig | None, allowed: tuple[str, ...], allow_without_region: bool
) -> str | None:
    """Why provider ``name`` is outside ``allowed``, or ``None`` when it is inside."""
    listed = f"[{', '.join(allowed)}]"
    region = config.region if config is not None else None
    if region is None or not region.strip():
        if allow_without_region:
            return None
        return (
            f"provider {name} has no region, outside the allowed regions {listed} "
            "(set its 'region', or security.compliance.allowProvidersWithoutRegion)"
        )
    if region_allowed(region, allowed):
        return None
    return f"provider {name} is in {region}, outside the allowed regions {listed}"


class ResidencyHooks:
    """Keeps requests inside the allowed regions; see the module docstring."""

    def __init__(self, manager: ProviderManager, allowed: tuple[str, ...], allow_without_region: bool) -> None:
        self.manager = manager
        self.allowed = allowed
        self.allow_without_region = allow_without_region
        self._reasons: dict[str, str | None] = {}
        for name in manager.providers():
            self._update(name, self._config_of(name))

    def _config_of(self, name: str) -> ProviderConfig | None:
        handle = self.manager.handle(name)
        return handle.config if handle is not None else None

    def _update(self, name: str, config: ProviderConfig | None) -> str | None:
        reason = residency_reason(name, config, self.allowed, self.allow_without_region)
        self._reasons[name] = reason
        return reason

    def reason(self, provider: str) -> str | None:
        """Why ``provider`` is outside the allowed regions, or ``None``."""
        try:
            return self._reasons[provider]
        except KeyError:
            return self._update(provider, self._config_of(provider))

    def outside(self) -> dict[str, str]:
        """Every known provider outside the allowed regions, with the reason."""
        return {name: reason for name, reason in self._reasons.items() if reason is not None}

    @hookimpl
    def filter_targets(self, candidates: Sequence[Target]) -> list[tuple[Target, str]]:
        """Rule out the targets outside the allowed regions."""
        reasons = self._reasons
        out: list[tuple[Target, str]] = []
        for target in candidates:
            reason = reasons[target.provider] if target.provider in reasons else self.reason(target.provider)
            if reason is not None:
                out.append((target, reason))
        return out

    @hookimpl
    def before_attempt(self, target: Target) -> None:
        """Refuse a target outside the allowed regions (never called upstream)."""
        reason = self.reason(target.provider)
        if reason is not None:
            error = DataResidencyError(reason)
            error.provider, error.model = target.provider, target.model
            raise error

    @hookimpl
    def provider_changed(self, name: str, new: ProviderConfig | None) -> None:
        """Recompute the verdict of a provider that was added, changed or removed."""
        if new is None:
            self._reasons.pop(name, None)
        else:
            self._update(name, new)
