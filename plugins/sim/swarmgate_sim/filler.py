"""The text simulated models write: plausible-looking filler, built once.

No model weights and no randomness per call: one long text of short
sentences is generated on first use from a fixed seed, split into pieces
(one word with its leading space each; one piece is one streamed delta),
and a reply is a slice of it, chosen from the prompt. Precomputing the
offsets and the ``TextDelta`` of every piece keeps the per-call work to a
couple of bisects and one string slice (the provider is on the benchmark's
hot path).
"""

from __future__ import annotations

import bisect
import functools
import random

import attrs

from swarmgate import TextDelta
from swarmgate_sim.settings import MAX_OUTPUT_TOKENS

_SUBJECTS = (
    "gateway", "router", "swarm", "provider", "request", "model", "balancer", "cache", "budget", "agent",
    "stream", "breaker", "queue", "fallback", "strategy", "replica", "scheduler", "token", "prompt", "answer",
)  # fmt: skip
_ADJECTIVES = (
    "resilient", "cheap", "quick", "careful", "healthy", "busy", "steady", "local", "remote", "patient",
    "eager", "quiet", "honest", "simulated", "balanced", "nimble", "stable", "modest", "clever", "frugal",
)  # fmt: skip
_VERBS = (
    "routes", "balances", "retries", "caches", "measures", "weighs", "answers", "forwards", "streams", "ranks",
    "checks", "samples", "prices", "throttles", "schedules", "summarises", "compares", "explains", "records", "tunes",
)  # fmt: skip
_ADVERBS = (
    "quickly", "calmly", "cheaply", "again", "gently", "eagerly", "twice", "slowly", "wisely", "early",
    "today", "together", "carefully", "fairly", "mostly", "briefly",
)  # fmt: skip
_LINKS = ("while", "because", "so", "and", "until", "before", "after", "since")

#: Enough text that a reply of :data:`MAX_OUTPUT_TOKENS` tokens fits after any start.
_MIN_CHARS = MAX_OUTPUT_TOKENS * 4 * 2 + 1024
_SEED = 20240601


def _sentence(rng: random.Random) -> list[str]:
    words = ["the", rng.choice(_ADJECTIVES), rng.choice(_SUBJECTS), rng.choice(_VERBS), "the", rng.choice(_SUBJECTS)]
    if rng.random() < 0.5:
        words.append(rng.choice(_ADVERBS))
    if rng.random() < 0.4:
        words += [rng.choice(_LINKS), "every", rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_ADVERBS)]
    words[0] = words[0].capitalize()
    words[-1] += "."
    return words


@attrs.frozen
class Filler:
    """The shared filler text and its precomputed indexes.

    ``offsets[i]`` is where piece ``i`` starts in ``text`` (one extra entry:
    ``len(text)``); ``sentences`` are the piece indexes that begin a
    sentence (ascending); replies start at one of the first ``start_count``
    of them, so that :data:`MAX_OUTPUT_TOKENS` tokens always fit.
    """

    text: str
    offsets: tuple[int, ...]
    deltas: tuple[TextDelta, ...]
    sentences: tuple[int, ...]
    start_count: int

    def start(self, key: int) -> int:
        """The piece a reply keyed by ``key`` (e.g. a prompt checksum) starts at."""
        return self.sentences[key % self.start_count]

    def span(self, first: int, tokens: int, *, whole_sentences: bool) -> tuple[int, int, int]:
        """The reply of at most ``tokens`` tokens (``len // 4``, rounded up)
        starting at piece ``first``: ``(first, end piece, end char)``.

        With ``whole_sentences`` it ends at the last sentence end that fits
        (if one does). When even the first word does not fit, the reply is
        cut inside it: the end piece is then ``first`` and only the end char
        says where the text stops.
        """
        offsets = self.offsets
        limit = offsets[first] + tokens * 4
        end = bisect.bisect_right(offsets, limit) - 1
        if end == first:
            return first, first, limit
        if whole_sentences:
            i = bisect.bisect_right(self.sentences, end) - 1
            if i >= 0 and self.sentences[i] > first:
                end = self.sentences[i]
        return first, end, offsets[end]


@functools.cache
def filler() -> Filler:
    """The filler (built on first use, then shared by every provider)."""
    rng = random.Random(_SEED)
    pieces: list[str] = []
    sentences: list[int] = []
    length = 0
    while length < _MIN_CHARS:
        sentences.append(len(pieces))
        for word in _sentence(rng):
            piece = " " + word
            pieces.append(piece)
            length += len(piece)
    offsets = [0]
    for piece in pieces:
        offsets.append(offsets[-1] + len(piece))
    sentences.append(len(pieces))
    text = "".join(pieces)
    # A reply starting at offsets[s] needs up to MAX_OUTPUT_TOKENS * 4 characters after it.
    room = len(text) - MAX_OUTPUT_TOKENS * 4
    start_count = bisect.bisect_right([offsets[s] for s in sentences], room)
    return Filler(text, tuple(offsets), tuple(TextDelta(p) for p in pieces), tuple(sentences), start_count)
