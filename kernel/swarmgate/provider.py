"""The provider driver interface.

A provider type is a :class:`Provider` subclass registered as an entry point
in ``swarmgate.providers``. The manager makes one instance per configured
provider: ``cls(name, config, settings)``, then ``await start()`` before the
first call and ``await aclose()`` after the last. Drivers speak their wire
format and nothing else: they do not retry, fail over, price, cache or
count -- the kernel and other plugins do.

Contract for ``complete`` and ``stream``:

* return/yield normalised values (:class:`~swarmgate.models.ProviderReply`;
  ``TextDelta``/``ToolCallDelta``/``UsageEvent``/``FinishEvent``);
* raise a :class:`~swarmgate.errors.SwarmgateError` of the right kind for
  every upstream failure (:func:`swarmgate.errors.error_for_status` is the
  default mapping from HTTP statuses), never a raw library exception;
* honour ``call.timeout`` (seconds) where the transport allows; the kernel
  also enforces it around every call and between stream events;
* leave pricing to the kernel (it prices ``tokens`` with the model config),
  except meta-providers that know the real cost of the calls they made
  (``ProviderReply.cost``, ``UsageEvent.cost``).
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from swarmgate.config import ModelConfig, ProviderConfig
from swarmgate.models import CompletionRequest, HealthStatus, ProviderEvent, ProviderReply

if TYPE_CHECKING:
    from swarmgate.manager import ProviderManager


@attrs.frozen
class ProviderCall:
    """One call to a driver: the request, which model (config ``model``
    name; ``upstream_model`` is what to send), its config, and the timeout
    in seconds (for a whole non-streamed call). Streams have their own:
    ``first_token_timeout`` until the first token, ``stream_idle_timeout``
    between events after it (both default to ``timeout``)."""

    request: CompletionRequest
    model: str
    upstream_model: str
    model_config: ModelConfig
    timeout: float
    first_token_timeout: float = attrs.field(default=attrs.Factory(lambda self: self.timeout, takes_self=True))
    stream_idle_timeout: float = attrs.field(default=attrs.Factory(lambda self: self.timeout, takes_self=True))

    @property
    def max_tokens(self) -> int | None:
        """The request's ``max_tokens``, else the model's configured one."""
        return self.request.max_tokens if self.request.max_tokens is not None else self.model_config.max_tokens

    @property
    def temperature(self) -> float | None:
        """The request's temperature, else the model's configured one."""
        return self.request.temperature if self.request.temperature is not None else self.model_config.temperature


class Provider(abc.ABC):
    """Base class of provider drivers.

    Class attributes: ``settings_class`` is an attrs class for the
    provider-type keys of a provider's config (the kernel structures and
    validates them, naming bad paths; ``None`` means the type takes no
    extra keys). ``requires_api_key``: refuse a config without ``apiKey``.
    ``supports_prefill``: the upstream continues a trailing assistant message.
    """

    settings_class: ClassVar[type | None] = None
    requires_api_key: ClassVar[bool] = False
    #: Whether the upstream continues a trailing assistant message (prefill):
    #: a stream broken mid-answer can then continue here instead of restarting.
    supports_prefill: ClassVar[bool] = False

    def __init__(self, name: str, config: ProviderConfig, settings: Any = None) -> None:
        self.name = name
        self.config = config
        self.settings = settings
        #: The manager that owns this instance; set by the kernel before
        #: ``start()``. Meta-providers (composite, proxy) use it to reach
        #: other providers; plain drivers should not need it.
        self.manager: ProviderManager | None = None

    async def start(self) -> None:  # noqa: B027 - optional hook, empty by design
        """Open connection pools etc. Called once before the first call."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, empty by design
        """Release resources. Called once after the last call."""

    @abc.abstractmethod
    async def complete(self, call: ProviderCall) -> ProviderReply:
        """Answer one request in full."""

    @abc.abstractmethod
    def stream(self, call: ProviderCall) -> AsyncIterator[ProviderEvent]:
        """Answer one request as a stream of events (an async generator)."""

    async def health_check(self) -> HealthStatus:
        """Is the upstream alive? The default assumes yes; network drivers
        should probe something cheap (a models listing, a ping)."""
        return HealthStatus(True, detail="no probe implemented; assumed healthy")

    def models(self) -> list[str]:
        """Model names this provider serves (the configured ones)."""
        return list(self.config.models)
