"""Picking one answer among several: the majority vote and the judge's prompt and verdict.

Pure functions, no I/O: the provider runs the calls, these decide.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from swarmgate.models import Message

#: Characters stripped from both ends of an answer before voting.
_EDGES = " \t\r\n.,;:!?\"'`*_"

#: A number after a word that announces the decision ("the best is 2",
#: "Verdict: [3]", "I choose answer #1"); the last such match counts.
_DECISION_RE = re.compile(
    r"\b(?:best|winner|winning|choice|choose|chosen|pick|picked|select|selected|prefer|preferred|"
    r"verdict|decision|final answer|answer is)\b[^0-9\n]{0,40}?(\d+)",
    re.IGNORECASE,
)
#: A reply that is nothing but a number, maybe decorated ("2", "**2**", "[2].").
_BARE_RE = re.compile(r"^\W*(\d+)\W*$")
#: Any labelled reference to a candidate ("answer 2", "candidate #3", "[1]").
_LABEL_RE = re.compile(r"(?:\b(?:answer|candidate|option|response|number)\s*#?\s*|#|\[)(\d+)", re.IGNORECASE)
_INT_RE = re.compile(r"\b(\d+)\b")
_JSON_KEYS = ("choice", "best", "answer", "winner", "index", "number")


def normalise(text: str) -> str:
    """``text`` as the vote compares it: Unicode NFKC, case-folded, runs of
    whitespace collapsed, spaces, quotes, markdown emphasis and sentence
    punctuation stripped from both ends (``"Paris."`` and ``" paris"``
    agree; ``"Paris, France"`` does not)."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(folded.split()).strip(_EDGES)


def answer_key(content: str, tool_calls: Sequence[Mapping[str, Any]] | None) -> tuple[str, tuple[tuple[str, str], ...]]:
    """What two answers must share to count as the same vote: the
    normalised text and each tool call's name and arguments (as canonical
    JSON when they parse, so key order and spacing do not matter)."""
    calls: list[tuple[str, str]] = []
    for call in tool_calls or ():
        function = call.get("function") or {}
        name = str(function.get("name") or "")
        arguments = str(function.get("arguments") or "")
        try:
            arguments = json.dumps(json.loads(arguments), sort_keys=True, separators=(",", ":"))
        except ValueError:
            arguments = " ".join(arguments.split())
        calls.append((name, arguments))
    return normalise(content), tuple(calls)


@attrs.frozen
class Vote:
    """The outcome of :func:`majority`: ``winner`` is a position in the
    answers given; ``votes[i]`` how many answers agree with answer ``i``;
    ``tie`` whether another group had as many votes (the earliest won)."""

    winner: int
    votes: tuple[int, ...]
    tie: bool


def majority(keys: Sequence[object]) -> Vote:
    """The majority among answers given as comparable ``keys`` (see
    :func:`answer_key`), in target order.

    Answers with equal keys form a group; the largest group wins; between
    groups of equal size the one whose first answer comes earliest wins.
    The winner is the group's first answer. Raises ``ValueError`` for no
    answers.
    """
    if not keys:
        raise ValueError("majority() needs at least one answer")
    groups: dict[object, list[int]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(key, []).append(index)
    sizes = {key: len(members) for key, members in groups.items()}
    best = max(sizes.values())
    leaders = [members[0] for key, members in groups.items() if sizes[key] == best]
    winner = min(leaders)
    return Vote(winner, tuple(sizes[key] for key in keys), len(leaders) > 1)


def transcript(messages: Sequence[Message]) -> str:
    """A request's messages as plain text for the judge (``role: text``;
    images and other non-text parts are left out, tool calls shown as JSON)."""
    lines: list[str] = []
    for message in messages:
        text = message.text()
        if message.tool_calls:
            text = (text + "\n" if text else "") + "tool calls: " + json.dumps(list(message.tool_calls))
        lines.append(f"{message.role}: {text}")
    return "\n\n".join(lines)


def judge_messages(
    instructions: str,
    request_messages: Sequence[Message],
    candidates: Sequence[tuple[str, Sequence[Mapping[str, Any]] | None]],
) -> tuple[Message, ...]:
    """The judge's conversation: ``instructions`` as the system message,
    then one user message with the request's transcript and the
    candidates numbered from 1 (text, and tool calls as JSON)."""
    parts = ["The request:", transcript(request_messages), "", "Candidate answers:"]
    for number, (content, tool_calls) in enumerate(candidates, start=1):
        body = content
        if tool_calls:
            body = (body + "\n" if body else "") + "tool calls: " + json.dumps(list(tool_calls))
        parts += ["", f"[{number}]", body or "(empty answer)"]
    parts += ["", f"Reply with the number (1 to {len(candidates)}) of the best answer."]
    return Message("system", instructions), Message("user", "\n".join(parts))


def parse_choice(text: str, count: int) -> int | None:
    """The candidate number (1-based) a judge's reply names, or ``None``.

    Tried in order, the first usable reading wins: a JSON object with a
    ``choice``/``best``/``answer``/``winner``/``index``/``number`` field;
    a number after a decision word (``best``, ``choose``, ``verdict``,
    ``final answer``, ...; the last such one, as judges conclude at the
    end); a reply that is only a number (``"2"``, ``"**[2]**"``); a single
    distinct candidate label (``"answer 2"``, ``"#2"``, ``"[2]"``); a
    single distinct number in the text. Numbers outside ``1..count`` are
    ignored; several different candidates without a decision word is
    ambiguous (``None``).
    """
    stripped = text.strip()
    if not stripped or count < 1:
        return None

    def valid(value: Any) -> int | None:
        if isinstance(value, bool):
            return None
        try:
            number = int(value)
        except (TypeError, ValueError):
            return None
        return number if 1 <= number <= count else None

    candidate = stripped.strip("`")
    if candidate.startswith("json"):
        candidate = candidate[4:]
    try:
        data = json.loads(candidate)
    except ValueError:
        data = None
    if isinstance(data, dict):
        for key in _JSON_KEYS:
            if key in data and (number := valid(data[key])) is not None:
                return number
    elif (number := valid(data)) is not None:
        return number
    decisions = [n for m in _DECISION_RE.finditer(stripped) if (n := valid(m.group(1))) is not None]
    if decisions:
        return decisions[-1]
    bare = _BARE_RE.match(stripped)
    if bare is not None:
        return valid(bare.group(1))
    for pattern in (_LABEL_RE, _INT_RE):
        found = {n for m in pattern.finditer(stripped) if (n := valid(m.group(1))) is not None}
        if len(found) == 1:
            return found.pop()
        if found:
            return None
    return None


def render_refine(template: str, *, step: int, steps: int, previous: str, prompt: str, target: str) -> str:
    """The ``refineInstructions`` template with its placeholders filled:
    ``{step}`` (this step's number, from 1), ``{steps}`` (how many),
    ``{previous}`` (the answer being refined), ``{prompt}`` (the request's
    text) and ``{target}`` (``provider/model`` that wrote the previous
    answer). Other braces are left alone (JSON in instructions is safe)."""
    values = {"step": str(step), "steps": str(steps), "previous": previous, "prompt": prompt, "target": target}
    return re.sub(r"\{(step|steps|previous|prompt|target)\}", lambda m: values[m.group(1)], template)
