"""Rendering of ``{{name}}`` templates (request messages, URLs, headers).

A string that is exactly one placeholder is replaced by the value itself
(a list, a number, ``true``...); an object member whose whole value is a
placeholder without a value (``None``) is left out, so unset request
fields are not sent. Inside a longer string a placeholder is replaced by
the value's text (``""`` for ``None``, JSON for lists and objects).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from swarmgate_websocket.settings import PLACEHOLDER_RE

__all__ = ["render", "render_text", "whole_placeholder"]

_WHOLE_RE = re.compile(r"\s*\{\{\s*([A-Za-z][A-Za-z0-9]*)\s*\}\}\s*")


def whole_placeholder(value: Any) -> str | None:
    """The placeholder name when ``value`` is a string holding just one placeholder."""
    if isinstance(value, str):
        match = _WHOLE_RE.fullmatch(value)
        if match:
            return match.group(1)
    return None


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def render_text(template: str, values: Mapping[str, Any], *, escape: Callable[[str], str] | None = None) -> str:
    """``template`` with each placeholder replaced by its value's text
    (passed through ``escape``, e.g. URL quoting, when given)."""

    def replace(match: re.Match[str]) -> str:
        text = _as_text(values.get(match.group(1)))
        return escape(text) if escape is not None else text

    return PLACEHOLDER_RE.sub(replace, template)


def render(template: Any, values: Mapping[str, Any]) -> Any:
    """``template`` (a JSON value) with its placeholders filled from ``values``
    (see the module docstring); the template itself is not changed."""
    if isinstance(template, str):
        name = whole_placeholder(template)
        if name is not None:
            return values.get(name)
        return render_text(template, values) if "{{" in template else template
    if isinstance(template, Mapping):
        out: dict[str, Any] = {}
        for key, value in template.items():
            rendered = render(value, values)
            if rendered is None and whole_placeholder(value) is not None:
                continue
            out[key] = rendered
        return out
    if isinstance(template, list | tuple):
        return [render(value, values) for value in template]
    return template
