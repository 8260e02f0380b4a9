"""The template language and the JMESPath helper, as pure functions."""

from __future__ import annotations

from typing import Any

import pytest

from swarmgate_http import BODY_VARIABLES
from swarmgate_http._paths import PathError, compile_path
from swarmgate_http._provider import _VARIABLES
from swarmgate_http._template import DROP, StringTemplate, TemplateError, compile_body, merge_body

NAMES = frozenset({"model", "messages", "maxTokens", "stop", "system", "stream", "temperature"})
VARIABLES: dict[str, Any] = {
    "model": "acme",
    "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    "maxTokens": 64,
    "stop": ["END"],
    "system": None,
    "stream": False,
    "temperature": 0.0,
}


def render(template: Any) -> Any:
    return compile_body(template, NAMES).render(VARIABLES)


def test_every_body_variable_has_a_value() -> None:
    assert frozenset(_VARIABLES) == BODY_VARIABLES


def test_string_template_parts() -> None:
    template = StringTemplate.parse("Bearer {apiKey}", frozenset({"apiKey"}))
    assert template.parts == ("Bearer ", ("apiKey",))
    assert template.names == {"apiKey"}
    assert template.single is None
    assert template.render({"apiKey": "k"}) == "Bearer k"
    assert StringTemplate.parse("{apiKey}", frozenset({"apiKey"})).single == "apiKey"
    assert StringTemplate.parse("", frozenset()).render({}) == ""


def test_escaped_braces() -> None:
    template = StringTemplate.parse("{{literal}} {{{model}}} }}", NAMES)
    assert template.render({"model": "m"}) == "{literal} {m} }"
    assert template.single is None


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("{modle}", "unknown placeholder {modle}"),
        ("{model.__class__}", "stray '{'"),
        ("{0}", "stray '{'"),
        ("{model!r}", "stray '{'"),
        ("a } b", "stray '}'"),
        ("{ model }", "stray '{'"),
    ],
)
def test_only_plain_names_are_placeholders(source: str, reason: str) -> None:
    """No str.format features: attribute access, indexes, conversions are all refused."""
    with pytest.raises(TemplateError) as info:
        StringTemplate.parse(source, NAMES, where=".x")
    assert reason in info.value.reason
    assert info.value.where == ".x"


def test_escape_function_applies_to_values_only() -> None:
    template = StringTemplate.parse("/models/{model}/run", NAMES)
    assert template.render({"model": "a b/c"}, lambda s: s.replace(" ", "%20")) == "/models/a%20b/c/run"


def test_typed_values_and_drops() -> None:
    body = render(
        {
            "model": "{model}",
            "n": "{maxTokens}",
            "t": "{temperature}",
            "s": "{stream}",
            "system": "{system}",
            "list": ["{system}", "{stop}", 1, None, True],
            "nested": {"gone": "{system}", "kept": "{model}"},
        }
    )
    assert body == {
        "model": "acme",
        "n": 64,
        "t": 0.0,
        "s": False,
        "list": [["END"], 1, None, True],
        "nested": {"kept": "acme"},
    }, "falsy values stay; only unset (None) values drop"


def test_interpolation_renders_text() -> None:
    assert render("{model}: {maxTokens} {stream} {stop} [{system}]") == 'acme: 64 false ["END"] []'


def test_expressions_select_from_the_variables() -> None:
    assert render({"m": {"$jmespath": "messages[?role == 'user'].content"}}) == {"m": ["Hi"]}
    assert render({"m": {"$jmespath": "system"}}) == {}, "an expression selecting nothing drops its key"
    assert render([{"$jmespath": "length(messages)"}]) == [2]


def test_constants_are_fresh_per_render() -> None:
    node = compile_body({"a": {"b": [1]}}, NAMES)
    first = node.render(VARIABLES)
    first["a"]["b"].append(2)
    assert node.render(VARIABLES) == {"a": {"b": [1]}}


def test_root_placeholder_and_drop() -> None:
    assert compile_body("{system}", NAMES).render(VARIABLES) is DROP
    assert compile_body("{messages}", NAMES).render(VARIABLES) == VARIABLES["messages"]


def test_names_used() -> None:
    node = compile_body({"a": "{model}", "b": ["x {stop}"], "c": 1}, NAMES)
    assert set(node.names()) == {"model", "stop"}
    assert set(compile_body({"$jmespath": "model"}, NAMES).names()) == NAMES


@pytest.mark.parametrize(
    ("template", "where"),
    [
        ({"a": {"b": "{nope}"}}, ".a.b"),
        ({"a": [1, "{nope}"]}, ".a[1]"),
        ({"a": {"$jmespath": 3}}, ".a"),
        ({"a": {"$jmespath": "x[", "b": 1}}, ".a"),
        ({"a": {"$jmespath": "x["}}, ".a"),
        ({"a": object()}, ".a"),
    ],
)
def test_compile_errors_name_the_position(template: Any, where: str) -> None:
    with pytest.raises(TemplateError) as info:
        compile_body(template, NAMES)
    assert info.value.where == where


def test_merge_body() -> None:
    base = {"a": 1, "b": {"c": 2, "d": 3}, "e": {"$jmespath": "model"}, "f": [1]}
    overrides = {"b": {"c": None, "x": 9}, "e": {"y": 1}, "f": [2], "a": None, "g": {"$jmespath": "stop"}}
    assert merge_body(base, overrides) == {
        "b": {"d": 3, "x": 9},
        "e": {"y": 1},
        "f": [2],
        "g": {"$jmespath": "stop"},
    }
    assert merge_body(None, {"a": 1}) == {"a": 1}
    assert merge_body({"a": {"b": 1}}, {"a": {"$jmespath": "model"}}) == {"a": {"$jmespath": "model"}}
    assert base["b"] == {"c": 2, "d": 3}, "the base is not changed"


def test_compile_path() -> None:
    path = compile_path("result.text || output")
    assert path.search({"output": "x"}) == "x"
    assert path.search([1, 2]) is None
    assert repr(path) == "Path('result.text || output')"


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("a.", "Expecting"),
        ("  ", "empty expression"),
        ("nope(a)", "unknown function nope()"),
        ("length(a, b)", "length() takes 1 arguments, got 2"),
        ("merge()", "merge() takes at least 1 arguments, got 0"),
        ("a[?b == `1]", "Unclosed"),
    ],
)
def test_compile_path_errors(expression: str, reason: str) -> None:
    with pytest.raises(PathError) as info:
        compile_path(expression)
    assert reason in str(info.value)
    assert "\n" not in str(info.value)


def test_search_type_errors_are_path_errors() -> None:
    with pytest.raises(PathError, match="abs"):
        compile_path("abs(a)").search({"a": "text"})
