"""The pure parts: answer normalisation, the vote, the judge's prompt and verdict parsing, the refine template."""

from __future__ import annotations

import pytest

from swarmgate import Message
from swarmgate_composite import answer_key, majority, normalise, parse_choice, render_refine
from swarmgate_composite._combine import judge_messages


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("Paris.", "  paris", True),
        ("**Paris**", "Paris!", True),
        ("The answer is 42.", "the  answer\nis 42", True),
        ("ﬁne", "fine", True),  # NFKC folds the ligature
        ("Paris, France", "Paris", False),
        ("42", "42.5", False),
    ],
)
def test_normalise(a: str, b: str, same: bool) -> None:
    assert (normalise(a) == normalise(b)) is same


def test_answer_key_compares_tool_calls_by_canonical_arguments() -> None:
    first = [{"function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "c"}'}}]
    second = [{"function": {"name": "get_weather", "arguments": '{"unit":"c","city":"Paris"}'}}]
    other = [{"function": {"name": "get_weather", "arguments": '{"city": "Lyon"}'}}]
    assert answer_key("", first) == answer_key(" ", second)
    assert answer_key("", first) != answer_key("", other)
    assert answer_key("", [{"function": {"name": "f", "arguments": "not json"}}])[1] == (("f", "not json"),)


def test_majority() -> None:
    vote = majority(["b", "a", "b", "c"])
    assert (vote.winner, vote.votes, vote.tie) == (0, (2, 1, 2, 1), False)
    tie = majority(["x", "y", "y", "x"])
    assert (tie.winner, tie.tie) == (0, True)
    assert majority(["only"]).winner == 0
    with pytest.raises(ValueError, match="at least one"):
        majority([])


@pytest.mark.parametrize(
    ("reply", "count", "expected"),
    [
        ("2", 3, 2),
        ("**[3]**", 3, 3),
        ("Answer 2.", 3, 2),
        ('{"choice": 1, "reason": "most precise"}', 2, 1),
        ('```json\n{"best": 2}\n```', 2, 2),
        ("Candidate 1 is vague and candidate 3 is wrong. The best answer is 2.", 3, 2),
        ("I choose #3 because it is complete.", 3, 3),
        ("Verdict: [1]", 2, 1),
        ("After comparing them, answer 2 is more complete.", 2, 2),
        ("Final answer: 2", 2, 2),
        ("7", 3, None),  # out of range
        ("Both answers 1 and 2 are good.", 2, None),  # ambiguous
        ("They are all fine.", 3, None),
        ("", 3, None),
        ("The best is 5, otherwise 2.", 3, 2),  # an out-of-range decision is ignored
    ],
)
def test_parse_choice(reply: str, count: int, expected: int | None) -> None:
    assert parse_choice(reply, count) == expected


def test_judge_messages_number_the_candidates() -> None:
    request = (Message("system", "Be brief."), Message("user", "Capital of France?"))
    tool_call = {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
    system, user = judge_messages("Judge well.", request, [("Paris", None), ("", [tool_call])])
    assert system == Message("system", "Judge well.")
    text = user.text()
    assert "system: Be brief.\n\nuser: Capital of France?" in text
    assert "[1]\nParis" in text
    assert '[2]\ntool calls: [{"id": "c1"' in text
    assert text.endswith("Reply with the number (1 to 2) of the best answer.")


def test_render_refine_fills_known_placeholders_only() -> None:
    text = render_refine(
        '{step}/{steps} {target}: {previous} | {prompt} | {unknown} {"json": true}',
        step=2,
        steps=3,
        previous="draft",
        prompt="question",
        target="a/m",
    )
    assert text == '2/3 a/m: draft | question | {unknown} {"json": true}'
