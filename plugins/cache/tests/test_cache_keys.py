"""Cache keys: stable, normalised, and sensitive to what changes an answer."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from swarmgate import CompletionRequest, Message, Preferences
from swarmgate_cache import request_key


def key(prompt: str = "q", **fields: Any) -> str:
    return request_key(CompletionRequest.create(prompt, **fields))


def test_the_key_is_32_hex_digits_and_stable_across_processes() -> None:
    here = key(model="a/m", temperature=0, extra={"b": 1, "a": [1, 2]})
    code = (
        "from swarmgate import CompletionRequest; from swarmgate_cache import request_key; "
        "print(request_key(CompletionRequest.create('q', model='a/m', temperature=0, extra={'a': [1, 2], 'b': 1})))"
    )
    there = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PYTHONHASHSEED": "123"}
    ).stdout.strip()
    assert len(here) == 32
    assert int(here, 16) >= 0
    assert here == there


def test_equivalent_requests_share_a_key() -> None:
    plain = key(temperature=0)
    assert key(temperature=0.0) == plain
    assert key(temperature=0, stream=True) == plain
    assert key(temperature=0, metadata={"trace": "t"}, tags=("x",), user="u", caller="c") == plain
    text_part = CompletionRequest(messages=(Message("user", [{"type": "text", "text": "q"}]),), temperature=0)
    assert request_key(text_part) == plain
    empty = CompletionRequest(messages=(Message("assistant", ""), Message("user", "q")), temperature=0)
    none = CompletionRequest(messages=(Message("assistant", None), Message("user", "q")), temperature=0)
    assert request_key(empty) == request_key(none)


@pytest.mark.parametrize(
    "fields",
    [
        {"model": "a/m"},
        {"provider": "a"},
        {"strategy": "cost-optimized"},
        {"preferences": Preferences(providers=("a",))},
        {"preferences": Preferences(exclude=("b",))},
        {"temperature": 0.1},
        {"max_tokens": 10},
        {"top_p": 0.9},
        {"stop": ("END",)},
        {"tools": ({"type": "function", "function": {"name": "f"}},)},
        {"tool_choice": "none"},
        {"response_format": {"type": "json_object"}},
        {"extra": {"seed": 1}},
        {"system": "be brief"},
    ],
)
def test_each_answer_changing_field_changes_the_key(fields: dict[str, Any]) -> None:
    assert key(**fields) != key()


def test_message_fields_change_the_key() -> None:
    base = CompletionRequest(messages=(Message("user", "q"),))
    variants = [
        Message("system", "q"),
        Message("user", "Q"),
        Message("user", "q", name="alice"),
        Message("user", [{"type": "text", "text": "q"}, {"type": "image_url", "image_url": {"url": "x"}}]),
        Message("tool", "q", tool_call_id="call_1"),
        Message("assistant", "q", tool_calls=({"id": "call_1", "type": "function"},)),
    ]
    keys = {request_key(base)} | {request_key(CompletionRequest(messages=(m,))) for m in variants}
    assert len(keys) == 1 + len(variants)


def test_per_caller_and_hash_key() -> None:
    request = CompletionRequest.create("q", caller="team-a")
    other = CompletionRequest.create("q", caller="team-b")
    assert request_key(request) == request_key(other)
    assert request_key(request, per_caller=True) != request_key(other, per_caller=True)
    assert request_key(request, hash_key=b"secret") != request_key(request)
    assert request_key(request, hash_key=b"secret") != request_key(request, hash_key=b"other secret")


def test_unrepresentable_values_raise_type_error() -> None:
    with pytest.raises(TypeError):
        key(extra={"callback": object()})
    assert key(extra={"ids": {3, 1, 2}}) == key(extra={"ids": {1, 2, 3}})
