"""Secrets never reach a log line."""

from __future__ import annotations

import io
import json

import structlog

from swarmgate.logs import configure_logging, ensure_redaction, fingerprint, redact_secrets, register_secret


def test_redaction_processor_masks_keys_headers_and_registered_secrets() -> None:
    register_secret("custom-secret-value-42")
    event = redact_secrets(
        None,
        "info",
        {
            "event": "call failed: key custom-secret-value-42 rejected",
            "api_key": "abc",
            "headers": {"Authorization": "Bearer sk-live-1234567890", "accept": "json"},
            "detail": ["sk-abcdefghijkl", "fine"],
            "tokens": 12,
        },
    )
    assert "custom-secret-value-42" not in json.dumps(event)
    assert fingerprint("custom-secret-value-42") in event["event"]
    assert event["api_key"] == "[REDACTED]"
    assert event["headers"] == {"Authorization": "[REDACTED]", "accept": "json"}
    assert event["detail"] == ["[REDACTED]", "fine"]
    assert event["tokens"] == 12


def test_redaction_is_put_first_in_an_application_chain() -> None:
    out = io.StringIO()
    structlog.configure(
        processors=[structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(file=out),
    )
    try:
        ensure_redaction()
        structlog.get_logger().warning("x", authorization="Bearer abcdefghijk")
        assert "abcdefghijk" not in out.getvalue()
    finally:
        configure_logging()


def test_library_loggers_mask_secrets(caplog: object) -> None:
    import logging

    register_secret("http://user:hunter2-proxy-pass@127.0.0.1:3128")
    ensure_redaction()
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logger = logging.getLogger("httpcore.connection")
    handler = Collect()
    logging.getLogger("httpcore").addHandler(handler)
    logging.getLogger("httpcore").setLevel(logging.DEBUG)
    try:
        logging.getLogger("httpcore").debug("connect auth=%s", "(b'user', b'hunter2-proxy-pass')")
        logger.debug("child logger: Bearer sk-abcdefghijklmnop")
    finally:
        logging.getLogger("httpcore").removeHandler(handler)
    assert records[0] == "connect auth=(b'user', b'" + fingerprint("hunter2-proxy-pass") + "')"
    assert "sk-abcdefghijklmnop" not in " ".join(records)
