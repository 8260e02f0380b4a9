"""Templates: placeholders in header values, URLs and the JSON request body.

The syntax is deliberately small and is parsed here, never handed to
``str.format`` (whose ``{key.attr}`` and ``{key[0]}`` forms would let a
config reach into Python objects):

* ``{name}`` is a placeholder; ``name`` must be one the context allows
  (headers: ``apiKey``; URLs: ``model``; bodies: the request variables);
* ``{{`` and ``}}`` are a literal ``{`` and ``}``; any other brace is an
  error, so a typo is reported at start-up instead of being sent upstream.

In a JSON body, a string that is exactly one placeholder (``"{maxTokens}"``)
is replaced by the typed value (a number, a list, an object, ``true``), and
when that value is unset the key is dropped (in a list, the element). A
placeholder inside a longer string is interpolated as text (an unset value
as the empty string; lists and objects as JSON). An object
``{"$jmespath": "<expression>"}`` is replaced by what the JMESPath
expression selects from the request variables, under the same drop rule.
Object keys are literal.

Templates are compiled once, at start-up, into trees of small nodes; a
request renders its tree with a mapping of variables.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

from swarmgate_http._paths import Path, PathError, compile_path

__all__ = [
    "EXPRESSION_KEY",
    "Node",
    "StringTemplate",
    "TemplateError",
    "compile_body",
    "merge_body",
]

#: The key of a body object whose value is a JMESPath expression over the request variables.
EXPRESSION_KEY: Final = "$jmespath"

_TOKEN_RE = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}|[{}]")


class TemplateError(ValueError):
    """A template that cannot be compiled. ``where`` is the position inside
    the template (``.params.temperature``, ``[0]``; empty for the root) and
    ``reason`` says what is wrong."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where or '<root>'}: {reason}")
        self.where = where
        self.reason = reason


class _Drop:
    """The value of an unset placeholder: its key (or list element) is left out."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "DROP"


DROP: Final = _Drop()


def _as_text(value: Any) -> str:
    """A variable's value inside a longer string."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class StringTemplate:
    """A string with ``{name}`` placeholders (see the module docstring).

    ``names`` are the placeholders used; ``single`` is the name when the
    whole string is exactly one placeholder (else ``None``).
    """

    __slots__ = ("names", "parts", "single", "source")

    def __init__(self, source: str, parts: tuple[str | tuple[str], ...]) -> None:
        self.source = source
        #: Literal text, or ``(name,)`` for a placeholder.
        self.parts = parts
        self.names = frozenset(p[0] for p in parts if isinstance(p, tuple))
        self.single = parts[0][0] if len(parts) == 1 and isinstance(parts[0], tuple) else None

    @classmethod
    def parse(cls, source: str, allowed: frozenset[str], *, where: str = "") -> StringTemplate:
        """Parse ``source``; raise :class:`TemplateError` for an unknown
        name or a stray brace."""
        parts: list[str | tuple[str]] = []
        literal: list[str] = []
        position = 0
        for match in _TOKEN_RE.finditer(source):
            literal.append(source[position : match.start()])
            position = match.end()
            token = match.group(0)
            if token in ("{{", "}}"):
                literal.append(token[0])
                continue
            name = match.group(1)
            if name is None:
                raise TemplateError(
                    where,
                    f"stray {token!r} at character {match.start() + 1} of {source!r} "
                    "(write {{ or }} for a literal brace, {name} for a placeholder)",
                )
            if name not in allowed:
                raise TemplateError(
                    where, f"unknown placeholder {{{name}}} (placeholders here: {', '.join(sorted(allowed))})"
                )
            text = "".join(literal)
            if text:
                parts.append(text)
            literal = []
            parts.append((name,))
        literal.append(source[position:])
        text = "".join(literal)
        if text or not parts:
            parts.append(text)
        return cls(source, tuple(parts))

    def render(self, variables: Mapping[str, Any], escape: Callable[[str], str] | None = None) -> str:
        """The string with each placeholder replaced by its value as text
        (unset: empty), passed through ``escape`` when given."""
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            else:
                text = _as_text(variables.get(part[0]))
                out.append(escape(text) if escape is not None else text)
        return "".join(out)


# ---------------------------------------------------------------------------
# Body templates


class Node:
    """A compiled piece of a body template."""

    __slots__ = ()

    def render(self, variables: Mapping[str, Any]) -> Any:
        """The JSON value, or :data:`DROP` when it is unset."""
        raise NotImplementedError

    def names(self) -> Iterator[str]:
        """The variables this node reads (every one for an expression)."""
        return iter(())


class _Constant(Node):
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def render(self, variables: Mapping[str, Any]) -> Any:
        return self.value


class _Slot(Node):
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def render(self, variables: Mapping[str, Any]) -> Any:
        value = variables.get(self.name)
        return DROP if value is None else value

    def names(self) -> Iterator[str]:
        yield self.name


class _Text(Node):
    __slots__ = ("template",)

    def __init__(self, template: StringTemplate) -> None:
        self.template = template

    def render(self, variables: Mapping[str, Any]) -> Any:
        return self.template.render(variables)

    def names(self) -> Iterator[str]:
        return iter(self.template.names)


class _Expression(Node):
    __slots__ = ("path", "variables")

    def __init__(self, path: Path, variables: frozenset[str]) -> None:
        self.path = path
        self.variables = variables

    def render(self, variables: Mapping[str, Any]) -> Any:
        value = self.path.search(variables)
        return DROP if value is None else value

    def names(self) -> Iterator[str]:
        return iter(self.variables)


class _Object(Node):
    __slots__ = ("items",)

    def __init__(self, items: tuple[tuple[str, Node], ...]) -> None:
        self.items = items

    def render(self, variables: Mapping[str, Any]) -> Any:
        out: dict[str, Any] = {}
        for key, node in self.items:
            value = node.render(variables)
            if value is not DROP:
                out[key] = value
        return out

    def names(self) -> Iterator[str]:
        for _, node in self.items:
            yield from node.names()


class _Array(Node):
    __slots__ = ("items",)

    def __init__(self, items: tuple[Node, ...]) -> None:
        self.items = items

    def render(self, variables: Mapping[str, Any]) -> Any:
        return [v for v in (node.render(variables) for node in self.items) if v is not DROP]

    def names(self) -> Iterator[str]:
        for node in self.items:
            yield from node.names()


def _is_expression(value: Any) -> bool:
    return isinstance(value, dict) and EXPRESSION_KEY in value


def compile_body(template: Any, variables: frozenset[str], *, where: str = "") -> Node:
    """Compile a JSON body template whose placeholders may name
    ``variables``; raise :class:`TemplateError` naming the position of the
    first problem (unknown placeholder, stray brace, bad expression, a value
    that is not JSON)."""
    if isinstance(template, str):
        parsed = StringTemplate.parse(template, variables, where=where)
        if parsed.single is not None:
            return _Slot(parsed.single)
        if parsed.names:
            return _Text(parsed)
        return _Constant(parsed.render({}))
    if isinstance(template, dict):
        if EXPRESSION_KEY in template:
            expression = template[EXPRESSION_KEY]
            if len(template) != 1 or not isinstance(expression, str):
                raise TemplateError(
                    where, f'an expression object has exactly one key, "{EXPRESSION_KEY}", with a string value'
                )
            try:
                return _Expression(compile_path(expression), variables)
            except PathError as exc:
                raise TemplateError(where, f"invalid JMESPath expression {expression!r}: {exc}") from None
        items = []
        for key, value in template.items():
            if not isinstance(key, str):
                raise TemplateError(where, f"object keys must be strings, got {key!r}")
            items.append((key, compile_body(value, variables, where=f"{where}.{key}")))
        return _Object(tuple(items))
    if isinstance(template, list):
        return _Array(tuple(compile_body(v, variables, where=f"{where}[{i}]") for i, v in enumerate(template)))
    if template is None or isinstance(template, bool | int | float):
        return _Constant(template)
    raise TemplateError(where, f"not a JSON value: {type(template).__name__}")


def merge_body(base: Any, overrides: Any) -> Any:
    """``overrides`` laid over ``base`` (both raw templates): objects merge
    key by key, recursively; a ``null`` override removes the key; any other
    value (and an expression object, on either side) replaces."""
    if not isinstance(base, dict) or not isinstance(overrides, dict) or _is_expression(base):
        return overrides
    if _is_expression(overrides):
        return overrides
    merged = dict(base)
    for key, value in overrides.items():
        if value is None:
            merged.pop(key, None)
        elif key in merged:
            merged[key] = merge_body(merged[key], value)
        else:
            merged[key] = value
    return merged
