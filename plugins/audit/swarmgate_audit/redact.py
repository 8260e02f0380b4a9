"""Redaction of obvious personal data in text (``security.compliance.gdpr``).

:func:`redact_personal` replaces, in this order:

* e-mail addresses -> ``[EMAIL]``;
* payment card numbers (13 to 19 digits, spaces or dashes allowed, that
  pass the Luhn check) -> ``[CARD]``;
* IP addresses, v6 (validated by :mod:`ipaddress`) and v4 -> ``[IP]``;
* phone numbers: 8 to 15 digits written with a leading ``+`` (or ``00``)
  or with separators (spaces, dots, dashes, parentheses), or a bare run of
  10 to 15 digits; an ISO-like date (``2024-01-15``) is left alone -> ``[PHONE]``.

It finds patterns, not names or addresses in prose: it is a safety net for
what is obviously personal, and errs on the side of redacting (a long
number written like a phone number goes). The replacement tokens hold no
digits, so a later pass never matches inside an earlier replacement.
Hand-written because it is small and the patterns are ours to choose.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any, Final

EMAIL: Final = "[EMAIL]"
CARD: Final = "[CARD]"
IP: Final = "[IP]"
PHONE: Final = "[PHONE]"

_EMAIL = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+"
)
_CARD = re.compile(r"(?<![\d])\d(?:[ -]?\d){12,18}(?![\d])")
_IPV6 = re.compile(r"(?<![0-9A-Za-z:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|:)?(?![0-9A-Za-z:])")
_IPV4 = re.compile(
    r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\d]|\.\d)"
)
_PHONE = re.compile(r"(?<![\w+(])(?:\+|\()?\(?\d[\d ().\-]{5,}\d(?![\w])")
_DATE = re.compile(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{4}")
_SEPARATORS = frozenset(" ().-")


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    text = match.group(0)
    digits = text.replace(" ", "").replace("-", "")
    return CARD if _luhn(digits) else text


def _ipv6(match: re.Match[str]) -> str:
    text = match.group(0)
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return text
    return IP


def _phone(match: re.Match[str]) -> str:
    text = match.group(0)
    digits = sum(ch.isdigit() for ch in text)
    if digits > 15 or _DATE.fullmatch(text.strip("()")):
        return text
    if text.startswith(("+", "00")) or any(ch in _SEPARATORS for ch in text):
        return PHONE if digits >= 8 else text
    return PHONE if digits >= 10 else text


def redact_personal(text: str) -> str:
    """``text`` with e-mail addresses, card numbers, IP addresses and phone
    numbers replaced by ``[EMAIL]``, ``[CARD]``, ``[IP]`` and ``[PHONE]``."""
    if "@" in text:
        text = _EMAIL.sub(EMAIL, text)
    if not any(ch.isdigit() for ch in text):
        return text
    text = _CARD.sub(_card, text)
    if ":" in text:
        text = _IPV6.sub(_ipv6, text)
    text = _IPV4.sub(IP, text)
    return _PHONE.sub(_phone, text)


def redact_value(value: Any) -> Any:
    """:func:`redact_personal` applied to every string inside ``value``
    (mappings, lists and tuples walked; mapping keys kept)."""
    if isinstance(value, str):
        return redact_personal(value)
    if isinstance(value, Mapping):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    return value
