"""The ``composite`` type's config keys, validated by the kernel's converter.

Shape checks live here (the kernel reports them as ``providers.<name>.<key>``);
checks that need the rest of the configuration (does a target's provider
exist, does it lead back to this composite) run in
:meth:`~swarmgate_composite.CompositeProvider.start`.
"""

from __future__ import annotations

from typing import Any

import attrs

from swarmgate.config import InvalidValue
from swarmgate.models import Target

MODES: tuple[str, ...] = ("race", "fanout", "sequential")
COMBINERS: tuple[str, ...] = ("majority", "judge")

DEFAULT_JUDGE_INSTRUCTIONS = (
    "You are an impartial judge. You are shown a request and several numbered candidate answers to it. "
    "Pick the single best answer: the most correct, complete and helpful one. "
    "Reply with the number of the best answer only."
)
"""The judge's system message when ``combiner.instructions`` is not set."""

DEFAULT_REFINE_INSTRUCTIONS = (
    "Review your previous answer to the request above (refinement step {step} of {steps}). "
    "Correct any mistakes, fill in anything missing and keep what is right. "
    "Reply with the improved answer only, without commentary."
)
"""The ``refineInstructions`` template used when the config sets none."""


def parse_target(text: str) -> Target | None:
    """``"provider/model"`` as a :class:`~swarmgate.models.Target`, or
    ``None`` when either part is missing. The model may contain ``/``
    (``"router/meta-llama/llama-3-8b"``): only the first one splits."""
    provider, sep, model = text.partition("/")
    if not sep or not provider or not model:
        return None
    return Target(provider, model)


def _check_target(key: str, value: str) -> None:
    if parse_target(value) is None:
        raise InvalidValue(key, f"expected 'provider/model', got {value!r}")


def _non_empty(key: str, value: str | None) -> None:
    if value is not None and not value.strip():
        raise InvalidValue(key, "must not be empty")


@attrs.frozen
class CombinerSettings:
    """How ``fanout`` picks one answer (config key ``combiner``), tagged by ``type``.

    ``{"type": "majority"}``: a vote over normalised answers (case, spacing
    and surrounding punctuation ignored); ties go to the answer of the
    earliest target in ``targets``.

    ``{"type": "judge", "target": "provider/model", "instructions": "..."}``:
    the judge model sees the request and the numbered candidates and names
    the best by number; ``instructions`` replaces the judge's default system
    message. A judge that fails or names no valid number falls back to the
    majority vote.
    """

    type: str = "majority"
    target: str | None = None
    instructions: str | None = None

    def __attrs_post_init__(self) -> None:
        if self.type not in COMBINERS:
            raise InvalidValue("type", f"unknown combiner {self.type!r} (expected one of: {', '.join(COMBINERS)})")
        if self.type == "judge":
            if self.target is None:
                raise InvalidValue("target", "a judge combiner needs a 'provider/model' target")
            _check_target("target", self.target)
            _non_empty("instructions", self.instructions)
        else:
            for key, value in (("target", self.target), ("instructions", self.instructions)):
                if value is not None:
                    raise InvalidValue(key, f"only for a judge combiner (this one is {self.type!r})")

    @property
    def judge(self) -> Target | None:
        """The judge's target (``None`` for the majority vote)."""
        return parse_target(self.target) if self.type == "judge" and self.target else None


@attrs.frozen
class CompositeSettings:
    """The ``composite`` type's own config keys (camelCase in JSON).

    ``mode``: ``race`` (all targets at once, the first complete answer
    wins), ``fanout`` (all targets answer, ``combiner`` picks one) or
    ``sequential`` (each target refines the previous answer).
    ``targets``: ``provider/model`` strings, at least one; a target may
    repeat (self-consistency voting, hedged requests).
    ``combiner`` (fanout only, default majority), ``minSuccesses`` (fanout
    only, default 1: how many candidates must answer), ``candidateTimeout``
    (fanout only, milliseconds: how long a candidate may take before it
    counts as failed; default 90% of the composite's ``timeout`` for a vote
    and 50% for a judge), ``refineInstructions`` (sequential only: the
    refinement prompt template, see the README).
    """

    mode: str
    targets: tuple[str, ...]
    combiner: CombinerSettings | None = None
    min_successes: int | None = None
    candidate_timeout: float | None = None
    refine_instructions: str | None = None

    def __attrs_post_init__(self) -> None:
        if self.mode not in MODES:
            raise InvalidValue("mode", f"unknown mode {self.mode!r} (expected one of: {', '.join(MODES)})")
        if not self.targets:
            raise InvalidValue("targets", "needs at least one 'provider/model' target")
        for index, text in enumerate(self.targets):
            _check_target(f"targets[{index}]", text)
        for key, value, mode in (
            ("combiner", self.combiner, "fanout"),
            ("minSuccesses", self.min_successes, "fanout"),
            ("candidateTimeout", self.candidate_timeout, "fanout"),
            ("refineInstructions", self.refine_instructions, "sequential"),
        ):
            if value is not None and self.mode != mode:
                raise InvalidValue(key, f"only for mode {mode!r} (this composite's mode is {self.mode!r})")
        if self.min_successes is not None and not 1 <= self.min_successes <= len(self.targets):
            raise InvalidValue(
                "minSuccesses",
                f"must be between 1 and the number of targets ({len(self.targets)}), got {self.min_successes}",
            )
        if self.candidate_timeout is not None and self.candidate_timeout <= 0:
            raise InvalidValue("candidateTimeout", "must be a positive number of milliseconds")
        _non_empty("refineInstructions", self.refine_instructions)

    @property
    def target_list(self) -> tuple[Target, ...]:
        """``targets`` parsed, in order."""
        parsed: list[Target] = []
        for text in self.targets:
            target = parse_target(text)
            assert target is not None  # checked in __attrs_post_init__
            parsed.append(target)
        return tuple(parsed)

    @property
    def combiner_settings(self) -> CombinerSettings:
        """``combiner``, or the majority vote when unset."""
        return self.combiner if self.combiner is not None else CombinerSettings()

    @property
    def needed(self) -> int:
        """How many targets must answer: ``minSuccesses`` (fanout), else 1."""
        return self.min_successes if self.min_successes is not None else 1

    @property
    def refine_template(self) -> str:
        """``refineInstructions``, or :data:`DEFAULT_REFINE_INSTRUCTIONS`."""
        return self.refine_instructions if self.refine_instructions is not None else DEFAULT_REFINE_INSTRUCTIONS

    def raw_targets(self) -> list[str]:
        """Every ``provider/model`` this composite calls: the targets, then the judge."""
        out = list(self.targets)
        if self.combiner is not None and self.combiner.target is not None:
            out.append(self.combiner.target)
        return out


def raw_references(settings: Any) -> list[str]:
    """The provider names another composite's raw (unvalidated) settings
    point at: its ``targets`` and its judge. Malformed entries are skipped
    (that composite reports them itself when it starts)."""
    if not isinstance(settings, dict):
        return []
    texts: list[Any] = list(settings.get("targets") or []) if isinstance(settings.get("targets"), list) else []
    combiner = settings.get("combiner")
    if isinstance(combiner, dict):
        texts.append(combiner.get("target"))
    names: list[str] = []
    for text in texts:
        target = parse_target(text) if isinstance(text, str) else None
        if target is not None:
            names.append(target.provider)
    return names
