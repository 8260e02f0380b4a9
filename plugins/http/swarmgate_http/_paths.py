"""JMESPath expressions: checked and compiled once, at start-up.

The ``http`` provider reads answers, stream events and error bodies with
`JMESPath <https://jmespath.org/specification.html>`_ expressions (the
``jmespath`` library: a full, well-kept implementation of the spec, so
users get projections, filters, ``||`` fallbacks and functions for free).

``jmespath.compile`` only catches syntax errors; an unknown function or a
wrong number of arguments would otherwise surface on the first request.
:func:`compile_path` walks the parsed tree and refuses those too, so every
mistake in a config is a start-up error naming its key.
"""

from __future__ import annotations

from typing import Any

import jmespath
import jmespath.exceptions
import jmespath.functions
from jmespath.parser import ParsedResult

__all__ = ["Path", "PathError", "compile_path"]

_FUNCTIONS: dict[str, Any] = jmespath.functions.Functions().FUNCTION_TABLE


class PathError(ValueError):
    """An expression that cannot be used; the message says why (one line)."""


class Path:
    """A compiled JMESPath expression. ``search(data)`` is the value it
    selects (``None`` when nothing matches); evaluation errors (a function
    given the wrong type of value) raise :class:`PathError`."""

    __slots__ = ("_parsed", "expression")

    def __init__(self, expression: str, parsed: ParsedResult) -> None:
        self.expression = expression
        self._parsed = parsed

    def search(self, data: Any) -> Any:
        try:
            return self._parsed.search(data)
        except jmespath.exceptions.JMESPathError as exc:
            raise PathError(_first_line(exc)) from exc

    def __repr__(self) -> str:
        return f"Path({self.expression!r})"


def _first_line(exc: Exception) -> str:
    """jmespath's messages repeat the expression over several lines; keep the first."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.removesuffix(", for expression:").removesuffix(":").strip()


def _check_functions(node: Any) -> None:
    """Refuse unknown functions and wrong arities anywhere in a parsed tree."""
    if not isinstance(node, dict):
        return
    if node.get("type") == "function_expression":
        name = node.get("value")
        entry = _FUNCTIONS.get(name) if isinstance(name, str) else None
        if entry is None:
            raise PathError(f"unknown function {name}() (functions: {', '.join(sorted(_FUNCTIONS))})")
        signature = entry["signature"]
        given = len(node.get("children") or ())
        if signature and signature[-1].get("variadic"):
            if given < len(signature):
                raise PathError(f"{name}() takes at least {len(signature)} arguments, got {given}")
        elif given != len(signature):
            raise PathError(f"{name}() takes {len(signature)} arguments, got {given}")
    for child in node.get("children") or ():
        _check_functions(child)


def compile_path(expression: str) -> Path:
    """Compile ``expression``; raise :class:`PathError` (syntax, unknown
    function, wrong arity) with a one-line reason."""
    if not expression.strip():
        raise PathError("an empty expression selects nothing")
    try:
        parsed = jmespath.compile(expression)
    except jmespath.exceptions.JMESPathError as exc:
        raise PathError(_first_line(exc)) from exc
    _check_functions(parsed.parsed)
    return Path(expression, parsed)
