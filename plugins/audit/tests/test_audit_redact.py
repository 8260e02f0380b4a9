"""The GDPR redaction patterns: what goes, and what stays."""

from __future__ import annotations

import pytest

from swarmgate_audit import redact_personal, redact_value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to john.doe+tag@mail.example.co.uk now", "write to [EMAIL] now"),
        ("card 4111 1111 1111 1111.", "card [CARD]."),
        ("card 4111-1111-1111-1111", "card [CARD]"),
        ("amex 378282246310005", "amex [CARD]"),
        ("from 192.168.1.10:8080", "from [IP]:8080"),
        ("v6 2001:db8::ff00:42:8329 and ::1", "v6 [IP] and [IP]"),
        ("fe80::1%eth0", "[IP]%eth0"),
        ("call +44 20 7946 0958", "call [PHONE]"),
        ("call (555) 123-4567", "call [PHONE]"),
        ("call 0044 20 7946 0958", "call [PHONE]"),
        ("call 06 12 34 56 78", "call [PHONE]"),
        ("call 5551234567", "call [PHONE]"),
        ("tel:+1-555-123-4567.", "tel:[PHONE]."),
    ],
)
def test_personal_data_is_replaced(text: str, expected: str) -> None:
    assert redact_personal(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "meet on 2024-01-15 at 10:30:00",
        "version 1.2.3 and 1.2.3.4.5",
        "order 12345, 7 items, 3:4 ratio",
        "compute 123456789 * 2",
        "4111-1111-1111-1112 fails the Luhn check and is too long for a phone",
        "no digits or at signs here",
        "an @mention is not an address",
        "999.1.1.1 is not an address",
    ],
)
def test_ordinary_text_stays(text: str) -> None:
    assert redact_personal(text) == text


def test_redact_value_walks_structures() -> None:
    value = {"a": ["x@y.org", ("10.0.0.1", 5)], "b": {"c": "+33 6 12 34 56 78"}, "n": None}
    assert redact_value(value) == {"a": ["[EMAIL]", ["[IP]", 5]], "b": {"c": "[PHONE]"}, "n": None}
