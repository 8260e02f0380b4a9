"""``PredictPlugin``: publishes the :class:`Predictor` and feeds it live traffic.

Entry point ``predict`` in the ``swarmgate`` group. In ``plugin_setup`` it
parses ``routing.mlConfig`` and publishes the predictor as
``manager.extensions["predict"]``. It learns only while something uses the
predictions: from the start when ``routing.mlConfig`` is present or the
configured strategy declares ``uses_predictions``, otherwise from the
moment a strategy first calls :func:`acquire` (a per-request ``strategy=``).
Until then both request hooks return at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from swarmgate import hookimpl
from swarmgate.logs import get_logger
from swarmgate_predict._config import SECTION
from swarmgate_predict._model import Predictor

if TYPE_CHECKING:
    from swarmgate.config import ProviderConfig
    from swarmgate.errors import SwarmgateError
    from swarmgate.manager import ProviderManager, RequestContext
    from swarmgate.models import CompletionRequest, CompletionResponse, Target

log = get_logger("swarmgate.predict")

#: The ``manager.extensions`` key and the ``context.state`` key of this plugin.
EXTENSION = "predict"


class PredictPlugin:
    """Hooks: ``plugin_setup`` publishes the predictor; ``on_failure``
    (``tryfirst``, so a deciding plugin such as retry cannot hide a failure
    from it; returns ``None``) and ``after_response`` learn;
    ``provider_changed`` forgets a removed or re-pointed provider."""

    def __init__(self) -> None:
        self.predictor: Predictor | None = None

    @hookimpl
    def plugin_setup(self, manager: ProviderManager) -> None:
        """Parse ``routing.mlConfig`` (a bad value is a ``ConfigError``
        naming its path) and publish the predictor."""
        predictor = Predictor.from_manager(manager)
        if manager.config.section(SECTION) is not None or getattr(manager.strategy(), "uses_predictions", False):
            predictor.activate()
        manager.extensions[EXTENSION] = predictor
        self.predictor = predictor

    @hookimpl(tryfirst=True)
    def on_failure(
        self, request: CompletionRequest, target: Target, error: SwarmgateError, context: RequestContext
    ) -> None:
        """Record the attempts not yet recorded (the failed one, and both of a
        hedged pair that failed together); decides nothing."""
        predictor = self.predictor
        if predictor is None or not predictor.learning:
            return
        attempts = context.attempts
        seen: int = context.state.get(EXTENSION, 0)
        for attempt in attempts[seen:]:
            predictor.observe_attempt(attempt)
        context.state[EXTENSION] = len(attempts)

    @hookimpl
    def after_response(self, request: CompletionRequest, response: CompletionResponse, context: RequestContext) -> None:
        """Record the answering attempt, and any failed attempt that
        ``on_failure`` did not see (a plugin that decided before it)."""
        predictor = self.predictor
        if predictor is None or not predictor.learning:
            return
        attempts = context.attempts
        seen: int = context.state.get(EXTENSION, 0)
        for attempt in attempts[seen:]:
            predictor.observe_attempt(attempt)
        context.state[EXTENSION] = len(attempts)

    @hookimpl
    def provider_changed(
        self, manager: ProviderManager, name: str, old: ProviderConfig | None, new: ProviderConfig | None
    ) -> None:
        """Forget a provider that was removed, added, or now points at
        another upstream (type or endpoint changed); a key or price change
        keeps what was learned."""
        predictor = self.predictor
        if predictor is None:
            return
        if old is None or new is None or old.type != new.type or old.endpoint != new.endpoint:
            predictor.forget(name)


def predict_plugin_registered(manager: ProviderManager) -> bool:
    """Whether a :class:`PredictPlugin` is registered with ``manager``'s hooks."""
    return any(isinstance(p, PredictPlugin) for p in manager.plugins.pm.get_plugins())


def acquire(manager: ProviderManager) -> Predictor:
    """The manager's predictor, for a strategy; marks it as used (learning starts).

    The ``predict`` plugin publishes it in ``plugin_setup``. When the
    plugin's hooks are not active (blocked with ``SWARMGATE_DISABLE_PLUGINS``,
    left out of ``SWARMGATE_PLUGINS``, or the strategy is used before
    ``initialize()`` finished), a standalone predictor is created from
    ``manager``'s config and published instead: with nothing to feed it, it
    predicts from the priors alone (a warning says so, once per manager).
    Raises :class:`~swarmgate.errors.ConfigError` for a bad ``routing.mlConfig``.
    """
    predictor = manager.extensions.get(EXTENSION)
    if not isinstance(predictor, Predictor):
        predictor = Predictor.from_manager(manager, standalone=True)
        manager.extensions[EXTENSION] = predictor
        log.warning(
            "predict_hooks_inactive",
            detail="the predict plugin's hooks are not active: predictions come from the priors only; "
            "admit 'swarmgate-predict' (SWARMGATE_PLUGINS / SWARMGATE_DISABLE_PLUGINS) to learn from traffic",
            registered=predict_plugin_registered(manager),
        )
    if not predictor.active:
        predictor.activate()
    return predictor
