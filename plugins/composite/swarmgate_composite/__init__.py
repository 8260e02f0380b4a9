"""The ``composite`` provider type: one logical provider made of several targets.

Config (the guide's format)::

    "consensus": {
      "type": "composite",
      "mode": "fanout",                                  # race | fanout | sequential
      "targets": ["openai/gpt-4o-mini", "qwen/qwen-turbo", "claude/claude-3-haiku"],
      "combiner": {"type": "judge", "target": "openai/gpt-4o"},   # fanout: majority (default) or judge
      "minSuccesses": 2,                                 # fanout: how many must answer
      "timeout": 60000,
      "models": {"consensus": {}}
    }

Modes:

* ``race``: every target streams at once; the first *complete* answer wins
  (``stream()``: the first target to produce output wins and is streamed
  live); the others are cancelled at once, which closes their upstream
  connections. A cancelled loser's partial cost is its prompt plus what it
  had streamed, estimated with :func:`swarmgate.estimate_tokens` and priced
  with its model config (nothing when it had produced no output yet).
* ``fanout``: every target answers (each within ``candidateTimeout``); with
  at least ``minSuccesses`` answers the combiner picks one: a majority vote
  over normalised answers (ties to the earliest target), or a judge model
  that names the best by number (falling back to the vote when the judge
  fails or names none).
* ``sequential``: each target in turn refines the previous answer (the
  original request, the previous answer as an assistant message, then
  ``refineInstructions``); a failed step is skipped; the last successful
  answer is returned.

Every inner call is ``manager.complete``/``manager.stream`` with
``provider`` and ``model`` forced to the target: hooks, pricing, stats and
the target's own timeout apply to it. The composite's reply carries the real
total ``cost`` and summed ``tokens`` of all those calls (judge included),
``model`` as ``"provider/model"`` of the chosen target, and
``metadata["composite"]`` = ``{"mode", "winner", "candidates": [{provider,
model, ok, cost, latency, cancelled, tokens, error_kind, error}, ...],
"decision": {...}}`` (fanout). Inner requests carry
``metadata["composite"] = {"parent", "path", "mode", "role"}``.

When too few targets answer, the error has the failures' common kind (or,
when they differ, the first of: rate limited, overloaded, timeout,
connection, server error, authentication, permission, not found, context
length, budget, content filtered, invalid request) and lists every target's
error in its message.
"""

from __future__ import annotations

from swarmgate_composite._combine import answer_key, majority, normalise, parse_choice, render_refine
from swarmgate_composite._provider import METADATA_KEY, CompositeProvider
from swarmgate_composite._settings import (
    DEFAULT_JUDGE_INSTRUCTIONS,
    DEFAULT_REFINE_INSTRUCTIONS,
    CombinerSettings,
    CompositeSettings,
)

__all__ = [
    "DEFAULT_JUDGE_INSTRUCTIONS",
    "DEFAULT_REFINE_INSTRUCTIONS",
    "METADATA_KEY",
    "CombinerSettings",
    "CompositeProvider",
    "CompositeSettings",
    "answer_key",
    "majority",
    "normalise",
    "parse_choice",
    "render_refine",
]
